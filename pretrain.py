"""
pretrain.py -- pre-training from scratch and mid-training, one CPU to many GPUs, with exact resume.

Both stages are the same objective (next-token cross-entropy on every non-padding token of packed rows of
whole samples, SPEC §7); mid-training just starts from a checkpoint, on another recipe, with its own warmup.
If the tokenizer or the packed data are missing they are built first (datagen.py -> tokenizer.py).

    python pretrain.py                                   # CPU, `tiny` preset: ~35 minutes on 2 cores
    python pretrain.py --preset=small                    # one GPU
    python pretrain.py --preset=paper                    # SPEC §7: 103M params, 10B tokens, 512K tokens/step
    torchrun --nproc_per_node=8 pretrain.py --preset=paper
    python pretrain.py --init_from=runs/pretrain-tiny --recipe=midtrain --warmup_frac=0.15 \\
        --out_dir=runs/midtrain-tiny                     # mid-training from a pre-trained checkpoint
    python pretrain.py --resume --out_dir=runs/pretrain-tiny   # continue an interrupted run exactly
    python pretrain.py --overwrite                       # start again in a folder that holds a run (deletes it)

Outputs in --out_dir: config.json, log.txt, metrics.jsonl, step_*.pt checkpoints (+ a readable .json beside
each), final.pt, loss.png. The loss is the token mean over the whole optimizer step (all micro-batches and all
processes), so one process with accumulation and N processes give the same update. A fresh run into a folder
that already holds a run is refused (--resume it, choose another --out_dir, or --overwrite); a non-finite loss
stops the run, naming the step, before it reaches the weights.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

import datagen
import model as model_lib
import tokenizer as tok_lib
from common import (Logger, UserError, atomic_write, autocast_for, check_finite, check_out_dir, cleanup_dist,
                    ensure_final, fmt_count, fmt_duration, load_checkpoint, load_json, make_optimizer, opt,
                    parse_bands, peak_flops, plot_lines, print_config, read_log, require_positive, resume_checkpoint,
                    rng_state, run_info, run_main, save_json, save_step_checkpoint, seed_everything, set_rng_state,
                    setup_dist, start_run_dir, step_line, truncate_logs, wrap_for_training)


@dataclass
class Config:
    # --- run
    preset: str = opt("tiny", "scale preset that sets the defaults below: micro / tiny / small / paper")
    out_dir: str = opt("runs/pretrain-tiny", "checkpoints, logs and plots go here")
    seed: int = opt(0, "model initialization and data order")
    device: str = opt("auto", "auto (cuda if available), cuda or cpu")
    dtype: str = opt("auto", "auto = bf16 autocast on CUDA, fp32 on CPU; or fp32 / bf16")
    compile: bool = opt(False, "torch.compile the model")
    # --- model
    model: str = opt("tiny", "model preset from model.py (micro / tiny / small / paper)")
    model_args: str = opt("", "model overrides, e.g. n_layer=6,n_embd=256")
    init_from: str = opt("", "mid-training from this checkpoint (file or run folder); new optimizer and schedule")
    resume: bool = opt(False, "continue the run in out_dir from its latest checkpoint (exact: same losses)")
    overwrite: bool = opt(False, "start afresh in an out_dir that holds another run, deleting its checkpoints and logs")
    # --- data
    recipe: str = opt("ops=2-3 contexts=zoo", "datagen recipe name or spec for the training data")
    modes: str = opt("", "forward/reverse share for the recipe, e.g. forward:0.8,reverse:0.2 ('' = the recipe's)")
    train_problems: int = opt(60_000, "training problems (split train, every draw of the recipe: a problem can repeat "
                                      "where an op has few) packed into shards; looped if needed")
    val_problems: int = opt(256, "held-out problems of the same recipe (split val) for the validation loss")
    data_seed: int = opt(0, "datagen stream seed")
    data_dir: str = opt("", "where shards and val data live ('' = out_dir/data); built if missing")
    tokenizer: str = opt("", "tokenizer.json ('' = the init checkpoint's, else data_dir's, trained if missing)")
    tokenizer_problems: int = opt(20_000, "problems to train a missing tokenizer (all contexts, op 2-20, both modes)")
    vocab_size: int = opt(1024, "tokenizer vocabulary = model embedding rows (paper: 2200)")
    seq_len: int = opt(512, "tokens per packed row (at most the model's max_seq_len)")
    doc_mask: bool = opt(True, "attend only within each packed sample, its positions starting at 0 (as at sampling)")
    loss_on: str = opt("all", "all: every token of the text (the paper) | solution: only what follows <solution>")
    curriculum: bool = opt(False, "easy first: problems packed in op order, the rows of the run read in that order")
    workers: int = opt(1, "processes for data generation")
    # --- optimization (SPEC §7 at paper scale)
    max_steps: int = opt(2200, "optimizer steps")
    batch_tokens: int = opt(4096, "tokens per optimizer step, all processes and micro-batches together")
    micro_rows: int = opt(8, "rows per forward/backward per process; accumulation = batch_tokens/(rows*seq_len*procs)")
    lr: float = opt(2e-3, "peak learning rate")
    min_lr: float = opt(2e-4, "cosine floor")
    warmup_frac: float = opt(0.05, "share of max_steps spent warming up linearly")
    lr_decay_steps: int = opt(0, "length of the cosine schedule (0 = max_steps)")
    weight_decay: float = opt(0.1, "AdamW weight decay on matrices and embeddings")
    beta1: float = opt(0.9, "AdamW beta1")
    beta2: float = opt(0.999, "AdamW beta2")
    grad_clip: float = opt(1.0, "max global gradient norm (0 = off)")
    # --- evaluation, logging, checkpoints
    eval_every: int = opt(500, "steps between validation losses (and at the end)")
    log_every: int = opt(50, "steps between log lines")
    ckpt_every: int = opt(500, "steps between checkpoints (and at the end)")
    keep_last: int = opt(2, "step checkpoints kept besides final.pt")
    bands: str = opt("2-2,3-3", "op bands for the validation report")


PRESETS = {
    # unit tests and CI smoke runs: seconds
    "micro": dict(out_dir="runs/pretrain-micro", model="micro", recipe="ops=2-4", train_problems=400,
                  val_problems=32, tokenizer_problems=400, vocab_size=600, seq_len=256, max_steps=8,
                  batch_tokens=2048, micro_rows=4, lr=3e-3, min_lr=3e-4, eval_every=4, log_every=1, ckpt_every=4,
                  bands="2-3,4-4"),
    # CPU, ~35 minutes on 2 cores as two DDP processes (reports/calibration-tiny): op 2-6 weighted to the top with a
    # 1 % tail of op 7-9, sums of two operands, no distractors, sequential variable letters, the loss on the solution
    "tiny": dict(out_dir="runs/pretrain-tiny", model="tiny", train_problems=200_000,
                 recipe="ops=2-3:.198,4-5:.297,6:.495,7-9:.01 contexts=zoo operands=2 distractors=0 letters=sequential",
                 vocab_size=1024, seq_len=512, doc_mask=True, loss_on="solution", dtype="bf16", max_steps=5000,
                 batch_tokens=4096, micro_rows=4, lr=2e-3, min_lr=2e-4, eval_every=1000, log_every=50,
                 ckpt_every=500, bands="2-3,4-5,6-6,7-9"),
    # one GPU, well under an hour: op 2-10 as in the paper, a smaller model and budget. No document mask at
    # small/paper scale, as the paper packed (and attention without a mask takes the flash kernel)
    "small": dict(out_dir="runs/pretrain-small", model="small", recipe="pretrain_uniform", vocab_size=2200,
                  doc_mask=False, train_problems=1_500_000, val_problems=1024, seq_len=1024, max_steps=3000,
                  batch_tokens=131_072, micro_rows=64, lr=1e-3, min_lr=1e-4, eval_every=250, log_every=20,
                  ckpt_every=500, bands="2-4,5-7,8-10", workers=8, compile=True),
    # SPEC §7: 10B tokens at 512K tokens/step, lr 1e-4 -> 3e-5, warmup 5%, wd 0.1, betas (0.9, 0.999), clip 1
    "paper": dict(out_dir="runs/pretrain-paper", model="paper", recipe="pretrain_uniform", vocab_size=2200,
                  doc_mask=False, train_problems=25_000_000, val_problems=2048, seq_len=2048, max_steps=19_073,
                  batch_tokens=524_288, micro_rows=16, lr=1e-4, min_lr=3e-5, eval_every=500, log_every=10,
                  ckpt_every=1000, bands="2-4,5-7,8-10", workers=16, compile=True),
}


# ----------------------------------------------------------------------------------------------------------------
# Data: tokenizer, packed training rows, held-out validation problems

# A missing tokenizer is trained on every context, op 2-20 and both modes, whatever the run's recipe, so that
# all models of a study share one vocabulary (a context unseen in pre-training must not change tokenization).
TOKENIZER_RECIPE = "ops=2-20 contexts=all modes=forward,reverse"

def data_paths(cfg: Config) -> tuple[Path, Path]:
    data_dir = Path(cfg.data_dir or Path(cfg.out_dir) / "data")
    return data_dir, data_dir / "tokenizer.json"


def recipe_parts(cfg: Config) -> list:
    parts = datagen.parse_recipe(cfg.recipe)
    if cfg.modes:
        datagen.override_modes(parts, cfg.modes)
    return parts


def ensure_tokenizer(path: Path, problems: int, vocab_size: int, seed: int = 0, workers: int = 1) -> None:
    """Train and save a tokenizer on TOKENIZER_RECIPE problems unless `path` already holds one."""
    if path.exists():
        return
    print(f"training a tokenizer (vocab <= {vocab_size}) on {problems:,} problems of {TOKENIZER_RECIPE!r} -> {path}")
    texts = (tok_lib.render(r) for r in datagen.generate(TOKENIZER_RECIPE, problems, seed, workers=workers))
    tok_lib.save_tokenizer(tok_lib.train_tokenizer(texts, vocab_size, length=problems), path)


def prepare_data(cfg: Config, tokenizer_path: Path, master: bool) -> tuple[Path, Path]:
    """Make sure the tokenizer, the training shards and the validation file exist (built by the master process).
    Returns (shard folder, val.jsonl)."""
    data_dir, _ = data_paths(cfg)
    spec = cfg.recipe + (f" modes={cfg.modes}" if cfg.modes else "")
    shard_dir = data_dir / "train"
    # validation problems are named by what they are, so a folder shared by runs never serves the wrong ones
    val_key = hashlib.blake2b(f"{spec}|{cfg.val_problems}|{cfg.data_seed}".encode(), digest_size=4).hexdigest()
    val_path = data_dir / f"val-{val_key}.jsonl"
    if master:
        if not tokenizer_path.exists():
            ensure_tokenizer(tokenizer_path, cfg.tokenizer_problems, cfg.vocab_size, cfg.data_seed, cfg.workers)
        index_path = shard_dir / "index.json"
        want = {"recipe": spec, "n": cfg.train_problems, "seed": cfg.data_seed, "split": "train", "draws": "all",
                "order": "op" if cfg.curriculum else None}
        if index_path.exists():  # shards built for another recipe must never be trained on silently
            index = load_json(index_path, "shard index")
            src = index.get("source", {}) if isinstance(index, dict) else {}
            if {k: src.get(k) for k in want} != want:
                raise UserError(f"{shard_dir} holds data for {src} but this run wants {want}; "
                                f"use another --data_dir or delete that folder")
        else:
            print(f"building training data: {cfg.train_problems:,} problems of {spec!r} (split train) -> {shard_dir}")
            # every draw is kept, so that the recipe's weights hold where an op has few distinct problems
            lines = datagen.generate_lines(recipe_parts(cfg), cfg.train_problems, cfg.data_seed, "train", cfg.workers,
                                           distinct=False)
            if cfg.curriculum:  # stable: within an op, the order drawn
                lines = sorted(lines, key=lambda item: item.op)
            tok_lib.write_shards(tok_lib.load_tokenizer(tokenizer_path), (json.loads(item.json) for item in lines),
                                 shard_dir, max_seq_len=cfg.seq_len, total=cfg.train_problems, progress=True,
                                 source=want)
        if not val_path.exists():
            lines = [item.json for item in datagen.generate_lines(recipe_parts(cfg), cfg.val_problems, cfg.data_seed,
                                                                 "val", cfg.workers)]
            val_path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(val_path, lambda f: f.write("".join(line + "\n" for line in lines)), binary=False)
    return shard_dir, val_path


class RowLoader:
    """Global batches of packed rows in a seeded random order, epoch after epoch.

    The order is a pure function of (seed, epoch), so the position (epoch, cursor) is all a checkpoint needs
    for an exact resume. Each process takes every world-th row of the global batch. With `ordered` > 0 the
    first epoch reads a random `ordered` of the rows in shard order first: a curriculum when the shards are
    sorted, with the mix of the rows read unchanged.
    """

    def __init__(self, shards, batch_rows: int, seed: int, rank: int = 0, world: int = 1, ordered: int = 0):
        self.shards, self.batch_rows, self.seed, self.rank, self.world = shards, batch_rows, seed, rank, world
        self.ordered = ordered
        self.epoch, self.cursor = 0, 0
        self._perm = None

    def _order(self) -> torch.Tensor:
        if self._perm is None:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
            self._perm = torch.randperm(len(self.shards), generator=g)
            if self.epoch == 0 and self.ordered:
                self._perm[:self.ordered] = self._perm[:self.ordered].sort().values
        return self._perm

    def next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        """This process's rows of the next global batch: tokens [rows, seq_len] int64, valid lengths [rows]."""
        idx = []
        while len(idx) < self.batch_rows:
            take = self._order()[self.cursor:self.cursor + self.batch_rows - len(idx)]
            idx += take.tolist()
            self.cursor += len(take)
            if self.cursor >= len(self.shards):
                self.epoch, self.cursor, self._perm = self.epoch + 1, 0, None
        tokens, lengths = self.shards.rows(idx[self.rank::self.world])
        return torch.as_tensor(tokens, dtype=torch.long), torch.as_tensor(lengths, dtype=torch.long)

    def state(self) -> dict:
        return {"epoch": self.epoch, "cursor": self.cursor, "ordered": self.ordered}

    def load_state(self, state: dict) -> None:  # the run's own `ordered`, even where --max_steps changed
        self.epoch, self.cursor, self._perm = state["epoch"], state["cursor"], None
        self.ordered = state.get("ordered", 0)


