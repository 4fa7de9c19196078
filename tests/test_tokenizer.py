"""Tests for tokenizer.py: text format, the trained BPE, packing, shards and their checks, the command line.

Hermetic: the tokenizer is trained here, once per module, on a few thousand generated problems at a small vocab.
"""

import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import datagen  # noqa: E402
import tokenizer as T  # noqa: E402
from common import UserError, parse_config  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
ALL = "ops=2-20 contexts=zoo,teachers,movies modes=forward,reverse"  # every context and both modes
VOCAB = 800


@pytest.fixture(scope="module")
def train_records():
    return list(datagen.generate(ALL, 2500, seed=0))


@pytest.fixture(scope="module")
def records():
    return list(datagen.generate(ALL, 400, seed=1))


@pytest.fixture(scope="module")
def tok(train_records):
    return T.train_tokenizer((T.render(r) for r in train_records), vocab_size=VOCAB)


@pytest.fixture(scope="module")
def tok_path(tok, tmp_path_factory):
    path = tmp_path_factory.mktemp("tok") / "tokenizer.json"
    T.save_tokenizer(tok, path)
    return path


@pytest.fixture(scope="module")
def shard_dir(tok, records, tmp_path_factory):
    """A good shard folder: several files of 8 rows of 512 tokens."""
    out = tmp_path_factory.mktemp("shards") / "pt"
    T.write_shards(tok, iter(records), out, max_seq_len=512, rows_per_shard=8, batch_size=64,
                   source={"test": True})
    return out


def corrupt_copy(shard_dir, tmp_path):
    dst = tmp_path / "copy"
    shutil.copytree(shard_dir, dst)
    return dst


# ----------------------------------------------------------------------------------------------------------------
# Text format

REC = {"problem": "The number of adult owl in South Zoo equals 2.",
       "question": "How many adult owl does South Zoo have?",
       "solution": "Define adult owl in South Zoo as p; so p = 2.", "answer": 2}


def test_render_format():
    assert T.render(REC) == ("<question> The number of adult owl in South Zoo equals 2. How many adult owl does South "
                             "Zoo have? </question> <solution> Define adult owl in South Zoo as p; so p = 2. "
                             "</solution> <answer> 2 </answer>[EOS]")
    assert T.render_prompt(REC).endswith("</question> <solution>")
    assert T.render_completion(REC).startswith(" Define")
    assert T.render_prompt(REC) + T.render_completion(REC) == T.render(REC)


def test_special_token_constants():
    assert T.SPECIAL_TOKENS[:4] == ["[UNK]", "[PAD]", "[BOS]", "[EOS]"]
    named = [T.UNK_ID, T.PAD_ID, T.BOS_ID, T.EOS_ID, T.QUESTION_ID, T.QUESTION_END_ID, T.SOLUTION_ID,
             T.SOLUTION_END_ID, T.ANSWER_ID, T.ANSWER_END_ID]
    assert named == list(range(10))
    assert T.SPECIAL_TOKENS[4:] == ["<question>", "</question>", "<solution>", "</solution>", "<answer>", "</answer>"]


# ----------------------------------------------------------------------------------------------------------------
# Tokenizer

def test_special_ids_fixed_and_single_tokens(tok):
    for i, s in enumerate(T.SPECIAL_TOKENS):
        assert tok.token_to_id(s) == i
        assert tok.encode(s).ids == [i]
        ids = tok.encode(f"x{s}Zoo 12{s}{s}.").ids  # glued to words and numbers, repeated
        assert ids.count(i) == 3
    # never built by merges: no other vocabulary entry contains a special token or a piece of one's name
    for token, i in tok.get_vocab().items():
        if i >= len(T.SPECIAL_TOKENS):
            assert not any(s in token for s in T.SPECIAL_TOKENS), token
            assert token not in ("question", "solution", "answer", "EOS", ">[", "question>", "answer>"), token


