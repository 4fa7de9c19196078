"""
The model: a Qwen2.5-style decoder-only transformer in plain PyTorch, a plain sampler, and checkpoint loading.

Given the same weights it computes the same function as `transformers`' `Qwen2ForCausalLM` (SPEC §6). Parameter
names follow HF's (minus `model.`), but q/k/v and gate/up are stacked into one matrix each; hf.py converts.
Sections: config | modules (RMSNorm, rotary, Attention, MLP, Block) | model (Transformer) | sampler (generate,
with a static KV cache) | I/O (model_from_state, load_model). The experiments sample with sampler.py: faster
(each prompt's cache is shared by its n rows), the same tokens at temperature 0.

  python model.py --preset paper                      # print the config and parameter counts of a preset

  from model import Transformer, config_from_preset, generate
  model = Transformer(config_from_preset("tiny", max_seq_len=1024))
  logits, loss = model(idx, targets, loss_mask=mask)
  out = generate(model, [[2, 17, 40], [2, 99]], n=8, max_new_tokens=256, temperature=1.0, seed=0)
  out.to_lists()                                      # each row's generated ids, EOS included, padding removed
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
    if unknown := sorted(set(overrides) - names):
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
        if x.dtype == self.weight.dtype == torch.float32:  # the same arithmetic in one fused kernel
            return F.rms_norm(x, (x.size(-1),), self.weight, self.eps)
        # bf16 input: normalize in fp32, round to bf16, then scale (an fp32 weight makes the result fp32, as in HF)
        return self.weight * F.rms_norm(x.float(), (x.size(-1),), eps=self.eps).to(x.dtype)


def rope_tables(cfg: ModelConfig, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotary tables [max_seq_len, head_dim] fp32: cos for both halves; sin with rotate_half's sign (-sin, +sin)."""
    d = cfg.head_dim
    inv_freq = 1.0 / (cfg.rope_theta ** (torch.arange(0, d, 2, dtype=torch.float, device=device) / d))
    angles = torch.arange(cfg.max_seq_len, dtype=torch.float, device=device)[:, None] * inv_freq[None, :]
    cos, sin = angles.cos(), angles.sin()
    return torch.cat((cos, cos), dim=-1), torch.cat((-sin, sin), dim=-1)


def apply_rotary(x, cos, sin):
    """Rotate pairs (i, i + d/2) of x [B, T, heads, d] by rope_tables' cos, sin [T, 1, d] or [B, T, 1, d]: HF's
    `x * cos + rotate_half(x) * sin` with the negation in the sin table (the same bits), in fp32."""
    xf = x.float()
    x1, x2 = xf.chunk(2, dim=-1)
    return (xf * cos + torch.cat((x2, x1), dim=-1) * sin).to(x.dtype)


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig, layer_idx: int):
        super().__init__()
        self.layer_idx = layer_idx  # which layer of the KV cache this one uses while sampling
        self.n_head, self.n_kv_head, self.head_dim = cfg.n_head, cfg.n_kv_head, cfg.head_dim
        # HF's q_proj, k_proj and v_proj stacked (rows: H*d query, Hkv*d key, Hkv*d value): one matmul, not three
        self.qkv_proj = nn.Linear(cfg.n_embd, (cfg.n_head + 2 * cfg.n_kv_head) * cfg.head_dim, bias=True)
        self.o_proj = nn.Linear(cfg.n_head * cfg.head_dim, cfg.n_embd, bias=False)

    def forward(self, x, cos, sin, mask=None, cache=None):
        B, T, _ = x.shape
        H, Hkv = self.n_head, self.n_kv_head
        qkv = self.qkv_proj(x).view(B, T, H + 2 * Hkv, self.head_dim)  # [B, T, H+2Hkv, d]
        qk, v = qkv.split((H + Hkv, Hkv), dim=2)  # split, not slicing: its backward is one cat, not zero-fills
        # rotate while each token's heads are contiguous in memory, then view as [B, heads, T, d] for attention
        q, k = apply_rotary(qk, cos, sin).transpose(1, 2).split((H, Hkv), dim=1)  # [B, H, T, d], [B, Hkv, T, d]
        v = v.transpose(1, 2)  # [B, Hkv, T, d]
        if cache is None:
            y = attend(q, k, v, mask)  # [B, H, T, d]
        else:  # sampling: the cache (model.KVCache or sampler.py's) stores k, v and attends over all it holds
            y = cache.attend(self.layer_idx, q, k, v, mask)
        return self.o_proj(y.transpose(1, 2).reshape(B, T, H * self.head_dim))


