"""
grpo.py -- Group Relative Policy Optimization, written out by hand, as the paper ran it (verl).

One step: take N prompts from the RL pool, sample r completions of each with sampler.py, score
every completion with the shared verifier (verifier.py), turn rewards into group-relative advantages, then
make `minibatches` clipped policy-gradient updates over the rollout batch, with a k3 KL penalty to the frozen
initial model. Settings at `paper` scale are SPEC §7's; smaller presets scale the sizes, not the algorithm.

    python grpo.py                                # CPU, tiny preset: RL on op 4-5 from runs/pretrain-tiny
    python grpo.py --preset=paper --init_from=runs/pretrain-paper --pool=rl_11_14 --reward=process --alpha=0.2
    python grpo.py --init_from=... --pool=runs/edge-pool.jsonl --reselect_every=20   # self-paced edge pool
    torchrun --nproc_per_node=8 grpo.py --preset=paper ...                   # rollouts sharded over GPUs

The named choices (SPEC §5, §7; STYLE rule 6):
  --loss_agg   token    : sum of per-token losses / tokens in the whole optimizer step (verl "token-mean", DAPO)
               seq      : mean over tokens within each sequence, then over sequences (original GRPO, DeepSeekMath)
               constant : sum of per-token losses / (sequences * max_new_tokens) (Dr. GRPO, no length bias)
  --adv_norm   std      : (r - mean) / (std + 1e-6) per group, unbiased std (GRPO)
               mean     : r - mean per group (Dr. GRPO: no std division, no difficulty bias)
  --reward     outcome / process (with --alpha) / strict, from the shared verifier; --reward_noise flips labels;
               --pseudo_label=majority uses the group's most common answer instead of the gold one.

Outputs in --out_dir: config.json, log.txt, metrics.jsonl (one line per step), evals.jsonl, episodes.jsonl,
checkpoints (step_*.pt, final.pt), dynamics.png.
"""

from __future__ import annotations

import contextlib
import json
import random
import statistics
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

import datagen
import evaluate
import model as model_lib
import sampler as sampler_lib
import tokenizer as tok_lib
import verifier
from common import (Logger, UserError, autocast_for, check_finite, check_out_dir, cleanup_dist,
                    ensure_final, fmt_count, fmt_duration, load_checkpoint, make_optimizer, opt, plot_lines,
                    print_config, read_log, require_positive, resume_checkpoint, rng_state, run_info, run_main,
                    save_json, save_step_checkpoint, seed_everything, set_rng_state, setup_dist, start_run_dir,
                    step_line, truncate_logs, wrap_for_training)


@dataclass
class Config:
    # --- run
    preset: str = opt("tiny", "scale preset that sets the defaults below: micro / tiny / small / paper")
    out_dir: str = opt("runs/grpo-tiny", "checkpoints, logs and plots go here")
    init_from: str = opt("runs/pretrain-tiny", "policy and frozen reference model start from this checkpoint")
    resume: bool = opt(False, "continue the run in out_dir from its latest checkpoint")
    overwrite: bool = opt(False, "start afresh in an out_dir that holds another run, deleting its checkpoints and logs")
    seed: int = opt(0, "prompt order, sampling, reward noise")
    device: str = opt("auto", "auto (cuda if available), cuda or cpu")
    dtype: str = opt("auto", "auto = bf16 autocast on CUDA, fp32 on CPU; or fp32 / bf16")
    compile: bool = opt(False, "torch.compile the policy for the update passes")
    # --- prompts
    pool: str = opt("ops=4-5 contexts=zoo", "RL prompts: datagen recipe (name or spec; split rl) or .jsonl of records")
    pool_size: int = opt(2048, "distinct prompts: drawn from a recipe, or a .jsonl's first (scarce data: 8, 64)")
    pool_seed: int = opt(0, "datagen seed of a recipe pool")
    reselect_every: int = opt(0, "every K steps keep only edge-of-competence prompts of the pool (0 = static pool)")
    max_prompts: int = opt(0, "scarce data: RL sees at most K prompts, the pool's first K or, with --reselect_every, "
                              "the first K of its first edge selection, kept from then on (0 = no cap)")
    reselect_n: int = opt(8, "samples per prompt when re-selecting")
    eval_data: str = opt("", "held-out prompts for evaluation: recipe or .jsonl ('' = the pool recipe, split test)")
    eval_problems: int = opt(32, "held-out problems evaluated every eval_every steps")
    eval_n: int = opt(4, "samples per held-out problem for the small-n pass@k (verified)")
    # --- rollouts
    prompts_per_step: int = opt(16, "prompts per step, all processes together (paper 1024)")
    group_size: int = opt(8, "samples per prompt (paper 6)")
    temperature: float = opt(1.0, "sampling temperature for rollouts")
    top_p: float = opt(1.0, "nucleus sampling for rollouts")
    sampler: str = opt("shared", "shared: sampler.py (fast, the default); plain: model.generate (the readable one; "
                                 "other random draws of the same distribution, no top_p)")
    max_new_tokens: int = opt(160, "response length limit (paper 1024)")
    # --- objective
    reward: str = opt("outcome", "outcome / process / strict (SPEC §5)")
    alpha: float = opt(0.2, "outcome weight inside the process reward")
    reward_noise: float = opt(0.0, "flip each binary reward with this probability (weak supervision)")
    pseudo_label: str = opt("gold", "gold, or majority: the group's most common answer stands in for the gold one")
    adv_norm: str = opt("std", "std (GRPO) or mean (Dr. GRPO); see the module docstring")
    loss_agg: str = opt("token", "token / seq / constant; see the module docstring")
    clip_eps: float = opt(0.2, "PPO clip range")
    kl_coef: float = opt(1e-3, "weight of the k3 KL(policy || reference) term")
    entropy_coef: float = opt(0.0, "entropy bonus (0 = none, as in the paper)")
    minibatches: int = opt(4, "optimizer updates per rollout batch (1 epoch over it)")
    micro_rows: int = opt(32, "rows per forward/backward per process")
    lr: float = opt(5e-5, "constant learning rate (paper: 1e-6)")
    weight_decay: float = opt(0.01, "AdamW weight decay")
    beta1: float = opt(0.9, "AdamW beta1")
    beta2: float = opt(0.999, "AdamW beta2")
    grad_clip: float = opt(1.0, "max global gradient norm")
    max_steps: int = opt(20, "RL steps")
    # --- logging and checkpoints
    log_every: int = opt(1, "steps between log lines")
    eval_every: int = opt(10, "steps between held-out evaluations (and at the start and end)")
    episodes: int = opt(2, "episodes appended to episodes.jsonl at each evaluation")
    ckpt_every: int = opt(10, "steps between checkpoints (and at the end)")
    keep_last: int = opt(2, "step checkpoints kept besides final.pt")