def test_round_trip_all_contexts_and_modes(tok, records):
    assert {r["context"] for r in records} == {"zoo", "teachers", "movies"}
    assert {r["mode"] for r in records} == {"forward", "reverse"}
    texts = [T.render(r) for r in records]
    ids = T.encode(tok, texts)
    for text, i in zip(texts, ids):
        assert T.decode(tok, i) == text
        assert i[-1] == T.EOS_ID and i[0] == T.QUESTION_ID
        assert T.UNK_ID not in i
    # cutting at <solution> never changes the tokens: prompt ids + completion ids == full ids
    prompts = T.encode(tok, [T.render_prompt(r) for r in records])
    completions = T.encode(tok, [T.render_completion(r) for r in records])
    assert all(p + c == i for p, c, i in zip(prompts, completions, ids))
    assert all(p[-1] == T.SOLUTION_ID for p in prompts)


def test_round_trip_unseen_text(tok):
    for s in ["Festival Lumière de Valmont, Rêves de Belleville!", "  two  spaces\tand\ttabs\n", "ünïcødé ∑ 😀",
              "x = 123456789 - 9876", ""]:
        assert T.decode(tok, T.encode(tok, [s])[0]) == s


def test_regex_keeps_words_whole_and_splits_numbers(tok):
    pieces = [p for p, _ in tok.pre_tokenizer.pre_tokenize_str(
        " The number of adult bear in Oakbridge Riverside equals 1000; so g = 12345 + 2*x.")]
    assert pieces == ["ĠThe", "Ġnumber", "Ġof", "Ġadult", "Ġbear", "Ġin", "ĠOakbridge", "ĠRiverside", "Ġequals",
                      "Ġ100", "0", ";", "Ġso", "Ġg", "Ġ=", "Ġ123", "45", "Ġ+", "Ġ2", "*", "x", "."]
    # common words of the corpus are single tokens
    for word in [" number", " equals", " Define", " Oakbridge", " Festival"]:
        assert len(T.encode(tok, [word])[0]) == 1, word
    # no token ever mixes digits with letters or holds more than three digits
    ids = T.encode(tok, [" 1234567 abc123def 99x"])[0]
    for i in ids:
        text = tok.decode([i])
        digits = sum(c.isdigit() for c in text)
        assert digits <= 3 and not (digits and any(c.isalpha() for c in text)), text
    # every vocabulary token is (part of) one pre-token piece: no merge ever crossed a word or number boundary
    for token, i in tok.get_vocab().items():
        if i < len(T.SPECIAL_TOKENS):
            continue
        text = tok.decode([i])
        if "\ufffd" in text:  # a partial UTF-8 byte sequence
            continue
        assert len(tok.pre_tokenizer.pre_tokenize_str(text)) == 1, repr(text)


def test_regex_stored_unescaped(tok_path):
    """The saved pattern is the regex itself; the authors' double-escaped one broke word splitting."""
    from tokenizers import Regex, pre_tokenizers
    data = json.loads(tok_path.read_text())
    split = data["pre_tokenizer"]["pretokenizers"][0]
    assert split["type"] == "Split" and split["pattern"] == {"Regex": T.PRETOKENIZE_REGEX}
    broken = pre_tokenizers.Split(Regex(T.PRETOKENIZE_REGEX.replace("\\", "\\\\")), behavior="isolated")
    pieces = broken.pre_tokenize_str(" The number of adult bear in South Zoo equals 1000.")
    assert pieces[0][0] == " The number of adult bear in South Zoo equal"  # whole phrases, not words


def test_transformers_gives_same_ids(tok_path, tok, records):
    transformers = pytest.importorskip("transformers")
    hf = transformers.PreTrainedTokenizerFast(tokenizer_file=str(tok_path))
    texts = [T.render(r) for r in records[:100]]
    ours = T.encode(tok, texts)
    for text, ids in zip(texts, ours):
        assert hf(text)["input_ids"] == ids
        assert hf.decode(ids) == text


def test_vocab_never_exceeds_request(tok, train_records):
    assert tok.get_vocab_size() <= VOCAB
    small = T.train_tokenizer((T.render(r) for r in train_records[:300]), vocab_size=300)
    assert small.get_vocab_size() == 300  # plenty of merges left: exactly the requested size, not one more
    with pytest.raises(UserError, match="vocab_size"):
        T.train_tokenizer(["a b c"], vocab_size=T.MIN_VOCAB - 1)