def inputs_from_rows(tokens: torch.Tensor, lengths: torch.Tensor, doc_mask: bool, loss_on: str = "all"):
    """Packed rows -> (inputs, targets, loss mask, doc ids or None). Targets are the next tokens; a position
    counts when its target is inside the row's valid length (the mask comes from lengths, not token ids) and,
    with loss_on="solution", when its input is a sample's <solution> tag or follows it in the same sample."""
    x, y = tokens[:, :-1], tokens[:, 1:]
    idx = torch.arange(x.size(1), device=tokens.device)
    mask = idx[None, :] + 1 < lengths[:, None]
    if loss_on == "solution":  # the last <solution> tag at or before each position, against the last sample start
        starts = torch.ones_like(x, dtype=torch.bool)
        starts[:, 1:] = x[:, :-1] == tok_lib.EOS_ID
        last_tag = torch.where(x == tok_lib.SOLUTION_ID, idx, -1).cummax(dim=1).values
        last_start = torch.where(starts, idx, 0).cummax(dim=1).values
        mask &= last_tag >= last_start
    doc_ids = tok_lib.doc_ids(x) if doc_mask else None
    return x, y, mask, doc_ids


@torch.no_grad()
def validation_loss(model, val_batches, bands: dict, device, autocast) -> dict:
    """Mean per-token loss of each held-out problem (the tokens the training loss counts), averaged by op band
    and overall."""
    model.eval()
    per_op: dict[int, list[float]] = {}
    for x, y, mask, ops in val_batches:
        x, y, mask = x.to(device), y.to(device), mask.to(device)
        with autocast:
            logp = model.token_logprobs(x, y)
        loss = (-(logp * mask).sum(1) / mask.sum(1)).tolist()
        for op, v in zip(ops, loss):
            per_op.setdefault(op, []).append(v)
    model.train()
    out = {"val_loss": sum(sum(v) for v in per_op.values()) / sum(len(v) for v in per_op.values())}
    for name, (lo, hi) in bands.items():
        vals = [v for op, vs in per_op.items() if lo <= op <= hi for v in vs]
        if vals:
            out[f"val_loss {name}"] = sum(vals) / len(vals)
    return out


