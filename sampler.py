"""
sampler.py -- the fast sampler the experiments use: model.generate's job, with each prompt's keys and values
stored once and shared by its n samples, plus top-p / top-k, stop ids and chunking of large requests.

Read model.py's `generate` first: the plain version of the same thing (a static KV cache row per sample). This
one gives the same tokens at temperature 0 (tested) and samples the same distribution otherwise, but draws its
random numbers differently (inverse-CDF sampling, not `torch.multinomial`), so one seed gives other samples in
the two. grpo.py and evaluate.py run this one by default (`--sampler shared`); `--sampler plain` runs
model.generate instead (temperature only: no top-p / top-k). `python bench.py model` times both.

Why it is faster: in RL a prompt (a long problem statement) is most of each row's cache, and its n samples
share it. The prompt is prefilled once, its keys/values are kept once, and a decode step attends to them with
one matmul for all n rows of the prompt (shared-prefix or "cascade" attention, as in Hydragen and FlashInfer).

    from sampler import generate
    out = generate(model, [[2, 17, 40], [2, 99]], n=8, max_new_tokens=256, temperature=1.0, seed=0,
                   return_logprobs=True)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

import model as model_lib
from common import UserError
from model import EOS_ID, PAD_ID, Generation, ModelConfig, attend, left_pad, sampling_setup

SAMPLERS = ("shared", "plain")  # the values of grpo.py's and evaluate.py's --sampler


class SharedPrefixCache:
    """Keys and values while sampling n rows per prompt, the prompt's stored once and shared by its n rows.

    prompt part, per layer [P, Hkv, L, d]: what the prefill of the P (left-padded) prompts computed;
    generated part, per layer [P, Hkv, n, max_new, d]: slot t holds generated token t of each of the n rows.

    A decode step attends to both: one matmul puts all n * H/Hkv queries of a prompt's KV head against that
    prompt's keys, another each row's queries against its own generated keys, and one softmax runs over the two
    score blocks side by side. The prompt's keys are read once per prompt instead of once per row. The sampler
    sets `t` before each forward: -1 for the prefill, else the slot the decode step writes.
    """

    def __init__(self, cfg: ModelConfig, prompt_valid, n: int, max_new: int, dtype):
        P, L = prompt_valid.shape
        self.n, self.t = n, -1
        # False at the left padding of a prompt; None when no prompt is padded (nothing to hide)
        self.prompt_mask = None if prompt_valid.all() else prompt_valid[:, None, None, :]  # [P, 1, 1, L]
        self.k_prompt: list = [None] * cfg.n_layer
        self.v_prompt: list = [None] * cfg.n_layer
        shape = (P, cfg.n_kv_head, n, max_new, cfg.head_dim)  # never read before written: empty, not zeros
        self.k_gen = [torch.empty(shape, device=prompt_valid.device, dtype=dtype) for _ in range(cfg.n_layer)]
        self.v_gen = [torch.empty(shape, device=prompt_valid.device, dtype=dtype) for _ in range(cfg.n_layer)]

    def attend(self, layer: int, q, k, v, mask=None):
        """Store this forward's keys/values k, v [B, Hkv, T, d] and return the attention output for q [B, H, T, d]."""
        if self.t < 0:  # prefill (B = P prompts): causal attention within each prompt; keep its keys/values
            self.k_prompt[layer], self.v_prompt[layer] = k.contiguous(), v.contiguous()
            return attend(q, k, v, mask)
        kp, vp = self.k_prompt[layer], self.v_prompt[layer]  # [P, Hkv, L, d]
        P, Hkv, L, d = kp.shape
        n, t, R, H = self.n, self.t, q.size(0), q.size(1)  # decode: B = R = P * n rows, T = 1
        G = H // Hkv  # query heads per KV head
        # write generated slot t: row r = (prompt p, sample i) goes to [p, :, i, t]
        self.k_gen[layer][:, :, :, t] = k.view(P, n, Hkv, d).transpose(1, 2)
        self.v_gen[layer][:, :, :, t] = v.view(P, n, Hkv, d).transpose(1, 2)
        kg, vg = self.k_gen[layer][:, :, :, :t + 1], self.v_gen[layer][:, :, :, :t + 1]  # [P, Hkv, n, t+1, d]
        q = q.view(P, n, Hkv, G, d).transpose(1, 2) * d ** -0.5  # [P, Hkv, n, G, d], scaled as SDPA does
        s_prompt = q.reshape(P, Hkv, n * G, d) @ kp.mT  # [P, Hkv, n*G, L]: every row's queries, shared keys
        if self.prompt_mask is not None:
            s_prompt = s_prompt.masked_fill(~self.prompt_mask, float("-inf"))
        s_gen = q @ kg.mT  # [P, Hkv, n, G, t+1]: each row against its own generated keys
        # one softmax over [prompt keys | generated keys], in fp32. Under bf16 autocast the scores come out of a
        # bf16 matmul, rounded as in HF's eager attention (SDPA keeps them fp32); the bf16 sampler test bounds
        # what that costs against an fp32 forward.
        p = torch.cat((s_prompt.view(P, Hkv, n, G, L), s_gen), dim=-1).softmax(-1, dtype=torch.float32)
        p = p.to(vp.dtype)
        p_prompt, p_gen = p.split((L, t + 1), dim=-1)
        y = (p_prompt.reshape(P, Hkv, n * G, L) @ vp).view(P, Hkv, n, G, d) + p_gen @ vg  # [P, Hkv, n, G, d]
        return y.transpose(1, 2).reshape(R, H, 1, d)