def test_training_is_deterministic(train_records):
    texts = [T.render(r) for r in train_records[:200]]
    assert T.tokenizer_hash(T.train_tokenizer(texts, 400)) == T.tokenizer_hash(T.train_tokenizer(texts, 400))


def test_hash_and_load(tok, tok_path):
    h = T.tokenizer_hash(tok)
    assert len(h) == 16 and h == T.tokenizer_hash(tok_path) == T.tokenizer_hash(T.load_tokenizer(tok_path))


def test_load_tokenizer_errors(tok_path, tmp_path):
    with pytest.raises(UserError, match="not found.*--mode train"):
        T.load_tokenizer(tmp_path / "nope.json")
    garbage = tmp_path / "garbage.json"
    garbage.write_text("{not json")
    with pytest.raises(UserError, match="cannot be read"):
        T.load_tokenizer(garbage)
    data = json.loads(tok_path.read_text())  # "[EOS]" no longer a special token: id 3 is no longer matched in text
    data["added_tokens"] = [t for t in data["added_tokens"] if t["content"] != "[EOS]"]
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps(data))
    with pytest.raises(UserError, match=r"special token '\[EOS\]' is not id 3"):
        T.load_tokenizer(wrong)


# ----------------------------------------------------------------------------------------------------------------
# Packing

def test_pack_never_splits_short_samples():
    samples = [[10 + i] * n for i, n in enumerate([3, 4, 5, 2, 10, 1])]
    tokens, lengths = T.pack(samples, 10)
    assert lengths.tolist() == [7, 7, 10, 1]
    assert tokens.dtype == np.uint16 and tokens.shape == (4, 10)
    assert tokens[0].tolist() == [10] * 3 + [11] * 4 + [T.PAD_ID] * 3
    assert tokens[3].tolist() == [15] + [T.PAD_ID] * 9
    mask = T.valid_mask(torch.from_numpy(lengths), 10)
    assert mask.sum().item() == 25 and not mask[0, 7:].any() and mask[0, :7].all()


def test_pack_splits_only_long_samples():
    packer = T.Packer(10)
    rows = packer.add([1] * 3) + packer.add(list(range(100, 125))) + packer.add([2] * 4) + packer.finish()
    assert [n for _, n in rows] == [3, 10, 10, 9]
    assert rows[1][0].tolist() == list(range(100, 110))  # the long sample starts a fresh row
    assert rows[3][0][:9].tolist() == list(range(120, 125)) + [2] * 4  # its tail stays open for the next sample
    assert packer.n_split == 1


def test_pack_every_token_once_in_order():
    rng = random.Random(0)
    T_len = 16
    samples, next_id = [], 0
    for _ in range(500):
        n = rng.choice([rng.randint(1, T_len), rng.randint(1, 3 * T_len)])
        samples.append(list(range(next_id, next_id + n)))
        next_id += n
    tokens, lengths = T.pack([[t % 60000 + 10 for t in s] for s in samples], T_len)
    flat = np.concatenate([tokens[r, :lengths[r]] for r in range(len(lengths))]).astype(np.int64)
    assert flat.tolist() == [t % 60000 + 10 for s in samples for t in s]
    assert all((tokens[r, lengths[r]:] == T.PAD_ID).all() for r in range(len(lengths)))
    row_of = np.repeat(np.arange(len(lengths)), lengths)  # the row of each token
    start = 0
    for s in samples:
        if len(s) <= T_len:
            assert len(set(row_of[start:start + len(s)])) == 1  # a short sample sits in one row
        start += len(s)


def test_doc_ids():
    E, P = T.EOS_ID, T.PAD_ID
    tokens = torch.tensor([[20, 21, E, 22, E, 23, 24, E, P, P], [30, E, 31, 32, 33, 34, 35, 36, 37, 38]])
    assert T.doc_ids(tokens).tolist() == [[0, 0, 0, 1, 1, 2, 2, 2, 3, 3], [0, 0, 1, 1, 1, 1, 1, 1, 1, 1]]


# ----------------------------------------------------------------------------------------------------------------
# Shards

