"""Tests for grpo.py: the loss against hand computation, KL, clipping, micro-batch invariance, masks with EOS,
advantages, a tiny run that learns, exact resume, config errors and the reward variants."""

import contextlib
import copy
import dataclasses
import itertools
import json
import math
import random
from pathlib import Path

import pytest
import torch

import common
import datagen
import evaluate
import verifier
import grpo
import model as model_lib
import sampler as sampler_lib
import tokenizer as tok_lib
from common import UserError, make_optimizer

CPU = common.Dist(rank=0, world=1, local_rank=0, device=torch.device("cpu"))
NO_AUTOCAST = contextlib.nullcontext()
TIMING = {"rollout_s", "update_s", "step_s", "rollout_share", "rollout_tok_s"}  # wall-clock metrics


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """These micro models are far too small for intra-op threads, and on a busy 2-core machine the idle threads'
    spinning makes the file several times slower; use one thread here, and give the setting back afterwards."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


# ----------------------------------------------------------------------------------------------------------------
# The loss, by hand

def loop_loss(logp, old, ref, adv, mask, *, eps, kl_coef, agg, denom, max_new=0):
    """The docstring's formulas, one token at a time in plain Python floats."""
    total, kls, clipped, n = 0.0, 0.0, 0, 0
    for b in range(len(mask)):
        n_b = sum(mask[b])
        for t in range(len(mask[b])):
            if not mask[b][t]:
                continue
            ratio = math.exp(logp[b][t] - old[b][t])
            a = adv[b]
            pg = -min(ratio * a, min(max(ratio, 1 - eps), 1 + eps) * a)
            d = ref[b][t] - logp[b][t]
            kl = math.exp(d) - d - 1
            w = {"token": 1 / denom, "seq": 1 / (n_b * denom), "constant": 1 / (max_new * denom)}[agg]
            total += w * (pg + kl_coef * kl)
            kls += kl
            clipped += abs(ratio - 1) > eps
            n += 1
    return total, kls / n, clipped / n


# three rows of lengths 4, 3 and 3; log-ratios inside and outside +-0.2 for positive and negative advantages,
# and junk (large but finite) values in the masked-out slots that must not count
LOGP = [[-1.0, -2.0, -0.5, -3.0, 9.0], [-0.7, -1.2, -0.9, 7.0, 7.0], [-2.5, -0.3, -1.1, 5.0, 5.0]]
OLD = [[-1.0, -2.5, -0.4, -2.6, -9.0], [-0.2, -1.6, -1.0, 0.0, 0.0], [-2.0, -0.6, -1.1, -5.0, -5.0]]
REF = [[-1.2, -1.9, -0.5, -2.0, 3.0], [-0.9, -1.0, -1.0, 2.0, 2.0], [-2.4, -0.9, -1.0, -3.0, -3.0]]
ADV = [1.5, -0.8, 0.6]
MASK = [[1, 1, 1, 1, 0], [1, 1, 1, 0, 0], [1, 1, 1, 0, 0]]


def as_tensors():
    f = torch.tensor
    return f(LOGP, dtype=torch.float64), f(OLD, dtype=torch.float64), f(REF, dtype=torch.float64), \
        f(ADV, dtype=torch.float64), f(MASK)


@pytest.mark.parametrize("agg,denom", [("token", 10.0), ("token", 20.0), ("seq", 3.0), ("seq", 8.0),
                                       ("constant", 3.0), ("constant", 5.0)])
def test_loss_matches_hand_computation(agg, denom):
    # a denominator larger than this batch's own count stands for the other micro-batches of the step
    logp, old, ref, adv, mask = as_tensors()
    loss, stats = grpo.grpo_loss(logp, old, ref, adv, mask, clip_eps=0.2, kl_coef=0.05, agg=agg, denom=denom,
                                 max_new_tokens=6)
    want, kl, clip_frac = loop_loss(LOGP, OLD, REF, ADV, MASK, eps=0.2, kl_coef=0.05, agg=agg, denom=denom,
                                    max_new=6)
    assert float(loss) == pytest.approx(want, rel=1e-12, abs=1e-14)
    assert stats["kl"] == pytest.approx(kl, rel=1e-12)
    assert stats["clip_frac"] == pytest.approx(clip_frac, rel=1e-12)
    assert stats["tokens"] == 10
    # the example exercises every branch: ratios out of range both ways, advantages of both signs
    ratios = [(math.exp(LOGP[b][t] - OLD[b][t]), ADV[b]) for b in range(3) for t in range(5) if MASK[b][t]]
    assert {(r > 1.2, r < 0.8, a > 0) for r, a in ratios} >= {(True, False, True), (False, True, True),
                                                                (True, False, False), (False, True, False),
                                                                (False, False, True), (False, False, False)}
    assert 0 < clip_frac < 1


