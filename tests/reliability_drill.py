"""
reliability_drill.py -- try what a clumsy or hostile user would (kills, corrupt files, bad flags, two runs at
once, a full disk) against the real command lines, and print a table: what was tried -> exit code -> what happens.

    python tests/reliability_drill.py            # about 3-5 minutes on 2 CPU cores; works in a temporary folder

A row fails the drill (and the script exits 1) when a command prints a traceback, or exits 0 with a missing or
wrong result. The README's "Reliability" section holds the table of the last run.
"""

import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
ROWS = []  # (what was tried, exit code, what happens, ok)


def run(*args, wait=True, limit_bytes=None, timeout=600):
    """Run `python <args>` in the repository; returns the finished process (stdout+stderr in .out)."""
    preexec = None
    if limit_bytes:  # a file-size limit: writes past it fail like on a full disk (EFBIG instead of ENOSPC)
        preexec = lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))  # noqa: E731
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    p = subprocess.Popen([PY, *map(str, args)], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         text=True, preexec_fn=preexec)
    if not wait:
        return p
    p.out, _ = p.communicate(timeout=timeout)
    return p


def last_line(text: str) -> str:
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else ""


def record(what: str, p, happens: str | None = None, ok: bool = True) -> None:
    """One row. A traceback is never ok; without `happens` the row shows the command's last line."""
    text = getattr(p, "out", "") or ""
    if "Traceback" in text:
        ok, happens = False, "TRACEBACK: " + last_line(text)
    happens = happens or last_line(text)
    ROWS.append((what, p.returncode, happens.replace("|", "/"), ok))
    print(f"[{'ok' if ok else 'FAIL'}] {what} -> exit {p.returncode}: {happens[:160]}", flush=True)


def expect_error(what: str, args, needle: str, **kw) -> None:
    """A user mistake: exit 2 with a one-line error containing `needle`."""
    p = run(*args, **kw)
    err = [ln for ln in p.out.splitlines() if ln.startswith("error: ")]
    record(what, p, ok=p.returncode == 2 and len(err) == 1 and needle in err[0])


def wait_for(path: Path, proc, seconds=300) -> None:
    t0 = time.time()
    while not path.exists():
        if proc.poll() is not None or time.time() - t0 > seconds:
            raise SystemExit(f"drill: {path} never appeared")
        time.sleep(0.2)


def ckpt_step(path: Path) -> int:
    import torch
    return torch.load(path, map_location="cpu", weights_only=True)["step"]


def metric_steps(run_dir: Path) -> list[int]:
    return [r["step"] for r in map(json.loads, open(run_dir / "metrics.jsonl")) if "loss" in r or "reward" in r]