def val_batches_from(path: Path, tok, rows: int, max_len: int, loss_on: str = "all") -> list:
    """Tokenize the validation problems once, in padded batches: (inputs, targets, mask, ops)."""
    records = datagen.read_jsonl(path)
    ids = [e.ids[:max_len + 1] for e in tok.encode_batch([tok_lib.render(r) for r in records])]
    batches = []
    for i in range(0, len(records), rows):
        chunk, ops = ids[i:i + rows], [r["op"] for r in records[i:i + rows]]
        T = max(len(s) for s in chunk)
        tokens = torch.full((len(chunk), T), tok_lib.PAD_ID, dtype=torch.long)
        for j, s in enumerate(chunk):
            tokens[j, :len(s)] = torch.tensor(s)
        x, y, mask, _ = inputs_from_rows(tokens, torch.tensor([len(s) for s in chunk]), False, loss_on)
        batches.append((x, y, mask, ops))
    return batches


# ----------------------------------------------------------------------------------------------------------------
# Schedule

def lr_at(step: int, cfg: Config) -> float:
    """Linear warmup to cfg.lr over warmup_frac of the schedule, then cosine down to cfg.min_lr."""
    total = cfg.lr_decay_steps or cfg.max_steps
    warmup = int(cfg.warmup_frac * total)
    if step < warmup:
        return cfg.lr * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return cfg.min_lr + 0.5 * (1 + math.cos(math.pi * progress)) * (cfg.lr - cfg.min_lr)


