"""
Small helpers shared by the top-level scripts, so that none of them copies another:

- config: one dataclass per script becomes its command line (`--n_layer=4`, `--help`, `--config f.json`);
- files: atomic JSON / checkpoint writes, checkpoint loading with `weights_only=True`;
- run setup: seeding, RNG state capture for exact resume, device and torchrun/DDP setup;
- logging: one line per step in one format everywhere, plus `metrics.jsonl`.

Nothing here does work at import time.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import inspect
import json
import math
import os
import platform
import random
import re
import subprocess
import sys
import tempfile
import typing
from dataclasses import dataclass, fields
from pathlib import Path

import torch


class UserError(Exception):
    """A mistake the user can fix (bad flag, missing file, corrupt checkpoint). Scripts print it and exit 2."""


def run_main(main, config_cls, argv=None, doc: str | None = None, presets: dict | None = None):
    """`if __name__ == "__main__": run_main(main, Config)` -- parse flags, call main, turn UserError into a message."""
    try:
        cfg = parse_config(config_cls, argv, doc=doc or sys.modules[main.__module__].__doc__, presets=presets)
        return main(cfg)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


# ----------------------------------------------------------------------------------------------------------------
# Config: dataclass -> command line

def _field_comments(cls) -> dict[str, str]:
    """The `# comment` after each field of a dataclass: it is the field's --help text."""
    comments = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        try:
            src = inspect.getsource(klass)
        except (OSError, TypeError):
            continue
        for m in re.finditer(r"^\s+(\w+)\s*:[^\n#]*#\s*(.+)$", src, flags=re.M):
            comments[m.group(1)] = m.group(2).strip()
    return comments


def _base_type(tp):
    """Optional[X] -> (X, True); X -> (X, False)."""
    if typing.get_origin(tp) in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return args[0], True
    return tp, False


def _convert(name: str, tp, text: str):
    """Turn the text of a flag into the field's type, or raise UserError naming the flag."""
    tp, optional = _base_type(tp)
    if optional and text.lower() in ("none", "null", ""):
        return None
    origin = typing.get_origin(tp)
    try:
        if origin in (list, tuple):
            (item,) = typing.get_args(tp)[:1]
            items = [_convert(name, item, t.strip()) for t in text.split(",") if t.strip()]
            return items if origin is list else tuple(items)
        if tp is bool:
            if text.lower() in ("1", "true", "yes", "on"):
                return True
            if text.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if tp is int:
            return int(float(text)) if re.fullmatch(r"[0-9.]+e[0-9]+", text) else int(text)
        if tp is float:
            return float(text)
        return tp(text)
    except (ValueError, TypeError):
        tname = getattr(tp, "__name__", str(tp))
        raise UserError(f"--{name}: expected {tname}, got {text!r}") from None


def config_help(cls, doc: str | None = None) -> str:
    comments = _field_comments(cls)
    hints = typing.get_type_hints(cls)
    lines = [doc.strip() if doc else "", "", "options (--name=value or --name value; bool flags alone mean true):"]
    lines.append(f"  {'--config FILE':<28} JSON file of options; flags given after it override it")
    for f in fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        tname = getattr(_base_type(hints[f.name])[0], "__name__", "")
        lines.append(f"  --{f.name:<26} {comments.get(f.name, '')} [{tname}, default: {default}]")
    return "\n".join(lines)


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
    argv = list(sys.argv[1:] if argv is None else argv)
    hints = typing.get_type_hints(cls)
    names = {f.name for f in fields(cls)}
    values: dict = {}
    if presets:
        chosen = [a.split("=", 1)[1] if "=" in a else argv[j + 1] if j + 1 < len(argv) else ""
                  for j, a in enumerate(argv) if a == "--preset" or a.startswith("--preset=")]
        if chosen:
            values.update(apply_preset(presets, chosen[-1]))
        if doc is not None:
            doc += "\n\npresets (--preset=NAME sets these defaults; other flags override them):\n" + "\n".join(
                f"  {name:<8} " + ", ".join(f"{k}={v}" for k, v in p.items()) for name, p in presets.items())
    repeated: set = set()  # flags seen on the command line
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg in ("-h", "--help"):
            print(config_help(cls, doc))
            sys.exit(0)
        if not arg.startswith("--"):
            raise UserError(f"unexpected argument {arg!r}; options look like --name=value (see --help)")
        key, eq, text = arg[2:].partition("=")
        if key == "config":
            if not eq:
                i += 1
                text = argv[i] if i < len(argv) else ""
            values.update(load_config_file(text, cls))
            i += 1
            continue
        if key not in names:
            close = [n for n in names if n.startswith(key[:3])]
            hint = f" (did you mean {', '.join('--' + c for c in sorted(close))}?)" if close else ""
            raise UserError(f"unknown option --{key}{hint}; see --help")
        tp = hints[key]
        if not eq:
            nxt = argv[i + 1] if i + 1 < len(argv) else None
            if _base_type(tp)[0] is bool and (nxt is None or nxt.startswith("--")):
                text = "true"
            elif nxt is None:
                raise UserError(f"--{key} needs a value")
            else:
                text, i = nxt, i + 1
        value = _convert(key, tp, text)
        if key in repeated and typing.get_origin(_base_type(tp)[0]) is list:
            value = values[key] + value  # a repeated list flag appends: --ckpt a --ckpt b
        values[key] = value
        repeated.add(key)
        i += 1
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