PRESETS = {
    "micro": dict(out_dir="runs/grpo-micro", init_from="runs/pretrain-micro", pool="ops=2-3", pool_size=64,
                  eval_problems=8, eval_n=2, prompts_per_step=4, group_size=4, max_new_tokens=48, micro_rows=8,
                  minibatches=2, max_steps=3, eval_every=2, ckpt_every=2, lr=1e-4),
    # the process reward: at the tiny edge an outcome reward is near its chance rate (reports/edge-tiny)
    "tiny": dict(out_dir="runs/grpo-tiny", init_from="runs/pretrain-tiny", reward="process",
                 pool="ops=7-8 contexts=zoo operands=2 distractors=0 letters=sequential", pool_size=256,
                 eval_problems=32, eval_n=4, prompts_per_step=16, group_size=8, max_new_tokens=256, micro_rows=32,
                 minibatches=4, lr=5e-5, max_steps=30, eval_every=10, ckpt_every=10),
    "small": dict(out_dir="runs/grpo-small", init_from="runs/pretrain-small", pool="rl_11_14", pool_size=20_000,
                  eval_problems=256, eval_n=8, prompts_per_step=128, group_size=8, max_new_tokens=512,
                  micro_rows=64, minibatches=4, lr=2e-6, max_steps=100, eval_every=20, ckpt_every=20),
    # SPEC §7: 1024 prompts x 6 samples, response <= 1024, lr 1e-6, 4 mini-batches of 256 prompts, ~200 steps
    "paper": dict(out_dir="runs/grpo-paper", init_from="runs/pretrain-paper", pool="rl_11_14", pool_size=200_000,
                  eval_problems=512, eval_n=8, prompts_per_step=1024, group_size=6, max_new_tokens=1024,
                  micro_rows=64, minibatches=4, lr=1e-6, max_steps=200, eval_every=20, ckpt_every=20),
}

# settings a --resume may change: they do not change what the run computes
RESUME_MAY_CHANGE = ("max_steps", "resume", "overwrite", "device", "log_every", "eval_every", "ckpt_every", "keep_last",
                     "compile")


# ----------------------------------------------------------------------------------------------------------------
# The objective

# Loss aggregation (STYLE rule 6): each token's term is divided by a size of its row times a count over the whole
# optimizer step (every micro-batch and process: the caller's `denom`), so splitting the batch never changes the
# gradient. name -> (what the step-wide count counts, the row size)
LOSS_AGG = {
    "token": ("tokens", lambda mask, max_new: 1.0),  # every token of the step weighs the same: verl token-mean, DAPO
    "seq": ("sequences", lambda mask, max_new: mask.sum(1, keepdim=True).clamp(min=1)),  # each sequence: GRPO
    "constant": ("sequences", lambda mask, max_new: max_new),  # sequences x max_new_tokens: Dr. GRPO
}