def test_shards_hold_every_token_and_consistent_index(shard_dir, tok, records):
    index = json.loads((shard_dir / "index.json").read_text())
    data = T.PackedShards(shard_dir, tokenizer_hash=T.tokenizer_hash(tok), max_seq_len=512)
    assert len(data) == index["rows"] == sum(f["rows"] for f in index["files"]) and len(index["files"]) > 2
    for f in index["files"]:
        assert (shard_dir / f["tokens"]).stat().st_size == f["bytes"] == f["rows"] * 512 * 2
    tokens, lengths = data.rows(np.arange(len(data)))
    assert tokens.dtype == torch.int64 and tokens.shape == (len(data), 512)
    ids = T.encode(tok, [T.render(r) for r in records])
    flat = torch.cat([tokens[r, :lengths[r]] for r in range(len(data))]).tolist()
    assert flat == [t for i in ids for t in i]
    assert all((tokens[r, lengths[r]:] == T.PAD_ID).all() for r in range(len(data)))
    assert index["samples"] == len(records) and index["tokens"] == len(flat) == int(lengths.sum())
    assert index["packing_efficiency"] == round(len(flat) / (len(data) * 512), 4)
    assert index["tokenizer"] == {"hash": T.tokenizer_hash(tok), "vocab_size": tok.get_vocab_size()}
    for key in ("op", "context", "mode"):
        table = index[f"by_{key}"]
        assert sum(d["samples"] for d in table.values()) == len(records)
        assert sum(d["tokens"] for d in table.values()) == len(flat)
    for op, d in index["by_op"].items():
        assert d["tokens"] == sum(len(i) for r, i in zip(records, ids) if str(r["op"]) == op)
    # random access agrees with the bulk read; documents end at EOS
    tok_row, n = data.row(len(data) - 1)
    assert torch.equal(tok_row, tokens[-1]) and n == lengths[-1]
    docs = T.doc_ids(tokens)
    assert int((tokens == T.EOS_ID).sum()) == len(records)
    assert (docs[:, 1:] >= docs[:, :-1]).all()


def test_cli_encode_jsonl_and_recipe_then_stats(tok_path, records, tmp_path, capsys):
    jsonl = tmp_path / "recs.jsonl"
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in records[:50]))
    out = tmp_path / "from_file"
    index = T.main(T.Config(mode="encode", tokenizer=str(tok_path), data=str(jsonl), out_dir=str(out),
                            max_seq_len=256, rows_per_shard=4, progress=False))
    assert index["samples"] == 50 and index["source"]["data"] == str(jsonl)
    assert "--mode encode" in index["command"] and "--data" in index["command"]
    assert len(T.PackedShards(out)) == index["rows"]
    n_files = len(index["files"])
    # re-encoding into the same folder with bigger shard files leaves no stale shard file behind
    index = T.main(T.Config(mode="encode", tokenizer=str(tok_path), data=str(jsonl), n=20, out_dir=str(out),
                            max_seq_len=256, rows_per_shard=1000, progress=False))
    assert index["samples"] == 20 and len(index["files"]) == 1 < n_files
    assert sorted(p.name for p in out.iterdir()) == ["index.json", "shard_00000.bin", "shard_00000.len"]
    out2 = tmp_path / "from_recipe"
    index = T.main(T.Config(mode="encode", tokenizer=str(tok_path), recipe="ops=2-5", n=60, seed=3, split="train",
                            out_dir=str(out2), max_seq_len=300, progress=False))
    assert index["samples"] == 60 and index["source"]["split"] == "train" and index["source"]["seed"] == 3
    stats = T.main(T.Config(mode="stats", shards=str(out2)))
    assert stats["rows"] == index["rows"]
    stats = T.main(T.Config(mode="stats", tokenizer=str(tok_path), recipe="ops=2-5", n=60, seed=3,
                            max_seq_len=300, progress=False))
    assert stats["tokens"] == index["tokens"] and stats["rows"] == index["rows"]
    assert "tokens/sample by op" in capsys.readouterr().out


def test_cli_train(train_records, tmp_path):
    out = tmp_path / "tok" / "tokenizer.json"
    meta = T.main(T.Config(mode="train", recipe="ops=2-4", n=200, vocab_size=400, out=str(out), progress=False))
    assert meta["vocab_size"] <= 400 and meta["hash"] == T.tokenizer_hash(out)
    assert json.loads((tmp_path / "tok" / "tokenizer.meta.json").read_text())["vocab_size_requested"] == 400
    T.load_tokenizer(out)


