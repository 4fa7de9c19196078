"""
tokenizer.py -- the text format, the byte-level BPE tokenizer, and packed token shards for pre-training.

Three jobs, top to bottom:

1. Text (SPEC §3). One problem record becomes one training string

       <question> {problem} {question} </question> <solution> {solution} </solution> <answer> {answer} </answer>[EOS]

   The prompt (for sampling and RL) is everything up to and including `<solution>`; the completion is the rest,
   starting with a space. Because `<solution>` is a special token, encode(prompt) + encode(completion) is exactly
   encode(prompt + completion): there is no token straddling the cut.

2. Tokenizer. A byte-level BPE trained with Hugging Face `tokenizers` on generated problems, ten special tokens
   at fixed ids 0..9, vocabulary at most `--vocab_size` (2200 in the paper; the model's embedding has that many
   rows even when the corpus runs out of merges earlier -- our problems use few distinct words, so the trained
   vocabulary is usually well below 2200). The pre-tokenizer is a regex split that keeps each word whole with its
   leading space (as GPT-2 does) and cuts digit runs into chunks of at most three digits, followed by byte-level
   mapping with no extra prefix space (see PRETOKENIZE_REGEX for the pattern and why). No normalizer, nothing
   added, no clean-up: decode(encode(s)) == s exactly. Saved as a standard `tokenizer.json` that
   `transformers.PreTrainedTokenizerFast(tokenizer_file=...)` loads to the same ids.

3. Packed shards. Encoded samples are packed greedily, in stream order, into rows of exactly `max_seq_len`
   tokens (a sample is split only if it is longer than a row) and written as raw uint16 files that training
   memory-maps. See "Packed shards" below for the format; `PackedShards` reads and checks them.

Examples:
    python tokenizer.py --mode train --recipe pretrain_uniform --n 20000 --vocab_size 2200 --out runs/tok/tokenizer.json
    python tokenizer.py --mode encode --tokenizer runs/tok/tokenizer.json --recipe pretrain_uniform --n 1000000 \\
        --seed 1 --split train --max_seq_len 2048 --workers 2 --out_dir data/pt_uniform
    python tokenizer.py --mode encode --tokenizer runs/tok/tokenizer.json --data data/pt.jsonl --out_dir data/pt
    python tokenizer.py --mode stats --shards data/pt_uniform          # describe existing shards
    python tokenizer.py --mode stats --tokenizer runs/tok/tokenizer.json --recipe eval_2_20 --n 2000

    from tokenizer import load_tokenizer, tokenizer_hash, render_prompt, encode, PackedShards, doc_ids
    tok = load_tokenizer("runs/tok/tokenizer.json")
    prompts = encode(tok, [render_prompt(r) for r in records])
    data = PackedShards("data/pt_uniform", tokenizer_hash=tokenizer_hash(tok), max_seq_len=2048)
    tokens, lengths = data.rows([0, 5, 9])          # int64 [3, 2048], int64 [3]
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

import datagen
from common import UserError, atomic_write, config_dict, opt, print_config, run_main, save_json, sweep_temporaries

# ----------------------------------------------------------------------------------------------------------------
# Text format

# In id order: the id of a special token is its index here. These ids are fixed by SPEC §3.
SPECIAL_TOKENS = ["[UNK]", "[PAD]", "[BOS]", "[EOS]",
                  "<question>", "</question>", "<solution>", "</solution>", "<answer>", "</answer>"]
UNK_ID, PAD_ID, BOS_ID, EOS_ID = 0, 1, 2, 3
QUESTION_ID, QUESTION_END_ID, SOLUTION_ID, SOLUTION_END_ID, ANSWER_ID, ANSWER_END_ID = 4, 5, 6, 7, 8, 9
EOS = SPECIAL_TOKENS[EOS_ID]

_SPECIAL_SPLIT = re.compile("|".join(re.escape(s) for s in SPECIAL_TOKENS))


def render_prompt(record: dict) -> str:
    """The prompt: `<question> {problem} {question} </question> <solution>` (no trailing space)."""
    return f"<question> {record['problem']} {record['question']} </question> <solution>"


def render_completion(record: dict) -> str:
    """The gold completion: ` {solution} </solution> <answer> {answer} </answer>[EOS]` (leading space)."""
    return f" {record['solution']} </solution> <answer> {record['answer']} </answer>{EOS}"


def render(record: dict) -> str:
    """The training string of one record: render_prompt(record) + render_completion(record)."""
    return render_prompt(record) + render_completion(record)


# ----------------------------------------------------------------------------------------------------------------
# Tokenizer: byte-level BPE with a word- and number-aware pre-tokenizer

# The pre-tokenizer cuts text into pieces; BPE merges never cross a piece boundary. Alternatives, first match wins:
#   '(?:[sdmt]|ll|ve|re)   English contractions ("don't" -> "don", "'t"), as in GPT-2
#   | ?\p{L}+              a word with its leading space: " Oakbridge", " equals", " x"
#   | ?\p{N}{1,3}          a number chunk of at most three digits, with its leading space: " 1000" -> " 100", "0"
#   | ?[^\s\p{L}\p{N}]+    a run of punctuation / operators with its leading space: " =", ".", " (", ";"
#   |\s+(?!\S)|\s+         whitespace (a lone space before a word stays with the word)
# Why: whole words make the common names of a context single tokens; numbers never merge with letters or with
# each other beyond three digits, so a value <= 999 is one token once the corpus has it (" 12" after a space, "12"
# after "("), larger values are 3-digit chunks from the left, and variable letters stay apart from operators.
# The regex is written once, as a raw string. The authors' release double-escaped it ("\\\\p{L}", "\\\\s"): every
# class then asked for a literal backslash, the negated class [^\\s\\p{L}\\p{N}]+ swallowed whole phrases
# (" The number of adult bear in South Zoo equal" came out as one piece), and merges ran across words and numbers.
# tests/test_tokenizer.py pins the real behaviour (words whole, numbers in chunks, no vocabulary token spanning
# two pieces) and shows the double-escaped pattern failing it.
PRETOKENIZE_REGEX = r"'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}{1,3}| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"

MIN_VOCAB = len(SPECIAL_TOKENS) + 256  # the specials plus one token per byte: any text can be encoded
MAX_VOCAB = 2 ** 16  # ids are stored as uint16 in the shards


def _empty_tokenizer() -> Tokenizer:
    """The untrained pipeline: regex split -> byte-level mapping (no prefix space) -> BPE; byte-level decoder.
    No normalizer and no post-processor: the text is encoded exactly as given and nothing is added."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    return tok