# ----------------------------------------------------------------------------------------------------------------
# Model setup

def parse_model_args(text: str) -> dict:
    out = {}
    for item in filter(None, (s.strip() for s in text.split(","))):
        key, eq, val = item.partition("=")
        if not eq:
            raise UserError(f"--model_args: bad item {item!r}; write key=value pairs like n_layer=6,n_embd=256")
        try:
            out[key] = float(val) if "." in val or "e" in val else int(val)
        except ValueError:
            raise UserError(f"--model_args: {key}={val!r} is not a number") from None
    return out


def build_model(cfg: Config, state: dict | None, n_tokens: int, resuming: bool = False):
    """A fresh model from the preset, or a checkpoint's model and weights (mid-training, or resuming), with an
    embedding row for each of the tokenizer's `n_tokens`."""
    if state is not None:
        if cfg.model_args and not resuming:
            raise UserError("--model_args cannot change a model loaded with --init_from")
        model = model_lib.model_from_state(state)
    else:
        mcfg = model_lib.config_from_preset(cfg.model, vocab_size=cfg.vocab_size, **parse_model_args(cfg.model_args))
        if cfg.seq_len > mcfg.max_seq_len:
            raise UserError(f"--seq_len={cfg.seq_len} is longer than the model's max_seq_len={mcfg.max_seq_len}")
        model = model_lib.Transformer(mcfg)
    if model.config.vocab_size < n_tokens:
        raise UserError(f"the tokenizer has {n_tokens} tokens but the model only {model.config.vocab_size} "
                        f"embedding rows; use a matching --vocab_size")
    return model