def attend(q, k, v, mask=None):
    """SDPA with grouped-query attention (query head h reads KV head h // (H / Hkv)); `mask` is a boolean
    [B or 1, 1, T, S] (True = may attend) or None, meaning causal."""
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
        # The output projection is embed_tokens.weight itself (tied): no lm_head. Rotary tables are buffers that
        # follow .to(device) but are never saved; fp32 under autocast, bf16 after .to(bf16) (as HF's bf16 model).
        cos, sin = rope_tables(cfg)
        self.register_buffer("rope_cos", cos, persistent=False)  # [max_seq_len, head_dim] fp32
        self.register_buffer("rope_sin", sin, persistent=False)
        self.apply(partial(self._init_weights, std=cfg.weight_std))
        print(f"model: {self.n_params() / 1e6:.2f}M parameters ({self.n_params(non_embedding=True) / 1e6:.2f}M "
              f"non-embedding)")

    @staticmethod
    def _init_weights(module, std: float):
        # normal(0, std) for every matrix: 0.02 at width 768 (HF's Qwen2 init), 0.02 * sqrt(768 / n_embd) when narrower
        # so attention logits start as spread out (at 0.02 a width-128 copy head had not formed after 1600 steps, at
        # 0.06 it formed in 150). No 1/sqrt(2 n_layer) on residual projections: pre-norm, <= 12 layers, stable.
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
        """Training FLOPs per token for MFU: PaLM's 6 N + 12 L H d T, N with the tied embedding (the output matmul)."""
        cfg = self.config
        return 6 * self.n_params() + 12 * cfg.n_layer * cfg.n_embd * seq_len

    def rope(self, position_ids, T: int):
        """(cos, sin) for the rotary: [T, 1, d] for positions 0..T-1, else gathered per row as [B, T, 1, d]."""
        if position_ids is None:
            return self.rope_cos[:T, None], self.rope_sin[:T, None]
        return self.rope_cos[position_ids].unsqueeze(2), self.rope_sin[position_ids].unsqueeze(2)

    def trunk(self, idx, cos, sin, mask=None, cache=None):
        """Token ids [B, T] -> hidden states [B, T, n_embd] before the final norm: training, scoring and sampling."""
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

    def forward(self, idx, targets=None, loss_mask=None, position_ids=None, doc_ids=None):
        """idx [B, T] -> (logits [B, T, V] fp32, loss: mean cross-entropy where loss_mask == 1 and target != -100).
        position_ids: rotary positions [B, T] (default 0..T-1, restarting at each document of doc_ids [B, T], the
        document of each token of a packed row, inside which attention then stays)."""
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
        """log p(targets[b, t] | idx[b, :t+1]) fp32 [B, T] (0 where target == -100) under logits / temperature, as
        the sampler drew them; with `return_entropy` also each position's next-token entropy [B, T]."""
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
    """Static keys/values for `generate` (as in gpt-fast): per layer [R, n_kv_head, S, head_dim], slot s = position
    s of the left-padded row. A forward writes slots start..start+T-1 and attends to all S through its mask."""

    def __init__(self, cfg: ModelConfig, R: int, S: int, device, dtype):
        shape = (R, cfg.n_kv_head, S, cfg.head_dim)
        # zeros, not empty: a masked slot still meets a 0 attention weight, and 0 * NaN garbage would be NaN
        self.k = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(cfg.n_layer)]
        self.v = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(cfg.n_layer)]
        self.start = 0  # the slot of this forward's first token

    def attend(self, layer: int, q, k, v, mask):
        """Store k, v [R, Hkv, T, d] at their slots; attention of q [R, H, T, d] over the whole cache."""
        self.k[layer][:, :, self.start:self.start + k.size(2)] = k
        self.v[layer][:, :, self.start:self.start + v.size(2)] = v
        return attend(q, self.k[layer], self.v[layer], mask)


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
             temperature: float = 1.0, eos_id: int | None = EOS_ID, pad_id: int = PAD_ID,
             seed: int | None = None) -> Generation:
    """Sample `n` continuations of each prompt, up to max_new_tokens each, with their log-probs (temperature 0:
    greedy). Each prompt is repeated n times (R rows) and left-padded to the longest (L), so generated token t is
    at slot L + t of every row; rotary positions count from each row's first real token. A row stops at eos_id
    (kept and counted); later columns are pad_id. Under `torch.autocast` it samples in bf16."""
    model, device, gen, dtype = sampling_setup(model, prompts, n, max_new_tokens, temperature, seed)
    idx, positions, valid = left_pad([p for p in prompts for _ in range(n)], pad_id, device)  # [R, L] each
    R, L = idx.shape
    cache = KVCache(model.config, R, L + max_new_tokens, device, dtype)  # S = L + max_new_tokens slots a row
    valid = F.pad(valid, (0, max_new_tokens), value=True)  # [R, S]: the slots that hold real tokens
    slots = torch.arange(L + max_new_tokens, device=device)  # [S]
    tokens = torch.full((R, max_new_tokens), pad_id, dtype=torch.long, device=device)
    logprobs = torch.zeros(R, max_new_tokens, device=device)
    lengths = torch.zeros(R, dtype=torch.long, device=device)
    done = torch.zeros(R, dtype=torch.bool, device=device)
    x, pos = idx, positions  # the first forward (prefill) reads the whole prompt into slots 0..L-1
    for t in range(max_new_tokens):
        q_slots = slots[cache.start:cache.start + x.size(1), None]  # [T, 1]
        # causal by absolute slot and no pad keys; a pad query sees itself, so no softmax row is empty
        mask = (slots <= q_slots) & (valid[:, None, :] | (slots == q_slots))  # [R, T, S]
        cos, sin = model.rope(pos, x.size(1))
        logits = model.head(model.trunk(x, cos, sin, mask[:, None], cache)[:, -1])  # [R, V] fp32
        if temperature > 0:  # draw from softmax(logits / temperature); log-probs under that distribution
            logits = logits / temperature
        tok = torch.multinomial(logits.softmax(-1), 1, generator=gen)[:, 0] if temperature > 0 else logits.argmax(-1)
        tokens[:, t] = tok.masked_fill(done, pad_id)
        logprobs[:, t] = logits.log_softmax(-1).gather(1, tok[:, None])[:, 0].masked_fill(done, 0.0)
        lengths += ~done
        if eos_id is not None:
            done |= tokens[:, t] == eos_id
        if done.all():
            break
        cache.start = L + t  # the next forward reads token t: slot L + t, rotary position len + t
        x, pos = tokens[:, t, None], positions[:, -1:] + 1 + t  # [R, 1] each
    G = int(lengths.max())
    return Generation(tokens=tokens[:, :G], lengths=lengths, finished=done, logprobs=logprobs[:, :G])


