"""
Small helpers shared by the top-level scripts, so that none of them copies another:

- config: one dataclass per script becomes its argparse command line (`--n_layer=4`, `--help`, `--config f.json`),
  each field declared with its help text: `n_layer: int = opt(4, "transformer blocks")`;
- files: atomic JSON / checkpoint writes, checkpoint loading with `weights_only=True`;
- run setup: seeding, RNG state capture for exact resume, device and torchrun/DDP setup;
- logging: one line per step in one format everywhere, plus `metrics.jsonl`.

Nothing here does work at import time.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import errno
import functools
import json
import math
import os
import platform
import random
import re
import signal
import subprocess
import sys
import tempfile
import types
import typing
from dataclasses import dataclass, fields
from pathlib import Path

import torch


class UserError(Exception):
    """A mistake the user can fix (bad flag, missing file, corrupt checkpoint). Scripts print it and exit 2."""


def run_main(main, config_cls, argv=None, doc: str | None = None, presets: dict | None = None):
    """`if __name__ == "__main__": run_main(main, Config)` -- parse flags, call main, turn UserError (and a failed
    write: full or read-only disk) into a one-line message and exit code 2. SIGTERM (e.g. `timeout`) exits through
    the normal cleanup, so temporary files are removed."""
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        cfg = parse_config(config_cls, argv, doc=doc or sys.modules[main.__module__].__doc__, presets=presets)
        return main(cfg)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except OSError as e:
        where = f" {str(e.filename)!r}" if e.filename else ""
        print(f"error: cannot read or write{where}: {e.strerror or e}; {os_error_hint(e)}", file=sys.stderr)
        sys.exit(2)


def os_error_hint(e: OSError) -> str:
    if e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        return "free disk space or choose another folder"
    if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return "choose a writable folder"
    return "check the path"


def _exit_on_sigterm(signum, frame):
    sys.exit(128 + signum)


# ----------------------------------------------------------------------------------------------------------------
# Config: dataclass -> command line. Each field is a flag `--name`; `opt` stores its --help text in the field.

def opt(default, help: str):
    """A config field with its --help text: `n_layer: int = opt(4, "transformer blocks")` (a list is copied)."""
    if isinstance(default, list):
        return dataclasses.field(default_factory=lambda: list(default), metadata={"help": help})
    return dataclasses.field(default=default, metadata={"help": help})


def _base_type(tp):
    """Optional[X] -> (X, True); X -> (X, False)."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return next(a for a in typing.get_args(tp) if a is not type(None)), True
    return tp, False


_BOOLS = {"1": True, "true": True, "yes": True, "on": True, "0": False, "false": False, "no": False, "off": False}


def _convert(name: str, tp, text: str):
    """Turn the text of a flag into the field's type, or raise UserError naming the flag."""
    tp, optional = _base_type(tp)
    if optional and text.lower() in ("none", "null", ""):
        return None
    origin = typing.get_origin(tp)
    try:
        if origin in (list, tuple):
            items = [_convert(name, typing.get_args(tp)[0], t.strip()) for t in text.split(",") if t.strip()]
            return items if origin is list else tuple(items)
        if tp is bool:
            return _BOOLS[text.lower()]
        if tp is int:
            return int(float(text)) if re.fullmatch(r"[0-9.]+e[0-9]+", text) else int(text)
        return tp(text)
    except (KeyError, ValueError, TypeError):
        raise UserError(f"--{name}: expected {getattr(tp, '__name__', tp)}, got {text!r}") from None


class _ConfigFile(argparse.Action):
    """--config FILE: the file's options (read by `type`), as if given at this point of the command line."""

    def __call__(self, parser, namespace, values, option_string=None):
        vars(namespace).update(values)


class _Append(argparse.Action):
    """A list flag: repeated, it appends (--ckpt a --ckpt b); its first use replaces a list from --config."""
    given = False

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, (getattr(namespace, self.dest) if self.given else []) + values)
        self.given = True