# Settings a resumed run may change; any other difference would make its losses differ from an uninterrupted run.
RESUME_MAY_CHANGE = ("max_steps", "lr_decay_steps", "resume", "overwrite", "device", "compile", "log_every",
                     "eval_every", "ckpt_every", "keep_last", "workers", "data_dir", "tokenizer", "out_dir")


# ----------------------------------------------------------------------------------------------------------------
# Training

def main(cfg: Config) -> dict:
    dist = setup_dist(cfg.device)
    try:
        return train(cfg, dist)
    finally:
        cleanup_dist()


def check_config(cfg: Config, world: int) -> tuple[int, int]:
    """Bad settings fail before any data is built; returns (rows per step, micro-steps per step)."""
    require_positive(cfg, "max_steps", "micro_rows", "batch_tokens", "seq_len", "eval_every", "log_every",
                     "ckpt_every", "keep_last", "lr")
    if not (0 <= cfg.min_lr <= cfg.lr and 0 <= cfg.warmup_frac <= 1):
        raise UserError(f"--min_lr must lie in [0, lr] and --warmup_frac in [0, 1], got {cfg.min_lr}, "
                        f"{cfg.warmup_frac}")
    if cfg.loss_on not in ("all", "solution"):
        raise UserError(f"--loss_on must be all or solution, got {cfg.loss_on!r}")
    parse_model_args(cfg.model_args)
    rows_per_step, rem = divmod(cfg.batch_tokens, cfg.seq_len)
    accum, rem2 = divmod(rows_per_step, cfg.micro_rows * world)
    if rem or rem2 or accum == 0:
        per_pass = cfg.seq_len * cfg.micro_rows * world
        raise UserError(f"--batch_tokens={cfg.batch_tokens} must be a multiple of seq_len * micro_rows * processes "
                        f"= {cfg.seq_len} * {cfg.micro_rows} * {world} = {per_pass}")
    return rows_per_step, accum