def _without_specials(texts):
    """The pieces of each text between special tokens. At encode time special tokens are cut out before
    pre-tokenization, so training on these pieces is exact -- and spends no merges on '<question>' parts."""
    for text in texts:
        for piece in _SPECIAL_SPLIT.split(text):
            if piece:
                yield piece


def train_tokenizer(texts, vocab_size: int = 2200, show_progress: bool = False,
                    length: int | None = None) -> Tokenizer:
    """Train the byte-level BPE on an iterable of strings (e.g. `render(r)` for generated records).

    The result has the ten special tokens at ids 0..9 (each matched as one token anywhere in text, never built by
    merges), all 256 bytes, and at most `vocab_size` tokens in all -- fewer when the corpus runs out of pairs to
    merge. Deterministic for the same texts."""
    if not MIN_VOCAB <= vocab_size <= MAX_VOCAB:
        raise UserError(f"--vocab_size must be in {MIN_VOCAB}..{MAX_VOCAB} (10 special tokens + 256 bytes at least; "
                        f"ids are stored as uint16), got {vocab_size}")
    tok = _empty_tokenizer()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, show_progress=show_progress,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(_without_specials(texts), trainer, length=length)
    tok.add_special_tokens(SPECIAL_TOKENS)  # already there from the trainer; this states that they are special
    check_tokenizer(tok, "the trained tokenizer")
    if tok.get_vocab_size() > vocab_size:  # the authors' release had 2,201 tokens for 2,200 embedding rows
        raise AssertionError(f"trained vocabulary {tok.get_vocab_size()} exceeds the requested {vocab_size}")
    return tok


def check_tokenizer(tok: Tokenizer, where: str) -> None:
    """Special tokens at their ids, each encoding to exactly its one id; ids fit in uint16."""
    for i, s in enumerate(SPECIAL_TOKENS):
        if tok.token_to_id(s) != i or tok.encode(s).ids != [i]:
            raise UserError(f"{where}: special token {s!r} is not id {i} (got {tok.token_to_id(s)}); it was not "
                            f"made by tokenizer.py -- train one with `python tokenizer.py --mode train ...`")
    if tok.get_vocab_size() > MAX_VOCAB:
        raise UserError(f"{where}: {tok.get_vocab_size()} tokens do not fit the uint16 shards (max {MAX_VOCAB})")


def save_tokenizer(tok: Tokenizer, path: str | Path) -> None:
    """Write `tokenizer.json` atomically (a crash never leaves half a file)."""
    try:
        atomic_write(path, lambda f: f.write(tok.to_str(pretty=True)), binary=False)
    except OSError as e:
        raise UserError(f"cannot write tokenizer file {str(path)!r}: {e.strerror}") from None