@torch.inference_mode()
def generate(model, prompts: list[list[int]], n: int = 1, max_new_tokens: int = 256, temperature: float = 1.0,
             top_p: float = 1.0, top_k: int = 0, eos_id: int | None = EOS_ID, pad_id: int = PAD_ID, stop_ids=(),
             seed: int | None = None, return_logprobs: bool = False, max_batch_rows: int | None = None,
             progress: bool = False) -> Generation:
    """Sample `n` continuations of each prompt (up to max_new_tokens each); see `model.Generation` for the output.

    Built so that a decode step is one small forward plus a few tensor ops, with no per-row Python work, no cache
    re-allocation or copying, and no host-device synchronization (except a periodic "all done?"):

    - Rows are prompt-major (rows i*n .. i*n+n-1 continue prompt i), so expanding a prompt's state to its n rows
      is a reshape-and-broadcast, and callers group samples per prompt (GRPO, pass@k) with `.view(P, n, ...)`.
    - Each prompt is prefilled once and the last position's logits are repeated n times; the n rows then draw
      independent noise, so they differ.
    - Prompts are LEFT-padded to the longest one (L), so generated token t of every row is at generated slot t:
      one shared write position per step. Per-row rotary positions keep the angles what they would be unpadded,
      and a key-padding mask hides the pad slots from every query.
    - The cache (`SharedPrefixCache`) is static: the prompt part is what the prefill computed, stored once per
      prompt; the generated part is preallocated, step t writes slot t and attends to slots 0..t.
    - temperature 0 is greedy; otherwise logits / temperature, then top-k, then top-p (nucleus) filtering, then
      a draw with a seeded `torch.Generator` on the model's device (same seed -> same output).
    - A row stops at eos_id or any id in stop_ids (that token is kept and counted in `lengths`); later columns
      are pad_id. The loop ends when every row has stopped.
    - `return_logprobs`: log-probability of each sampled token under the distribution it was drawn from (after
      temperature and top-k/top-p); at temperature 0, under the unscaled model distribution.
    - `max_batch_rows` splits a large request into chunks of whole prompts with at most that many rows each.

    Run under `torch.autocast` to sample in bf16; the cache takes the autocast dtype (else the weights' dtype).
    """
    model, device, gen, dtype = sampling_setup(model, prompts, n, max_new_tokens, temperature, seed, top_p, top_k)
    stops = sorted({*stop_ids, *([eos_id] if eos_id is not None else [])})
    per_chunk = max(1, (max_batch_rows or n * len(prompts)) // n)
    chunks = [prompts[i:i + per_chunk] for i in range(0, len(prompts), per_chunk)]
    if progress:
        from tqdm import tqdm
        chunks = tqdm(chunks, desc="generate", unit="chunk")
    outs = [_generate_chunk(model, chunk, n, max_new_tokens, temperature, top_p, top_k, stops, pad_id, gen, dtype,
                            return_logprobs) for chunk in chunks]
    if len(outs) == 1:
        return outs[0]
    G = max(o.tokens.size(1) for o in outs)
    return Generation(
        tokens=torch.cat([F.pad(o.tokens, (0, G - o.tokens.size(1)), value=pad_id) for o in outs]),
        lengths=torch.cat([o.lengths for o in outs]),
        finished=torch.cat([o.finished for o in outs]),
        logprobs=torch.cat([F.pad(o.logprobs, (0, G - o.logprobs.size(1))) for o in outs])
        if return_logprobs else None)


def _generate_chunk(model, prompts, n, max_new_tokens, temperature, top_p, top_k, stops, pad_id, gen, dtype,
                    return_logprobs) -> Generation:
    """One batch of `generate`: prefill the P prompts, then decode P * n rows step by step."""
    device = model.embed_tokens.weight.device
    R = len(prompts) * n
    idx, positions, valid = left_pad(prompts, pad_id, device)  # [P, L] each
    L = idx.size(1)
    cache = SharedPrefixCache(model.config, valid, n, max_new_tokens, dtype)

    # prefill: each prompt once; its n rows share its keys/values and start from its last logits
    mask = None
    if not valid.all():
        causal = torch.ones(L, L, dtype=torch.bool, device=device).tril()
        # a pad query may see itself, so no softmax row is all -inf (that would put NaNs in the pad slots' values)
        mask = ((causal & valid[:, None, :]) | torch.eye(L, dtype=torch.bool, device=device))[:, None]
    cos, sin = model.rope(positions, L)
    x = model.trunk(idx, cos, sin, mask, cache)
    logits = model.head(x[:, -1]).repeat_interleave(n, dim=0)  # [R, V]

    tokens = torch.full((R, max_new_tokens), pad_id, dtype=torch.long, device=device)
    logprobs = torch.zeros(R, max_new_tokens, device=device) if return_logprobs else None
    lengths = torch.zeros(R, dtype=torch.long, device=device)
    done = torch.zeros(R, dtype=torch.bool, device=device)
    stop_t = torch.tensor(stops, dtype=torch.long, device=device)
    next_pos = (positions[:, -1] + 1).repeat_interleave(n)[:, None]  # [R, 1] position of generated token 0
    check_every = 1 if device.type == "cpu" else 8  # done.all() syncs the GPU; on CPU it is free
    for t in range(max_new_tokens):
        tok, lp = sample_logits(logits, temperature, top_k, top_p, gen, return_logprobs)
        tok = tok.masked_fill(done, pad_id)
        tokens[:, t] = tok
        if return_logprobs:
            logprobs[:, t] = lp.masked_fill(done, 0.0)
        lengths += ~done
        if len(stops):
            done |= torch.isin(tok, stop_t)
        if t == max_new_tokens - 1 or (len(stops) and t % check_every == 0 and bool(done.all())):
            break
        # decode token t: it goes to generated slot t and attends to its prompt and generated slots 0..t
        cache.t = t
        cos, sin = model.rope(next_pos + t, 1)
        logits = model.head(model.trunk(tok[:, None], cos, sin, cache=cache)[:, -1])
    G = int(lengths.max())
    return Generation(tokens=tokens[:, :G], lengths=lengths, finished=done,
                      logprobs=logprobs[:, :G] if return_logprobs else None)


def sample_logits(logits, temperature: float, top_k: int, top_p: float, gen: torch.Generator,
                  return_logprobs: bool = False):
    """logits [R, V] fp32 -> (sampled ids [R], their log-probs [R] or None). Temperature 0 is argmax."""
    if temperature == 0:
        tok = logits.argmax(-1)
        return tok, logits.log_softmax(-1).gather(1, tok[:, None])[:, 0] if return_logprobs else None
    if temperature != 1.0:
        logits = logits / temperature
    if 0 < top_k < logits.size(-1):
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        # keep the smallest prefix of the sorted distribution whose mass reaches top_p (the top token always)
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        probs = sorted_logits.softmax(-1)
        drop = probs.cumsum(-1) - probs >= top_p
        logits = logits.scatter(1, order, sorted_logits.masked_fill(drop, float("-inf")))
    probs = logits.softmax(-1)
    # Inverse-CDF sampling: one uniform per row, located in the running sum of the probabilities. It needs R random
    # numbers instead of R x V (Gumbel/exponential noise) and never synchronizes with the GPU (torch.multinomial
    # may); on CPU it is ~15x cheaper than either. The sum is in fp64 so rounding cannot skip a token, and
    # right=True never lands on a zero-probability (filtered) token.
    cdf = probs.cumsum(-1, dtype=torch.float64)
    u = torch.rand(probs.size(0), 1, generator=gen, device=probs.device, dtype=torch.float64) * cdf[:, -1:]
    tok = torch.searchsorted(cdf, u, right=True)[:, 0].clamp_(max=probs.size(-1) - 1)
    return tok, probs.gather(1, tok[:, None])[:, 0].log() if return_logprobs else None


def check_sampler(name: str, top_p: float = 1.0, top_k: int = 0) -> None:
    """UserError unless `name` is a sampler (SAMPLERS) that can serve these top_p / top_k settings."""
    if name not in SAMPLERS:
        raise UserError(f"--sampler must be one of {', '.join(SAMPLERS)}, got {name!r}")
    if name == "plain" and (top_p < 1 or top_k > 0):
        raise UserError("--sampler plain samples at a temperature only; use --sampler shared for top_p / top_k")


def generate_with(name: str, model, prompts: list[list[int]], top_p: float = 1.0, top_k: int = 0,
                  **kwargs) -> Generation:
    """`generate` of the sampler a --sampler flag names: shared (this file) or plain (model.generate)."""
    check_sampler(name, top_p, top_k)
    if name == "plain":
        return model_lib.generate(model, prompts, **kwargs)
    return generate(model, prompts, top_p=top_p, top_k=top_k, **kwargs)