def backward(model, tokens, lengths, cfg: Config, accum: int, dist, autocast) -> tuple[torch.Tensor, torch.Tensor]:
    """The gradients of one optimizer step, in `accum` micro-batches of this process's rows: each token of the
    global batch weighs 1 / (its token count), however the batch is split. Returns (summed token loss, token
    count), both over the global batch."""
    xs, ys, masks, docs = inputs_from_rows(tokens, lengths, cfg.doc_mask, cfg.loss_on)
    n_valid = masks.sum().to(torch.float32)
    if dist.ddp:  # every process divides by the token count of the whole global batch
        torch.distributed.all_reduce(n_valid)
    loss_sum = torch.zeros((), device=tokens.device)
    for micro in range(accum):
        sl = slice(micro * cfg.micro_rows, (micro + 1) * cfg.micro_rows)
        x, y, mask, doc = xs[sl], ys[sl], masks[sl], None if docs is None else docs[sl]
        sync = contextlib.nullcontext() if not dist.ddp or micro == accum - 1 else model.no_sync()
        with sync, autocast:
            _, loss = model(x, y, mask, doc_ids=doc)
            part = loss * mask.sum()  # this micro-batch's summed token loss
            # DDP averages gradients over processes; * world turns that back into a sum over the global batch
            (part * dist.world / n_valid).backward()
        loss_sum += part.detach()
    if dist.ddp:
        torch.distributed.all_reduce(loss_sum)
    return loss_sum, n_valid