def test_loss_single_token_by_hand():
    # ratio 1.5 with A = 1 is clipped to 1.2; ref / p = 2 gives k3 = 2 - ln 2 - 1
    one = lambda v: torch.tensor([[v]], dtype=torch.float64)  # noqa: E731
    loss, stats = grpo.grpo_loss(one(math.log(1.5)), one(0.0), one(math.log(3.0)), torch.tensor([1.0]),
                                 torch.ones(1, 1), clip_eps=0.2, kl_coef=0.1, agg="token", denom=1.0)
    assert float(loss) == pytest.approx(-1.2 + 0.1 * (2 - math.log(2) - 1), rel=1e-12)
    assert stats["clip_frac"] == 1.0 and stats["ratio"] == pytest.approx(1.5)
    # the same ratio with A = -1 is not clipped: the pessimistic branch keeps -1.5
    loss, _ = grpo.grpo_loss(one(math.log(1.5)), one(0.0), one(math.log(1.5)), torch.tensor([-1.0]),
                             torch.ones(1, 1), clip_eps=0.2, kl_coef=0.1, agg="token", denom=1.0)
    assert float(loss) == pytest.approx(1.5, rel=1e-12)
    # "seq" weighs a 1-token and a 3-token row equally; "token" weighs each token equally
    logp = torch.zeros(2, 3, dtype=torch.float64)
    mask = torch.tensor([[1, 0, 0], [1, 1, 1]])
    adv = torch.tensor([1.0, -1.0], dtype=torch.float64)
    args = dict(clip_eps=0.2, kl_coef=0.0, max_new_tokens=4)
    assert float(grpo.grpo_loss(logp, logp, logp, adv, mask, agg="seq", denom=2, **args)[0]) == pytest.approx(0.0)
    assert float(grpo.grpo_loss(logp, logp, logp, adv, mask, agg="token", denom=4, **args)[0]) == pytest.approx(0.5)
    assert float(grpo.grpo_loss(logp, logp, logp, adv, mask, agg="constant", denom=2, **args)[0]) == \
        pytest.approx((-1 + 3) / (2 * 4))
    with pytest.raises(ValueError, match="aggregation"):
        grpo.grpo_loss(logp, logp, logp, adv, mask, agg="mean", denom=2, **args)


def test_kl_is_nonnegative_and_zero_at_equality():
    g = torch.Generator().manual_seed(0)
    logp = -torch.rand(64, 16, generator=g) * 8
    ref = logp + torch.randn(64, 16, generator=g) * torch.tensor([0.01, 0.3, 3.0, 15.0]).repeat(4)
    mask = torch.ones(64, 16)
    zero = torch.zeros(64)
    # one token per call: every single k3 term is >= 0, not just their mean
    for b in range(0, 64, 4):
        for t in range(16):
            loss, st = grpo.grpo_loss(logp[b:b + 1, t:t + 1], logp[b:b + 1, t:t + 1], ref[b:b + 1, t:t + 1],
                                      zero[:1], mask[:1, :1], clip_eps=0.2, kl_coef=1.0, agg="token", denom=1)
            assert float(loss) >= 0 and st["kl"] >= 0
    loss, st = grpo.grpo_loss(logp, logp, ref, zero, mask, clip_eps=0.2, kl_coef=1.0, agg="token", denom=1024)
    assert float(loss) > 0 and st["kl"] > 0
    # ref == logp: exactly zero, and so is its gradient
    x = logp.clone().requires_grad_(True)
    loss, st = grpo.grpo_loss(x, logp, logp.clone(), zero, mask, clip_eps=0.2, kl_coef=1.0, agg="token", denom=1024)
    assert loss.item() == 0.0 and st["kl"] == 0.0
    loss.backward()
    assert torch.count_nonzero(x.grad) == 0