def sampling_setup(model, prompts, n, max_new_tokens, temperature, seed, top_p=1.0, top_k=0):
    """Both samplers' start: the unwrapped model, device, seeded generator and cache dtype (autocast's, else the
    weights'); UserError for a request that cannot run."""
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
    if max(max(p) for p in prompts) >= cfg.vocab_size or min(min(p) for p in prompts) < 0:
        raise UserError(f"prompt token ids must lie in 0..{cfg.vocab_size - 1}")
    device = model.embed_tokens.weight.device
    if seed is None:  # still reproducible under torch.manual_seed
        seed = int(torch.randint(0, 2**62, (1,)).item())
    gen = torch.Generator(device=device).manual_seed(seed)
    autocast = torch.is_autocast_enabled(device.type)
    return model, device, gen, torch.get_autocast_dtype(device.type) if autocast else model.embed_tokens.weight.dtype


def left_pad(prompts: list[list[int]], pad_id: int, device):
    """Prompts left-padded to the longest (L): ids, rotary positions (from 0 at the first real token), real? [P, L]."""
    L = max(len(p) for p in prompts)
    idx = torch.tensor([[pad_id] * (L - len(p)) + p for p in prompts], dtype=torch.long, device=device)
    pad = torch.tensor([L - len(p) for p in prompts], device=device)[:, None]  # [P, 1]
    slots = torch.arange(L, device=device)[None, :]  # [1, L]
    return idx, (slots - pad).clamp(min=0), slots >= pad


# ----------------------------------------------------------------------------------------------------------------
# I/O: project checkpoints

def model_from_state(state: dict, config: ModelConfig | dict | None = None, device="cpu") -> Transformer:
    """Build a model from a checkpoint dict {"model": state_dict, "model_config": {...}, ...} or a bare state_dict
    plus `config`. Any missing/unexpected tensor or shape mismatch raises UserError naming it."""
    nested = isinstance(state.get("model"), dict)
    state_dict = strip_prefixes(state["model"] if nested else state)
    cfg = state.get("model_config") if config is None and nested else config
    if cfg is None:
        raise UserError("the checkpoint has no 'model_config' entry; pass the ModelConfig it was trained with")
    if not isinstance(cfg, ModelConfig):
        if unknown := sorted(set(cfg) - {f.name for f in dataclasses.fields(ModelConfig)}):
            raise UserError(f"model_config has unknown field(s) {', '.join(unknown)}; it was written by another "
                            f"version of model.py")
        cfg = ModelConfig(**cfg)
    with torch.device(device):
        model = Transformer(cfg)
    expected = model.state_dict()
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    parts = [f"{what} tensor(s): {', '.join(names[:8])}{' ...' if len(names) > 8 else ''}"
             for what, names in (("missing", missing), ("unexpected", unexpected)) if names]
    if parts:
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