@pytest.mark.parametrize("damage, message", [
    ("truncate", r"shard_00001\.bin has \d+ bytes.*truncated.*re-run"),
    ("missing_file", r"shard_00002\.len is missing.*re-run"),
    ("dtype", r"dtype 'int32'.*needs uint16"),
    ("hash", r"encoded with tokenizer 0123456789abcdef.*re-run"),
    ("seq_len", r"rows of 512 tokens, but max_seq_len=1024"),
    ("no_index", r"index\.json not found.*did not finish.*re-run"),
    ("garbage_index", r"index\.json is not valid JSON.*re-run"),
    ("foreign_index", r"not a shard index of this project"),
    ("big_id", r"token id 65535 >= vocabulary size"),
])
def test_corrupt_shards_refused(shard_dir, tmp_path, damage, message):
    d = corrupt_copy(shard_dir, tmp_path)
    idx_path = d / "index.json"
    index = json.loads(idx_path.read_text())
    expect = {}
    if damage == "truncate":
        with open(d / "shard_00001.bin", "r+b") as f:
            f.truncate(1000)
    elif damage == "missing_file":
        (d / "shard_00002.len").unlink()
    elif damage == "dtype":
        index["dtype"] = "int32"
    elif damage == "hash":
        index["tokenizer"]["hash"] = "0123456789abcdef"
        expect["tokenizer_hash"] = "fedcba9876543210"
    elif damage == "seq_len":
        expect["max_seq_len"] = 1024
    elif damage == "no_index":
        idx_path.unlink()
    elif damage == "garbage_index":
        idx_path.write_text('{"format": "packed-uint16", "rows": 1')
    elif damage == "foreign_index":
        index = {"hello": 1}
    elif damage == "big_id":
        mm = np.memmap(d / "shard_00000.bin", dtype="<u2", mode="r+")
        mm[5] = 65535
        mm.flush()
        del mm
    if damage in ("dtype", "hash", "foreign_index"):
        idx_path.write_text(json.dumps(index))
    with pytest.raises(UserError, match=message) as err:
        T.PackedShards(d, **expect)
    assert str(d) in str(err.value)  # the message names the folder or file


# ----------------------------------------------------------------------------------------------------------------
# Command line errors

@pytest.mark.parametrize("flags, message", [
    (["--mode", "bogus"], "--mode must be train, encode or stats"),
    (["--mode", "encode", "--recipe", "ops=2-4", "--n", "5"], "--tokenizer PATH is required"),
    (["--mode", "train", "--recipe", "ops=2-4"], "--n is required"),
    (["--mode", "train", "--recipe", "ops=2-4", "--data", "x.jsonl", "--n", "5"], "exactly one of --recipe"),
    (["--mode", "train", "--data", "/nonexistent/recs.jsonl"], "data file .* not found"),
    (["--mode", "train", "--recipe", "no_such_recipe", "--n", "5"], "unknown recipe"),
    (["--mode", "train", "--recipe", "ops=2-4", "--n", "5", "--vocab_size", "100"], "--vocab_size must be in"),
    (["--mode", "stats", "--shards", "/nonexistent/shards"], "shard folder .* not found"),
    (["--mode", "encode", "--tokenizer", "/nonexistent/tokenizer.json", "--recipe", "ops=2", "--n", "5",
      "--out_dir", "x"], "tokenizer file .* not found"),
    (["--vocab", "5"], "unknown option --vocab"),
    (["--n", "many"], "--n: expected int"),
])
def test_cli_bad_arguments(flags, message, tmp_path):
    with pytest.raises(UserError, match=message):
        T.main(parse_config(T.Config, flags + ["--out", str(tmp_path / "t.json")]))


def test_cli_error_is_one_line(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, str(ROOT / "tokenizer.py"), "--mode", "encode", "--recipe", "ops=2",
                           "--n", "5"], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error: --tokenizer PATH is required") and "Traceback" not in proc.stderr