def grpo_loss(logp, old_logp, ref_logp, adv, mask, *, clip_eps: float, kl_coef: float, agg: str, denom: float,
              max_new_tokens: int = 0, entropy=None, entropy_coef: float = 0.0):
    """The GRPO surrogate for one micro-batch: a scalar whose sum over the micro-batches of an optimizer step
    is that step's loss, plus statistics.

    logp, old_logp, ref_logp: [B, T] log-probs of the sampled tokens under the policy being trained, the policy
    that sampled them, and the frozen reference model. adv: [B] advantage of each sequence (broadcast to its
    tokens). mask: [B, T] 1 on response tokens (the EOS that ended a row included). denom: the normalizer for
    the *whole* optimizer step, computed by the caller over every micro-batch and process -- response tokens for
    agg="token", sequences for "seq" and "constant" -- so that splitting the batch never changes the gradient.

    Per token: ratio = exp(logp - old_logp); policy term = -min(ratio * A, clip(ratio, 1 - eps, 1 + eps) * A)
    (PPO, Schulman et al. 2017, as used by GRPO, Shao et al. 2024 "DeepSeekMath"); KL term
    = exp(ref - logp) - (ref - logp) - 1 (the k3 estimator, Schulman 2020: unbiased, always >= 0), weighted by
    kl_coef and added to the loss as in GRPO (not to the reward, as in PPO-RLHF). Aggregation (STYLE rule 6):
    "token" weighs every token of the step equally (verl token-mean, DAPO, Yu et al. 2025); "seq" averages within
    each sequence first (the original GRPO); "constant" divides by sequences * max_new_tokens (Dr. GRPO, Liu et
    al. 2025), removing the length bias of both.

    Why the loss starts near zero: on the first update of a step the policy is the sampling policy, so
    ratio = 1 and the KL to a reference that equals it is 0; the policy term is then -mean(A), and group-normalized
    advantages have mean zero within every group. Its *gradient* is not zero: it is the REINFORCE gradient
    sum_t A * grad log p. A loss drifting far from 0 means ratios or KL have grown, not that learning is good.
    """
    if agg not in LOSS_AGG:
        raise ValueError(f"unknown loss aggregation {agg!r}")
    mask = mask.to(logp.dtype)
    weight = mask / (LOSS_AGG[agg][1](mask, max_new_tokens) * denom)
    ratio = torch.exp(logp - old_logp)
    a = adv[:, None]
    pg = -torch.minimum(ratio * a, ratio.clamp(1 - clip_eps, 1 + clip_eps) * a)
    log_r = ref_logp - logp
    kl = torch.exp(log_r) - log_r - 1
    per_token = pg + kl_coef * kl
    if entropy is not None and entropy_coef:
        per_token = per_token - entropy_coef * entropy
    loss = (weight * per_token).sum()
    with torch.no_grad():
        n = mask.sum().clamp(min=1)
        clipped = ((ratio - 1).abs() > clip_eps) * mask
        stats = {"kl": float((kl * mask).sum() / n), "clip_frac": float(clipped.sum() / n),
                 "ratio": float((ratio * mask).sum() / n), "tokens": float(mask.sum())}
    return loss, stats


def group_advantages(rewards: torch.Tensor, group_size: int, norm: str = "std") -> torch.Tensor:
    """Rewards [G * n] (prompt-major) -> advantages: r minus its group's mean, divided by the group's unbiased std
    + 1e-6 for norm="std". A group whose rewards are all equal gets advantage 0 (it carries no signal)."""
    r = rewards.view(-1, group_size)
    centered = r - r.mean(1, keepdim=True)
    if norm == "std":
        std = r.std(1, keepdim=True, unbiased=True) if group_size > 1 else torch.zeros_like(r[:, :1])
        centered = centered / (std + 1e-6)
    elif norm != "mean":
        raise ValueError(f"unknown advantage normalization {norm!r}")
    return centered.flatten()


def response_mask(prompt_lens: torch.Tensor, resp_lens: torch.Tensor, T: int) -> torch.Tensor:
    """Mask over *targets* [B, T] (target t = token t + 1 of the sequence) that covers exactly the response tokens.

    Sequence b is its prompt (prompt_lens[b] tokens) then its response (resp_lens[b] tokens, the EOS that ended
    it included; a truncated row has no EOS), then padding. Built from lengths only, never from token ids, so it
    is right even when the pad id equals the EOS id."""
    pos = torch.arange(1, T + 1, device=prompt_lens.device)[None, :]  # index of each target in the sequence
    start = prompt_lens[:, None]
    return (pos >= start) & (pos < start + resp_lens[:, None])


# ----------------------------------------------------------------------------------------------------------------
# Rewards: the shared verifier, plus the weak-supervision variants

def score_group(records: list[dict], completions: list[str], cfg: Config, rng: random.Random) -> list[dict]:
    """Verify every completion; add its reward under cfg.reward (with pseudo-labels and noise if asked)."""
    results = [verifier.verify(rec, comp) for rec, comp in zip(records, completions)]
    if cfg.pseudo_label == "majority":  # the group's most common parsed answer stands in for the gold answer
        for g in range(0, len(results), cfg.group_size):
            answers = [r["answer"] for r in results[g:g + cfg.group_size] if r["answer"] is not None]
            label = Counter(answers).most_common(1)[0][0] if answers else None
            for r in results[g:g + cfg.group_size]:
                r["pseudo_correct"] = label is not None and r["answer"] == label
    for r in results:
        if cfg.pseudo_label == "majority":
            value = float(r["pseudo_correct"])
        else:
            value = verifier.reward(r, cfg.reward, cfg.alpha)
        if cfg.reward_noise and rng.random() < cfg.reward_noise:
            value = 1.0 - value
        r["reward"] = value
    return results


# ----------------------------------------------------------------------------------------------------------------
# Data: the prompt pool and the held-out prompts

