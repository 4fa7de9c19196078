"""
Hugging Face I/O: write a model as a `transformers` Qwen2 folder (config.json + model.safetensors + tokenizer) and
read such a folder back. `transformers` is not needed for either; the tests load the export with it and compare
logits.

Our parameter names are Hugging Face's minus the `model.` prefix, except that q/k/v and gate/up projections are
stacked into one matrix each (fewer kernels per step): the export splits them and the import stacks them again.

    python hf.py --ckpt runs/tiny/base --out out/hf --tokenizer runs/tiny/tokenizer.json

    import hf
    hf.export_hf(model, "out/hf", tokenizer="runs/tiny/tokenizer.json")
    model = hf.import_hf("out/hf")
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from common import UserError, opt, run_main, strip_prefixes, unwrap
from model import BOS_ID, EOS_ID, PAD_ID, UNK_ID, ModelConfig, Transformer, load_model, model_from_state
from tokenizer import SPECIAL_TOKENS

# tokenizer_config.json names the special tokens by role: role -> the model's id (the token is SPECIAL_TOKENS[id])
ROLES = {"unk_token": UNK_ID, "pad_token": PAD_ID, "bos_token": BOS_ID, "eos_token": EOS_ID}


def hf_config(cfg: ModelConfig, dtype: torch.dtype = torch.float32) -> dict:
    """The config.json of a Qwen2ForCausalLM with our architecture (written by hand: no transformers needed)."""
    return {
        "architectures": ["Qwen2ForCausalLM"],
        "model_type": "qwen2",
        "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.n_embd,
        "intermediate_size": cfg.mlp_hidden,
        "num_hidden_layers": cfg.n_layer,
        "num_attention_heads": cfg.n_head,
        "num_key_value_heads": cfg.n_kv_head,
        "head_dim": cfg.head_dim,
        "hidden_act": "silu",
        "max_position_embeddings": cfg.max_seq_len,
        "rms_norm_eps": cfg.norm_eps,
        "rope_theta": cfg.rope_theta,  # transformers 4.x reads this ...
        "rope_parameters": {"rope_type": "default", "rope_theta": cfg.rope_theta},  # ... and 5.x this
        "tie_word_embeddings": True,
        "use_sliding_window": False,
        "sliding_window": None,
        "max_window_layers": cfg.n_layer,
        "attention_dropout": 0.0,
        "initializer_range": cfg.weight_std,
        "use_cache": True,
        "bos_token_id": BOS_ID,
        "eos_token_id": EOS_ID,
        "pad_token_id": PAD_ID,
        "dtype": str(dtype).removeprefix("torch."),
    }


def to_hf_state_dict(state_dict: dict, cfg: ModelConfig) -> dict:
    """Our tensors under Hugging Face Qwen2 names: stacked qkv/gate_up split back, everything under `model.`."""
    q, kv = cfg.n_head * cfg.head_dim, cfg.n_kv_head * cfg.head_dim
    out = {}
    for name, t in state_dict.items():
        t = t.detach().cpu()
        prefix, _, kind = name.rpartition(".")  # e.g. "layers.0.self_attn.qkv_proj", "weight"
        if prefix.endswith("qkv_proj"):
            base = "model." + prefix.removesuffix("qkv_proj")
            for part, piece in zip(("q_proj", "k_proj", "v_proj"), t.split((q, kv, kv))):
                out[f"{base}{part}.{kind}"] = piece.contiguous()
        elif prefix.endswith("gate_up_proj"):
            base = "model." + prefix.removesuffix("gate_up_proj")
            for part, piece in zip(("gate_proj", "up_proj"), t.chunk(2)):
                out[f"{base}{part}.{kind}"] = piece.contiguous()
        else:
            out["model." + name] = t.contiguous()
    return out


def from_hf_state_dict(state: dict, cfg: ModelConfig) -> dict:
    """The inverse of `to_hf_state_dict` (missing HF tensors are left out: model_from_state then names them)."""
    state = {k.removeprefix("model."): v for k, v in state.items()}
    for i in range(cfg.n_layer):
        attn, mlp = f"layers.{i}.self_attn.", f"layers.{i}.mlp."
        for kind in ("weight", "bias"):
            parts = [state.pop(f"{attn}{p}.{kind}", None) for p in ("q_proj", "k_proj", "v_proj")]
            if all(p is not None for p in parts):
                state[f"{attn}qkv_proj.{kind}"] = torch.cat(parts)
        parts = [state.pop(f"{mlp}{p}.weight", None) for p in ("gate_proj", "up_proj")]
        if all(p is not None for p in parts):
            state[f"{mlp}gate_up_proj.weight"] = torch.cat(parts)
    return state


def export_hf(model: Transformer, out_dir: str | Path, tokenizer=None) -> Path:
    """Write a Hugging Face folder loadable by `AutoModelForCausalLM.from_pretrained(out_dir)`.

    config.json + model.safetensors (HF names, tied embeddings so no lm_head tensor) and, if `tokenizer` (a
    tokenizer.json path or a `tokenizers.Tokenizer`) is given, tokenizer.json + tokenizer_config.json.

    Tokenizer caveat: transformers 5 makes `AutoTokenizer` load every `qwen2` folder as `Qwen2Tokenizer`, which
    keeps the vocabulary, merges and special tokens but REPLACES the pre-tokenizer with Qwen2's own regex (+ NFC).
    A tokenizer with that exact pre-tokenization gives the same ids through AutoTokenizer; any other does not, and
    is loaded faithfully with `PreTrainedTokenizerFast.from_pretrained(out_dir)`. When transformers is installed
    the export checks this on a probe text and prints a warning if the ids differ.
    """
    from safetensors.torch import save_file

    model = unwrap(model)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    state = to_hf_state_dict(strip_prefixes(model.state_dict()), model.config)
    dtype = state["model.embed_tokens.weight"].dtype
    (out / "config.json").write_text(json.dumps(hf_config(model.config, dtype), indent=2) + "\n")
    save_file(state, str(out / "model.safetensors"), metadata={"format": "pt"})
    if tokenizer is not None:
        _check_hf_tokenizer(out, _export_tokenizer(tokenizer, out, model.config))
    return out


def _export_tokenizer(tokenizer, out: Path, cfg: ModelConfig):
    from tokenizers import Tokenizer

    if isinstance(tokenizer, (str, Path)):
        try:
            tokenizer = Tokenizer.from_file(str(tokenizer))
        except Exception as e:
            raise UserError(f"cannot read tokenizer {str(tokenizer)!r}: {e}") from None
    want = {SPECIAL_TOKENS[i]: i for i in ROLES.values()}
    got = {t: tokenizer.token_to_id(t) for t in want}
    if got != want:
        raise UserError(f"tokenizer special token ids {got} differ from the model's {want}")
    if tokenizer.get_vocab_size() > cfg.vocab_size:
        raise UserError(f"tokenizer has {tokenizer.get_vocab_size()} tokens but the model only {cfg.vocab_size}")
    tokenizer.save(str(out / "tokenizer.json"))
    tok_cfg = {"tokenizer_class": "PreTrainedTokenizerFast", **{role: SPECIAL_TOKENS[i] for role, i in ROLES.items()},
               "model_max_length": cfg.max_seq_len, "clean_up_tokenization_spaces": False}
    (out / "tokenizer_config.json").write_text(json.dumps(tok_cfg, indent=2) + "\n")
    return tokenizer


def _check_hf_tokenizer(out: Path, tokenizer) -> None:
    """Warn if `AutoTokenizer.from_pretrained(out)` would give other ids than `tokenizer` (see export_hf)."""
    try:
        from transformers import AutoTokenizer
    except ImportError:
        return
    probe = "<question>Tom has 125 apples, eats 3.5 and buys 1024 more.</question>\n\n  <answer>1145.5</answer>"
    hf_tok = AutoTokenizer.from_pretrained(out)
    if hf_tok(probe)["input_ids"] != tokenizer.encode(probe).ids:
        print(f"warning: AutoTokenizer.from_pretrained({str(out)!r}) loads this tokenizer as "
              f"{type(hf_tok).__name__} with another pre-tokenizer, so its ids differ from tokenizer.json's; load it "
              f"with transformers.PreTrainedTokenizerFast.from_pretrained({str(out)!r}) instead")


def import_hf(hf_dir: str | Path, device="cpu") -> Transformer:
    """Read a folder written by `export_hf` (or any Qwen2 of this architecture) back; transformers not needed."""
    from safetensors.torch import load_file

    hf_dir = Path(hf_dir)
    try:
        c = json.loads((hf_dir / "config.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError) as e:
        raise UserError(f"{str(hf_dir)!r} has no readable config.json ({e})") from None
    if c.get("model_type") != "qwen2" or c.get("hidden_act", "silu") != "silu" or c.get("use_sliding_window"):
        raise UserError(f"{str(hf_dir)!r} is not a Qwen2 model of this architecture (model_type "
                        f"{c.get('model_type')!r}, hidden_act {c.get('hidden_act')!r}, sliding window "
                        f"{c.get('use_sliding_window')})")
    rope = c.get("rope_parameters") or {}
    cfg = ModelConfig(vocab_size=c["vocab_size"], n_layer=c["num_hidden_layers"], n_embd=c["hidden_size"],
                      n_head=c["num_attention_heads"], n_kv_head=c.get("num_key_value_heads", c["num_attention_heads"]),
                      mlp_hidden=c["intermediate_size"], max_seq_len=c["max_position_embeddings"],
                      rope_theta=float(rope.get("rope_theta", c.get("rope_theta", 1e6))),
                      norm_eps=float(c.get("rms_norm_eps", 1e-6)))
    if c.get("head_dim", cfg.head_dim) != cfg.head_dim:
        raise UserError(f"head_dim {c['head_dim']} != hidden_size / num_attention_heads ({cfg.head_dim})")
    files = sorted(hf_dir.glob("*.safetensors"))
    if not files:
        raise UserError(f"no *.safetensors file in {str(hf_dir)!r}")
    state = {}
    for f in files:
        state.update(load_file(str(f)))
    lm_head = state.pop("lm_head.weight", None)
    if lm_head is not None and not torch.equal(lm_head, state.get("model.embed_tokens.weight", lm_head)):
        raise UserError(f"{str(hf_dir)!r} has an untied lm_head; this model ties it to the embedding")
    return model_from_state(from_hf_state_dict(state, cfg), cfg, device=device)


# ----------------------------------------------------------------------------------------------------------------
# Command line: export a checkpoint

@dataclass
class CLIConfig:
    ckpt: str = opt("", "checkpoint file or run folder to export")
    out: str = opt("", "folder to write (config.json, model.safetensors and, with --tokenizer, the tokenizer)")
    tokenizer: str = opt("", "tokenizer.json to include in the export")


def main(cfg: CLIConfig):
    if not cfg.ckpt or not cfg.out:
        raise UserError("give --ckpt (a checkpoint file or run folder) and --out (the folder to write)")
    out = export_hf(load_model(cfg.ckpt), cfg.out, tokenizer=cfg.tokenizer or None)
    print(f"wrote {out}/ (config.json, model.safetensors{', tokenizer' if cfg.tokenizer else ''})")


if __name__ == "__main__":
    run_main(main, CLIConfig)