def load_tokenizer(path: str | Path) -> Tokenizer:
    """Read a `tokenizer.json` written by this module; a missing, corrupt or foreign file is a UserError."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"tokenizer file {str(path)!r} not found; train one with `python tokenizer.py --mode train "
                        f"--recipe pretrain_uniform --n 20000 --out {path}`")
    try:
        tok = Tokenizer.from_file(str(path))
    except Exception as e:  # the Rust side raises a plain Exception for any parse error
        raise UserError(f"tokenizer file {str(path)!r} cannot be read ({str(e)[:200]}); it is corrupt or not a "
                        f"tokenizer.json -- train it again with `python tokenizer.py --mode train ...`") from None
    check_tokenizer(tok, f"tokenizer file {str(path)!r}")
    return tok


def tokenizer_hash(path_or_tok) -> str:
    """Short sha256 of the tokenizer's canonical JSON (sorted keys, no spaces): ties shards to their tokenizer.
    The same for a `tokenizers.Tokenizer` and for the file it was saved to."""
    if isinstance(path_or_tok, (str, Path)):
        try:
            text = Path(path_or_tok).read_text(encoding="utf-8")
        except FileNotFoundError:
            raise UserError(f"tokenizer file {str(path_or_tok)!r} not found") from None
    else:
        text = path_or_tok.to_str()
    try:
        canon = json.dumps(json.loads(text), sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    except json.JSONDecodeError as e:
        raise UserError(f"tokenizer file {str(path_or_tok)!r} is not valid JSON ({e})") from None
    return hashlib.sha256(canon.encode("utf-8")).hexdigest()[:16]


def pinned_tokenizer(state: dict, path: str | Path | None = None) -> tuple[Tokenizer, Path]:
    """The tokenizer a checkpoint was trained with: the file at `path` (default: the path the checkpoint records),
    checked against the content hash the checkpoint pins. A different tokenizer at that path is an error rather
    than a silent change of every token id. Returns (tokenizer, its path)."""
    where = state.get("_path", "the checkpoint")
    path = path or state.get("tokenizer")
    if not path:
        raise UserError(f"checkpoint {where} names no tokenizer; give the tokenizer.json it was trained with")
    tok = load_tokenizer(path)
    want = state.get("tokenizer_hash")
    if want and tokenizer_hash(path) != want:
        raise UserError(f"tokenizer file {str(path)!r} is not the one checkpoint {where} was trained with (hash "
                        f"{tokenizer_hash(path)}, the checkpoint pins {want}); restore that tokenizer.json")
    return tok, Path(path)


def encode(tok: Tokenizer, texts: list[str]) -> list[list[int]]:
    """Token ids of each text, encoded in parallel in Rust (no offsets kept). Nothing is added: no BOS, no EOS
    beyond the `[EOS]` written in the text."""
    return [e.ids for e in tok.encode_batch_fast(list(texts), add_special_tokens=False)]


def decode(tok: Tokenizer, ids) -> str:
    """The exact text of `ids`, special tokens included: decode(tok, encode(tok, [s])[0]) == s."""
    return tok.decode(list(ids), skip_special_tokens=False)


# ----------------------------------------------------------------------------------------------------------------
# Packing: whole samples into fixed-length rows

class Packer:
    """Greedy packing in stream order into rows of exactly `max_seq_len` tokens.

    A sample goes into the open row if it fits; otherwise the open row is closed (its tail is PAD_ID) and the sample
    starts a new one. A sample longer than a row is the only thing ever split: it starts on a fresh row, fills
    whole rows, and its remainder stays open for the samples after it. `add` and `finish` return the closed rows
    as (tokens uint16 [max_seq_len], n_valid); tokens at positions >= n_valid are padding."""

    def __init__(self, max_seq_len: int):
        self.T = max_seq_len
        self.row = np.full(max_seq_len, PAD_ID, dtype=np.uint16)
        self.used = 0
        self.n_split = 0  # samples that had to be split across rows

    def _close(self) -> tuple[np.ndarray, int]:
        out = (self.row, self.used)
        self.row = np.full(self.T, PAD_ID, dtype=np.uint16)
        self.used = 0
        return out

    def add(self, ids) -> list[tuple[np.ndarray, int]]:
        n, T = len(ids), self.T
        if n == 0:
            return []
        out = [self._close()] if self.used and self.used + n > T else []
        start = 0
        if n > T:
            self.n_split += 1
            ids = np.asarray(ids, dtype=np.uint16)
            while n - start > T:
                out.append((ids[start:start + T].copy(), T))
                start += T
        self.row[self.used:self.used + n - start] = ids[start:]
        self.used += n - start
        return out

    def finish(self) -> list[tuple[np.ndarray, int]]:
        return [self._close()] if self.used else []


def pack(samples, max_seq_len: int) -> tuple[np.ndarray, np.ndarray]:
    """All of `samples` (token id lists) packed: tokens uint16 [rows, max_seq_len], valid lengths int32 [rows]."""
    packer = Packer(max_seq_len)
    rows = [r for s in samples for r in packer.add(s)] + packer.finish()
    if not rows:
        return np.zeros((0, max_seq_len), np.uint16), np.zeros(0, np.int32)
    return np.stack([r for r, _ in rows]), np.array([n for _, n in rows], dtype=np.int32)


def valid_mask(lengths, max_seq_len: int) -> torch.Tensor:
    """bool [n, T]: True on the valid (non-padding) tokens of each row, from the lengths alone."""
    lengths = torch.as_tensor(lengths)
    return torch.arange(max_seq_len, device=lengths.device)[None, :] < lengths[:, None]


def doc_ids(tokens) -> torch.Tensor:
    """int64 [n, T]: which document of its row each token belongs to (0, 1, ...). A document ends after each
    EOS_ID, so the EOS belongs to the document it ends; padding after the last EOS forms one more "document"
    (masked out of the loss anyway). For document masking: `model(idx, doc_ids=doc_ids(idx))`."""
    tokens = torch.as_tensor(tokens)
    ends = (tokens == EOS_ID).long()
    return torch.cumsum(ends, dim=-1) - ends


# ----------------------------------------------------------------------------------------------------------------
# Packed shards: format, writer, reader

# A shard folder holds
#   shard_00000.bin, shard_00001.bin, ...   tokens, raw little-endian uint16, shape [rows, max_seq_len], C order
#   shard_00000.len, ...                    valid (non-padding) tokens per row, raw little-endian int32 [rows]
#   index.json                              written last: format, dtypes, max_seq_len, files with row counts and
#                                           byte sizes, source (recipe / file, seed, split), tokenizer hash and
#                                           vocab size, sample and token counts (total, by op, context, mode),
#                                           packing efficiency, the config and command that made it.
# Every file is written to a temporary name and renamed; index.json is removed before a re-encode starts and
# written only after all shards, so a folder whose encode did not finish has no index and is refused.
SHARD_FORMAT = "packed-uint16"
SHARD_VERSION = 1
INDEX = "index.json"


class ShardWriter:
    """Collects packed rows and writes one .bin/.len pair every `rows_per_shard` rows."""

    def __init__(self, out_dir: str | Path, max_seq_len: int, rows_per_shard: int):
        self.dir = Path(out_dir)
        self.T = max_seq_len
        self.tokens = np.full((rows_per_shard, max_seq_len), PAD_ID, dtype=np.uint16)
        self.lengths = np.zeros(rows_per_shard, dtype=np.int32)
        self.n = 0
        self.files: list[dict] = []
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            (self.dir / INDEX).unlink(missing_ok=True)  # from now on the folder is "not finished"
            sweep_temporaries(self.dir)  # half-written shards of a killed encode
        except OSError as e:
            raise UserError(f"cannot write shards to {str(self.dir)!r}: {e.strerror}") from None

    def add(self, row: np.ndarray, n_valid: int) -> None:
        self.tokens[self.n] = row
        self.lengths[self.n] = n_valid
        self.n += 1
        if self.n == len(self.tokens):
            self._flush()

    def _flush(self) -> None:
        if self.n == 0:
            return
        name = f"shard_{len(self.files):05d}"
        tokens = self.tokens[:self.n].astype("<u2", copy=False)  # explicit little-endian, whatever the machine
        lengths = self.lengths[:self.n].astype("<i4", copy=False)
        atomic_write(self.dir / f"{name}.bin", lambda f: f.write(tokens.tobytes(order="C")))
        atomic_write(self.dir / f"{name}.len", lambda f: f.write(lengths.tobytes()))
        self.files.append({"tokens": f"{name}.bin", "lengths": f"{name}.len", "rows": self.n,
                           "bytes": tokens.nbytes, "lengths_bytes": lengths.nbytes})
        self.tokens.fill(PAD_ID)
        self.n = 0

    def close(self, index: dict) -> dict:
        """Write the last shard, then index.json (with the file list); remove shard files of an older encode."""
        self._flush()
        index = {"format": SHARD_FORMAT, "version": SHARD_VERSION, "dtype": "uint16", "lengths_dtype": "int32",
                 "max_seq_len": self.T, "pad_id": PAD_ID, "eos_id": EOS_ID,
                 "rows": sum(f["rows"] for f in self.files), "files": self.files, **index}
        keep = {f[k] for f in self.files for k in ("tokens", "lengths")}
        for old in list(self.dir.glob("shard_*.bin")) + list(self.dir.glob("shard_*.len")):
            if old.name not in keep:
                old.unlink()
        save_json(self.dir / INDEX, index)
        return index


class PackedShards:
    """Memory-mapped packed rows of a shard folder, checked before use.

    `PackedShards(path, tokenizer_hash=None, max_seq_len=None)`: path is the folder (or its index.json). Refuses,
    with a UserError naming the file and the fix, a folder without index.json (encode unfinished), an index that
    is not valid JSON or not of this format, a dtype other than uint16, a file missing or of the wrong size, a
    tokenizer hash or max_seq_len other than the expected ones, and token ids >= the vocabulary size or bad
    lengths in a cheap sample of rows. `len()` is the number of rows; `rows(indices)` gives (tokens int64
    [n, T], valid lengths int64 [n])."""

    def __init__(self, path: str | Path, tokenizer_hash: str | None = None, max_seq_len: int | None = None):
        path = Path(path)
        self.dir = path.parent if path.name == INDEX else path
        idx_path = self.dir / INDEX
        self.index = index = self._read_index(idx_path)
        redo = self.fix_hint()
        self.max_seq_len = T = int(index["max_seq_len"])
        self.vocab_size = int(index["tokenizer"]["vocab_size"])
        self.tokenizer_hash = index["tokenizer"]["hash"]
        if tokenizer_hash is not None and tokenizer_hash != self.tokenizer_hash:
            raise UserError(f"{idx_path}: shards were encoded with tokenizer {self.tokenizer_hash}, but the tokenizer "
                            f"in use is {tokenizer_hash}; {redo} with this tokenizer")
        if max_seq_len is not None and max_seq_len != T:
            raise UserError(f"{idx_path}: shards have rows of {T} tokens, but max_seq_len={max_seq_len} was asked "
                            f"for; {redo} with --max_seq_len {max_seq_len}, or use {T}")
        self._tokens, self._lengths, starts = [], [], [0]
        for f in index["files"]:
            tok_path, len_path, rows = self.dir / f["tokens"], self.dir / f["lengths"], int(f["rows"])
            for p, want in ((tok_path, rows * T * 2), (len_path, rows * 4)):
                if not p.is_file():
                    raise UserError(f"shard file {p} is missing; {redo}")
                if p.stat().st_size != want:
                    raise UserError(f"shard file {p} has {p.stat().st_size} bytes, the index says {rows} rows "
                                    f"= {want} bytes: it is truncated or from another encode; {redo}")
            if rows:
                self._tokens.append(np.memmap(tok_path, dtype="<u2", mode="r", shape=(rows, T)))
                self._lengths.append(np.memmap(len_path, dtype="<i4", mode="r", shape=(rows,)))
                starts.append(starts[-1] + rows)
        self._starts = np.array(starts, dtype=np.int64)
        self.n_rows = int(self._starts[-1])
        if self.n_rows != index["rows"]:
            raise UserError(f"{idx_path}: files hold {self.n_rows} rows but the index says {index['rows']}; {redo}")
        self._spot_check()

    def fix_hint(self) -> str:
        cmd = self.index.get("command") if isinstance(getattr(self, "index", None), dict) else None
        return f"re-run `{cmd}`" if cmd else f"re-run `python tokenizer.py --mode encode ... --out_dir {self.dir}`"

    def _read_index(self, idx_path: Path) -> dict:
        redo = f"re-run `python tokenizer.py --mode encode ... --out_dir {self.dir}`"
        if not self.dir.is_dir():
            raise UserError(f"shard folder {str(self.dir)!r} not found; make it with `python tokenizer.py --mode "
                            f"encode --tokenizer ... --recipe ... --out_dir {self.dir}`")
        if not idx_path.is_file():
            raise UserError(f"{idx_path} not found: the shards in {self.dir} are missing or their encode did not "
                            f"finish; {redo}")
        try:
            index = json.loads(idx_path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise UserError(f"{idx_path} is not valid JSON ({e}); it is corrupt -- {redo}") from None
        need = ("format", "version", "dtype", "lengths_dtype", "max_seq_len", "rows", "files", "tokenizer")
        if not isinstance(index, dict) or any(k not in index for k in need):
            raise UserError(f"{idx_path} is not a shard index of this project (needs {', '.join(need)}); {redo}")
        if index["format"] != SHARD_FORMAT or index["version"] != SHARD_VERSION:
            raise UserError(f"{idx_path}: format {index['format']!r} v{index['version']} is not the supported "
                            f"{SHARD_FORMAT!r} v{SHARD_VERSION}; {redo}")
        if index["dtype"] != "uint16" or index["lengths_dtype"] != "int32":
            raise UserError(f"{idx_path}: dtype {index['dtype']!r} / lengths_dtype {index['lengths_dtype']!r}; this "
                            f"reader needs uint16 / int32 -- {redo}")
        try:
            ok = (int(index["max_seq_len"]) > 0 and isinstance(index["tokenizer"]["hash"], str)
                  and int(index["tokenizer"]["vocab_size"]) > 0
                  and all(int(f["rows"]) >= 0 and f["tokens"] and f["lengths"] for f in index["files"]))
        except (KeyError, TypeError, ValueError):
            ok = False
        if not ok:
            raise UserError(f"{idx_path}: malformed max_seq_len, tokenizer or files entries; {redo}")
        return index

    def _spot_check(self) -> None:
        """Every row length (4 bytes a row: cheap), and the token ids of the first, last and a few middle rows of
        every file (the ids of the rows a batch reads are checked again in `rows`)."""
        T, V = self.max_seq_len, self.vocab_size
        for f, toks, lens in zip(self.index["files"], self._tokens, self._lengths):
            pick = np.unique(np.linspace(0, len(toks) - 1, num=min(len(toks), 8)).astype(np.int64))
            rows, n = np.asarray(toks[pick]), np.asarray(lens)
            where = self.dir / f["tokens"]
            if rows.max() >= V:
                raise UserError(f"shard file {where} holds token id {rows.max()} >= vocabulary size {V}: it was not "
                                f"made with this tokenizer or is corrupt; {self.fix_hint()}")
            bad = np.flatnonzero((n < 1) | (n > T))
            if bad.size:
                raise UserError(f"shard file {self.dir / f['lengths']}: row {bad[0]} has length {n[bad[0]]}, outside "
                                f"1..{T}; it is corrupt -- {self.fix_hint()}")

    def __len__(self) -> int:
        return self.n_rows

    def rows(self, indices) -> tuple[torch.Tensor, torch.Tensor]:
        """Rows by global index: (tokens int64 [n, T], valid lengths int64 [n])."""
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        if idx.size and (idx.min() < 0 or idx.max() >= self.n_rows):
            raise IndexError(f"row index out of range 0..{self.n_rows - 1}")
        file_of = np.searchsorted(self._starts, idx, side="right") - 1
        tokens = np.empty((idx.size, self.max_seq_len), dtype=np.int64)
        lengths = np.empty(idx.size, dtype=np.int64)
        for fi in np.unique(file_of):
            sel = file_of == fi
            local = idx[sel] - self._starts[fi]
            tokens[sel] = self._tokens[fi][local]
            lengths[sel] = self._lengths[fi][local]
        if tokens.size and tokens.max() >= self.vocab_size:
            raise UserError(f"shard folder {self.dir} holds token id {tokens.max()} >= vocabulary size "
                            f"{self.vocab_size} (corrupt rows); {self.fix_hint()}")
        return torch.from_numpy(tokens), torch.from_numpy(lengths)

    def row(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        """One row: (tokens int64 [T], valid length int64 scalar)."""
        tokens, lengths = self.rows([i])
        return tokens[0], lengths[0]


# ----------------------------------------------------------------------------------------------------------------
# Streaming encode: records -> encode_batch -> packer -> shards

def _batches(records, size: int):
    batch = []
    for rec in records:
        batch.append(rec)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def encode_records(tok, records, max_seq_len: int = 2048, writer: ShardWriter | None = None,
                   batch_size: int = 1024, total: int | None = None, progress: bool = False) -> dict:
    """Render, encode (Rust, batched) and pack a stream of records, never holding more than one batch.
    Rows go to `writer` (or are only counted). Returns sample / token counts by op, context and mode, rows,
    packing efficiency, split samples and timings."""
    packer = Packer(max_seq_len)
    counts = {"op": Counter(), "context": Counter(), "mode": Counter()}
    tokens_by = {"op": Counter(), "context": Counter(), "mode": Counter()}
    ids_by_op = {}  # distinct problems per op (a training stream keeps repeats: see datagen.generate_lines)
    n_samples = n_tokens = n_rows = longest = 0
    t_encode, t0 = 0.0, time.perf_counter()
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=total, unit="sample", smoothing=0.1, dynamic_ncols=True)
    try:
        for batch in _batches(records, batch_size):
            t = time.perf_counter()
            ids_list = encode(tok, [render(r) for r in batch])
            t_encode += time.perf_counter() - t
            for rec, ids in zip(batch, ids_list):
                n = len(ids)
                for key in counts:
                    counts[key][rec[key]] += 1
                    tokens_by[key][rec[key]] += n
                ids_by_op.setdefault(rec["op"], set()).add(rec["id"])
                n_tokens += n
                longest = max(longest, n)
                for row, n_valid in packer.add(ids):
                    n_rows += 1
                    if writer is not None:
                        writer.add(row, n_valid)
            n_samples += len(batch)
            if bar is not None:
                bar.update(len(batch))
                bar.set_postfix_str(f"{n_tokens / (time.perf_counter() - t0) / 1e3:.0f}k tok/s", refresh=False)
        for row, n_valid in packer.finish():
            n_rows += 1
            if writer is not None:
                writer.add(row, n_valid)
    finally:
        if bar is not None:
            bar.close()
    seconds = time.perf_counter() - t0

    def table(key):  # {value: {"samples": s, "tokens": t, "tokens_per_sample": t / s}}, sorted by value
        return {str(v): {"samples": c, "tokens": tokens_by[key][v],
                         "tokens_per_sample": round(tokens_by[key][v] / c, 1),
                         **({"distinct": len(ids_by_op[v])} if key == "op" else {})}
                for v, c in sorted(counts[key].items())}

    return {"samples": n_samples, "distinct": sum(map(len, ids_by_op.values())), "tokens": n_tokens, "rows": n_rows,
            "padded_tokens": n_rows * max_seq_len,
            "packing_efficiency": round(n_tokens / max(1, n_rows * max_seq_len), 4),
            "split_samples": packer.n_split, "longest_sample": longest,
            "tokens_per_sample": round(n_tokens / max(1, n_samples), 1),
            "by_op": table("op"), "by_context": table("context"), "by_mode": table("mode"),
            "seconds": round(seconds, 2), "encode_seconds": round(t_encode, 2),
            "tokens_per_s": round(n_tokens / max(seconds, 1e-9)),
            "encode_tokens_per_s": round(n_tokens / max(t_encode, 1e-9))}


def write_shards(tok, records, out_dir: str | Path, max_seq_len: int = 2048, rows_per_shard: int = 16384,
                 batch_size: int = 1024, source: dict | None = None, total: int | None = None,
                 progress: bool = False, extra: dict | None = None) -> dict:
    """Encode a stream of records into a shard folder (see "Packed shards"); returns the index written."""
    if max_seq_len < 1:
        raise UserError(f"--max_seq_len must be >= 1, got {max_seq_len}")
    if rows_per_shard < 1 or batch_size < 1:
        raise UserError("--rows_per_shard and --batch_size must be >= 1")
    writer = ShardWriter(out_dir, max_seq_len, rows_per_shard)
    stats = encode_records(tok, records, max_seq_len, writer, batch_size, total, progress)
    if stats["samples"] == 0:
        raise UserError("no records to encode (empty data file or --n 0)")
    index = {"tokenizer": {"hash": tokenizer_hash(tok), "vocab_size": tok.get_vocab_size()},
             "source": source or {}, **stats, **(extra or {})}
    return writer.close(index)


# ----------------------------------------------------------------------------------------------------------------
# Command line

@dataclass
class Config:
    mode: str = opt("train", "train: fit a tokenizer | encode: write packed shards | stats: token and packing stats")
    recipe: str = opt("", "records from this datagen recipe (a name or a spec, see `python datagen.py --help`) ...")
    data: str = opt("", "... or from this JSONL file of records (give one of --recipe / --data)")
    n: int = opt(0, "records: required with --recipe; with --data, 0 = the whole file, else its first n")
    seed: int = opt(0, "datagen stream seed (--recipe only)")
    split: str = opt("train", "datagen split the records come from: train, rl, val, test or all (--recipe only)")
    workers: int = opt(1, "datagen worker processes (--recipe only; the records do not depend on it)")
    vocab_size: int = opt(2200, "train: the most tokens the vocabulary may have (= the model's embedding rows)")
    out: str = opt("runs/tok/tokenizer.json", "train: where tokenizer.json goes (plus tokenizer.meta.json beside it)")
    tokenizer: str = opt("", "encode / stats: the tokenizer.json to encode with")
    out_dir: str = opt("", "encode: folder for shard_*.bin / shard_*.len / index.json")
    max_seq_len: int = opt(2048, "encode / stats: tokens per packed row")
    rows_per_shard: int = opt(16384, "encode: rows per .bin file (16384 x 2048 tokens x 2 bytes = 64 MiB)")
    batch_size: int = opt(1024, "records per encode_batch call")
    shards: str = opt("", "stats: describe this shard folder (else encode --recipe / --data in memory and describe it)")
    progress: bool = opt(True, "show progress bars")


def _source(cfg: Config):
    """(records iterator, expected count or None, description for the index) for --recipe or --data."""
    if bool(cfg.recipe) == bool(cfg.data):
        raise UserError("give the records with exactly one of --recipe NAME_OR_SPEC and --data FILE.jsonl")
    if cfg.n < 0:
        raise UserError(f"--n must be >= 0, got {cfg.n}")
    if cfg.data:
        if not Path(cfg.data).is_file():
            raise UserError(f"data file {cfg.data!r} not found")
        return datagen.iter_jsonl(cfg.data, cfg.n), (cfg.n or None), {"data": str(cfg.data), "n": cfg.n or None}
    if cfg.n == 0:
        raise UserError("--n is required with --recipe (how many records to draw)")
    if cfg.workers < 1:
        raise UserError(f"--workers must be >= 1, got {cfg.workers}")
    parts = datagen.parse_recipe(cfg.recipe)
    lines = datagen.generate_lines(parts, cfg.n, cfg.seed, cfg.split, cfg.workers)
    records = (json.loads(item.json) for item in lines)
    spec = datagen.RECIPES[cfg.recipe][0] if cfg.recipe in datagen.RECIPES else cfg.recipe
    return records, cfg.n, {"recipe": cfg.recipe, "spec": spec, "n": cfg.n, "seed": cfg.seed, "split": cfg.split}


def _command(cfg: Config) -> str:
    """The command line that reproduces this run (quoted in error messages about its output)."""
    defaults = Config()
    flags = [f"--{k} {json.dumps(v) if isinstance(v, str) and (' ' in v or not v) else v}"
             for k, v in config_dict(cfg).items() if v != getattr(defaults, k) and k != "progress"]
    return "python tokenizer.py " + " ".join(flags)


def _print_stats(s: dict, max_seq_len: int) -> None:
    print(f"  samples {s['samples']:,} | tokens {s['tokens']:,} ({s['tokens_per_sample']} per sample, longest "
          f"{s['longest_sample']}) | rows {s['rows']:,} x {max_seq_len}")
    print(f"  packing efficiency {100 * s['packing_efficiency']:.1f}% | samples split across rows: "
          f"{s['split_samples']} | {s['tokens_per_s']:,} tok/s end to end, {s['encode_tokens_per_s']:,} tok/s "
          f"in encode_batch")
    for key in ("op", "context", "mode"):
        cells = "  ".join(f"{v}:{d['tokens_per_sample']:.0f}" for v, d in s[f"by_{key}"].items())
        print(f"  tokens/sample by {key:<8}{cells}")


def main(cfg: Config) -> dict:
    if cfg.mode not in ("train", "encode", "stats"):
        raise UserError(f"--mode must be train, encode or stats, got {cfg.mode!r}")
    if cfg.batch_size < 1:
        raise UserError(f"--batch_size must be >= 1, got {cfg.batch_size}")
    print_config(cfg, "tokenizer.py")

    if cfg.mode == "train":
        if not cfg.out:
            raise UserError("--out PATH is required (where to write tokenizer.json)")
        records, total, source = _source(cfg)
        t0 = time.perf_counter()
        tok = train_tokenizer((render(r) for r in records), cfg.vocab_size, show_progress=cfg.progress,
                              length=total)
        seconds = time.perf_counter() - t0
        save_tokenizer(tok, cfg.out)
        meta = {"vocab_size_requested": cfg.vocab_size, "vocab_size": tok.get_vocab_size(),
                "hash": tokenizer_hash(tok), "regex": PRETOKENIZE_REGEX, "special_tokens": SPECIAL_TOKENS,
                "source": source, "seconds": round(seconds, 2), "config": config_dict(cfg), "command": _command(cfg)}
        save_json(Path(cfg.out).with_name(Path(cfg.out).stem + ".meta.json"), meta)
        note = "" if tok.get_vocab_size() == cfg.vocab_size else \
            " (the corpus ran out of merges; the model keeps its --vocab_size embedding rows)"
        print(f"trained {tok.get_vocab_size()} tokens of {cfg.vocab_size} requested{note} in {seconds:.1f}s")
        print(f"wrote {cfg.out} (hash {meta['hash']})")
        return meta

    if cfg.mode == "stats" and cfg.shards:
        data = PackedShards(cfg.shards)
        idx = data.index
        print(f"{cfg.shards}: {len(data):,} rows x {data.max_seq_len} in {len(idx['files'])} file(s), tokenizer "
              f"{data.tokenizer_hash} ({data.vocab_size} tokens), source {idx.get('source')}")
        if "samples" in idx:
            _print_stats(idx, data.max_seq_len)
        return idx

    if not cfg.tokenizer:
        raise UserError(f"--tokenizer PATH is required for --mode {cfg.mode} (a tokenizer.json from --mode train)")
    tok = load_tokenizer(cfg.tokenizer)
    if cfg.mode == "encode":
        if not cfg.out_dir:
            raise UserError("--out_dir FOLDER is required for --mode encode")
        records, total, source = _source(cfg)
        print(f"tokenizer {cfg.tokenizer}: {tok.get_vocab_size()} tokens, hash {tokenizer_hash(tok)}; rows of "
              f"{cfg.max_seq_len} tokens, {cfg.rows_per_shard} rows per shard file -> {cfg.out_dir}")
        index = write_shards(tok, records, cfg.out_dir, cfg.max_seq_len, cfg.rows_per_shard, cfg.batch_size, source,
                             total, cfg.progress, extra={"config": config_dict(cfg), "command": _command(cfg)})
        print(f"wrote {len(index['files'])} shard file(s) and {INDEX} to {cfg.out_dir}")
        _print_stats(index, cfg.max_seq_len)
        return index

    records, total, source = _source(cfg)  # stats of a fresh stream, encoded in memory
    if cfg.max_seq_len < 1:
        raise UserError(f"--max_seq_len must be >= 1, got {cfg.max_seq_len}")
    stats = encode_records(tok, records, cfg.max_seq_len, None, cfg.batch_size, total, cfg.progress)
    print(f"{source}: encoded with {cfg.tokenizer} ({tok.get_vocab_size()} tokens)")
    _print_stats(stats, cfg.max_seq_len)
    return stats


if __name__ == "__main__":
    run_main(main, Config)