def train(cfg: Config, dist) -> dict:
    device, master = dist.device, dist.master
    out_dir = Path(cfg.out_dir)
    rows_per_step, accum = check_config(cfg, dist.world)
    check_out_dir(out_dir)
    if master:
        start_run_dir(out_dir, cfg.resume, cfg.overwrite)
    log = Logger(out_dir, enabled=master)

    # --- where we start: fresh, from an init checkpoint (mid-training), or resuming this run
    resume_state = resume_checkpoint(cfg, out_dir, RESUME_MAY_CHANGE) if cfg.resume else None
    init_state = load_checkpoint(cfg.init_from) if cfg.init_from and resume_state is None else None
    weights = resume_state or init_state  # where the model comes from (None: a fresh initialization)

    tokenizer_path = pick_tokenizer(cfg, weights)
    shard_dir, val_path = prepare_data(cfg, tokenizer_path, master)
    if dist.ddp:
        torch.distributed.barrier()
    tok = tok_lib.load_tokenizer(tokenizer_path)
    tok_hash = tok_lib.tokenizer_hash(tokenizer_path)
    shards = tok_lib.PackedShards(shard_dir, tokenizer_hash=tok_hash, max_seq_len=cfg.seq_len)

    seed_everything(cfg.seed)
    model = build_model(cfg, weights, tok.get_vocab_size(), resuming=resume_state is not None).to(device)
    optimizer = make_optimizer(model, cfg.weight_decay, cfg.lr, (cfg.beta1, cfg.beta2), device.type)
    loader = RowLoader(shards, rows_per_step, cfg.seed, dist.rank, dist.world,
                       ordered=cfg.max_steps * rows_per_step if cfg.curriculum else 0)
    start_step, tokens_seen, valid_seen = 0, 0, 0
    if resume_state is not None:
        optimizer.load_state_dict(resume_state["optimizer"])
        loader.load_state(resume_state["data"])
        set_rng_state(resume_state["rng"])
        start_step, tokens_seen, valid_seen = resume_state["step"], resume_state["tokens"], resume_state["valid_tokens"]
        if master:
            truncate_logs(out_dir, start_step)
    raw_model = model
    model = wrap_for_training(model, cfg.compile, dist)
    autocast, use_bf16 = autocast_for(cfg.dtype, device)
    val_batches = val_batches_from(val_path, tok, cfg.micro_rows, cfg.seq_len, cfg.loss_on)
    bands = parse_bands(cfg.bands)
    n_params = raw_model.n_params()
    flops_tok = raw_model.flops_per_token(cfg.seq_len)
    peak = peak_flops(device)
    stage = "mid-training" if cfg.init_from else "pre-training"

    # --- the numbers up front
    if master:
        out_dir.mkdir(parents=True, exist_ok=True)
        save_json(out_dir / "config.json", {"config": asdict(cfg), "model": asdict(raw_model.config),
                                            "run": run_info(device), "tokenizer": str(tokenizer_path)})
        print_config(cfg, f"{stage} config")
        log.print(f"{stage}: {n_params:,} params | {describe_batch(cfg, rows_per_step, accum, dist.world, shards)} | "
                  f"{'bf16' if use_bf16 else 'fp32'} on {device} | compile {cfg.compile} | seed {cfg.seed}"
                  + (f" | resuming at step {start_step}" if start_step else ""))

    history, val_hist = [], []
    t_last, t0, last_logged = time.time(), time.time(), start_step
    for step in range(start_step, cfg.max_steps):
        lr = lr_at(step, cfg)
        for group in optimizer.param_groups:
            group["lr"] = lr
        tokens, lengths = loader.next_batch()
        loss_sum, n_valid = backward(model, tokens.to(device), lengths.to(device), cfg, accum, dist, autocast)
        grad_norm = torch.nn.utils.clip_grad_norm_(raw_model.parameters(), cfg.grad_clip or float("inf"))
        train_loss = (loss_sum / n_valid).item()
        check_finite(step + 1, out_dir, loss=train_loss, grad_norm=float(grad_norm))
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        tokens_seen += cfg.batch_tokens
        valid_seen += int(n_valid.item())
        history.append((step + 1, train_loss))

        if master and ((step + 1) % cfg.log_every == 0 or step == start_step or step + 1 == cfg.max_steps):
            now = time.time()
            dt = (now - t_last) / (step + 1 - last_logged)
            t_last, last_logged = now, step + 1
            tok_s = cfg.batch_tokens / dt
            mfu = flops_tok * tok_s / peak if peak else None
            log.print(step_line(step + 1, cfg.max_steps, loss=train_loss, lr=lr, ms=dt * 1000, tok_s=tok_s, mfu=mfu,
                                grad=float(grad_norm), eta=dt * (cfg.max_steps - step - 1)))
            log.metrics({"step": step + 1, "loss": train_loss, "lr": lr, "grad_norm": float(grad_norm),
                         "tokens": tokens_seen, "ms": dt * 1000, "tok_s": tok_s, "mfu": mfu})
        last = step + 1 == cfg.max_steps
        if (step + 1) % cfg.eval_every == 0 or last:
            t_eval = time.time()
            val = validation_loss(raw_model, val_batches, bands, device, autocast)
            val_hist.append((step + 1, val["val_loss"]))
            if master:
                log.print(f"eval step {step + 1} | " + " | ".join(f"{k} {v:.4f}" for k, v in val.items()))
                log.metrics({"step": step + 1, **val})
            t_last += time.time() - t_eval  # the clock stops during evaluation
        if master and ((step + 1) % cfg.ckpt_every == 0 or last):
            state = {"model": raw_model.state_dict(), "optimizer": optimizer.state_dict(), "step": step + 1,
                     "rng": rng_state(), "data": loader.state(), "config": asdict(cfg),
                     "model_config": asdict(raw_model.config), "tokens": tokens_seen, "valid_tokens": valid_seen,
                     "flops": 6 * n_params * tokens_seen, "tokenizer": str(tokenizer_path.resolve()),
                     "tokenizer_hash": tok_hash, "recipe": cfg.recipe + (f" modes={cfg.modes}" if cfg.modes else ""),
                     "stage": stage}
            meta = {k: v for k, v in state.items() if k not in ("model", "optimizer", "rng")}
            meta.update(val_loss=val_hist[-1][1] if val_hist else None, train_loss=train_loss)
            save_step_checkpoint(out_dir, step + 1, state, meta, cfg.keep_last, last)

    if master:
        ensure_final(out_dir, resume_state, start_step, cfg.max_steps)
    result = {"step": cfg.max_steps, "train_loss": history[-1][1] if history else None,
              "val_loss": val_hist[-1][1] if val_hist else None, "tokens": tokens_seen,
              "flops": 6 * n_params * tokens_seen, "seconds": time.time() - t0, "losses": [v for _, v in history],
              "out_dir": str(out_dir)}
    if master and history:
        plot_loss(out_dir, stage)
        log.print(f"done: {cfg.max_steps} steps, {fmt_count(tokens_seen)} tokens in {fmt_duration(result['seconds'])} "
                  f"| final train loss {result['train_loss']:.4f} | val loss {result['val_loss']:.4f} | {out_dir}")
    return result