def config_parser(cls, doc: str | None = None, presets: dict | None = None) -> argparse.ArgumentParser:
    """An argparse parser with a flag per field of the dataclass `cls`. It sets only the flags given, and never
    prints or exits by itself, except for --help."""
    epilog = None
    if presets:
        epilog = "presets (--preset=NAME sets these defaults; other flags override them):\n" + "\n".join(
            f"  {name:<8} " + ", ".join(f"{k}={v}" for k, v in p.items()) for name, p in presets.items())
    parser = argparse.ArgumentParser(description=doc, epilog=epilog, usage=argparse.SUPPRESS,
                                     formatter_class=argparse.RawDescriptionHelpFormatter, add_help=False,
                                     allow_abbrev=False, exit_on_error=False, argument_default=argparse.SUPPRESS)
    group = parser.add_argument_group("options (--name=value or --name value; bool flags alone mean true)")
    group.add_argument("-h", "--help", action="help", help="show this help and exit")
    group.add_argument("--config", metavar="FILE", type=lambda path: load_config_file(path, cls), action=_ConfigFile,
                       help="JSON file of options; flags given after it override it")
    hints = typing.get_type_hints(cls)
    for f in fields(cls):
        tp = _base_type(hints[f.name])[0]
        if tp is bool:
            kind = dict(nargs="?", const=True)  # alone it means true
        else:
            kind = dict(action=_Append if typing.get_origin(tp) is list else "store")
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        group.add_argument(f"--{f.name}", metavar=tp.__name__, type=functools.partial(_convert, f.name, hints[f.name]),
                           help=f"{f.metadata.get('help', '')} [default: {default}]".replace("%", "%%"), **kind)
    return parser


def apply_preset(presets: dict, name: str) -> dict:
    """The field values a named preset sets (a preset is a dict of field -> value)."""
    if name not in presets:
        raise UserError(f"unknown preset {name!r}; choose one of: {', '.join(presets)}")
    return {**presets[name], "preset": name}


def preset_config(cls, presets: dict, name: str, **overrides):
    """`cls` with the preset's values, then `overrides` -- what `--preset=name --key=value ...` gives."""
    return cls(**{**apply_preset(presets, name), **overrides})


def parse_config(cls, argv: list[str] | None = None, doc: str | None = None, presets: dict | None = None):
    """Build a `cls` instance from command-line flags. With `presets`, `--preset=NAME` first sets that preset's
    values, then the other flags override them. Unknown flags and bad values raise UserError."""
    try:
        args, rest = config_parser(cls, doc, presets).parse_known_args(sys.argv[1:] if argv is None else argv)
    except argparse.ArgumentError as e:
        raise UserError(f"{e.argument_name} needs a value" if "expected one" in e.message else str(e)) from None
    if rest and not rest[0].startswith("--"):
        raise UserError(f"unexpected argument {rest[0]!r}; options look like --name=value (see --help)")
    if rest:
        key = rest[0][2:].partition("=")[0]
        close = sorted(f"--{f.name}" for f in fields(cls) if f.name.startswith(key[:3]))
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise UserError(f"unknown option --{key}{hint}; see --help")
    values = vars(args)
    if presets and "preset" in values:
        values = {**apply_preset(presets, values["preset"]), **values}
    try:
        return cls(**values)
    except (TypeError, ValueError) as e:
        raise UserError(str(e)) from None


