"""
The model: a Qwen2.5-style decoder-only transformer in plain PyTorch, plus its sampler and checkpoint loading.

Given the same weights it computes the same function as `transformers`' `Qwen2ForCausalLM`:
RMSNorm (fp32 inside), rotary position embeddings (half-split `rotate_half` convention, theta 1e6 over the whole
head), grouped-query attention, q/k/v projections with bias and o_proj without, a SwiGLU MLP, pre-norm residual
blocks, a final norm and tied input/output embeddings. Parameter names follow Hugging Face's (minus the `model.`
prefix), except that q/k/v and gate/up projections are stacked into one matrix each (fewer kernels per step);
hf.py splits them for a `transformers` folder and stacks them back.

Sections, top to bottom:
  config      ModelConfig, PRESETS, config_from_preset
  modules     RMSNorm, rotary embeddings, attention, MLP, Block
  model       Transformer: forward/loss, token_logprobs, FLOPs for MFU
  sampler     generate(): static KV cache, left-padded prompts, one prefill per prompt shared by its n samples
  I/O         model_from_state / load_model (project checkpoints; Hugging Face folders: hf.py)

Examples:
  python model.py --preset paper                      # print the config and parameter counts of a preset

  from model import Transformer, config_from_preset, generate
  model = Transformer(config_from_preset("tiny", max_seq_len=1024))
  logits, loss = model(idx, targets, loss_mask=mask)
  out = generate(model, [[2, 17, 40], [2, 99]], n=8, max_new_tokens=256, temperature=1.0, seed=0)
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from common import UserError, load_checkpoint, opt, run_main, strip_prefixes, unwrap

# Special token ids of the project's tokenizer; the HF export (hf.py) checks the tokenizer agrees.
UNK_ID, PAD_ID, BOS_ID, EOS_ID = 0, 1, 2, 3


# ----------------------------------------------------------------------------------------------------------------
# Config

@dataclass
class ModelConfig:
    vocab_size: int = 2200  # tokenizer vocabulary size (ids 0..3 are [UNK] [PAD] [BOS] [EOS])
    n_layer: int = 4  # transformer blocks
    n_embd: int = 128  # hidden size
    n_head: int = 4  # query heads; head_dim = n_embd / n_head
    n_kv_head: int = 2  # key/value heads (grouped-query attention); must divide n_head
    mlp_hidden: int = 512  # SwiGLU inner size
    max_seq_len: int = 512  # longest sequence (prompt + generation) the rotary table covers
    rope_theta: float = 1e6  # rotary base frequency
    norm_eps: float = 1e-6  # RMSNorm epsilon
    init_std: float = 0.0  # std of the normal init of every matrix; 0 = 0.02 * sqrt(768 / n_embd) (0.02 at 768)

    def __post_init__(self):
        if self.n_embd % self.n_head or self.n_head % self.n_kv_head:
            raise UserError(f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head}) and n_head by "
                            f"n_kv_head ({self.n_kv_head})")
        if self.head_dim % 2:
            raise UserError(f"head_dim = n_embd / n_head = {self.head_dim} must be even for rotary embeddings")

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head

    @property
    def weight_std(self) -> float:
        return self.init_std or 0.02 * math.sqrt(768 / self.n_embd)


PRESETS = {
    "micro": dict(n_layer=2, n_embd=64, n_head=4, n_kv_head=2, mlp_hidden=128, max_seq_len=256),  # unit tests
    "tiny": dict(n_layer=4, n_embd=128, n_head=4, n_kv_head=2, mlp_hidden=512, max_seq_len=768),  # CPU studies
    "small": dict(n_layer=8, n_embd=512, n_head=8, n_kv_head=2, mlp_hidden=2048, max_seq_len=1024),  # one GPU
    # the paper's model: 103,170,816 parameters, 101,481,216 of them outside the (tied) embedding
    "paper": dict(n_layer=12, n_embd=768, n_head=12, n_kv_head=2, mlp_hidden=3072, max_seq_len=2048),
}


def config_from_preset(name: str, **overrides) -> ModelConfig:
    """`config_from_preset("tiny", max_seq_len=1024)`; unknown presets or fields raise UserError."""
    if name not in PRESETS:
        raise UserError(f"unknown model preset {name!r}; choose one of {', '.join(PRESETS)}")
    names = {f.name for f in dataclasses.fields(ModelConfig)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise UserError(f"unknown model config field(s) {', '.join(unknown)}; fields are {', '.join(sorted(names))}")
    return ModelConfig(**{**PRESETS[name], **overrides})


# ----------------------------------------------------------------------------------------------------------------
# Modules

class RMSNorm(nn.Module):
    """Normalize in fp32, cast back, then scale -- the same order of operations as HF's Qwen2RMSNorm."""

    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x):
        if x.dtype == self.weight.dtype == torch.float32:  # the fp32 residual stream (also under autocast): the
            return F.rms_norm(x, (x.size(-1),), self.weight, self.eps)  # same arithmetic in one fused kernel
        # bf16 input: normalize in fp32, round to bf16, then scale (an fp32 weight makes the result fp32, as in HF)
        return self.weight * F.rms_norm(x.float(), (x.size(-1),), eps=self.eps).to(x.dtype)