@pytest.mark.parametrize("agg", ["token", "seq", "constant"])
@pytest.mark.parametrize("clip_eps", [0.0, 0.2, 5.0])
def test_ratio_one_is_reinforce(agg, clip_eps):
    g = torch.Generator().manual_seed(1)
    old = -torch.rand(4, 6, generator=g, dtype=torch.float64) * 4
    adv = torch.randn(4, generator=g, dtype=torch.float64)
    mask = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 0, 0, 0, 0], [1, 1, 1, 1, 0, 0], [1, 0, 0, 0, 0, 0]],
                        dtype=torch.float64)
    denom = {"token": 13.0, "seq": 4.0, "constant": 4.0}[agg]
    weight = {"token": mask / denom, "seq": mask / (mask.sum(1, keepdim=True) * denom),
              "constant": mask / (6 * denom)}[agg]
    for ref, kl_coef in [(old.clone(), 1e-3), (old + 0.5 * torch.randn(4, 6, generator=g, dtype=torch.float64), 0.1)]:
        logp = old.clone().requires_grad_(True)
        loss, st = grpo.grpo_loss(logp, old, ref, adv, mask, clip_eps=clip_eps, kl_coef=kl_coef, agg=agg,
                                  denom=denom, max_new_tokens=6)
        assert st["clip_frac"] == 0.0 and st["ratio"] == 1.0
        d = ref - old
        kl = torch.exp(d) - d - 1
        assert loss.item() == pytest.approx(float(-(weight * adv[:, None]).sum() + kl_coef * (weight * kl).sum()),
                                            rel=1e-12, abs=1e-15)
        loss.backward()
        # REINFORCE: -A * weight per token, plus the KL term's own gradient (zero when ref == logp)
        want = -adv[:, None] * weight + kl_coef * weight * (1 - torch.exp(d))
        torch.testing.assert_close(logp.grad, want, rtol=1e-12, atol=1e-15)
        if kl_coef == 1e-3:
            torch.testing.assert_close(logp.grad, -adv[:, None] * weight, rtol=1e-12, atol=1e-15)


# ----------------------------------------------------------------------------------------------------------------
# A real micro model through the RL step

@pytest.fixture(scope="module")
def micro(micro_ckpt):
    """(checkpoint state, tokenizer, RL records with short prompts) for direct RL steps."""
    state = common.load_checkpoint(micro_ckpt)
    tok = tok_lib.load_tokenizer(state["tokenizer"])
    records = grpo.datagen.load_problems("ops=2-3", 64, 0, "rl")
    lens = [len(ids) for ids in grpo.encode_prompts(tok, records)]
    records = [r for _, r in sorted(zip(lens, records), key=lambda p: p[0])][:16]  # fast forwards
    return state, tok, records


def rl_config(**overrides) -> grpo.Config:
    base = dict(prompts_per_step=4, group_size=4, max_new_tokens=12, minibatches=2, micro_rows=8, episodes=0)
    return grpo.Config(**{**base, **overrides})


def token_reward(tokens):
    """A deterministic synthetic reward from the generated ids, with spread inside every group."""
    return (sum(tokens) % 7) / 6


def synthetic_step(policy, ref, opt, tok, records, cfg, reward_of, step=0) -> dict:
    """rl_step with a synthetic reward of each completion's token ids in place of the verifier's."""
    ro = grpo.rollout(policy, tok, records, cfg, step, CPU, NO_AUTOCAST)
    rewards = torch.tensor([float(reward_of(ids)) for ids in ro.gen.to_lists()])
    m = grpo.update(policy, grpo.LogprobModule(policy), ref, opt, ro, rewards, cfg, step, CPU, NO_AUTOCAST)
    return {**m, **grpo.rollout_metrics(ro, rewards, cfg)}


class RecordingSGD(torch.optim.SGD):
    """SGD that keeps a copy of the gradients it is given at every step (one step per mini-batch)."""

    def __init__(self, params, lr):
        super().__init__(params, lr=lr)
        self.grads = []

    def step(self, closure=None):
        self.grads.append([p.grad.detach().clone() for group in self.param_groups for p in group["params"]])
        return super().step(closure)