class PromptStream:
    """Prompts of the pool in a seeded random order, epoch after epoch; (epoch, cursor) is its whole state."""

    def __init__(self, pool: list[dict], seed: int):
        self.pool, self.seed, self.epoch, self.cursor = pool, seed, 0, 0

    def take(self, n: int) -> list[dict]:
        out = []
        while len(out) < n:
            order = list(range(len(self.pool)))
            random.Random(self.seed * 7919 + self.epoch).shuffle(order)
            take = order[self.cursor:self.cursor + n - len(out)]
            out += [self.pool[i] for i in take]
            self.cursor += len(take)
            if self.cursor >= len(self.pool):
                self.epoch, self.cursor = self.epoch + 1, 0
        return out


def fitting(records: list[dict], tok, room: int, what: str, log) -> list[dict]:
    """The records whose prompt leaves `max_new_tokens` of room in the model's context (the others are dropped,
    and counted in the log, rather than failing mid-run)."""
    lens = [len(ids) for ids in encode_prompts(tok, records)]
    kept = [r for r, n in zip(records, lens) if n <= room]
    if len(kept) < len(records):
        log.print(f"note: {len(records) - len(kept)} of {len(records)} {what} have prompts longer than "
                  f"{room} tokens (context minus max_new_tokens) and are left out")
    if not kept:
        raise UserError(f"no {what} fit the model's context with --max_new_tokens; lower it")
    kept_lens = sorted(n for n in lens if n <= room)
    log.print(f"{what}: {len(kept)} prompts, median {statistics.median(kept_lens):g} tokens, longest {kept_lens[-1]}")
    return kept


def encode_prompts(tok, records: list[dict]) -> list[list[int]]:
    return [e.ids for e in tok.encode_batch([tok_lib.render_prompt(r) for r in records])]


def decode_responses(tok, gen) -> list[str]:
    return tok.decode_batch(gen.to_lists(), skip_special_tokens=False)


# ----------------------------------------------------------------------------------------------------------------
# One RL step