def load_config_file(path: str, cls) -> dict:
    """Read a JSON config file; every key must be a field of `cls`."""
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise UserError(f"config file {path!r} not found") from None
    except json.JSONDecodeError as e:
        raise UserError(f"config file {path!r} is not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise UserError(f"config file {path!r} must hold a JSON object of options")
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise UserError(f"config file {path!r} has unknown options: {', '.join(unknown)}")
    hints = typing.get_type_hints(cls)
    out = {}
    for k, v in data.items():
        out[k] = _convert(k, hints[k], ",".join(map(str, v)) if isinstance(v, list) else str(v))
    return out


def config_dict(cfg) -> dict:
    return dataclasses.asdict(cfg)


def parse_bands(text: str) -> dict[str, tuple[int, int]]:
    """Op bands: `ID=2-10,edge=11-14` -> {"ID": (2, 10), "edge": (11, 14)}; an unnamed item is named after its ops:
    `2-4,5` -> {"op 2-4": (2, 4), "op 5": (5, 5)}."""
    out = {}
    for item in filter(None, (t.strip() for t in text.split(","))):
        name, eq, ops = item.partition("=") if "=" in item else ("", "", item)
        lo, _, hi = ops.partition("-")
        try:
            a, b = int(lo), int(hi or lo)
            if eq and not name:
                raise ValueError
        except ValueError:
            raise UserError(f"--bands: bad band {item!r}; write lo-hi or name=lo-hi items, like 2-4,5-7 or "
                            f"ID=2-10,edge=11-14") from None
        out[name or (f"op {a}-{b}" if a != b else f"op {a}")] = (a, b)
    return out


def require_positive(cfg, *names: str) -> None:
    """Each named option must be a finite number > 0 (a step interval of 0 or a NaN learning rate is a mistake)."""
    for name in names:
        value = getattr(cfg, name)
        if not (math.isfinite(value) and value > 0):
            raise UserError(f"--{name} must be > 0, got {value}")


def check_out_dir(path: str | Path, flag: str = "--out_dir") -> None:
    """A run folder must be a folder (or not exist yet)."""
    if Path(path).exists() and not Path(path).is_dir():
        raise UserError(f"{flag}={str(path)!r} is a file; give a folder")


def print_config(cfg, title: str | None = None) -> None:
    d = config_dict(cfg)
    width = max(len(k) for k in d)
    print(f"--- {title or type(cfg).__name__} ---")
    for k, v in d.items():
        print(f"  {k:<{width}} = {v}")


# ----------------------------------------------------------------------------------------------------------------
# Files: atomic writes, checkpoints

def atomic_write(path: str | Path, write_fn, binary: bool = True) -> None:
    """Write via a temporary file in the same folder, fsync, then rename: a crash never leaves a half file. A failed
    write (full or read-only disk) removes the temporary and is a UserError naming the file."""
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb" if binary else "w") as f:
            write_fn(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; give the usual permissions
        os.replace(tmp, path)
    except BaseException as e:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(e, OSError):
            raise UserError(f"cannot write {str(path)!r}: {e.strerror or e}; {os_error_hint(e)}") from None
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def save_json(path: str | Path, obj) -> None:
    atomic_write(path, lambda f: f.write(json.dumps(obj, indent=2, ensure_ascii=False, default=str) + "\n"),
                 binary=False)


def load_json(path: str | Path, what: str = "file"):
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise UserError(f"{what} {str(path)!r} not found") from None
    except IsADirectoryError:
        raise UserError(f"{what} {str(path)!r} is a folder, not a file") from None
    except ValueError as e:  # not JSON, or not even text
        raise UserError(f"{what} {str(path)!r} is not valid JSON ({str(e)[:100]}); regenerate it") from None


def save_checkpoint(path: str | Path, state: dict, meta: dict | None = None) -> None:
    """torch.save `state` atomically, plus a human-readable `<path>.json` with `meta` beside it."""
    def write(f):
        try:
            torch.save(state, f)
        except RuntimeError as e:  # torch reports a failed write of the file (e.g. a full disk) as a RuntimeError
            if "unexpected pos" in str(e) or "write failed" in str(e):
                raise OSError(errno.ENOSPC, "torch.save could not write the whole file") from None
            raise

    atomic_write(path, write)
    if meta is not None:
        save_json(Path(str(path) + ".json"), meta)


def copy_checkpoint(src: str | Path, dst: str | Path) -> None:
    """Copy a checkpoint (and its readable .json) atomically, e.g. the last step checkpoint to final.pt."""
    import shutil
    for a, b in ((Path(src), Path(dst)), (Path(str(src) + ".json"), Path(str(dst) + ".json"))):
        if a.exists():
            with open(a, "rb") as f:
                atomic_write(b, lambda out: shutil.copyfileobj(f, out))


def save_step_checkpoint(out_dir: Path, step: int, state: dict, meta: dict, keep_last: int, final: bool) -> None:
    """Write step_<step>.pt (+ its .json), at the end of the run copy it to final.pt, then keep only the last
    `keep_last` (>= 1) step checkpoints. The checkpoint just written and final.pt are never deleted."""
    path = out_dir / f"step_{step:06d}.pt"
    save_checkpoint(path, state, meta)
    if final:
        copy_checkpoint(path, out_dir / "final.pt")
    prune_checkpoints(out_dir, keep_last, protect=path)


def ensure_final(out_dir: Path, resume_state: dict | None, start_step: int, max_steps: int) -> None:
    """A run resumed after its last step had been saved lacks only final.pt: copy the checkpoint it resumed from."""
    if resume_state is not None and start_step >= max_steps and not (out_dir / "final.pt").exists():
        copy_checkpoint(resume_state["_path"], out_dir / "final.pt")


def load_checkpoint(path: str | Path, map_location="cpu") -> dict:
    """Load a checkpoint with weights_only=True (no code runs from the file); clear errors if missing or corrupt."""
    path = Path(path)
    if path.is_dir():
        cand = latest_checkpoint(path)
        if cand is None:
            raise UserError(f"no checkpoint (*.pt) found in folder {str(path)!r}")
        path = cand
    if not path.exists():
        raise UserError(f"checkpoint {str(path)!r} not found")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # torch raises several types for truncated or foreign files
        raise UserError(f"checkpoint {str(path)!r} cannot be read ({type(e).__name__}: {str(e)[:200]}); "
                        f"it is corrupt or not a checkpoint of this project -- use an earlier one") from None
    if not isinstance(state, dict) or "model" not in state:
        raise UserError(f"checkpoint {str(path)!r} has no 'model' entry; it is not a checkpoint of this project")
    state["_path"] = str(path)
    return state


def checkpoint_step(path: Path) -> int:
    """The step of a checkpoint: from the name of step_<N>.pt, from the readable .json beside final.pt (or, if
    that is missing, from the checkpoint itself)."""
    if path.name != "final.pt":
        return int(re.sub(r"\D", "", path.stem) or 0)
    try:
        return int(json.loads(Path(str(path) + ".json").read_text())["step"])
    except (OSError, ValueError, KeyError, TypeError):
        return int(load_checkpoint(path).get("step", 0))


def latest_checkpoint(folder: str | Path) -> Path | None:
    """The checkpoint of a run folder with the highest step: `final.pt` or a `step_*.pt` (final.pt on a tie, as it
    is a copy of the last step). File times are not used: a copied or touched old checkpoint is not 'latest'."""
    folder = Path(folder)
    cands = [p for p in [folder / "final.pt", *folder.glob("step_*.pt")] if p.exists()]
    return max(cands, key=lambda p: (checkpoint_step(p), p.name == "final.pt")) if cands else None


def resume_changes(old: dict, cfg, may_change: tuple) -> str:
    """The settings of `cfg` that differ from the checkpointed config `old`, except those in `may_change`. A
    setting `old` lacks was added to the script after that run started, which ran as its default does."""
    new, default = dataclasses.asdict(cfg), dataclasses.asdict(type(cfg)())
    diff = [k for k in new if k not in may_change and old.get(k, default[k]) != new[k]]
    return ", ".join(f"{k} ({old.get(k, default[k])!r} -> {new[k]!r})" for k in diff)


def resume_checkpoint(cfg, out_dir: Path, may_change: tuple) -> dict:
    """--resume: the run's latest checkpoint, made with these settings (bar those in `may_change`)."""
    path = latest_checkpoint(out_dir)
    if path is None:
        raise UserError(f"--resume: no checkpoint in {out_dir}; run without --resume to start it")
    state = load_checkpoint(path)
    changed = resume_changes(state["config"], cfg, may_change)
    if changed:
        raise UserError(f"--resume: these settings differ from the run in {out_dir}: {changed}")
    return state


def prune_checkpoints(folder: str | Path, keep: int, protect: Path | None = None) -> None:
    """Delete all but the `keep` highest-step `step_*.pt` files (and their .json); `final.pt` and `protect` (the
    checkpoint just written) are never deleted."""
    if keep < 1:
        raise UserError(f"--keep_last must be >= 1 (the newest checkpoint is always kept), got {keep}")
    steps = sorted(Path(folder).glob("step_*.pt"), key=checkpoint_step)
    for p in steps[:-keep]:
        if protect is not None and p.resolve() == Path(protect).resolve():
            continue
        p.unlink(missing_ok=True)
        Path(str(p) + ".json").unlink(missing_ok=True)


# Files a training run writes into its folder; `--overwrite` removes them, a resume truncates the logs.
RUN_LOGS = ("metrics.jsonl", "evals.jsonl", "episodes.jsonl")


def start_run_dir(out_dir: Path, resume: bool, overwrite: bool) -> None:
    """Before a run writes into `out_dir`: sweep temporary files left by a killed run, and refuse to start a fresh
    run over the checkpoints of another one (its final.pt would be replaced or its new checkpoints pruned)."""
    if resume and overwrite:
        raise UserError("give --resume (continue the run) or --overwrite (replace it), not both")
    sweep_temporaries(out_dir)
    if resume or not out_dir.is_dir():
        return
    old = sorted(p.name for p in [out_dir / "final.pt", *out_dir.glob("step_*.pt")] if p.exists())
    if not old:
        return
    if not overwrite:
        raise UserError(f"{out_dir} already holds a run ({', '.join(old[:3])}{' ...' if len(old) > 3 else ''}); "
                        f"continue it with --resume, choose another --out_dir, or replace it with --overwrite")
    print(f"--overwrite: deleting the run in {out_dir} ({', '.join(old)})")
    for name in old:
        (out_dir / name).unlink()
        Path(str(out_dir / name) + ".json").unlink(missing_ok=True)
    for name in (*RUN_LOGS, "log.txt"):
        (out_dir / name).unlink(missing_ok=True)
    for p in out_dir.glob("pool_step*.jsonl"):
        p.unlink()


def sweep_temporaries(folder: Path) -> None:
    """Remove the `.name.XXXX.tmp` files of atomic writes that a killed process (kill -9) left behind."""
    if folder.is_dir():
        for p in folder.glob(".*.tmp"):
            p.unlink(missing_ok=True)


def read_log(path: str | Path) -> list[dict]:
    """The JSON lines of a log; a torn last line (the writer was killed mid-line) is dropped with a warning."""
    path = Path(path)
    if not path.exists():
        return []
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    rows = []
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            if i < len(lines):
                raise UserError(f"{path}:{i}: not valid JSON; the log is corrupt -- delete that line") from None
            print(f"warning: {path}:{i}: dropping a torn last line (the run was killed while writing it)")
    return rows


def truncate_logs(out_dir: Path, step: int) -> None:
    """A resumed run continues from `step`: drop log lines written after it (and a torn last line), so the logs and
    plots read as one uninterrupted run rather than repeating the steps redone."""
    for name in RUN_LOGS:
        path = out_dir / name
        if path.exists():
            keep = [r for r in read_log(path) if r.get("step", 0) <= step]
            atomic_write(path, lambda f: f.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in keep)),
                         binary=False)