def main() -> int:
    tmp = Path(tempfile.mkdtemp(prefix="drill-"))
    micro = ["pretrain.py", "--preset=micro", "--eval_every=100", "--log_every=1"]
    data = ["--data_dir", tmp / "data"]
    base = tmp / "base"
    print(f"working in {tmp}")
    p = run(*micro, *data, "--out_dir", base, "--max_steps=12", "--ckpt_every=2")
    record("micro pre-training, 12 steps (the model the rows below use)", p,
           ok=p.returncode == 0 and ckpt_step(base / "final.pt") == 12)

    # ---- kills
    run_dir = tmp / "killed"
    p = run(*micro, *data, "--out_dir", run_dir, "--max_steps=40", "--ckpt_every=2", wait=False)
    wait_for(run_dir / "step_000006.pt", p)
    p.send_signal(signal.SIGKILL)
    p.wait()
    p = run(*micro, *data, "--out_dir", run_dir, "--max_steps=40", "--ckpt_every=2", "--resume")
    steps = metric_steps(run_dir)
    good = steps == list(range(1, 41)) and ckpt_step(run_dir / "final.pt") == 40 and not list(run_dir.glob(".*.tmp"))
    record("kill -9 during pre-training, then --resume", p, ok=p.returncode == 0 and good,
           happens=f"resumed at the last checkpoint; final.pt at step 40; metrics.jsonl steps 1..40 once each: "
                   f"{steps == list(range(1, 41))}; temporary files left: {len(list(run_dir.glob('.*.tmp')))}")

    rl = tmp / "rl"
    grpo_run = ["grpo.py", "--preset=micro", "--init_from", base, "--out_dir", rl, "--max_steps=8", "--ckpt_every=2"]
    p = run(*grpo_run, wait=False)
    wait_for(rl / "step_000004.pt", p)
    p.send_signal(signal.SIGKILL)
    p.wait()
    p = run(*grpo_run, "--resume")
    steps = metric_steps(rl)
    evals = [r["step"] for r in map(json.loads, open(rl / "evals.jsonl"))]
    record("kill -9 during GRPO, then --resume", p,
           ok=p.returncode == 0 and steps == list(range(1, 9)) and evals == [0, 2, 4, 6, 8]
           and ckpt_step(rl / "final.pt") == 8,
           happens=f"resumed at the last checkpoint; final.pt at step 8; metrics.jsonl steps 1..8 once each: "
                   f"{steps == list(range(1, 9))}; evals.jsonl steps {evals}")

    out = tmp / "big.jsonl"
    p = run("datagen.py", "--ops=2-20", "--n=2000000", "--out", out, "--progress=false", wait=False)
    time.sleep(8)
    p.send_signal(signal.SIGTERM)  # what `timeout` sends
    p.out, _ = p.communicate()
    left = [f.name for f in tmp.glob("*big*")] + [f.name for f in tmp.glob(".*big*")]
    record("SIGTERM (`timeout`) during datagen of 2M problems", p, ok=p.returncode != 0 and not left,
           happens=f"stops; files left: {left or 'none (the .tmp file is removed)'}")

    touched = tmp / "touched"
    shutil.copytree(base, touched)
    os.utime(touched / "step_000010.pt")  # an older checkpoint is now the newest file
    (touched / "final.pt").unlink()
    (touched / "step_000012.pt").unlink()
    with open(touched / "metrics.jsonl", "a") as f:
        f.write('{"step": 13, "lo')  # killed mid-line
    p = run(*micro, *data, "--out_dir", touched, "--max_steps=12", "--ckpt_every=2", "--resume")
    resumed = "resuming at step 10" in p.out
    record("resume after an old checkpoint was touched and a torn line left in metrics.jsonl", p,
           ok=p.returncode == 0 and resumed and metric_steps(touched) == list(range(1, 13)),
           happens=f"resumes from the highest step (10, not the newest file): {resumed}; torn line dropped with a "
                   f"warning: {'dropping a torn last line' in p.out}; steps 1..12 once each")

    # ---- corrupt files
    bad = tmp / "truncated"
    bad.mkdir()
    (bad / "final.pt").write_bytes((base / "final.pt").read_bytes()[:5000])
    expect_error("evaluate a truncated final.pt", ["evaluate.py", "--ckpt", bad, "--problems=2", "--n=1"],
                 "cannot be read")

    tok_path = tmp / "data" / "tokenizer.json"
    saved = tok_path.read_bytes()
    run("tokenizer.py", "--mode=train", "--recipe=ops=2", "--n=200", "--vocab_size=400", "--out", tok_path)
    expect_error("replace the checkpoint's tokenizer.json by another tokenizer, then evaluate",
                 ["evaluate.py", "--ckpt", base, "--problems=2", "--n=1", "--out_dir", tmp / "eval"],
                 "is not the one checkpoint")
    tok_path.write_bytes(saved)

    rec = json.loads(subprocess.run([PY, "-c", "import datagen, json; print(json.dumps(next(datagen.generate("
                                     "'ops=2', 1))))"], cwd=ROOT, capture_output=True, text=True).stdout)
    pool = tmp / "pool.jsonl"
    pool.write_text(json.dumps({**rec, "answer": str(rec["answer"])}) + "\n")
    expect_error(f'GRPO on a pool whose record has a string answer ("{rec["answer"]}")',
                 ["grpo.py", "--preset=micro", "--init_from", base, "--pool", pool, "--eval_data=ops=2",
                  "--out_dir", tmp / "rl-bad"], "'answer' must be an integer")
    pool.write_text(json.dumps({**rec, "graph": {"nodes": [{"name": "x"}], "query": "x"}}) + "\n")
    expect_error("evaluate on a record with a malformed graph",
                 ["evaluate.py", "--ckpt", base, "--data", pool, "--n=1", "--out_dir", tmp / "eval"],
                 "graph node 0 is malformed")
    expect_error("evaluate on a binary data file", ["evaluate.py", "--ckpt", base, "--data", PY, "--n=1"],
                 "not a UTF-8 text file")

    garbage = tmp / "garbage"
    shutil.copytree(tmp / "data", garbage)
    (garbage / "train" / "index.json").write_bytes(os.urandom(64))
    expect_error("pre-train on shards whose index.json is garbage",
                 [*micro, "--data_dir", garbage, "--out_dir", tmp / "g"], "not valid JSON")
    shutil.rmtree(garbage)
    shutil.copytree(tmp / "data", garbage)
    index = json.loads((garbage / "train" / "index.json").read_text())
    lengths = garbage / "train" / index["files"][0]["lengths"]
    raw = bytearray(lengths.read_bytes())
    raw[4 * 7:4 * 8] = (0).to_bytes(4, "little")  # row 7: a row the old spot check never read
    lengths.write_bytes(bytes(raw))
    expect_error("pre-train on shards with one corrupt row length",
                 [*micro, "--data_dir", garbage, "--out_dir", tmp / "g"], "has length 0")

    # ---- bad flags
    expect_error("--keep_last=0", [*micro, *data, "--out_dir", tmp / "k", "--keep_last=0"], "--keep_last must be")
    expect_error("a fresh, shorter run into a folder that holds a finished run",
                 [*micro, *data, "--out_dir", base, "--max_steps=4"], "--overwrite")
    for flags, needle in ((["--ckpt_every=0"], "> 0"), (["--seq_len=0"], "> 0"), (["--lr=nan"], "> 0"),
                          (["--lr=-1"], "> 0"), (["--model_args=n_layer=abc"], "not a number"),
                          (["--device=tpu"], "--device")):
        expect_error(f"pretrain.py {' '.join(flags)}", [*micro, *data, "--out_dir", tmp / "f", *flags], needle)
    for flags, needle in ((["--minibatches=0"], "> 0"), (["--pool_size=0"], "--pool_size must be > 0")):
        expect_error(f"grpo.py {' '.join(flags)}", ["grpo.py", "--preset=micro", "--init_from", base, *flags], needle)
    for flags, needle in ((["--ops=5-2"], "reversed"), (["--ops=2:inf,3"], "finite"), (["--ops=2:nan"], "finite"),
                          (["--ops=2:1e308,3:1e308"], "overflow"), (["--ops=2", f"--out={tmp}"], "is a folder")):
        expect_error(f"datagen.py {' '.join(flags)}", ["datagen.py", "--n=5", f"--out={tmp / 'x.jsonl'}", *flags],
                     needle)

    # ---- full disk (simulated by a file-size limit: writes past 200 kB fail)
    full = tmp / "full"
    p = run(*micro, *data, "--out_dir", full, "--max_steps=4", "--ckpt_every=2", limit_bytes=200_000)
    err = [ln for ln in p.out.splitlines() if ln.startswith("error: ")]
    record("pre-training with the disk full when the first checkpoint is written", p,
           ok=p.returncode == 2 and len(err) == 1 and not list(full.glob("*.pt")) + list(full.glob(".*.tmp")))
    if os.geteuid() != 0:  # root writes into read-only folders anyway
        ro = tmp / "readonly"
        ro.mkdir()
        ro.chmod(0o555)
        expect_error("pre-training into a read-only folder", [*micro, *data, "--out_dir", ro / "run"], "cannot")

    # ---- two studies at once, then one killed
    runs = ["--runs_dir", tmp / "runs", "--reports_dir", tmp / "reports"]
    a = run("study.py", "edge", "--scale=micro", *runs, wait=False)
    wait_for(tmp / "runs" / "micro" / ".lock", a)
    expect_error("a second study.py on the same runs folder", ["study.py", "edge", "--scale=micro", *runs],
                 "in use by another study (pid")
    a.send_signal(signal.SIGKILL)
    a.wait()
    c = run("study.py", "edge", "--scale=micro", *runs, wait=False)
    t0 = time.time()
    seen = ""
    while "taking over" not in seen and c.poll() is None and time.time() - t0 < 120:
        seen += c.stdout.readline()
    c.send_signal(signal.SIGTERM)
    c.out = seen + c.communicate()[0]
    warning = next((ln for ln in c.out.splitlines() if "taking over" in ln), "no warning")
    record("study.py again after the first was killed with kill -9 (stale lock)", c, ok="taking over" in warning,
           happens=f"{warning}; the study runs (stopped here with SIGTERM)")

    shutil.rmtree(tmp)
    print()
    print("| what was tried | exit | what happens |")
    print("|---|---|---|")
    for what, code, happens, ok in ROWS:  # paths shortened for the README
        what, happens = (text.replace(str(tmp), "$TMP").replace(PY, "python") for text in (what, happens))
        print(f"| {what} | {code} | {happens}{'' if ok else ' **(FAILED)**'} |")
    failed = [r for r in ROWS if not r[3]]
    print(f"\n{len(ROWS) - len(failed)} of {len(ROWS)} rows as expected")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