def sequence_batch(prompt_ids: list[list[int]], gen, group_size: int, pad_id: int):
    """Prompt + response rows, right-padded: (inputs [R, T], targets [R, T], response mask [R, T])."""
    rows = []
    resp = gen.to_lists()
    for i, r in enumerate(resp):
        rows.append(prompt_ids[i // group_size] + r)
    T = max(len(s) for s in rows)
    seq = torch.full((len(rows), T), pad_id, dtype=torch.long)
    for i, s in enumerate(rows):
        seq[i, :len(s)] = torch.tensor(s)
    p_lens = torch.tensor([len(prompt_ids[i // group_size]) for i in range(len(rows))])
    mask = response_mask(p_lens, gen.lengths.cpu(), T - 1)
    return seq[:, :-1], seq[:, 1:], mask


@torch.no_grad()
def logprobs_of(model, x, y, micro_rows: int, autocast, entropy: bool = False, temperature: float = 1.0):
    """Per-token log-probs [R, T] (and entropies) in micro-batches, without gradients."""
    logps, ents = [], []
    for i in range(0, x.size(0), micro_rows):
        with autocast:
            out = model.token_logprobs(x[i:i + micro_rows], y[i:i + micro_rows], return_entropy=entropy,
                                       temperature=temperature)
        logps.append((out[0] if entropy else out).float())
        if entropy:
            ents.append(out[1].float())
    return (torch.cat(logps), torch.cat(ents)) if entropy else torch.cat(logps)


@dataclass
class Rollout:
    """One step's samples: `group_size` completions of each prompt, as token ids and as text."""
    records: list[dict]  # the problem of each completion (each prompt's record repeated group_size times)
    prompt_ids: list[list[int]]  # one per prompt
    gen: model_lib.Generation
    completions: list[str]
    seconds: float


def rollout(policy, tok, records: list[dict], cfg: Config, step: int, dist, autocast) -> Rollout:
    t0 = time.time()
    prompt_ids = encode_prompts(tok, records)
    policy.eval()
    with autocast:
        gen = sampler_lib.generate_with(cfg.sampler, policy, prompt_ids, n=cfg.group_size,
                                        max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature,
                                        top_p=cfg.top_p, eos_id=tok_lib.EOS_ID, pad_id=tok_lib.PAD_ID,
                                        seed=cfg.seed * 1_000_003 + step * 101 + dist.rank)
    policy.train()
    group_records = [rec for rec in records for _ in range(cfg.group_size)]
    return Rollout(group_records, prompt_ids, gen, decode_responses(tok, gen), time.time() - t0)


def update(policy, train_model, ref, optimizer, ro: Rollout, rewards: torch.Tensor, cfg: Config, step: int, dist,
           autocast) -> dict:
    """`minibatches` optimizer steps on the rollout's rows, with group-normalized advantages of `rewards`."""
    device = dist.device
    adv = group_advantages(rewards, cfg.group_size, cfg.adv_norm).to(device)
    x, y, mask = (t.to(device) for t in sequence_batch(ro.prompt_ids, ro.gen, cfg.group_size, tok_lib.PAD_ID))
    # log-probs (and entropy, for the log) under the policy that sampled the rollouts, before any update, all at the
    # sampling temperature (as verl does): the ratio and the KL compare the distributions that sampled
    T = cfg.temperature
    old_logp, old_entropy = logprobs_of(policy, x, y, cfg.micro_rows, autocast, entropy=True, temperature=T)
    ref_logp = logprobs_of(ref, x, y, cfg.micro_rows, autocast, temperature=T) if ref is not None else old_logp
    count = LOSS_AGG[cfg.loss_agg][0]
    R = x.size(0)
    per_mb = R // cfg.minibatches  # the rows split into `minibatches` groups of whole prompts, one step each
    stats: dict[str, float] = Counter()
    grad_norms = []
    for mb in range(cfg.minibatches):
        rows = torch.arange(mb * per_mb, (mb + 1) * per_mb if mb < cfg.minibatches - 1 else R, device=device)
        denom = torch.stack([mask[rows].sum().float(), torch.tensor(float(len(rows)), device=device)])
        if dist.ddp:  # normalize by the whole step's count, over every process
            torch.distributed.all_reduce(denom)
        d = float(denom[0] if count == "tokens" else denom[1])
        chunks = rows.split(cfg.micro_rows)
        for ci, sel in enumerate(chunks):
            sync = contextlib.nullcontext() if not dist.ddp or ci == len(chunks) - 1 else train_model.no_sync()
            with sync, autocast:
                out = train_model(x[sel], y[sel], cfg.entropy_coef > 0, cfg.temperature)
                logp, ent = out if cfg.entropy_coef > 0 else (out, None)
                loss, st = grpo_loss(logp.float(), old_logp[sel], ref_logp[sel], adv[sel], mask[sel],
                                     clip_eps=cfg.clip_eps, kl_coef=cfg.kl_coef, agg=cfg.loss_agg, denom=d,
                                     max_new_tokens=cfg.max_new_tokens, entropy=ent, entropy_coef=cfg.entropy_coef)
                (loss * dist.world).backward()  # DDP averages over processes; the denominator is already global
            for k in ("kl", "clip_frac"):
                stats[k] += st[k] * st["tokens"]
            stats["tokens"] += st["tokens"]
            stats["loss"] += float(loss.detach()) * dist.world  # the whole step's loss, summed over ranks
        grad_norms.append(float(torch.nn.utils.clip_grad_norm_(policy.parameters(), cfg.grad_clip)))
        check_finite(step + 1, Path(cfg.out_dir), loss=stats["loss"], grad_norm=grad_norms[-1])
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    n_tok = max(1.0, stats["tokens"])
    return {"loss": stats["loss"], "kl": stats["kl"] / n_tok, "clip_frac": stats["clip_frac"] / n_tok,
            "entropy": float((old_entropy * mask).sum()) / n_tok, "grad_norm": sum(grad_norms) / len(grad_norms)}


def rollout_metrics(ro: Rollout, rewards: torch.Tensor, cfg: Config) -> dict:
    lengths = ro.gen.lengths.float()
    zero_var = (rewards.view(-1, cfg.group_size).std(1) == 0).float().mean() if cfg.group_size > 1 else \
        torch.tensor(1.0)
    return {"reward": float(rewards.mean()), "reward_std": float(rewards.std()) if len(rewards) > 1 else 0.0,
            "zero_var_groups": float(zero_var), "resp_len": float(lengths.mean()), "resp_len_max": int(lengths.max()),
            "truncated": float((~ro.gen.finished).float().mean()), "rollout_s": ro.seconds,
            "rollout_tokens": int(ro.gen.lengths.sum()),
            "seq_tokens": sum(len(p) for p in ro.prompt_ids) * cfg.group_size + int(ro.gen.lengths.sum())}


def rl_step(policy, train_model, ref, optimizer, tok, records: list[dict], cfg: Config, step: int, dist,
            autocast) -> dict:
    """Rollout, score, update: one RL step over this process's share of the step's prompts; its metrics."""
    ro = rollout(policy, tok, records, cfg, step, dist, autocast)
    t0 = time.time()
    results = score_group(ro.records, ro.completions, cfg, random.Random(f"{cfg.seed}/{step}/{dist.rank}"))
    rewards = torch.tensor([r["reward"] for r in results], dtype=torch.float32)
    m = update(policy, train_model, ref, optimizer, ro, rewards, cfg, step, dist, autocast)
    m.update(rollout_metrics(ro, rewards, cfg), update_s=time.time() - t0)  # scoring and updates
    for key, field_ in (("answer_acc", "answer_correct"), ("verified", "verified"), ("hacked", "hacked")):
        m[key] = sum(r[field_] for r in results) / len(results)
    for kind in verifier.REWARD_KINDS:
        m[f"reward_{kind}"] = sum(verifier.reward(r, kind, cfg.alpha) for r in results) / len(results)
    m["_episodes"] = [{"prompt": tok_lib.render_prompt(rec), "completion": comp, "reward": r["reward"],
                       "answer": rec["answer"], **{k: r[k] for k in ("answer_correct", "verified", "hacked")}}
                      for rec, comp, r in list(zip(ro.records, ro.completions, results))[:cfg.episodes]]
    return m


class LogprobModule(torch.nn.Module):
    """The policy with `token_logprobs` as its forward: DDP syncs gradients only through `forward` calls."""

    def __init__(self, policy):
        super().__init__()
        self.policy = policy

    def forward(self, x, y, want_entropy: bool = False, temperature: float = 1.0):
        return self.policy.token_logprobs(x, y, return_entropy=want_entropy, temperature=temperature)


# ----------------------------------------------------------------------------------------------------------------
# Evaluation on held-out prompts, and the edge-of-competence pool

def evaluate_policy(policy, tok, records: list[dict], cfg: Config, autocast, seed: int) -> dict:
    """Greedy answer accuracy / verified rate, and pass@k (k <= eval_n) at the rollout temperature."""
    greedy = evaluate.sample_and_score(policy, tok, records, n=1, temperature=0.0, max_new_tokens=cfg.max_new_tokens,
                                       seed=seed, autocast=autocast, sampler=cfg.sampler)
    out = {"greedy_acc": sum(r[0]["answer_correct"] for r in greedy) / len(records),
           "greedy_verified": sum(r[0]["verified"] for r in greedy) / len(records),
           "greedy_hacked": sum(r[0]["hacked"] for r in greedy) / len(records)}
    if cfg.eval_n > 1:
        sampled = evaluate.sample_and_score(policy, tok, records, n=cfg.eval_n, temperature=cfg.temperature,
                                            max_new_tokens=cfg.max_new_tokens, seed=seed + 1, autocast=autocast,
                                            sampler=cfg.sampler)
        for metric in ("verified", "answer_correct"):
            counts = [(len(rs), sum(r[metric] for r in rs)) for rs in sampled]
            for k, v in evaluate.pass_at_k_curve(counts, evaluate.default_ks(cfg.eval_n)).items():
                out[f"pass@{k} {'verified' if metric == 'verified' else 'answer'}"] = v
    return out


# ----------------------------------------------------------------------------------------------------------------
# Training loop

def rl_token_cost(seq_tokens: float, with_ref: bool) -> float:
    """SPEC §7: RL compute in pre-training token-equivalents, (4/3 + gamma/3) x the step's sequence tokens (gamma = 1
    when a reference model scores them for the KL term)."""
    return (4 / 3 + (1.0 if with_ref else 0.0) / 3) * seq_tokens


def describe(cfg: Config, world: int) -> str:
    """The run's algorithm in one line: batch, reward, loss and optimizer settings."""
    return (f"{cfg.prompts_per_step} prompts x {cfg.group_size} samples/step ({cfg.minibatches} updates of "
            f"{cfg.prompts_per_step // cfg.minibatches} prompts, {world} process(es)) | reward {cfg.reward}"
            + (f" (alpha {cfg.alpha})" if cfg.reward == "process" else "")
            + f" | loss {cfg.loss_agg}-mean, adv {cfg.adv_norm}, clip {cfg.clip_eps}, kl {cfg.kl_coef} | "
            f"lr {cfg.lr:g} | {cfg.max_steps} steps")


def load_prompts(cfg: Config, tok, room: int, log) -> tuple[list[dict], list[dict]]:
    """The RL pool (at most --max_prompts of it) and the held-out prompts, each cut to prompts that leave `room`
    for a response."""
    pool = datagen.load_problems(cfg.pool, cfg.pool_size, cfg.pool_seed, "rl")
    if not cfg.eval_data and cfg.pool.endswith(".jsonl"):
        raise UserError("--eval_data is needed when --pool is a file (held-out prompts must come from a recipe split)")
    eval_records = datagen.load_problems(cfg.eval_data or cfg.pool, cfg.eval_problems, cfg.pool_seed + 1, "test")
    return (fitting(pool, tok, room, "pool prompts", log)[:cfg.max_prompts or None],
            fitting(eval_records[:cfg.eval_problems], tok, room, "held-out prompts", log))


def reselect(policy, tok, cfg: Config, step: int, room: int, autocast, log, pool: list, stream: PromptStream):
    """The edge-of-competence pool: the prompts of a fresh draw the policy now solves sometimes (with
    --max_prompts, the first K of them); (pool, its prompt stream), the old ones if none qualifies."""
    full = fitting(datagen.load_problems(cfg.pool, cfg.pool_size, cfg.pool_seed, "rl"), tok, room, "pool prompts",
                   log)
    selected, _ = evaluate.select_edge(policy, tok, full, n=cfg.reselect_n, temperature=cfg.temperature,
                                       max_new_tokens=cfg.max_new_tokens, seed=cfg.seed + step, autocast=autocast,
                                       sampler=cfg.sampler)
    if selected:
        pool = selected[:cfg.max_prompts or None]
        stream = PromptStream(pool, cfg.seed + step)
    log.print(f"step {step}: edge-of-competence pool has {len(selected)} of {len(full)} prompts"
              + ("" if selected else " -- keeping the previous pool")
              + (f"; scarce data: {len(pool)} kept for the whole run" if cfg.max_prompts else ""))
    return pool, stream


def average_over_processes(m: dict, dist) -> None:
    """Under DDP: each numeric metric becomes its mean over processes, token counts their sum."""
    keys = sorted(k for k, v in m.items() if isinstance(v, (int, float)))
    t = torch.tensor([float(m[k]) for k in keys], device=dist.device)
    torch.distributed.all_reduce(t)
    m.update({k: float(v) / dist.world for k, v in zip(keys, t.tolist())})
    m["rollout_tokens"] *= dist.world
    m["seq_tokens"] *= dist.world


def main(cfg: Config) -> dict:
    dist = setup_dist(cfg.device)
    try:
        return train(cfg, dist)
    finally:
        cleanup_dist()


def check_config(cfg: Config, world: int) -> None:
    if cfg.max_prompts < 0:
        raise UserError(f"--max_prompts must be >= 0 (0 = no cap), got {cfg.max_prompts}")
    require_positive(cfg, "max_steps", "micro_rows", "minibatches", "prompts_per_step", "pool_size", "max_new_tokens",
                     "eval_problems", "eval_n", "reselect_n", "log_every", "eval_every", "ckpt_every", "keep_last",
                     "lr")
    if cfg.reward not in verifier.REWARD_KINDS:
        raise UserError(f"--reward must be one of {', '.join(verifier.REWARD_KINDS)}, got {cfg.reward!r}")
    if cfg.loss_agg not in LOSS_AGG:
        raise UserError(f"--loss_agg must be one of {', '.join(LOSS_AGG)}, got {cfg.loss_agg!r}")
    if cfg.adv_norm not in ("std", "mean"):
        raise UserError(f"--adv_norm must be std or mean, got {cfg.adv_norm!r}")
    if cfg.pseudo_label not in ("gold", "majority"):
        raise UserError(f"--pseudo_label must be gold or majority, got {cfg.pseudo_label!r}")
    if cfg.pseudo_label == "majority" and cfg.reward != "outcome":
        raise UserError("--pseudo_label=majority only defines an outcome reward; use --reward=outcome")
    if cfg.reward_noise and cfg.reward == "process":
        raise UserError("--reward_noise flips binary rewards; use --reward=outcome or strict")
    if not 0 <= cfg.reward_noise <= 1 or not 0 <= cfg.alpha <= 1:
        raise UserError("--reward_noise and --alpha must lie in [0, 1]")
    if cfg.group_size < 2:
        raise UserError("--group_size must be >= 2: advantages are relative to the group")
    if cfg.prompts_per_step % world or (cfg.prompts_per_step // world) % cfg.minibatches:
        raise UserError(f"--prompts_per_step={cfg.prompts_per_step} must split evenly into {world} process(es) x "
                        f"{cfg.minibatches} mini-batches of whole prompt groups")
    if not cfg.temperature > 0 or not 0 < cfg.top_p <= 1:
        raise UserError("--temperature must be > 0 for rollouts (sampling), and --top_p in (0, 1]")
    sampler_lib.check_sampler(cfg.sampler, cfg.top_p)


def train(cfg: Config, dist) -> dict:
    check_config(cfg, dist.world)
    device, master = dist.device, dist.master
    out_dir = Path(cfg.out_dir)
    check_out_dir(out_dir)
    if master:
        start_run_dir(out_dir, cfg.resume, cfg.overwrite)
    log = Logger(out_dir, enabled=master)
    resume_state = resume_checkpoint(cfg, out_dir, RESUME_MAY_CHANGE) if cfg.resume else None
    init_state = load_checkpoint(cfg.init_from)
    tok, tok_path = tok_lib.pinned_tokenizer(init_state)
    tokenizer_path, tok_hash = str(tok_path), tok_lib.tokenizer_hash(tok_path)
    if resume_state is not None:
        tok_lib.pinned_tokenizer(resume_state, tok_path)

    seed_everything(cfg.seed)
    policy = model_lib.model_from_state(resume_state or init_state).to(device)
    ref = None
    if cfg.kl_coef > 0:  # the frozen initial model
        ref = model_lib.model_from_state(init_state).to(device).eval()
        ref.requires_grad_(False)
    optimizer = make_optimizer(policy, cfg.weight_decay, cfg.lr, (cfg.beta1, cfg.beta2), device.type)  # constant lr

    room = policy.config.max_seq_len - cfg.max_new_tokens
    pool, eval_records = load_prompts(cfg, tok, room, log)
    stream = PromptStream(pool, cfg.seed)
    L = max(len(p) for p in encode_prompts(tok, pool[:256])) + cfg.max_new_tokens  # the initial pool, also on resume
    start_step, compute = 0, {"rl_tokens_nominal": 0.0, "rl_tokens_actual": 0.0}
    if resume_state is not None:
        optimizer.load_state_dict(resume_state["optimizer"])
        set_rng_state(resume_state["rng"])
        start_step, compute = resume_state["step"], resume_state["compute"]
        if resume_state.get("pool_file"):
            pool = datagen.read_jsonl(resume_state["pool_file"])
            stream = PromptStream(pool, resume_state.get("stream_seed", cfg.seed))  # re-selection reseeds it
        stream.epoch, stream.cursor = resume_state["stream"]
        if master:
            truncate_logs(out_dir, start_step)
    train_model = wrap_for_training(LogprobModule(policy), cfg.compile, dist)
    autocast, use_bf16 = autocast_for(cfg.dtype, device)

    n_params = policy.n_params()
    nominal_step = rl_token_cost(cfg.prompts_per_step * cfg.group_size * L, ref is not None)
    if master:
        out_dir.mkdir(parents=True, exist_ok=True)
        save_json(out_dir / "config.json", {"config": asdict(cfg), "model": asdict(policy.config),
                                            "run": run_info(device), "tokenizer": tokenizer_path})
        print_config(cfg, "GRPO config")
        log.print(f"GRPO: {n_params:,} params | {describe(cfg, dist.world)} | pool {len(pool):,} prompts | "
                  f"{'bf16' if use_bf16 else 'fp32'} on {device} | ~{fmt_count(nominal_step)} token-equivalents/step "
                  f"(SPEC §7, L={L})" + (f" | resuming at step {start_step}" if start_step else ""))

    def run_eval(step):
        res = evaluate_policy(policy, tok, eval_records, cfg, autocast, seed=cfg.seed + 17)
        if master:
            log.print(f"eval step {step} | " + " | ".join(f"{k} {v:.3f}" for k, v in res.items()))
            with open(out_dir / "evals.jsonl", "a") as f:
                f.write(json.dumps({"step": step, **res}) + "\n")
        return res

    evals = []
    if start_step == 0:
        evals.append((0, run_eval(0)))
    t0 = time.time()
    last = {}
    for step in range(start_step, cfg.max_steps):
        t_step = time.time()
        pool_file = None
        if cfg.reselect_every and step % cfg.reselect_every == 0 and not (cfg.max_prompts and step):
            pool, stream = reselect(policy, tok, cfg, step, room, autocast, log, pool, stream)
        batch = stream.take(cfg.prompts_per_step)[dist.rank::dist.world]
        m = rl_step(policy, train_model, ref, optimizer, tok, batch, cfg, step, dist, autocast)
        episodes = m.pop("_episodes")
        if dist.ddp:
            average_over_processes(m, dist)
        compute["rl_tokens_nominal"] += nominal_step
        compute["rl_tokens_actual"] += rl_token_cost(m["seq_tokens"], ref is not None)
        step_s = time.time() - t_step
        m.update(step=step + 1, step_s=step_s, pool_prompts=len(pool), rollout_share=m["rollout_s"] / step_s,
                 rollout_tok_s=m["rollout_tokens"] / max(m["rollout_s"], 1e-9),
                 flops=6 * n_params * compute["rl_tokens_actual"], **compute)
        last = m
        if master:
            log.metrics(m)
            if (step + 1) % cfg.log_every == 0 or step == start_step or step + 1 == cfg.max_steps:
                log.print(step_line(step + 1, cfg.max_steps, reward=m["reward"], acc=m["answer_acc"],
                                    verified=m["verified"], hacked=m["hacked"], kl=m["kl"], clip=m["clip_frac"],
                                    ent=m["entropy"], len=m["resp_len"], ms=step_s * 1000, rollout=(
                                        f"{m['rollout_share']:.0%} @ {fmt_count(m['rollout_tok_s'])} tok/s"),
                                    eta=step_s * (cfg.max_steps - step - 1)))
        final = step + 1 == cfg.max_steps
        if (step + 1) % cfg.eval_every == 0 or final:
            evals.append((step + 1, run_eval(step + 1)))
            if master:
                with open(out_dir / "episodes.jsonl", "a") as f:
                    for ep in episodes:
                        f.write(json.dumps({"step": step + 1, **ep}, ensure_ascii=False) + "\n")
        if master and ((step + 1) % cfg.ckpt_every == 0 or final):
            if pool is not None and cfg.reselect_every:  # the selected pool: a resume starts from it
                pool_file = out_dir / f"pool_step{step + 1:06d}.jsonl"
                datagen.write_jsonl(pool_file, pool)
            state = {"model": policy.state_dict(), "optimizer": optimizer.state_dict(), "step": step + 1,
                     "rng": rng_state(), "stream": [stream.epoch, stream.cursor], "stream_seed": stream.seed,
                     "config": asdict(cfg),
                     "model_config": asdict(policy.config), "compute": compute, "tokenizer": tokenizer_path,
                     "tokenizer_hash": tok_hash, "recipe": cfg.pool,
                     "pool_file": str(pool_file) if pool_file else None, "stage": "grpo",
                     "flops": 6 * n_params * compute["rl_tokens_actual"]}
            meta = {k: v for k, v in state.items() if k not in ("model", "optimizer", "rng")}
            meta.update(last_step={k: v for k, v in m.items()}, last_eval=evals[-1][1] if evals else None)
            save_step_checkpoint(out_dir, step + 1, state, meta, cfg.keep_last, final)

    if master:
        ensure_final(out_dir, resume_state, start_step, cfg.max_steps)
        plot_dynamics(out_dir)
        log.print(f"done: {cfg.max_steps} steps in {fmt_duration(time.time() - t0)} | final reward "
                  f"{last.get('reward', float('nan')):.3f} | " + " | ".join(
                      f"{k} {v:.3f}" for k, v in (evals[-1][1].items() if evals else [])))
    return {"last_step": last, "evals": evals, "out_dir": str(out_dir)}


def plot_dynamics(out_dir: Path) -> None:
    """dynamics.png: train reward / accuracy / verified per step, and held-out evaluations."""
    rows, evals = read_log(out_dir / "metrics.jsonl"), read_log(out_dir / "evals.jsonl")
    series = {f"train {k}": [(r["step"], r[k]) for r in rows if k in r] for k in ("reward", "answer_acc", "verified")}
    for k in ("greedy_acc", "greedy_verified"):
        series[f"held-out {k}"] = [(e["step"], e[k]) for e in evals if k in e]
    plot_lines(out_dir / "dynamics.png", series, xlabel="RL step", ylabel="rate", title=f"GRPO: {out_dir.name}")


if __name__ == "__main__":
    run_main(main, Config, presets=PRESETS)
