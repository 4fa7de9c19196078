"""Tests of model.py, sampler.py and hf.py: parity with transformers' Qwen2, masking, both KV-cache samplers,
checkpoints, export.

CPU, fp32, hermetic (no downloads) and fast; GPU-only checks are skipped without CUDA.
"""

import dataclasses
import math
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import hf as hf_io  # noqa: E402
import model as M  # noqa: E402
import sampler as S  # noqa: E402
from common import UserError, make_optimizer, save_checkpoint  # noqa: E402

SPECIALS = ["[UNK]", "[PAD]", "[BOS]", "[EOS]", "<question>", "</question>", "<solution>", "</solution>", "<answer>",
            "</answer>"]


def make_model(seed=0, **overrides) -> M.Transformer:
    """A micro model (GQA: 4 query heads, 2 KV heads) with weights large enough that its outputs are not trivial.

    The 0.02 init makes a tied-embedding model mostly repeat its input; larger weights, non-unit norms and
    non-zero biases give varied greedy continuations and exercise every parameter.
    """
    torch.manual_seed(seed)
    cfg = M.config_from_preset("micro", **overrides)
    net = M.Transformer(cfg)
    with torch.no_grad():
        for name, p in net.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(1 + 0.2 * torch.randn_like(p))
            elif p.dim() == 1:
                p.copy_(0.2 * torch.randn_like(p))
            elif "embed" in name:
                p.normal_(0, 0.1)
            else:
                p.normal_(0, 1.0 / math.sqrt(p.size(1)))
    return net.eval()


@pytest.fixture(scope="module")
def model():
    return make_model()


def full_logprobs(model, rows):
    """log_softmax of a plain forward over each full row (no cache, no padding): list of [len, V] tensors."""
    with torch.no_grad():
        return [model(torch.tensor([r]))[0][0].log_softmax(-1) for r in rows]


# ----------------------------------------------------------------------------------------------------------------
# Config and size

@pytest.mark.architecture
def test_paper_preset_parameter_count():
    with torch.device("meta"):
        m = M.Transformer(M.config_from_preset("paper"))
    assert m.n_params() == 103_170_816
    assert m.n_params(non_embedding=True) == 101_481_216
    assert m.flops_per_token(2048) == 6 * 103_170_816 + 12 * 12 * 768 * 2048


def test_presets_and_errors():
    cfg = M.config_from_preset("tiny", max_seq_len=64)
    assert (cfg.n_layer, cfg.n_embd, cfg.max_seq_len, cfg.vocab_size) == (4, 128, 64, 2200)
    with pytest.raises(UserError, match="unknown model preset 'huge'"):
        M.config_from_preset("huge")
    with pytest.raises(UserError, match="n_lyr"):
        M.config_from_preset("tiny", n_lyr=3)
    with pytest.raises(UserError, match="divisible"):
        M.ModelConfig(n_head=4, n_kv_head=3)


# ----------------------------------------------------------------------------------------------------------------
# Parity with transformers

@pytest.fixture(scope="module")
def hf_export(model, tmp_path_factory):
    tokenizers = pytest.importorskip("tokenizers")
    from tokenizers import Regex, decoders, models, normalizers, pre_tokenizers, trainers

    # Byte-level BPE with Qwen2's pre-tokenization: transformers 5 rebuilds any `qwen2` tokenizer with this
    # regex split + NFC, so a tokenizer made the same way gives identical ids through AutoTokenizer.
    regex = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+"
             r"|\s+(?!\S)|\s+")
    tok = tokenizers.Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(regex), behavior="isolated"),
                                                 pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=320, special_tokens=SPECIALS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    texts = ["<question>Tom has 3 apples and buys 15 more. How many apples?</question>",
             "<solution>3 + 15 = 18</solution> <answer>18</answer>", "Anna reads 12 pages a day for 4 days."]
    tok.train_from_iterator(texts * 20, trainer)
    out = tmp_path_factory.mktemp("hf")
    hf_io.export_hf(model, out, tokenizer=tok)
    return out, tok