def print_config(cfg, title: str | None = None) -> None:
    d = config_dict(cfg)
    width = max(len(k) for k in d)
    print(f"--- {title or type(cfg).__name__} ---")
    for k, v in d.items():
        print(f"  {k:<{width}} = {v}")


# ----------------------------------------------------------------------------------------------------------------
# Files: atomic writes, checkpoints

def atomic_write(path: str | Path, write_fn, binary: bool = True) -> None:
    """Write via a temporary file in the same folder, fsync, then rename: a crash never leaves a half file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb" if binary else "w") as f:
            write_fn(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; give the usual permissions
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
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
    except json.JSONDecodeError as e:
        raise UserError(f"{what} {str(path)!r} is not valid JSON ({e}); regenerate it") from None


def save_checkpoint(path: str | Path, state: dict, meta: dict | None = None) -> None:
    """torch.save `state` atomically, plus a human-readable `<path>.json` with `meta` beside it."""
    atomic_write(path, lambda f: torch.save(state, f))
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
    """Write step_<step>.pt (+ its .json), keep only the last `keep_last` step checkpoints, and at the end of the
    run copy the checkpoint to final.pt."""
    path = out_dir / f"step_{step:06d}.pt"
    save_checkpoint(path, state, meta)
    prune_checkpoints(out_dir, keep_last)
    if final:
        copy_checkpoint(path, out_dir / "final.pt")


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


def latest_checkpoint(folder: str | Path) -> Path | None:
    """The newest checkpoint in a run folder: `final.pt` or a `step_*.pt`, whichever was written last (a run
    resumed past its old end writes step files after the old final.pt)."""
    folder = Path(folder)
    cands = [p for p in [folder / "final.pt", *folder.glob("step_*.pt")] if p.exists()]
    return max(cands, key=lambda p: (p.stat().st_mtime_ns, p.name == "final.pt")) if cands else None


def resume_changes(old: dict, cfg, may_change: tuple) -> str:
    """The settings of `cfg` that differ from the checkpointed config `old`, except those in `may_change`."""
    new = dataclasses.asdict(cfg)
    diff = [k for k in new if k not in may_change and old.get(k) != new[k]]
    return ", ".join(f"{k} ({old.get(k)!r} -> {new[k]!r})" for k in diff)


def prune_checkpoints(folder: str | Path, keep: int) -> None:
    """Delete all but the newest `keep` `step_*.pt` files (and their .json); `final.pt` is never deleted."""
    steps = sorted(Path(folder).glob("step_*.pt"), key=lambda p: int(re.sub(r"\D", "", p.stem) or 0))
    for p in steps[:-keep] if keep > 0 else steps:
        p.unlink(missing_ok=True)
        Path(str(p) + ".json").unlink(missing_ok=True)


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


def wrap_for_training(module: torch.nn.Module, compile: bool, dist: Dist) -> torch.nn.Module:
    """torch.compile it if asked, then wrap it in DDP under torchrun (gradients sync inside backward)."""
    if compile:
        module = torch.compile(module)
    if dist.ddp:
        from torch.nn.parallel import DistributedDataParallel as DDP
        module = DDP(module, device_ids=[dist.local_rank] if dist.device.type == "cuda" else None)
    return module


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


def markdown_table(headers: list[str], rows: list[list]) -> str:
    """A GitHub Markdown table."""
    out = ["| " + " | ".join(map(str, headers)) + " |", "|" + "---|" * len(headers)]
    out += ["| " + " | ".join(map(str, row)) + " |" for row in rows]
    return "\n".join(out)