def rope_tables(cfg: ModelConfig, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotary tables [max_seq_len, head_dim] in fp32: cos(angle) for both halves, and sin(angle) with the sign
    of `rotate_half` folded in (-sin for the first half, +sin for the second). Angles as HF computes them."""
    d = cfg.head_dim
    inv_freq = 1.0 / (cfg.rope_theta ** (torch.arange(0, d, 2, dtype=torch.float, device=device) / d))
    angles = torch.arange(cfg.max_seq_len, dtype=torch.float, device=device)[:, None] * inv_freq[None, :]
    cos, sin = angles.cos(), angles.sin()
    return torch.cat((cos, cos), dim=-1), torch.cat((-sin, sin), dim=-1)


def apply_rotary(x, cos, sin):
    """Rotate pairs (i, i + d/2) of x [B, T, heads, d] by the tables of `rope_tables` ([T, 1, d] or [B, T, 1, d]).

    HF's `x * cos + rotate_half(x) * sin` with rotate_half's negation moved into the sin table: the same products
    and sums per element (so the same bits), in four kernels. Done in fp32 and cast back, so bf16 q/k lose
    nothing extra.
    """
    xf = x.float()
    x1, x2 = xf.chunk(2, dim=-1)
    return (xf * cos + torch.cat((x2, x1), dim=-1) * sin).to(x.dtype)


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig, layer_idx: int):
        super().__init__()
        self.layer_idx = layer_idx  # which KV cache slot this layer writes to while sampling
        self.n_head, self.n_kv_head, self.head_dim = cfg.n_head, cfg.n_kv_head, cfg.head_dim
        # HF's q_proj, k_proj and v_proj stacked into one matmul (rows: H*d query, Hkv*d key, Hkv*d value):
        # one kernel instead of three, which matters most in the small-batch decode steps of the sampler
        self.qkv_proj = nn.Linear(cfg.n_embd, (cfg.n_head + 2 * cfg.n_kv_head) * cfg.head_dim, bias=True)
        self.o_proj = nn.Linear(cfg.n_head * cfg.head_dim, cfg.n_embd, bias=False)

    def forward(self, x, cos, sin, mask=None, cache: KVCache | None = None):
        B, T, _ = x.shape
        H, Hkv = self.n_head, self.n_kv_head
        qkv = self.qkv_proj(x).view(B, T, H + 2 * Hkv, self.head_dim)  # [B, T, H+2Hkv, d]
        qk, v = qkv.split((H + Hkv, Hkv), dim=2)  # split, not slicing: its backward is one cat, not zero-fills
        # rotate while each token's heads are contiguous in memory, then view as [B, heads, T, d] for attention
        q, k = apply_rotary(qk, cos, sin).transpose(1, 2).split((H, Hkv), dim=1)  # [B, H, T, d], [B, Hkv, T, d]
        v = v.transpose(1, 2)  # [B, Hkv, T, d]
        if cache is None:
            y = attend(q, k, v, mask)  # [B, H, T, d]
        else:  # sampling: the cache stores this step's keys/values and attends over everything it holds
            y = cache.attend(self.layer_idx, q, k, v, mask)
        return self.o_proj(y.transpose(1, 2).reshape(B, T, H * self.head_dim))


def attend(q, k, v, mask=None):
    """SDPA with grouped-query attention: query head h reads KV head h // (H / Hkv).

    `mask` is a boolean [B or 1, 1, T, S] (True = may attend) or None, meaning causal.
    """
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=mask is None and q.size(2) > 1,
                                          enable_gqa=q.size(1) != k.size(1))


class MLP(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.gate_up_proj = nn.Linear(cfg.n_embd, 2 * cfg.mlp_hidden, bias=False)  # HF's gate_proj; up_proj
        self.down_proj = nn.Linear(cfg.mlp_hidden, cfg.n_embd, bias=False)

    def forward(self, x):
        gate, up = self.gate_up_proj(x).chunk(2, dim=-1)
        return self.down_proj(F.silu(gate) * up)


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig, layer_idx: int):
        super().__init__()
        self.input_layernorm = RMSNorm(cfg.n_embd, cfg.norm_eps)
        self.self_attn = Attention(cfg, layer_idx)
        self.post_attention_layernorm = RMSNorm(cfg.n_embd, cfg.norm_eps)
        self.mlp = MLP(cfg)

    def forward(self, x, cos, sin, mask=None, cache=None):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, mask, cache)
        return x + self.mlp(self.post_attention_layernorm(x))


# ----------------------------------------------------------------------------------------------------------------
# Model

class Transformer(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.config = cfg
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        self.layers = nn.ModuleList(Block(cfg, i) for i in range(cfg.n_layer))
        self.norm = RMSNorm(cfg.n_embd, cfg.norm_eps)
        # The output projection is embed_tokens.weight itself (tied), so there is no lm_head module or tensor.
        # Rotary tables derive from the config: buffers that follow .to(device) but are never saved. They stay fp32
        # under autocast; model.to(torch.bfloat16) casts them too, as HF's bf16 model uses bf16 cos/sin.
        cos, sin = rope_tables(cfg)
        self.register_buffer("rope_cos", cos, persistent=False)  # [max_seq_len, head_dim] fp32
        self.register_buffer("rope_sin", sin, persistent=False)
        self.apply(partial(self._init_weights, std=cfg.weight_std))
        print(f"model: {self.n_params() / 1e6:.2f}M parameters ({self.n_params(non_embedding=True) / 1e6:.2f}M "
              f"non-embedding)")

    @staticmethod
    def _init_weights(module, std: float):
        # normal(0, std) for every matrix. At the paper's width (768) std is 0.02, as HF initializes Qwen2; narrower
        # models get a proportionally larger std (0.02 * sqrt(768 / n_embd)), so that attention logits start with
        # the same spread: with 0.02 at width 128 they start ~36x flatter and a tiny model spends its whole CPU
        # budget before its heads learn to attend anywhere (we measured: a copy-a-letter head did not form in 1600
        # steps at 0.02, and formed in 150 steps at 0.06). Residual projections are not scaled by 1/sqrt(2 n_layer):
        # with pre-norm blocks and <= 12 layers training is stable without it.
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=std)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)
        if isinstance(module, RMSNorm):
            nn.init.ones_(module.weight)

    def n_params(self, non_embedding: bool = False) -> int:
        """Parameters, the tied embedding counted once; `non_embedding` leaves it out (the scaling-law count)."""
        n = sum(p.numel() for p in self.parameters())
        return n - self.embed_tokens.weight.numel() if non_embedding else n

    def flops_per_token(self, seq_len: int) -> float:
        """Training FLOPs per token (forward + backward) for MFU, the PaLM / nanoGPT estimate 6 N + 12 L H d T.

        6 N: each weight does one multiply-add (2 FLOPs) per token forward and two backward. N includes the tied
        embedding because it is also the output projection, a real [n_embd x vocab] matmul (the input lookup is
        free). 12 L H d T: per layer, the scores QK^T and the weighted sum AV cost 2 * T * (H d) FLOPs each
        forward, times 3 for the backward; H d = n_embd counts query heads, so GQA does not change it, and full
        T (not T/2 for the causal half) is the convention. Norms, rotary and softmax are left out.
        """
        cfg = self.config
        return 6 * self.n_params() + 12 * cfg.n_layer * cfg.n_embd * seq_len

    # -- trunk, shared by training, scoring and sampling --

    def rope(self, position_ids, T: int):
        """(cos, sin) for the rotary: [T, 1, d] for positions 0..T-1, else gathered per row as [B, T, 1, d]."""
        if position_ids is None:
            return self.rope_cos[:T, None], self.rope_sin[:T, None]
        return self.rope_cos[position_ids].unsqueeze(2), self.rope_sin[position_ids].unsqueeze(2)

    def trunk(self, idx, cos, sin, mask=None, cache=None):
        """Token ids [B, T] -> hidden states [B, T, n_embd] before the final norm."""
        x = self.embed_tokens(idx)
        for block in self.layers:
            x = block(x, cos, sin, mask, cache)
        return x

    def head(self, x):
        """Final norm and the tied output projection; logits in fp32 (bf16 logits are too coarse for softmax)."""
        return F.linear(self.norm(x), self.embed_tokens.weight).float()

    def hidden(self, idx, position_ids=None, doc_ids=None):
        """The trunk with training-time masking: causal, and within one document when `doc_ids` is given."""
        T = idx.size(1)
        mask = None
        if doc_ids is not None:
            causal = torch.ones(T, T, dtype=torch.bool, device=idx.device).tril()
            mask = ((doc_ids[:, :, None] == doc_ids[:, None, :]) & causal).unsqueeze(1)  # [B, 1, T, T]
            if position_ids is None:
                position_ids = doc_positions(doc_ids)
        cos, sin = self.rope(position_ids, T)
        return self.trunk(idx, cos, sin, mask)

    # -- training and scoring --

    def forward(self, idx, targets=None, loss_mask=None, position_ids=None, doc_ids=None):
        """idx [B, T] -> (logits [B, T, V] fp32, loss or None).

        loss: mean cross-entropy over positions with loss_mask == 1 (all positions if None) and target != -100.
        position_ids [B, T]: rotary positions (default 0..T-1, or restarting at each document when doc_ids given).
        doc_ids [B, T]: id of the (contiguous) document each token belongs to in a packed row; attention then stays
        inside a document, so each packed sample sees exactly what it would see alone.
        """
        logits = self.head(self.hidden(idx, position_ids, doc_ids))
        if targets is None:
            return logits, None
        ce = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=-100, reduction="none")
        weight = targets != -100
        if loss_mask is not None:
            weight = weight & loss_mask.bool()
        weight = weight.flatten().float()
        return logits, (ce * weight).sum() / weight.sum().clamp(min=1.0)

    def token_logprobs(self, idx, targets, position_ids=None, doc_ids=None, return_entropy: bool = False,
                       temperature: float = 1.0):
        """log p(targets[b, t] | idx[b, :t+1]) as fp32 [B, T] (0 where target == -100), for RL.

        `temperature` scales the logits as the sampler did, so that the log-probs are those of the distribution
        the tokens were drawn from. With `return_entropy`, also the entropy of each position's next-token
        distribution [B, T]. Works under autocast: the logits are upcast to fp32 before any softmax.
        """
        logits = self.head(self.hidden(idx, position_ids, doc_ids))  # [B, T, V] fp32
        if temperature != 1.0:
            logits = logits / temperature
        logp = -F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=-100, reduction="none")
        logp = logp.view_as(targets)
        if not return_entropy:
            return logp
        all_logp = logits.log_softmax(-1)
        return logp, -(all_logp.exp() * all_logp).sum(-1)


def doc_positions(doc_ids):
    """Positions that restart at 0 where a new document starts: doc_ids [B, T] -> [B, T] (no Python branching)."""
    idx = torch.arange(doc_ids.size(1), device=doc_ids.device).expand_as(doc_ids)
    start = torch.ones_like(doc_ids, dtype=torch.bool)
    start[:, 1:] = doc_ids[:, 1:] != doc_ids[:, :-1]
    return idx - torch.where(start, idx, 0).cummax(dim=1).values


# ----------------------------------------------------------------------------------------------------------------
# Sampler

class KVCache:
    """Keys and values while sampling n rows per prompt, the prompt's stored once and shared by its n rows.

    prompt part, per layer [P, Hkv, L, d]: what the prefill of the P (left-padded) prompts computed;
    generated part, per layer [P, Hkv, n, max_new, d]: slot t holds generated token t of each of the n rows.

    A decode step attends to both (shared-prefix or "cascade" attention, as in Hydragen and FlashInfer): one
    matmul puts all n * H/Hkv queries of a prompt's KV head against that prompt's keys, another each row's
    queries against its own generated keys, and one softmax runs over the two score blocks side by side. The
    prompt's keys are read once per prompt instead of once per row: n times less cache traffic for the prompt,
    which is most of the cache in RL (long problem statements, short answers so far; `python bench.py model`
    times it). The sampler sets `t` before each forward: -1 for the prefill, else the slot the decode step writes.
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


@dataclass
class Generation:
    """What `generate` returns. R = len(prompts) * n rows, prompt-major: rows i*n .. i*n+n-1 are prompt i's."""
    tokens: torch.Tensor  # [R, G] long: generated tokens only, right-padded with pad_id (G = longest row)
    lengths: torch.Tensor  # [R] long: generated tokens per row, including the EOS/stop token that ended it
    finished: torch.Tensor  # [R] bool: ended by EOS/a stop token (False: cut at max_new_tokens, no EOS)
    logprobs: torch.Tensor | None = None  # [R, G] fp32: log-prob of each sampled token (0 at padding)

    def to_lists(self) -> list[list[int]]:
        """Each row's generated tokens as a Python list, padding removed."""
        return [row[:n] for row, n in zip(self.tokens.tolist(), self.lengths.tolist())]


@torch.inference_mode()
def generate(model: Transformer, prompts: list[list[int]], n: int = 1, max_new_tokens: int = 256,
             temperature: float = 1.0, top_p: float = 1.0, top_k: int = 0, eos_id: int | None = EOS_ID,
             pad_id: int = PAD_ID, stop_ids=(), seed: int | None = None, return_logprobs: bool = False,
             max_batch_rows: int | None = None, progress: bool = False) -> Generation:
    """Sample `n` continuations of each prompt (up to max_new_tokens each); see `Generation` for the output.

    Design, chosen so that a decode step is one small forward plus a few tensor ops, with no per-row Python work,
    no cache re-allocation or copying, and no host-device synchronization (except a periodic "all done?"):

    - Rows are prompt-major (rows i*n .. i*n+n-1 continue prompt i), so expanding a prompt's state to its n rows
      is a reshape-and-broadcast, and callers group samples per prompt (GRPO, pass@k) with `.view(P, n, ...)`.
    - Each prompt is prefilled once and the last position's logits are repeated n times; the n rows then draw
      independent noise, so they differ.
    - Prompts of different lengths are LEFT-padded to the longest one (L), so every prompt ends at slot L-1 and
      generated token t of every row is at generated slot t -- one shared write position per step. Per-row
      position ids (0..len_i-1 for the prompt, len_i + t for generated token t) keep the rotary angles what they
      would be unpadded, and a key-padding mask hides the pad slots from every query.
    - The KV cache (`KVCache`) is static and indexed by absolute slot, as in gpt-fast: the prompt part is what
      the prefill computed ([P, n_kv_head, L, head_dim] per layer), stored once per prompt and shared by its n
      rows; the generated part is preallocated ([P, n_kv_head, n, max_new_tokens, head_dim]), step t writes slot
      t and attends to slots 0..t. The cache is never re-allocated or concatenated, and the padding never moves.
    - temperature 0 is greedy; otherwise logits / temperature, then top-k, then top-p (nucleus) filtering, then
      a sample drawn with a seeded `torch.Generator` on the model's device (same seed -> same output).
    - A row stops at eos_id or any id in stop_ids (that token is kept and counted in `lengths`); later columns
      are pad_id. The loop ends when every row has stopped.
    - `return_logprobs`: log-probability of each sampled token under the distribution it was drawn from (after
      temperature and top-k/top-p); at temperature 0, under the unscaled model distribution.
    - `max_batch_rows` splits a large request into chunks of whole prompts with at most that many rows each.

    Run under `torch.autocast` to sample in bf16; the cache takes the autocast dtype (else the weights' dtype).
    """
    model = unwrap(model)
    cfg = model.config
    if not prompts or any(len(p) == 0 for p in prompts):
        raise UserError("generate needs at least one prompt, and every prompt needs at least one token")
    if n < 1 or max_new_tokens < 1:
        raise UserError(f"n ({n}) and max_new_tokens ({max_new_tokens}) must be >= 1")
    if temperature < 0 or not 0 < top_p <= 1 or top_k < 0:
        raise UserError(f"need temperature >= 0, 0 < top_p <= 1, top_k >= 0 (got {temperature}, {top_p}, {top_k})")
    longest = max(len(p) for p in prompts)
    if longest + max_new_tokens > cfg.max_seq_len:
        raise UserError(f"longest prompt ({longest}) + max_new_tokens ({max_new_tokens}) exceeds the model's "
                        f"max_seq_len ({cfg.max_seq_len})")
    top_id = max(max(p) for p in prompts)
    if top_id >= cfg.vocab_size or min(min(p) for p in prompts) < 0:
        raise UserError(f"prompt token ids must lie in 0..{cfg.vocab_size - 1}")

    device = model.embed_tokens.weight.device
    if seed is None:  # still reproducible under torch.manual_seed
        seed = int(torch.randint(0, 2**62, (1,)).item())
    gen = torch.Generator(device=device).manual_seed(seed)
    stops = sorted({*stop_ids, *([eos_id] if eos_id is not None else [])})
    per_chunk = max(1, (max_batch_rows or n * len(prompts)) // n)
    chunks = [prompts[i:i + per_chunk] for i in range(0, len(prompts), per_chunk)]
    if progress:
        from tqdm import tqdm
        chunks = tqdm(chunks, desc="generate", unit="chunk")
    outs = [_generate_chunk(model, chunk, n, max_new_tokens, temperature, top_p, top_k, stops, pad_id, gen,
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


def _generate_chunk(model, prompts, n, max_new_tokens, temperature, top_p, top_k, stops, pad_id, gen,
                    return_logprobs) -> Generation:
    """One batch of `generate`: prefill the P prompts, then decode P * n rows step by step."""
    cfg = model.config
    device = model.embed_tokens.weight.device
    P, R = len(prompts), len(prompts) * n
    lens = torch.tensor([len(p) for p in prompts], device=device)  # [P]
    L = max(len(p) for p in prompts)

    # left-padded prompt batch, per-row positions, and which slots hold real tokens
    idx = torch.full((P, L), pad_id, dtype=torch.long)
    for i, p in enumerate(prompts):
        idx[i, L - len(p):] = torch.tensor(p, dtype=torch.long)
    idx = idx.to(device)
    slots = torch.arange(L, device=device)
    pad = (L - lens)[:, None]  # [P, 1] pad slots at the start of each row
    positions = (slots[None, :] - pad).clamp(min=0)  # [P, L]
    valid = slots[None, :] >= pad  # [P, L]

    dtype = torch.get_autocast_dtype(device.type) if torch.is_autocast_enabled(device.type) else \
        model.embed_tokens.weight.dtype
    cache = KVCache(cfg, valid, n, max_new_tokens, dtype)

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
    next_pos = lens.repeat_interleave(n)[:, None]  # [R, 1] position of generated token 0
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


# ----------------------------------------------------------------------------------------------------------------
# I/O: project checkpoints

def _config_from_dict(d: dict) -> ModelConfig:
    names = {f.name for f in dataclasses.fields(ModelConfig)}
    unknown = sorted(set(d) - names)
    if unknown:
        raise UserError(f"model_config has unknown field(s) {', '.join(unknown)}; it was written by another "
                        f"version of model.py")
    return ModelConfig(**d)


def model_from_state(state: dict, config: ModelConfig | dict | None = None, device="cpu") -> Transformer:
    """Build a model from a checkpoint dict {"model": state_dict, "model_config": {...}, ...} or a bare state_dict
    plus `config`. Any missing/unexpected tensor or shape mismatch raises UserError naming it."""
    if "model" in state and isinstance(state["model"], dict):
        state_dict = state["model"]
        config = config if config is not None else state.get("model_config")
    else:
        state_dict = state
    if config is None:
        raise UserError("the checkpoint has no 'model_config' entry; pass the ModelConfig it was trained with")
    cfg = config if isinstance(config, ModelConfig) else _config_from_dict(config)
    state_dict = strip_prefixes(state_dict)
    with torch.device(device):
        model = Transformer(cfg)
    expected = model.state_dict()
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    if missing or unexpected:
        parts = [f"missing tensor(s): {', '.join(missing[:8])}{' ...' if len(missing) > 8 else ''}"] if missing \
            else []
        if unexpected:
            parts.append(f"unexpected tensor(s): {', '.join(unexpected[:8])}{' ...' if len(unexpected) > 8 else ''}")
        raise UserError(f"checkpoint weights do not match the model config ({'; '.join(parts)}); config: {cfg}")
    for k, v in expected.items():
        if tuple(state_dict[k].shape) != tuple(v.shape):
            raise UserError(f"checkpoint tensor {k!r} has shape {tuple(state_dict[k].shape)} but the model config "
                            f"gives {tuple(v.shape)}; the checkpoint was trained with another config ({cfg})")
    model.load_state_dict(state_dict)
    return model


def load_model(path: str | Path, device="cpu") -> Transformer:
    """Load a project checkpoint (a .pt file, or a run folder: its final.pt or latest step_*.pt) in eval mode."""
    state = load_checkpoint(path, map_location=device)
    return model_from_state(state, device=device).eval()


# ----------------------------------------------------------------------------------------------------------------
# Command line: describe a preset

@dataclass
class CLIConfig:
    preset: str = opt("paper", "preset to describe: its config and training FLOPs per token")


def main(cfg: CLIConfig):
    mcfg = config_from_preset(cfg.preset)
    print(mcfg)
    with torch.device("meta"):  # shapes only: no memory, no init time
        model = Transformer(mcfg)
    print(f"training FLOPs/token at T={mcfg.max_seq_len}: {model.flops_per_token(mcfg.max_seq_len) / 1e9:.3f} GFLOP")


if __name__ == "__main__":
    run_main(main, CLIConfig)