@pytest.fixture(scope="module")
def hf_model(hf_export):
    transformers = pytest.importorskip("transformers")
    hf, info = transformers.AutoModelForCausalLM.from_pretrained(
        hf_export[0], dtype=torch.float32, attn_implementation="eager", output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"], info
    assert type(hf).__name__ == "Qwen2ForCausalLM"
    assert hf.lm_head.weight.data_ptr() == hf.model.embed_tokens.weight.data_ptr()  # tied
    return hf.eval()


@pytest.mark.architecture
def test_hf_logits_and_loss_parity(model, hf_model):
    torch.manual_seed(1)
    idx = torch.randint(0, 2200, (3, 48))
    with torch.no_grad():
        ours, loss = model(idx[:, :-1], idx[:, 1:])
        out = hf_model(input_ids=idx, labels=idx)
    assert (ours - out.logits[:, :-1]).abs().max() <= 1e-4
    assert abs(loss.item() - out.loss.item()) <= 1e-4


@pytest.mark.architecture
def test_hf_greedy_generation_parity(model, hf_model):
    prompts = [[2, 17, 400, 33, 21, 9], [2, 1500], [2, 7, 8, 1999]]  # mixed lengths: left padding on both sides
    L, new = max(map(len, prompts)), 16
    ids = torch.full((len(prompts), L), M.PAD_ID)
    attn = torch.zeros_like(ids)
    for i, p in enumerate(prompts):
        ids[i, L - len(p):], attn[i, L - len(p):] = torch.tensor(p), 1
    with torch.no_grad():
        hf_out = hf_model.generate(input_ids=ids, attention_mask=attn, do_sample=False, max_new_tokens=new,
                                   eos_token_id=M.EOS_ID, pad_token_id=M.PAD_ID)[:, L:]
    ours = M.generate(model, prompts, max_new_tokens=new, temperature=0)  # the plain sampler, the one to read
    for i in range(len(prompts)):
        n = int(ours.lengths[i])
        assert ours.tokens[i, :n].tolist() == hf_out[i, :n].tolist()
    assert len(set(ours.tokens.flatten().tolist())) > 5  # the comparison is not trivially a repeated token


@pytest.mark.architecture
def test_import_hf_round_trip(model, hf_export):
    back = hf_io.import_hf(hf_export[0])
    assert back.config == model.config
    sd, sd2 = model.state_dict(), back.state_dict()
    assert sd.keys() == sd2.keys() and all(torch.equal(sd[k], sd2[k]) for k in sd)


@pytest.mark.architecture
def test_hf_tokenizer_export(hf_export):
    transformers = pytest.importorskip("transformers")
    out, tok = hf_export
    hf_tok = transformers.AutoTokenizer.from_pretrained(out)
    assert (hf_tok.unk_token_id, hf_tok.pad_token_id, hf_tok.bos_token_id, hf_tok.eos_token_id) == (0, 1, 2, 3)
    assert (hf_tok.pad_token, hf_tok.eos_token) == ("[PAD]", "[EOS]")
    for text in ["<question>Tom has 13 apples.</question>\n<solution>13 - 4 = 9</solution> <answer>9</answer>",
                 "  two  spaces\tand a tab\r\n", "caf\u00e9 3.14 [BOS]x[EOS]"]:
        assert hf_tok(text)["input_ids"] == tok.encode(text).ids
    config = transformers.AutoConfig.from_pretrained(out)
    assert (config.pad_token_id, config.bos_token_id, config.eos_token_id) == (1, 2, 3)
    assert config.tie_word_embeddings


@pytest.mark.architecture
def test_hf_tokenizer_with_other_pre_tokenizer(model, tmp_path, capsys):
    # transformers 5 loads any `qwen2` folder's tokenizer as Qwen2Tokenizer, replacing the pre-tokenizer; a
    # tokenizer that splits differently (here GPT-2-like: numbers in chunks of 3) is flagged at export, and
    # PreTrainedTokenizerFast still loads it exactly
    transformers = pytest.importorskip("transformers")
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(r" ?\p{L}+| ?\p{N}{1,3}| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(["Tom has 125 apples and buys 1024 more."] * 20, trainers.BpeTrainer(
        vocab_size=300, special_tokens=SPECIALS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    hf_io.export_hf(model, tmp_path, tokenizer=tok)
    assert "PreTrainedTokenizerFast.from_pretrained" in capsys.readouterr().out
    text = "<question>Tom has 125 apples.</question> 1024"
    exact = transformers.PreTrainedTokenizerFast.from_pretrained(tmp_path)
    assert exact(text)["input_ids"] == tok.encode(text).ids and exact.pad_token_id == M.PAD_ID


@pytest.mark.architecture
def test_hf_command_line(model, tmp_path, capsys):
    save_checkpoint(tmp_path / "final.pt", {"model": model.state_dict(),
                                            "model_config": dataclasses.asdict(model.config)})
    hf_io.main(hf_io.CLIConfig(ckpt=str(tmp_path), out=str(tmp_path / "hf")))
    assert "wrote" in capsys.readouterr().out
    assert torch.equal(hf_io.import_hf(tmp_path / "hf").embed_tokens.weight, model.embed_tokens.weight)
    with pytest.raises(UserError, match="--ckpt"):
        hf_io.main(hf_io.CLIConfig(out=str(tmp_path / "hf2")))
    with pytest.raises(UserError, match="config.json"):
        hf_io.import_hf(tmp_path / "nothing")


@pytest.mark.architecture
def test_wrapped_models_are_unwrapped(model, tmp_path):
    compiled = torch.compile(model)  # nothing compiles until it is called; generate and export use the inner model
    for generate in SAMPLERS.values():
        out = generate(compiled, PROMPTS, max_new_tokens=4, temperature=0, eos_id=None)
        assert torch.equal(out.tokens, generate(model, PROMPTS, max_new_tokens=4, temperature=0, eos_id=None).tokens)
    hf_io.export_hf(compiled, tmp_path)
    assert torch.equal(hf_io.import_hf(tmp_path).embed_tokens.weight, model.embed_tokens.weight)


# ----------------------------------------------------------------------------------------------------------------
# Attention: GQA, causality, packed documents

def test_gqa_equals_repeated_heads(model):
    attn = model.layers[0].self_attn
    torch.manual_seed(2)
    x = torch.randn(2, 10, model.config.n_embd)
    cos, sin = model.rope(None, 10)
    with torch.no_grad():
        ours = attn(x, cos, sin)
        B, T, H, Hkv, d = 2, 10, attn.n_head, attn.n_kv_head, attn.head_dim
        q, k, v = attn.qkv_proj(x).split((H * d, Hkv * d, Hkv * d), dim=-1)  # the stacked q/k/v projections
        q = M.apply_rotary(q.view(B, T, H, d), cos, sin).transpose(1, 2)
        k = M.apply_rotary(k.view(B, T, Hkv, d), cos, sin).transpose(1, 2)
        v = v.view(B, T, Hkv, d).transpose(1, 2)
        k, v = k.repeat_interleave(H // Hkv, dim=1), v.repeat_interleave(H // Hkv, dim=1)  # head h -> h // 2
        scores = (q @ k.transpose(-1, -2)) / math.sqrt(d)
        scores = scores.masked_fill(~torch.ones(T, T, dtype=torch.bool).tril(), float("-inf"))
        ref = attn.o_proj((scores.softmax(-1) @ v).transpose(1, 2).reshape(B, T, H * d))
    assert (ours - ref).abs().max() <= 1e-5


def test_no_causal_leak(model):
    torch.manual_seed(3)
    idx = torch.randint(0, 2200, (2, 20))
    idx2 = idx.clone()
    idx2[:, 12:] = torch.randint(0, 2200, (2, 8))
    with torch.no_grad():
        a, b = model(idx)[0], model(idx2)[0]
    assert torch.equal(a[:, :12], b[:, :12])
    assert not torch.allclose(a[:, 12:], b[:, 12:])


def test_doc_ids_packing_equals_separate_runs(model):
    torch.manual_seed(4)
    doc_a, doc_b = torch.randint(0, 2200, (7,)), torch.randint(0, 2200, (9,))
    packed = torch.cat([doc_a, doc_b])[None]
    doc_ids = torch.tensor([[0] * 7 + [1] * 9])
    assert M.doc_positions(doc_ids).tolist() == [list(range(7)) + list(range(9))]
    with torch.no_grad():
        logits = model(packed, doc_ids=doc_ids)[0][0]
        alone_a, alone_b = model(doc_a[None])[0][0], model(doc_b[None])[0][0]
        unmasked = model(packed)[0][0]
    assert (logits[:7] - alone_a).abs().max() <= 1e-5
    assert (logits[7:] - alone_b).abs().max() <= 1e-5
    assert (unmasked[7:] - alone_b).abs().max() > 1e-2  # without doc_ids the second doc does see the first


# ----------------------------------------------------------------------------------------------------------------
# Losses, scoring, optimizer

def test_loss_mask_and_ignore_index(model):
    torch.manual_seed(5)
    idx, tgt = torch.randint(0, 2200, (2, 12)), torch.randint(0, 2200, (2, 12))
    mask = torch.zeros(2, 12, dtype=torch.long)
    mask[0, 3:9], mask[1, 5:] = 1, 1
    with torch.no_grad():
        logits, loss = model(idx, tgt, loss_mask=mask)
        ce = F.cross_entropy(logits.flatten(0, 1), tgt.flatten(), reduction="none")
        assert torch.allclose(loss, ce[mask.flatten().bool()].mean(), atol=1e-6)
        assert torch.allclose(model(idx, tgt)[1], ce.mean(), atol=1e-6)
        tgt_ignored = tgt.masked_fill(mask == 0, -100)
        assert torch.allclose(model(idx, tgt_ignored)[1], loss, atol=1e-6)
        # masked positions do not matter at all
        tgt2 = torch.where(mask.bool(), tgt, (tgt + 1) % 2200)
        assert torch.equal(model(idx, tgt2, loss_mask=mask)[1], loss)


def test_token_logprobs_and_entropy(model):
    torch.manual_seed(6)
    idx, tgt = torch.randint(0, 2200, (2, 10)), torch.randint(0, 2200, (2, 10))
    with torch.no_grad():
        logp_all = model(idx)[0].log_softmax(-1)
        lp, ent = model.token_logprobs(idx, tgt, return_entropy=True)
    assert lp.dtype == torch.float32 and lp.shape == (2, 10)
    assert (lp - logp_all.gather(-1, tgt[..., None])[..., 0]).abs().max() <= 1e-5
    assert (ent + (logp_all.exp() * logp_all).sum(-1)).abs().max() <= 1e-4
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        lp_bf16 = model.token_logprobs(idx, tgt)
    assert lp_bf16.dtype == torch.float32 and (lp_bf16 - lp).abs().mean() < 0.5


def test_optimizer_groups(model):
    opt = make_optimizer(model, weight_decay=0.1, lr=1e-3, betas=(0.9, 0.95), device_type="cpu")
    decay, no_decay = opt.param_groups
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    names = {id(p): n for n, p in model.named_parameters()}
    assert {names[id(p)] for p in decay["params"]} >= {"embed_tokens.weight", "layers.0.self_attn.qkv_proj.weight"}
    no_decay_names = {names[id(p)] for p in no_decay["params"]}
    assert all(n.endswith(("norm.weight", "bias")) for n in no_decay_names)
    assert {"norm.weight", "layers.1.self_attn.qkv_proj.bias", "layers.0.input_layernorm.weight"} <= no_decay_names
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))


def test_training_step_reduces_loss():
    net = M.Transformer(M.config_from_preset("micro")).train()
    opt = make_optimizer(net, 0.1, 3e-3, (0.9, 0.95), "cpu")
    torch.manual_seed(7)
    idx = torch.randint(0, 50, (4, 33))
    losses = []
    for _ in range(5):
        _, loss = net(idx[:, :-1], idx[:, 1:])
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.item())
    assert losses[-1] < losses[0]