def test_one_micro_batch_equals_many(micro):
    """An RL update with each mini-batch in one forward/backward vs in uneven micro-batches of 3 rows (3 + 3 + 2) and
    of 1 row: the same rollouts, the same gradient at each of the 2 mini-batch updates, the same weights after
    the step -- for each loss aggregation. The second update runs at a moved policy (ratios != 1, some clipped,
    KL > 0); rows end at different lengths (some by EOS), so the three aggregations really differ."""
    state, tok, records = micro
    base = model_lib.model_from_state(state)
    ref = model_lib.model_from_state(state).eval()
    first_grads = {}
    for agg in grpo.LOSS_AGG:  # every aggregation, one added to the table included
        runs = []
        for micro_rows in (8, 3, 1):
            policy = copy.deepcopy(base)
            # a narrow clip range, so that the second update clips some tokens whatever the model's init
            cfg = rl_config(loss_agg=agg, micro_rows=micro_rows, max_new_tokens=48, grad_clip=1e9, kl_coef=0.05,
                            clip_eps=0.01, seed=3)
            opt = RecordingSGD(policy.parameters(), lr=0.03)
            m = synthetic_step(policy, ref, opt, tok, records[:4], cfg, token_reward)
            runs.append((m, opt.grads, [p.detach().clone() for p in policy.parameters()]))
        (m0, g0, p0) = runs[0]
        assert m0["zero_var_groups"] == 0 and 0 < m0["truncated"] < 1  # signal in every group; mixed lengths
        assert m0["kl"] > 1e-4 and m0["clip_frac"] > 0 and len(g0) == 2
        for m, grads, params in runs[1:]:
            assert m["reward"] == m0["reward"] and m["rollout_tokens"] == m0["rollout_tokens"]  # same rollouts
            for k in ("loss", "kl", "clip_frac", "grad_norm"):
                assert m[k] == pytest.approx(m0[k], rel=1e-5, abs=1e-9), (agg, k)
            for update in range(2):
                scale = max(float(g.abs().max()) for g in g0[update])
                for a, b in zip(g0[update], grads[update]):
                    torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6 * scale)
            for a, b in zip(p0, params):
                torch.testing.assert_close(b, a, rtol=1e-6, atol=1e-7)  # one float32 ulp at |w| ~ 1
        first_grads[agg] = g0[0]
    for x, y in itertools.combinations(grpo.LOSS_AGG, 2):  # the test tells them apart
        assert any(not torch.allclose(a, b, rtol=1e-3, atol=0) for a, b in zip(first_grads[x], first_grads[y]))


# ----------------------------------------------------------------------------------------------------------------
# Masks and sequences