def pick_tokenizer(cfg: Config, weights: dict | None) -> Path:
    """--tokenizer, else the one the starting weights were trained with, else the data's default; the weights'
    own must be the same by content (the ids they were trained on)."""
    path = Path(cfg.tokenizer) if cfg.tokenizer else \
        Path(weights["tokenizer"]) if weights is not None and weights.get("tokenizer") else data_paths(cfg)[1]
    if cfg.tokenizer and not path.exists():
        raise UserError(f"--tokenizer {cfg.tokenizer!r} not found")
    if weights is not None:
        tok_lib.pinned_tokenizer(weights, path)
    return path


def describe_batch(cfg: Config, rows_per_step: int, accum: int, world: int, shards) -> str:
    epochs = cfg.max_steps * rows_per_step / len(shards)
    return (f"{cfg.batch_tokens:,} tokens/step = {rows_per_step} rows x {cfg.seq_len} ({cfg.micro_rows} rows x "
            f"{accum} micro-steps x {world} process(es)) | {cfg.max_steps} steps = "
            f"{fmt_count(cfg.max_steps * cfg.batch_tokens)} tokens ({epochs:.2f} epochs of {len(shards):,} rows, "
            f"{shards.index['samples']:,} problems, packing {shards.index['packing_efficiency']:.0%})")


def plot_loss(out_dir: Path, stage: str) -> None:
    rows = read_log(out_dir / "metrics.jsonl")  # the whole run, also when it was resumed
    plot_lines(out_dir / "loss.png", {"train loss": [(r["step"], r["loss"]) for r in rows if "loss" in r],
                                      "val loss": [(r["step"], r["val_loss"]) for r in rows if "val_loss" in r]},
               xlabel="step", ylabel="loss (nats/token)", title=f"{stage}: {out_dir.name}", logy=True)


if __name__ == "__main__":
    run_main(main, Config, presets=PRESETS)