def check_finite(step: int, out_dir: Path, **values: float) -> None:
    """Stop before a non-finite loss (or gradient norm) reaches the weights: this step is neither applied nor
    saved, so every checkpoint on disk stays finite."""
    bad = {k: v for k, v in values.items() if not math.isfinite(v)}
    if bad:
        last = latest_checkpoint(out_dir)
        kept = f"the last checkpoint is {last}" if last else "no checkpoint was saved"
        raise UserError(f"step {step}: the training {' and '.join(f'{k} is {v}' for k, v in bad.items())}; stopped "
                        f"before applying it ({kept}) -- check the data, or lower --lr and restart")


# ----------------------------------------------------------------------------------------------------------------
# Run setup: seeds, RNG state, device, DDP

def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


def rng_state() -> dict:
    """Every RNG a training step touches, in a form `torch.load(weights_only=True)` accepts."""
    state = {"python": random.getstate(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


@dataclass
class Dist:
    """Where this process runs: rank/world from torchrun (1 process otherwise) and its device."""
    rank: int
    world: int
    local_rank: int
    device: torch.device

    @property
    def master(self) -> bool:
        return self.rank == 0

    @property
    def ddp(self) -> bool:
        return self.world > 1


def setup_dist(device: str = "auto") -> Dist:
    """Pick the device and, under torchrun, join the process group (nccl on CUDA, gloo on CPU)."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if not re.fullmatch(r"cpu|cuda(:\d+)?", device):
        raise UserError(f"--device must be auto, cpu or cuda (or cuda:N), got {device!r}")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError("--device=cuda asked for, but no CUDA GPU is visible; use --device=cpu")
    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    if world > 1:
        import torch.distributed as dist
        backend = "nccl" if device.startswith("cuda") else "gloo"
        if not dist.is_initialized():
            dist.init_process_group(backend=backend)
        if device.startswith("cuda"):
            device = f"cuda:{local_rank}"
            torch.cuda.set_device(device)
    return Dist(rank, world, local_rank, torch.device(device))


def autocast_for(dtype: str, device: torch.device):
    """(autocast context, uses bf16?) for a --dtype flag: auto = bf16 autocast on CUDA, fp32 elsewhere."""
    if dtype not in ("auto", "bf16", "fp32"):
        raise UserError(f"--dtype must be auto, bf16 or fp32, got {dtype!r}")
    use_bf16 = dtype == "bf16" or (dtype == "auto" and device.type == "cuda")
    return (torch.autocast(device.type, dtype=torch.bfloat16) if use_bf16 else contextlib.nullcontext()), use_bf16


def make_optimizer(model: torch.nn.Module, weight_decay: float, lr: float, betas: tuple[float, float],
                   device_type: str) -> torch.optim.AdamW:
    """AdamW; weight decay on matrices and the embedding (>= 2-D), none on norm weights and biases."""
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    print(f"optimizer: weight decay on {len(decay)} tensors ({sum(p.numel() for p in decay):,} params), "
          f"none on {len(no_decay)} tensors ({sum(p.numel() for p in no_decay):,} params)")
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr, betas=betas, fused=device_type == "cuda")


def wrap_for_training(module: torch.nn.Module, compile: bool, dist: Dist) -> torch.nn.Module:
    """torch.compile it if asked, then wrap it in DDP under torchrun (gradients sync inside backward)."""
    if compile:
        module = torch.compile(module)
    if dist.ddp:
        from torch.nn.parallel import DistributedDataParallel as DDP
        module = DDP(module, device_ids=[dist.local_rank] if dist.device.type == "cuda" else None)
    return module


def unwrap(module: torch.nn.Module) -> torch.nn.Module:
    """The model inside the torch.compile (`_orig_mod`) and DDP (`module`) wrappers of `wrap_for_training`."""
    while isinstance(getattr(module, "_orig_mod", None) or getattr(module, "module", None), torch.nn.Module):
        module = getattr(module, "_orig_mod", None) or module.module
    return module


def strip_prefixes(state_dict: dict) -> dict:
    """Parameter names without the `_orig_mod.` (torch.compile) and `module.` (DDP) prefixes of those wrappers."""
    out = {}
    for k, v in state_dict.items():
        while k.startswith(("_orig_mod.", "module.")):
            k = k.split(".", 1)[1]
        out[k] = v
    return out


def cleanup_dist() -> None:
    import torch.distributed as dist
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def run_info(device: torch.device) -> dict:
    """Code version and hardware, logged with every run."""
    try:
        here = Path(__file__).parent
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=here,
                             timeout=5).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", "*.py", "contexts.json"],
                               capture_output=True, text=True, cwd=here, timeout=5).stdout.strip()  # code, data
        rev += "+uncommitted changes" if rev and dirty else ""
    except (OSError, subprocess.TimeoutExpired):
        rev = ""
    info = {"time": datetime.datetime.now().isoformat(timespec="seconds"), "git": rev or "unknown",
            "python": platform.python_version(), "torch": torch.__version__, "device": str(device),
            "cpu_threads": torch.get_num_threads()}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


# Dense bf16 tensor-core peak, for MFU. Unknown GPUs report no MFU rather than a guessed one.
PEAK_FLOPS = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L4": 121e12, "A10": 125e12, "4090": 165e12}


def peak_flops(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in PEAK_FLOPS.items() if k in name), None)


# ----------------------------------------------------------------------------------------------------------------
# Logging

def fmt_duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{(seconds % 3600) // 60:02d}m"
    if seconds >= 60:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds}s"


def fmt_count(x: float) -> str:
    for unit, div in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(x) >= div:
            return f"{x / div:.1f}{unit}"
    return f"{x:.0f}"


class Logger:
    """Appends human lines to `log.txt` and JSON lines to `metrics.jsonl` in `out_dir` (master process only)."""

    def __init__(self, out_dir: str | Path | None, enabled: bool = True):
        self.enabled = enabled
        self.dir = Path(out_dir) if out_dir else None
        if self.enabled and self.dir:
            self.dir.mkdir(parents=True, exist_ok=True)

    def print(self, line: str) -> None:
        if not self.enabled:
            return
        print(line, flush=True)
        if self.dir:
            with open(self.dir / "log.txt", "a") as f:
                f.write(line + "\n")

    def metrics(self, record: dict) -> None:
        if self.enabled and self.dir:
            with open(self.dir / "metrics.jsonl", "a") as f:
                f.write(json.dumps(record) + "\n")


def step_line(step: int, total: int, **parts) -> str:
    """`step 120/2000 | loss 1.234 | lr 3.0e-04 | 45 ms | 91k tok/s | mfu 41% | eta 12m` -- the one step format."""
    out = [f"step {step}/{total}"]
    for k, v in parts.items():
        if v is None:
            continue
        if k == "ms":
            out.append(f"{v:.0f} ms")
        elif k == "tok_s":
            out.append(f"{fmt_count(v)} tok/s")
        elif k == "mfu":
            out.append(f"mfu {100 * v:.1f}%")
        elif k == "eta":
            out.append(f"eta {fmt_duration(v)}")
        elif k == "lr":
            out.append(f"lr {v:.1e}")
        elif isinstance(v, float):
            out.append(f"{k} {v:.4g}")
        else:
            out.append(f"{k} {v}")
    return " | ".join(out)


def plot_lines(path: str | Path, series: dict[str, list[tuple[float, float]]], xlabel: str = "", ylabel: str = "",
               title: str = "", logy: bool = False, logx: bool = False) -> None:
    """One PNG with a line per series of (x, y) points; empty series are skipped."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for label, pts in series.items():
        if pts:
            xs, ys = zip(*pts)
            ax.plot(xs, ys, label=label, marker="o" if len(pts) < 30 else None, ms=3)
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    if logy:
        ax.set_yscale("log")
    if logx:
        ax.set_xscale("log", base=2)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_panels(path: str | Path, panels: dict[str, dict[str, list[tuple[float, float]]]], xlabel: str = "",
                ylabel: str = "", title: str = "", cols: int = 4) -> None:
    """One PNG with a small plot per panel (its title -> its series of (x, y) points), on shared axes; the same
    series names get the same colours in every panel and one legend."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.4 * rows + 0.8), sharex=True, sharey=True,
                             squeeze=False)
    for ax, (name, series) in zip(axes.flat, panels.items()):
        for i, (label, pts) in enumerate(series.items()):
            if pts:
                xs, ys = zip(*pts)
                ax.plot(xs, ys, color=f"C{i}", label=label, marker="o" if len(pts) < 10 else None, ms=3)
        ax.set_title(name, fontsize=9)
        ax.grid(alpha=0.3)
    for ax in axes.flat[len(panels):]:
        ax.set_visible(False)
    for ax in axes[-1]:
        ax.set_xlabel(xlabel)
    for ax in axes[:, 0]:
        ax.set_ylabel(ylabel)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    margin = 0.4 / fig.get_figheight()  # room for the title above and the legend below, in figure fractions
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=9)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, margin, 1, 1 - margin))
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def markdown_table(headers: list[str], rows: list[list]) -> str:
    """A GitHub Markdown table."""
    out = ["| " + " | ".join(map(str, headers)) + " |", "|" + "---|" * len(headers)]
    out += ["| " + " | ".join(map(str, row)) + " |" for row in rows]
    return "\n".join(out)