# ----------------------------------------------------------------------------------------------------------------
# Samplers: model.generate (plain, static KV cache) and sampler.generate (shared-prefix cache, the experiments')

PROMPTS = [[2, 11, 305, 7, 42, 9, 100, 5], [2, 1500], [2, 77, 78, 79, 80]]  # mixed lengths
SAMPLERS = {"plain": M.generate, "shared": S.generate}
both = pytest.mark.parametrize("kind", list(SAMPLERS))


def sample(kind, model, prompts, **kw):
    """Either sampler, with log-probs (the plain one always returns them)."""
    return SAMPLERS[kind](model, prompts, **kw, **({"return_logprobs": True} if kind == "shared" else {}))


@both
def test_kv_cache_logprobs_match_full_forward(model, kind):
    # temperature 1 without filtering: returned logprobs are the model's own log-softmax at each step, so they
    # must equal a fresh full forward over prompt + generated tokens (batch > 1, mixed lengths, n > 1)
    out = sample(kind, model, PROMPTS, n=3, max_new_tokens=12, eos_id=None, seed=0)
    assert out.tokens.shape == (9, 12) and out.logprobs.shape == (9, 12)
    rows = [PROMPTS[r // 3] + out.tokens[r].tolist() for r in range(9)]
    for r, lp in enumerate(full_logprobs(model, rows)):
        L = len(PROMPTS[r // 3])
        ref = lp[L - 1:-1].gather(-1, out.tokens[r][:, None])[:, 0]
        assert (out.logprobs[r] - ref).abs().max() <= 1e-4, r


@both
def test_sampler_logprobs_at_temperature_match_token_logprobs(model, kind):
    # RL's ratio compares training-time log-probs with the sampler's: at temperature T both must be the
    # log-softmax of logits / T (token_logprobs with temperature=T), not of the raw logits
    out = sample(kind, model, PROMPTS[:2], n=2, max_new_tokens=8, temperature=0.5, eos_id=None, seed=1)
    for r in range(4):
        row = torch.tensor([PROMPTS[r // 2] + out.tokens[r].tolist()])
        L = len(PROMPTS[r // 2])
        targets = torch.full_like(row, -100)
        targets[0, L - 1:-1] = row[0, L:]
        with torch.no_grad():
            at_t = model.token_logprobs(row, targets, temperature=0.5)[0, L - 1:-1]
            at_1 = model.token_logprobs(row, targets)[0, L - 1:-1]
        assert (out.logprobs[r] - at_t).abs().max() <= 1e-4, r
        assert (out.logprobs[r] - at_1).abs().max() > 1e-3  # the temperature really matters here


@both
def test_greedy_matches_naive_loop(model, kind):
    out = SAMPLERS[kind](model, PROMPTS, n=2, max_new_tokens=10, temperature=0, eos_id=None)
    for r in range(6):
        seq = list(PROMPTS[r // 2])
        for _ in range(10):
            with torch.no_grad():
                seq.append(int(model(torch.tensor([seq]))[0][0, -1].argmax()))
        assert out.tokens[r].tolist() == seq[len(PROMPTS[r // 2]):]
    assert torch.equal(out.tokens[0], out.tokens[1])  # greedy: the n rows of a prompt agree


def test_plain_and_shared_samplers_agree_at_temperature_0(model):
    prompts = PROMPTS + [[2, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 31]]
    free = M.generate(model, prompts, n=3, max_new_tokens=14, temperature=0, eos_id=None)
    eos = int(free.tokens[3, 4])  # a token some rows produce mid-way becomes the EOS: those rows stop there
    plain = M.generate(model, prompts, n=3, max_new_tokens=14, temperature=0, eos_id=eos, pad_id=M.PAD_ID)
    shared = S.generate(model, prompts, n=3, max_new_tokens=14, temperature=0, eos_id=eos, pad_id=M.PAD_ID,
                        return_logprobs=True)
    assert plain.finished.any() and not plain.finished.all()
    assert torch.equal(plain.tokens, shared.tokens) and torch.equal(plain.lengths, shared.lengths)
    assert torch.equal(plain.finished, shared.finished)
    assert (plain.logprobs - shared.logprobs).abs().max() <= 1e-4
    assert plain.to_lists() == shared.to_lists()


@both
def test_sampler_seeded_and_rows_differ(model, kind):
    generate = SAMPLERS[kind]
    a = generate(model, PROMPTS, n=4, max_new_tokens=8, eos_id=None, seed=123)
    b = generate(model, PROMPTS, n=4, max_new_tokens=8, eos_id=None, seed=123)
    c = generate(model, PROMPTS, n=4, max_new_tokens=8, eos_id=None, seed=124)
    assert torch.equal(a.tokens, b.tokens)
    assert not torch.equal(a.tokens, c.tokens)
    for i in range(len(PROMPTS)):
        rows = {tuple(t) for t in a.tokens[4 * i:4 * i + 4].tolist()}
        assert len(rows) > 1  # the samples of one prompt differ
    torch.manual_seed(9)
    d = generate(model, PROMPTS, max_new_tokens=8, eos_id=None)  # seed=None follows torch.manual_seed
    torch.manual_seed(9)
    assert torch.equal(d.tokens, generate(model, PROMPTS, max_new_tokens=8, eos_id=None).tokens)


@both
def test_sampler_stops_at_eos_and_pads(model, kind):
    base = sample(kind, model, PROMPTS, n=4, max_new_tokens=12, eos_id=None, seed=5)
    stop = int(base.tokens[0, 3])  # a token row 0 samples at step 3 becomes the EOS: same seed, same draws
    out = sample(kind, model, PROMPTS, n=4, max_new_tokens=12, eos_id=stop, pad_id=M.PAD_ID, seed=5)
    assert out.finished[0] and int(out.lengths[0]) <= 4
    for r in range(12):
        row = base.tokens[r].tolist()
        if stop in row:
            n = row.index(stop) + 1
            assert out.finished[r] and int(out.lengths[r]) == n
            assert out.tokens[r, :n].tolist() == row[:n]  # includes the EOS
            assert (out.tokens[r, n:] == M.PAD_ID).all() and (out.logprobs[r, n:] == 0).all()
            assert torch.allclose(out.logprobs[r, :n], base.logprobs[r, :n])
        else:
            assert not out.finished[r] and int(out.lengths[r]) == 12  # truncated rows: no EOS, finished False
    assert out.tokens.size(1) == int(out.lengths.max())
    lists = out.to_lists()
    assert [len(x) for x in lists] == out.lengths.tolist()
    if kind == "shared":  # stop_ids act like EOS
        via_stop = S.generate(model, PROMPTS, n=4, max_new_tokens=12, eos_id=None, stop_ids=(stop,), seed=5)
        assert torch.equal(via_stop.tokens, out.tokens) and torch.equal(via_stop.finished, out.finished)


@both
def test_all_rows_done_stops_early(model, kind):
    generate = SAMPLERS[kind]
    greedy = generate(model, [PROMPTS[0]], max_new_tokens=10, temperature=0, eos_id=None)
    first = int(greedy.tokens[0, 0])
    out = generate(model, [PROMPTS[0]], n=3, max_new_tokens=10, temperature=0, eos_id=first)
    assert out.tokens.shape == (3, 1) and out.finished.all() and out.lengths.tolist() == [1, 1, 1]


def test_top_k_1_and_tiny_top_p_are_greedy(model):
    greedy = S.generate(model, PROMPTS, n=2, max_new_tokens=10, temperature=0, eos_id=None)
    top_k = S.generate(model, PROMPTS, n=2, max_new_tokens=10, temperature=1.0, top_k=1, eos_id=None, seed=1)
    top_p = S.generate(model, PROMPTS, n=2, max_new_tokens=10, temperature=1.0, top_p=1e-6, eos_id=None, seed=2)
    assert torch.equal(greedy.tokens, top_k.tokens) and torch.equal(greedy.tokens, top_p.tokens)


def test_top_k_top_p_restrict_support():
    gen = torch.Generator().manual_seed(0)
    logits = torch.tensor([[3.0, 2.0, 1.0, 0.0, -1.0]]).repeat(2000, 1)
    tok, lp = S.sample_logits(logits, 1.0, 2, 1.0, gen, return_logprobs=True)
    assert set(tok.tolist()) == {0, 1}
    p = torch.tensor([3.0, 2.0]).softmax(0)
    assert torch.allclose(lp, p.log()[tok])  # logprobs under the filtered distribution
    probs = logits[0].softmax(0)  # ~ [.64, .24, .09, .03, .01]: top_p 0.8 keeps the first two
    tok, _ = S.sample_logits(logits, 1.0, 0, 0.8, gen)
    assert set(tok.tolist()) == {0, 1} and probs[0] < 0.8 < probs[:2].sum()
    tok, _ = S.sample_logits(logits, 0.5, 0, 1.0, gen)
    assert (tok == 0).float().mean() > 0.8  # low temperature concentrates mass


def test_chunking_matches_one_batch(model):
    one = S.generate(model, PROMPTS, n=2, max_new_tokens=6, temperature=0, eos_id=None)
    chunked = S.generate(model, PROMPTS, n=2, max_new_tokens=6, temperature=0, eos_id=None, max_batch_rows=2,
                         return_logprobs=True)
    assert torch.equal(one.tokens, chunked.tokens) and chunked.logprobs.shape == (6, 6)


@both
def test_generate_rejects_bad_requests(model, kind):
    generate = SAMPLERS[kind]
    with pytest.raises(UserError, match="max_seq_len"):
        generate(model, [[2] * 250], max_new_tokens=10)
    with pytest.raises(UserError, match="at least one token"):
        generate(model, [[2], []])
    with pytest.raises(UserError, match="token ids"):
        generate(model, [[2, 5000]], max_new_tokens=4)
    with pytest.raises(UserError, match="must be >= 1"):
        generate(model, [[2]], n=0)
    with pytest.raises(UserError, match="temperature >= 0"):
        generate(model, [[2]], temperature=-1.0)


def test_sampler_choice_by_name(model):
    out = S.generate_with("plain", model, PROMPTS, n=2, max_new_tokens=5, temperature=0, eos_id=None)
    assert torch.equal(out.tokens, S.generate_with("shared", model, PROMPTS, n=2, max_new_tokens=5, temperature=0,
                                                   eos_id=None).tokens)
    with pytest.raises(UserError, match="--sampler must be one of shared, plain"):
        S.check_sampler("fast")
    with pytest.raises(UserError, match="--sampler shared for top_p"):
        S.generate_with("plain", model, PROMPTS, top_p=0.9)


@both
def test_generate_under_bf16_autocast(model, kind):
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = sample(kind, model, PROMPTS, n=2, max_new_tokens=12, eos_id=None, seed=0)
    assert out.tokens.shape == (6, 12) and torch.isfinite(out.logprobs).all()
    # bf16 rounding only: the sampler's log-probs stay close to an fp32 forward over the same tokens
    rows = [PROMPTS[r // 2] + out.tokens[r].tolist() for r in range(6)]
    for r, lp in enumerate(full_logprobs(model, rows)):
        L = len(PROMPTS[r // 2])
        ref = lp[L - 1:-1].gather(-1, out.tokens[r][:, None])[:, 0]
        assert (out.logprobs[r] - ref).abs().max() < 0.05, r


# ----------------------------------------------------------------------------------------------------------------
# Checkpoints

def test_checkpoint_round_trip_and_errors(model, tmp_path):
    path = tmp_path / "ckpt.pt"
    # as a compiled model would save it: every name prefixed with _orig_mod.
    sd = {"_orig_mod." + k: v for k, v in model.state_dict().items()}
    save_checkpoint(path, {"model": sd, "model_config": dataclasses.asdict(model.config), "step": 3})
    loaded = M.load_model(path)
    idx = torch.randint(0, 2200, (2, 16))
    with torch.no_grad():
        assert torch.equal(loaded(idx)[0], model(idx)[0])

    wrong = dataclasses.asdict(model.config) | {"n_embd": 32}
    save_checkpoint(path, {"model": model.state_dict(), "model_config": wrong})
    with pytest.raises(UserError, match=r"'embed_tokens.weight' has shape \(2200, 64\).*\(2200, 32\)"):
        M.load_model(path)

    sd = dict(model.state_dict())
    sd.pop("norm.weight")
    sd["lm_head.weight"] = sd["embed_tokens.weight"]
    with pytest.raises(UserError, match="missing tensor.*norm.weight.*unexpected tensor.*lm_head.weight"):
        M.model_from_state({"model": sd, "model_config": dataclasses.asdict(model.config)})
    with pytest.raises(UserError, match="unknown field"):
        M.model_from_state({"model": sd, "model_config": {"n_layers": 2}})
    with pytest.raises(UserError, match="not found"):
        M.load_model(tmp_path / "missing.pt")


# ----------------------------------------------------------------------------------------------------------------
# GPU only

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


@cuda
def test_cuda_compile_and_bf16_sampling():
    model = make_model().cuda()
    compiled = torch.compile(model)
    idx = torch.randint(0, 2200, (2, 64), device="cuda")
    with torch.autocast("cuda", dtype=torch.bfloat16):
        logits, loss = compiled(idx[:, :-1], idx[:, 1:])
        loss.backward()
        eager, _ = model(idx[:, :-1])
        out = S.generate(model, PROMPTS, n=4, max_new_tokens=16, eos_id=None, seed=0, return_logprobs=True)
        again = S.generate(model, PROMPTS, n=4, max_new_tokens=16, eos_id=None, seed=0)
        plain = M.generate(model, PROMPTS, n=4, max_new_tokens=16, eos_id=None, seed=0)
    assert (logits - eager).abs().max() < 0.1
    assert out.tokens.shape == (12, 16) and torch.isfinite(out.logprobs).all()
    assert torch.equal(out.tokens, again.tokens)  # seeded on the GPU too
    assert plain.tokens.shape == (12, 16) and torch.isfinite(plain.logprobs).all()