def test_response_mask_from_lengths_with_pad_equal_to_eos():
    E = tok_lib.EOS_ID
    prompt_ids = [[20, 21, 22], [30, 31, 32, 33, 34]]
    # prompt 0: a row ended by EOS after 2 tokens, a truncated row (no EOS); prompt 1: an immediate EOS,
    # and a row whose response tokens include ids equal to the padding
    tokens = torch.tensor([[40, 41, E, E], [42, 43, 44, 45], [E, E, E, E], [46, E, E, E]])
    gen = model_lib.Generation(tokens=tokens, lengths=torch.tensor([3, 4, 1, 2]),
                               finished=torch.tensor([True, False, True, True]))
    x, y, mask = grpo.sequence_batch(prompt_ids, gen, group_size=2, pad_id=E)
    T = max(len(prompt_ids[i // 2]) + int(gen.lengths[i]) for i in range(4)) - 1
    assert x.shape == y.shape == mask.shape == (4, T)
    for i, resp in enumerate(gen.to_lists()):
        full = prompt_ids[i // 2] + resp
        assert x[i, :len(full) - 1].tolist() == full[:-1] and y[i, :len(full) - 1].tolist() == full[1:]
        assert y[i][mask[i]].tolist() == resp  # exactly the generated tokens, the ending EOS included
        # target t is sequence token t + 1: the mask starts at the last prompt position, ends at the last token
        want = [len(prompt_ids[i // 2]) - 1 <= t < len(full) - 1 for t in range(T)]
        assert mask[i].tolist() == want
    assert int(mask.sum()) == int(gen.lengths.sum())
    assert y[0][mask[0]].tolist()[-1] == E and y[1][mask[1]].tolist()[-1] == 45  # EOS kept; truncated row whole
    assert (y[~mask] == E).sum() > 0  # padding (== EOS id) exists in the targets and is never covered
    # the mask alone, from lengths: prompt 2 + response 3 in a 7-target row
    m = grpo.response_mask(torch.tensor([2, 1, 4]), torch.tensor([3, 6, 0]), 7)
    assert m.tolist() == [[False, True, True, True, False, False, False],
                          [True, True, True, True, True, True, False],
                          [False] * 7]


@pytest.mark.parametrize("sampler", sampler_lib.SAMPLERS)
def test_sequence_batch_with_the_real_sampler(micro, sampler):
    """With a real sampler and pad id == EOS id, the rows the loss sees are the generated ones, EOS included."""
    state, tok, records = micro
    policy = model_lib.model_from_state(state)
    prompt_ids = grpo.encode_prompts(tok, records[:4])
    gen = sampler_lib.generate_with(sampler, policy, prompt_ids, n=8, max_new_tokens=40, temperature=1.0,
                                    eos_id=tok_lib.EOS_ID, pad_id=tok_lib.EOS_ID, seed=0)
    x, y, mask = grpo.sequence_batch(prompt_ids, gen, 8, tok_lib.EOS_ID)
    assert gen.finished.any() and (~gen.finished).any()  # both kinds of row occur
    for i, resp in enumerate(gen.to_lists()):
        assert y[i][mask[i]].tolist() == resp
        assert (resp[-1] == tok_lib.EOS_ID) == bool(gen.finished[i])


def test_both_samplers_score_alike_at_temperature_0(micro):
    """evaluate's scoring through either sampler: greedy completions, so the same verdicts."""
    state, tok, records = micro
    policy = model_lib.model_from_state(state).eval()
    scored = {name: evaluate.sample_and_score(policy, tok, records[:6], n=2, temperature=0.0, max_new_tokens=30,
                                              keep_text=1, sampler=name) for name in sampler_lib.SAMPLERS}
    assert scored["plain"] == scored["shared"]


# ----------------------------------------------------------------------------------------------------------------
# Advantages

def test_group_advantages():
    rewards = torch.tensor([1.0, 1.0, 1.0, 1.0,  0.0, 1.0, 0.0, 1.0,  0.2, 0.9, 0.4, 0.0,  0.0, 0.0, 0.0, 0.0])
    for norm in ("std", "mean"):
        adv = grpo.group_advantages(rewards, 4, norm).view(4, 4)
        assert torch.equal(adv[0], torch.zeros(4)) and torch.equal(adv[3], torch.zeros(4))  # no signal, no push
        assert adv[1:3].sum(1).abs().max() < 1e-6
    adv = grpo.group_advantages(rewards, 4, "std").view(4, 4)
    # unbiased std of (0, 1, 0, 1) is sqrt(1/3): advantages +-0.5 * sqrt(3)
    torch.testing.assert_close(adv[1], torch.tensor([-1.0, 1.0, -1.0, 1.0]) * 0.5 * math.sqrt(3), rtol=1e-5, atol=0)
    assert float(adv[2].std(unbiased=True)) == pytest.approx(1.0, abs=1e-5)
    r2 = rewards.view(4, 4)[2]
    torch.testing.assert_close(adv[2], (r2 - r2.mean()) / (r2.std() + 1e-6))
    torch.testing.assert_close(grpo.group_advantages(rewards, 4, "mean").view(4, 4)[2], r2 - r2.mean())
    # prompt-major: the groups are consecutive runs of group_size
    adv2 = grpo.group_advantages(torch.tensor([0.0, 1.0, 5.0, 5.0]), 2, "mean")
    assert adv2.tolist() == [-0.5, 0.5, 0.0, 0.0]
    with pytest.raises(ValueError, match="normalization"):
        grpo.group_advantages(rewards, 4, "rank")


# ----------------------------------------------------------------------------------------------------------------
# Learning

def test_update_scores_tokens_at_the_sampling_temperature(micro):
    """With one update per rollout batch the policy has not moved, so every ratio must be exactly 1 -- which holds
    only if the update scores the tokens at the temperature that sampled them (at T=0.5 the raw logits give
    ratios far from 1, and a narrow clip range would clip them)."""
    state, tok, records = micro
    policy = model_lib.model_from_state(state)
    cfg = rl_config(temperature=0.5, minibatches=1, clip_eps=1e-4, kl_coef=0.0, seed=2)
    opt = RecordingSGD(policy.parameters(), lr=0.0)
    m = synthetic_step(policy, None, opt, tok, records[:4], cfg, token_reward)
    assert m["rollout_tokens"] > 0 and m["clip_frac"] == 0.0


def test_tiny_grpo_run_raises_reward(micro):
    """A reward a micro model can learn in a dozen steps: start the response with " Define" (about 1 in 10 at
    first). The mean reward of the last steps must clearly beat the first ones'."""
    state, tok, records = micro
    target = tok.token_to_id("ĠDefine")
    torch.manual_seed(0)
    policy = model_lib.model_from_state(state)
    ref = model_lib.model_from_state(state).eval()
    cfg = rl_config(group_size=8, max_new_tokens=4, micro_rows=16, lr=3e-3, seed=1)
    opt = make_optimizer(policy, cfg.weight_decay, cfg.lr, (cfg.beta1, cfg.beta2), "cpu")
    stream = grpo.PromptStream(records, cfg.seed)
    rewards = []
    for step in range(12):
        m = synthetic_step(policy, ref, opt, tok, stream.take(cfg.prompts_per_step), cfg,
                           lambda ids: ids[0] == target, step)
        rewards.append(m["reward"])
    first, last = sum(rewards[:3]) / 3, sum(rewards[-3:]) / 3
    assert last > first + 0.3 and last > 0.5, rewards


# ----------------------------------------------------------------------------------------------------------------
# The whole program: resume

@pytest.fixture(scope="module")
def short_pool(micro, tmp_path_factory) -> Path:
    """The micro fixture's short-prompt records as a .jsonl pool (short prompts keep whole runs fast)."""
    path = tmp_path_factory.mktemp("grpo-pool") / "pool.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in micro[2]))
    return path


def grpo_config(tmp, ckpt, pool, **overrides) -> grpo.Config:
    base = dict(init_from=str(ckpt), out_dir=str(tmp), pool=str(pool), eval_data="ops=2-3", eval_problems=2,
                eval_n=1, max_new_tokens=8, eval_every=100, ckpt_every=100, reward_noise=0.5, lr=1e-3, device="cpu")
    return common.preset_config(grpo.Config, grpo.PRESETS, "micro", **{**base, **overrides})


def metric_rows(out_dir) -> list[dict]:
    rows = [json.loads(line) for line in open(Path(out_dir) / "metrics.jsonl")]
    return [{k: v for k, v in r.items() if k not in TIMING} for r in rows]


@pytest.mark.parametrize("reselect_every,stop", [(0, 2), (2, 3)])
def test_resume_is_exact(tmp_path, micro_ckpt, short_pool, monkeypatch, reselect_every, stop):
    """4 steps straight = `stop` steps, then --resume to 4 (max_steps raised on resume): the same per-step metrics
    and bitwise the same weights. Reward noise makes the signal non-zero (the micro model solves nothing). With
    re-selection every 2 steps the pool changes at steps 0 and 2, and the run resumes at 3, between re-selections
    (a stand-in selector: the micro model has no edge of competence)."""
    def select_edge(model, tok, records, n, seed, **kw):
        return records[seed % 3::2], {}
    monkeypatch.setattr(grpo.evaluate, "select_edge", select_edge)
    kw = dict(reselect_every=reselect_every, ckpt_every=2)
    grpo.main(grpo_config(tmp_path / "a", micro_ckpt, short_pool, max_steps=4, **kw))
    grpo.main(grpo_config(tmp_path / "b", micro_ckpt, short_pool, max_steps=stop, **kw))
    out = grpo.main(grpo_config(tmp_path / "b", micro_ckpt, short_pool, max_steps=4, resume=True, **kw))
    assert out["last_step"]["step"] == 4
    a, b = metric_rows(tmp_path / "a"), metric_rows(tmp_path / "b")
    assert [r["step"] for r in a] == [r["step"] for r in b] == [1, 2, 3, 4]
    assert any(r["reward_std"] > 0 for r in a) and any(r["kl"] > 0 for r in a)  # the policy did move
    for ra, rb in zip(a, b):
        assert ra == rb, {k: (ra[k], rb.get(k)) for k in ra if ra[k] != rb.get(k)}
    sa = common.load_checkpoint(tmp_path / "a" / "final.pt")
    sb = common.load_checkpoint(tmp_path / "b" / "final.pt")
    assert sb["step"] == 4 and sb["stream"] == sa["stream"] and sb["compute"] == sa["compute"]
    assert all(torch.equal(sa["model"][k], sb["model"][k]) for k in sa["model"])
    init = common.load_checkpoint(micro_ckpt)["model"]
    assert any(not torch.equal(sa["model"][k], init[k]) for k in init)


def test_scarce_data_keeps_its_first_selection(tmp_path, micro_ckpt, short_pool, monkeypatch):
    """--max_prompts K with re-selection: the first edge selection's first K prompts, kept for the whole run."""
    calls = []

    def select_edge(model, tok, records, n, seed, **kw):
        calls.append(seed)
        return records[1::2], {}
    monkeypatch.setattr(grpo.evaluate, "select_edge", select_edge)
    grpo.main(grpo_config(tmp_path, micro_ckpt, short_pool, max_steps=4, reselect_every=2, ckpt_every=4,
                          max_prompts=2))
    assert calls == [0]  # no re-selection at step 2
    pool = [json.loads(line) for line in open(tmp_path / "pool_step000004.jsonl")]
    records = [json.loads(line) for line in open(short_pool)]
    assert [r["id"] for r in pool] == [r["id"] for r in records[1::2][:2]]
    assert [r["pool_prompts"] for r in metric_rows(tmp_path)] == [2, 2, 2, 2]  # what each step trained on
    with pytest.raises(common.UserError, match="max_prompts"):
        grpo.check_config(grpo_config(tmp_path, micro_ckpt, short_pool, max_prompts=-1), 1)


def test_checkpoint_contents(tmp_path, micro_ckpt, short_pool):
    cfg = grpo_config(tmp_path, micro_ckpt, short_pool, max_steps=2, ckpt_every=1, keep_last=1)
    grpo.main(cfg)
    state = common.load_checkpoint(tmp_path / "final.pt")
    for key in ("model", "optimizer", "step", "rng", "stream", "stream_seed", "compute", "model_config", "tokenizer",
                "config"):
        assert key in state, key
    assert state["step"] == 2 and state["stage"] == "grpo" and state["optimizer"]["state"]
    assert sorted(p.name for p in tmp_path.glob("step_*.pt")) == ["step_000002.pt"]  # keep_last
    for name in ("config.json", "log.txt", "metrics.jsonl", "evals.jsonl", "dynamics.png", "final.pt.json"):
        assert (tmp_path / name).exists(), name
    # a GRPO checkpoint is itself a valid starting point (policy weights + tokenizer)
    assert model_lib.model_from_state(state).n_params() == model_lib.model_from_state(
        common.load_checkpoint(micro_ckpt)).n_params()


# ----------------------------------------------------------------------------------------------------------------
# Config errors

@pytest.mark.parametrize("flags,message", [
    (["--reward=correct"], "--reward must be one of outcome, process, strict"),
    (["--loss_agg=mean"], "--loss_agg must be one of token, seq, constant"),
    (["--adv_norm=rank"], "--adv_norm must be std or mean"),
    (["--pseudo_label=silver"], "--pseudo_label must be gold or majority"),
    (["--pseudo_label=majority", "--reward=process"], "majority only defines an outcome reward"),
    (["--reward_noise=0.1", "--reward=process"], "flips binary rewards"),
    (["--reward_noise=1.5"], "must lie in [0, 1]"),
    (["--group_size=1"], "--group_size must be >= 2"),
    (["--prompts_per_step=6", "--minibatches=4"], "must split evenly"),
    (["--max_steps=0"], "--max_steps must be > 0"),
    (["--minibatches=0"], "--minibatches must be > 0"),
    (["--ckpt_every=0"], "--ckpt_every must be > 0"),
    (["--keep_last=0"], "--keep_last must be > 0"),
    (["--pool_size=0"], "--pool_size must be > 0"),
    (["--lr=nan"], "--lr must be > 0"),
    (["--device=tpu"], "--device must be auto, cpu or cuda"),
    (["--sampler=fast"], "--sampler must be one of shared, plain"),
    (["--sampler=plain", "--top_p=0.9"], "use --sampler shared for top_p"),
    (["--resume"], "no checkpoint"),
    (["--init_from=missing/ckpt.pt"], "not found"),
])
def test_bad_flags(flags, message, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as e:
        common.run_main(grpo.main, grpo.Config, ["--preset=micro", f"--out_dir={tmp_path / 'run'}", *flags],
                        presets=grpo.PRESETS)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err


def test_resume_counts_settings_added_later_at_their_default():
    old = {k: v for k, v in dataclasses.asdict(rl_config()).items() if k != "sampler"}  # saved before the flag
    assert common.resume_changes(old, rl_config(), ()) == ""
    assert common.resume_changes(old, rl_config(sampler="plain"), ()) == "sampler ('shared' -> 'plain')"


def test_check_config_counts_processes():
    cfg = common.preset_config(grpo.Config, grpo.PRESETS, "micro")  # 4 prompts, 2 mini-batches
    grpo.check_config(cfg, world=1)
    grpo.check_config(cfg, world=2)
    with pytest.raises(UserError, match="2 process"):
        grpo.check_config(common.preset_config(grpo.Config, grpo.PRESETS, "micro", prompts_per_step=6), world=2)
    with pytest.raises(UserError, match="4 process"):
        grpo.check_config(cfg, world=4)  # one prompt per process cannot make 2 mini-batches


# ----------------------------------------------------------------------------------------------------------------
# Rewards plumbing

def reward_cfg(**overrides) -> grpo.Config:
    return grpo.Config(**{"group_size": 4, **overrides})


def answered(rec, answer):
    return f" {rec['solution']} </solution> <answer> {answer} </answer>[EOS]"


def test_majority_pseudo_label_rewards_the_common_answer():
    rec, other = list(datagen.generate("ops=2-3", 2, seed=5, split="rl"))
    wrong = rec["answer"] + 1
    records = [rec] * 4 + [other] * 4
    completions = [answered(rec, wrong), answered(rec, rec["answer"]), answered(rec, wrong), answered(rec, wrong),
                   " no answer here[EOS]", " nor here[EOS]", " 1 </solution>[EOS]", " x[EOS]"]
    res = grpo.score_group(records, completions, reward_cfg(pseudo_label="majority"), random.Random(0))
    # group 1: the wrong answer is the majority and is paid; the gold one is not; group 2: no answers, no reward
    assert [r["reward"] for r in res] == [1.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0]
    assert [r["answer_correct"] for r in res[:4]] == [False, True, False, False]  # the gold verdict stays for logs
    gold = grpo.score_group(records, completions, reward_cfg(), random.Random(0))
    assert [r["reward"] for r in gold] == [0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]


def test_reward_noise_flips_and_reward_kinds():
    rec = next(iter(datagen.generate("ops=2-3", 1, seed=6, split="rl")))
    completions = [answered(rec, rec["answer"]), answered(rec, rec["answer"] + 3)] * 2
    records = [rec] * 4
    clean = [r["reward"] for r in grpo.score_group(records, completions, reward_cfg(), random.Random(0))]
    assert clean == [1.0, 0.0, 1.0, 0.0]
    flipped = [r["reward"] for r in grpo.score_group(records, completions, reward_cfg(reward_noise=1.0),
                                                     random.Random(0))]
    assert flipped == [1.0 - v for v in clean]
    strict = grpo.score_group(records, completions, reward_cfg(reward="strict", reward_noise=1.0), random.Random(0))
    assert [r["reward"] for r in strict] == [0.0, 1.0, 0.0, 1.0]
    # a noise rate in between flips a seeded subset, the same one for the same rng seed
    half = [[r["reward"] for r in grpo.score_group(records * 16, completions * 16, reward_cfg(reward_noise=0.5),
                                                   random.Random(s))] for s in (1, 1, 2)]
    assert half[0] == half[1] != half[2] and 0 < sum(a != b for a, b in zip(half[0], clean * 16)) < 64
    process = grpo.score_group(records, completions, reward_cfg(reward="process", alpha=0.5), random.Random(0))
    assert [r["reward"] for r in process] == [1.0, 0.0, 1.0, 0.0]
    assert verifier.reward(process[0], "process", 0.5) == 1.0
