"""
calibrate.py -- the sweep behind a scale's settings: which pre-training buys a base model with an edge.

Each configuration below changes a few settings of the scale (model, tokens, op range and mix, data scale-downs,
document mask, loss tokens, dtype), pre-trains a base model and evaluates it on the scale's op ladder exactly as
the edge study does (study.py). The table in reports/calibration-<scale>/report.md has one row per configuration
tried -- kept, not only the winner -- with the bands the study's rule reads off its ladder. Jobs are resumable
and skipped once finished, so the sweep can run in pieces (and in parallel: `--only a,b` in one process,
`--only c,d` in another).

    python calibrate.py --scale tiny                     # every configuration, then the report
    python calibrate.py --scale tiny --only base,sol     # some of them
    python calibrate.py --scale tiny --report_only       # re-render the table from finished runs
    python calibrate.py --scale tiny --rl                # the RL sweep: steps and pool size on the model's edge
"""

from __future__ import annotations

import dataclasses
import json
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import torch

import model as model_lib
import study
from common import UserError, atomic_write, load_json, markdown_table, opt, run_main, setup_dist


@dataclass(frozen=True)
class Trial:
    name: str
    note: str  # what this row tests
    scale: dict = dataclasses.field(default_factory=dict)  # Scale fields replaced (bands, mix, data, ...)
    pretrain: dict = dataclasses.field(default_factory=dict)  # pretrain.py settings on top of the scale's
    study_runs: bool = False  # the scale exactly as set: its row reads the study's own runs (runs/<scale>/)


# The first trials ran before the tiny preset took the chosen settings: what they kept of the old preset is spelt out
# (60k problems, 8 rows per micro-step, the whole-text loss), so that they rerun exactly. Proxies run one CPU thread
# each, two at a time; the ladder is op 2-8 or 2-10 (16 problems x 32 samples per op).
OLD = dict(train_problems=60_000, micro_rows=8, bands="2-2,3-3", loss_on="all", eval_every=500, ckpt_every=500)
P4M, P10M = dict(OLD, max_steps=1000), dict(OLD, max_steps=2500)  # 4.1M and 10.2M tokens
CHOSEN = dict(max_steps=5000, eval_every=1000, ckpt_every=500, train_problems=200_000, micro_rows=4,
               loss_on="solution", dtype="bf16", bands="2-3,4-5,6-7")  # the chosen settings, on its own range
WIDE = "n_layer=6,n_embd=192,n_head=6,n_kv_head=2,mlp_hidden=768"  # 3.4M parameters
SEQ = "operands=2 distractors=0.5 letters=sequential"  # the data scale-downs with sequential variable letters
D0 = "operands=2 distractors=0 letters=sequential"  # the same without distractor sentences
OP2_6 = dict(bands={"ID": (2, 6)}, mix="2-3:.2,4-5:.3,6:.5", ladder=(2, 12), eval_max_new=256, data=SEQ)
ID_2_5 = dict(bands={"ID": (2, 5)}, mix="2-3:.2,4:.3,5:.5", ladder=(2, 8), eval_max_new=160)
TRIALS = {
    "tiny": [
        Trial("op2-5-bf16", "op 2-5 weighted to the top (.2/.3/.5), sums of at most 2 operands, bf16, 4M tokens",
              dict(ID_2_5, data="operands=2"), dict(P4M, dtype="bf16")),
        Trial("op2-5-sol", "as op2-5-bf16, loss on the solution tokens only",
              dict(ID_2_5, data="operands=2"), dict(P4M, dtype="bf16", loss_on="solution")),
        Trial("op2-5-d05-10M", "op 2-5 as above, half the distractor sentences, 10M tokens",
              dict(ID_2_5, data="operands=2 distractors=0.5"), dict(P10M, dtype="bf16")),
        Trial("op2-5-sol-d05-10M", "as op2-5-d05-10M, loss on the solution tokens only",
              dict(ID_2_5, data="operands=2 distractors=0.5"), dict(P10M, dtype="bf16", loss_on="solution")),
        Trial("op2-7-sol-d05-20M", "op 2-7 weighted to the top (.2/.3/.5 over 2-3 / 4-5 / 6-7): 4-6 step solutions "
              "in range; 20M tokens, two DDP processes", dict(bands={"ID": (2, 7)}, mix="2-3:.2,4-5:.3,6-7:.5",
                                                               ladder=(2, 12)), dict(CHOSEN)),
        Trial("op2-5-6x192-20M", "op 2-5 (.2/.3/.5), a 3x larger model (6 layers x 192), 20M tokens, two DDP "
              "processes: is the tiny model too small to bind names to numbers? (208 of the "
              "218 failed op-2 samples of the chosen model have a step that reads the wrong quantity)",
              dict(ID_2_5, ladder=(2, 10), eval_max_new=192),
              dict(CHOSEN, bands="2-3,4-5", model_args=WIDE)),
        Trial("op2-5-seq-20M", "as op2-5-6x192-20M on the tiny model, with sequential variable letters (a run of "
              "consecutive letters from a random start, `letters=sequential`): greedy decoding of the 6x192 model "
              "names every variable K, and sampled solutions reuse letters or bind them to the wrong quantity",
              dict(ID_2_5, ladder=(2, 10), eval_max_new=192, data=SEQ),
              dict(CHOSEN, bands="2-3,4-5")),
        Trial("op2-7-seq-20M", "as op2-7-sol-d05-20M with sequential variable letters: op2-5-seq-20M still writes "
              "about three steps above op 5; does a range up to op 7, learned better, give an edge at op 8-9?",
              dict(bands={"ID": (2, 7)}, mix="2-3:.2,4-5:.3,6-7:.5", ladder=(2, 12),
                   data=SEQ), dict(CHOSEN)),
        Trial("op2-5-seq-6M", "proxy for the learning-rate sweep: op2-5-seq-20M cut to 6M tokens (one process)",
              dict(ID_2_5, eval_max_new=192, data=SEQ), dict(CHOSEN, bands="2-3,4-5", max_steps=1500)),
        Trial("op2-5-seq-lr6-6M", "as op2-5-seq-6M with a 3x learning rate (6e-3, floor 6e-4)",
              dict(ID_2_5, eval_max_new=192, data=SEQ),
              dict(CHOSEN, bands="2-3,4-5", max_steps=1500, lr=6e-3, min_lr=6e-4)),
        Trial("op2-6-seq-20M", "op 2-6 weighted to the top (.2/.3/.5 over 2-3 / 4-5 / 6), sequential letters, 20M "
              "tokens, two DDP processes (the tiny scale's previous settings). Below op 6 solutions take 2-3 steps "
              "(4 in 13 % of op-5 problems), at op 6 four (five in 16 %), at op 7 four to six: the first ops above "
              "the range share step counts with it, as op 11-14 do with op 2-10 in the paper",
              OP2_6, dict(CHOSEN, bands="2-3,4-5,6-6")),
        Trial("op2-6-seq-60M", "op2-6-seq-20M with three times the tokens (60M, 400k problems; about 75 "
              "minutes as two DDP processes): at 20M tokens op 6, half the mix, is still at pass@1 9 % and the "
              "validation loss is falling",
              OP2_6, dict(CHOSEN, bands="2-3,4-5,6-6", max_steps=15_000, train_problems=400_000, eval_every=3000)),
        Trial("op2-5-tail3-20M", "op 2-5 plus a 3 % tail of op 6-8 (as in the paper's A.7 exposure study), 20M "
              "tokens, two DDP processes: the tiny scale's previous settings",
              dict(bands={"ID": (2, 5)}, mix="2-3:.194,4:.291,5:.485,6-8:.03", ladder=(2, 10), eval_max_new=192,
                   data="operands=2 distractors=0.5"), dict(CHOSEN, bands="2-3,4-5,6-8")),
        Trial("op2-6-d0-20M", "op2-6-seq-20M without distractor sentences (`distractors=0`): in that model's "
              "failures the steps name the wrong quantity -- a type from one sentence with the place of another -- "
              "and op 6 problems have 6 sentences against 3.7 at op 5; without distractors op 6 has 3",
              dict(OP2_6, data=D0), dict(CHOSEN, bands="2-3,4-5,6-6")),
        Trial("op2-6-d0-tail1-20M", "op2-6-d0-20M plus a 1 % tail of op 7-9 (a third of a percent each; sparse "
              "exposure as in the paper's A.7): without distractors op 2-6 are learned (73-100 % of samples verified) "
              "but op 7 is at 0 of 512; in the samples read, the model leaves a quantity out of the asked total once "
              "its solution runs longer than those of op 6",
              dict(OP2_6, mix="2-3:.198,4-5:.297,6:.495,7-9:.01", data=D0),
              dict(CHOSEN, bands="2-3,4-5,6-6,7-9")),
        Trial("chosen", "the tiny scale as set (the edge study's own base model, runs/tiny): op2-6-d0-tail1-20M",
              study_runs=True),
        Trial("chosen-packed", "the tiny scale as set with plain packing (`--doc_mask false`, as the paper): every "
              "token attends to the earlier samples of its row and positions run on across them, where the chosen "
              "model restarts both at each sample, as at sampling", pretrain=dict(doc_mask=False)),
        Trial("chosen-curriculum", "the tiny scale as set with an easy-first curriculum (`--curriculum`): the "
              "problems packed in op order, and the rows the 5,000 steps read (a random 70 %, as a shuffled read "
              "takes) read lowest op first, so the mix seen is unchanged", pretrain=dict(curriculum=True)),
        Trial("chosen-constant-lr", "the tiny scale as set with a constant learning rate after the warm-up "
              "(`--min_lr 2e-3`, the peak) instead of the cosine decay to 2e-4", pretrain=dict(min_lr=2e-3)),
    ],
}


# ----------------------------------------------------------------------------------------------------------------
# RL on the base model's edge: how many steps, on how many prompts (`--rl`)

@dataclass(frozen=True)
class RLTrial:
    name: str
    note: str  # what this row tests
    grpo: dict = dataclasses.field(default_factory=dict)  # grpo.py settings over the edge study's edge-pool run
    at: tuple = ()  # intermediate checkpoints (steps) evaluated too, each a row


LONG = dict(eval_every=20, ckpt_every=20, keep_last=5)  # 100-step runs keep every 20th step for the `at` rows
RL_TRIALS = {
    "micro": [RLTrial("edge", "the edge study's run"),
              RLTrial("pool128-4", "pool 128, 4 steps", dict(pool_size=128, max_steps=4, ckpt_every=2, keep_last=3),
                      at=(2,))],
    "tiny": [
        RLTrial("edge", "30 steps, pool 256 filtered once to the edge (the edge study's run, seed 0)"),
        RLTrial("edge-s1", "as `edge`, seed 1 (the edge study's second seed)", dict(seed=1)),
        RLTrial("pool2048-100", "pool 2048 filtered once to the edge, 100 steps: more prompts, more steps",
                dict(pool_size=2048, max_steps=100, **LONG), at=(60,)),
        RLTrial("pool2048-resel25-100", "as pool2048-100, the pool re-selected to the edge every 25 steps",
                dict(pool_size=2048, max_steps=100, reselect_every=25, **LONG), at=(60,)),
    ],
}
RL_HEADER = ["trial", "what it tests", "step", "edge pool (prompts, first → last selection)",
             "RL minutes (steps only)", "pool reward (first / last 5 steps)", "edge pass@1", "Δ pass@1 (SE)",
             "edge pass@K", "Δ pass@K (SE)", "ID pass@K"]


def rl_jobs(ctx: study.StudyContext, trial: RLTrial) -> tuple[study.Job, list[tuple[int | None, study.Job]]]:
    """The trial's RL job (the edge study's own run where the settings are its) and its evaluations: (step, job),
    step None for the final checkpoint."""
    base = ctx.base().name
    job = ctx.grpo(f"rlsweep-{trial.name}", base, ctx.pools["edge"], note=trial.note,
                   **{**study.edge_filter(ctx), **trial.grpo})
    for seed in range(ctx.sc.rl_seeds):
        own = study.pool_rl_job(ctx, base, "edge", seed)
        if own.config == job.config:
            job = own
    evalset, n = ctx.bands_evalset(), ctx.sc.eval_n
    evals = [(None, ctx.eval(job.name, evalset, n, ctx.bands))]
    for step in trial.at:
        ev = ctx.eval(job.name, evalset, n, ctx.bands, suffix=f"-s{step}")
        ev.config = {**ev.config, "ckpt": [str(ctx.run_dir(job.name) / f"step_{step:06d}.pt")],
                     "label": [f"{job.name}@{step}"]}
        evals.append((step, ev))
    return job, evals


def rl_row(ctx: study.StudyContext, trial: RLTrial, job: study.Job, step: int | None, ev: study.Job) -> list:
    """One row of RL_HEADER: the run's log up to `step` and its evaluation against the base model's, paired over
    the edge band's problems."""
    n, (lo, hi), id_band = ctx.sc.eval_n, ctx.bands["edge"], ctx.bands["ID"]
    rows, _ = study.rl_metrics(ctx, job.name)
    rows = [r for r in rows if step is None or r["step"] <= step]
    sizes = study.rl_pools(rows, job.config["reselect_every"])
    rewards = [r["reward"] for r in rows]
    base_pp, pp = study.eval_results(ctx, ctx.ladder_job().name)[1], study.eval_results(ctx, ev.name)[1]
    cells = []
    for k in (1, n):
        after, before = study.band_pass(pp, lo, hi, k), study.band_pass(base_pp, lo, hi, k)
        d, se, _ = study.paired_delta(after, before)
        cells += [study.pct(study.mean_se(list(after.values()))[0]), f"{100 * d:+.1f} ({100 * se:.1f})"]
    id_pass = study.mean_se(list(study.band_pass(pp, *id_band, n).values()))[0]
    return [trial.name, trial.note, rows[-1]["step"], " → ".join(map(str, sizes)) or "—",
            f"{sum(r['step_s'] for r in rows) / 60:.1f}",
            f"{statistics.fmean(rewards[:5]):.2f} / {statistics.fmean(rewards[-5:]):.2f}", *cells, study.pct(id_pass)]


def run_rl_sweep(cfg: Config, device) -> Path:
    """RL trials from the scale's own base model (runs/<scale>/base, the edge study's), evaluated as the study
    evaluates; the table goes to reports/calibration-<scale>/rl.md (rebuilt from the runs each time)."""
    ctx = study.StudyContext(cfg.scale, cfg.runs_dir, cfg.reports_dir, cfg.workers, cfg.train_procs)
    trials = RL_TRIALS[cfg.scale]
    with study.runs_lock(ctx.dir):
        ctx.ensure_tokenizer()
        for job in (ctx.base(), ctx.ladder_job()):
            study.run_job(ctx, job, str(device))
        if ctx.sc.ladder:
            study.measure_bands(ctx)
        if "edge" not in ctx.bands:
            raise UserError("the base model has no edge band (see the edge study's report): nothing to sweep")
        rows = []
        for trial in trials:
            job, evals = rl_jobs(ctx, trial)
            for j in (job, *(ev for _, ev in evals)):
                study.run_job(ctx, j, str(device))
            rows += [rl_row(ctx, trial, job, step, ev) for step, ev in sorted(evals, key=lambda e: e[0] or 10**9)]
    k, beyond = ctx.sc.eval_n, f", {ctx.sc.eval_beyond} above ID" if ctx.sc.eval_beyond else ""
    out = Path(cfg.reports_dir) / f"calibration-{cfg.scale}" / "rl.md"
    lines = [f"# RL sweep, {cfg.scale} scale", "",
             f"RL on the base model's edge band (op {study.ops(ctx.bands['edge'])}) with some settings changed, from "
             "the edge study's base model and evaluated as the edge study evaluates (verified pass@k, "
             f"{ctx.sc.eval_per_op} held-out problems per op{beyond} x {k} samples). Δ: paired over the edge band's "
             "problems against the base model, ± standard error. Every trial is kept; the edge study's own runs are "
             "rows too.",
             "", f"Rerun: `python calibrate.py --scale {cfg.scale} --rl` (finished runs are reused).", "",
             markdown_table([h.replace("@K", f"@{k}") for h in RL_HEADER], [[str(c) for c in r] for r in rows]), ""]
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(out, lambda f: f.write("\n".join(lines)), binary=False)
    return out


def trial_context(scale: str, trial: Trial, runs_dir: str, workers: int, train_procs: int = 1) -> study.StudyContext:
    """A study context whose scale is the trial's, in runs_dir/calibration-<scale>/<trial>/, sharing one tokenizer."""
    ctx = study.StudyContext(scale, runs_dir, "reports", workers, train_procs)
    ctx.sc = dataclasses.replace(ctx.sc, **trial.scale, pretrain={**ctx.sc.pretrain, **trial.pretrain})
    ctx.bands = dict(ctx.sc.bands)
    if not trial.study_runs:
        ctx.dir = Path(runs_dir) / f"calibration-{scale}" / trial.name
        ctx.tokenizer = Path(runs_dir) / f"calibration-{scale}" / "tokenizer.json"
    return ctx


HEADER = ["trial", "what it tests", "model", "tokens", "recipe", "doc mask", "loss on", "dtype", "minutes",
          "verified pass@1", "verified pass@K", "steps written / needed (mean; in and above ID)", "bands"]


def trial_row(ctx: study.StudyContext, trial: Trial) -> list | None:
    """The trial's row of the table (HEADER), or None while its ladder is not evaluated."""
    base_dir = ctx.run_dir("base")
    if not (ctx.run_dir(ctx.ladder_job().name) / "results.json").exists():
        return None
    study.measure_bands(ctx)
    conf = load_json(base_dir / "job.json", "job file")
    p, seconds = conf["config"], conf.get("seconds", float("nan"))
    model_conf = load_json(base_dir / "config.json", "run config")["model"]
    with torch.device("meta"):  # counts the parameters without allocating them
        n_params = model_lib.Transformer(model_lib.ModelConfig(**model_conf)).n_params()
    lad = ctx.ladder
    span = f"op {min(lad)}-{max(lad)}: "
    passk = span + " / ".join(f"{100 * lad[op]['passk']:.0f}" for op in sorted(lad))
    pass1 = span + " / ".join(f"{100 * lad[op]['pass1']:.0f}" for op in sorted(lad))
    bands = ", ".join(f"{k} {study.ops(v)}" for k, v in ctx.bands.items()) if "edge" in ctx.bands else "no edge"
    top_id = ctx.sc.bands["ID"][1]
    above = study.sample_profile(ctx, ctx.ladder_job().name, top_id + 1, max(lad))
    inside = study.sample_profile(ctx, ctx.ladder_job().name, min(lad), top_id)
    steps = (f"{inside['steps_written']:.1f} / {inside['steps_needed']:.1f} in; "
             f"{above['steps_written']:.1f} / {above['steps_needed']:.1f} above")
    return [trial.name, trial.note, f"{model_conf['n_layer']}x{model_conf['n_embd']} ({n_params:,})",
            f"{p['max_steps'] * p['batch_tokens'] / 1e6:.1f}M", f"`{p['recipe']}`", p["doc_mask"], p["loss_on"],
            p["dtype"], f"{seconds / 60:.1f}", pass1, passk, steps, bands]


def write_report(scale: str, trials: list[Trial], runs_dir: str, reports_dir: str, workers: int) -> Path:
    """The table, one row per trial. Measured rows are also kept in rows.json beside the report (committed), so a
    checkout without the runs -- they stay out of git -- re-renders them instead of writing "not run"."""
    out = Path(reports_dir) / f"calibration-{scale}" / "report.md"
    kept_path = out.parent / "rows.json"
    kept = load_json(kept_path, "calibration rows") if kept_path.exists() else {"k": 0, "rows": {}}
    if not (isinstance(kept, dict) and isinstance(kept.get("k"), int) and isinstance(kept.get("rows"), dict)
            and all(isinstance(r, list) and len(r) == len(HEADER) for r in kept["rows"].values())):
        raise UserError(f"{kept_path} is not a table of calibration rows ({{\"k\": int, \"rows\": {{trial: "
                        f"[{len(HEADER)} cells]}}}}); restore it from git or delete it to rebuild it from the runs")
    rows, k = [], kept["k"]
    for trial in trials:
        ctx = trial_context(scale, trial, runs_dir, workers)
        row = trial_row(ctx, trial)
        if row is not None:
            kept["rows"][trial.name] = row = [str(cell) for cell in row]
            kept["k"] = k = max(r["n"] for r in ctx.ladder.values())
        elif trial.name in kept["rows"]:
            row = [trial.name, trial.note] + kept["rows"][trial.name][2:]
        else:
            row = [trial.name, trial.note, "not run"] + [""] * (len(HEADER) - 3)
        rows.append(row)
    lines = [f"# Calibration sweep, {scale} scale", "",
             "Every pre-training configuration tried for this scale, each evaluated on the op ladder as the edge "
             "study does (verified pass@k per op, held-out problems); the bands are read off each ladder by the "
             f"study's rule: {study.BAND_RULE.describe()}.", "",
             f"Rerun: `python calibrate.py --scale {scale}` (finished rows are reused). The ladder columns give "
             f"verified pass@1 and pass@{k} in % per op, lowest op first. Wall time: pre-training only, on the "
             "machine named in each run's config.json (proxies shared 2 cores two at a time).", "",
             "The rows above `chosen` were measured while pre-training data were deduplicated by problem id, which "
             "starves an op with few distinct problems: their recipe column gives the weights asked for, not those "
             "drawn (op2-6-d0-tail1-20M asked .198 / .297 / .495 / .01 of op 2-3 / 4-5 / 6 / 7-9 and drew .064 / "
             ".151 / .768 / .018). Pre-training now keeps every draw; the `chosen` row is the edge study's own base "
             "model, whose report prints its data as drawn, and the rows below it change one setting of it each, "
             "evaluated like it (64 held-out problems per op above the range).", "",
             markdown_table([h.replace("@K", f"@{k}") for h in HEADER], rows), ""]
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(kept_path, lambda f: json.dump(kept, f, indent=1), binary=False)
    atomic_write(out, lambda f: f.write("\n".join(lines)), binary=False)
    return out


@dataclass
class Config:
    scale: str = opt("tiny", "the scale whose trials run (see TRIALS)")
    only: str = opt("", "comma-separated trial names ('' = all)")
    runs_dir: str = opt("runs", "runs go to runs_dir/calibration-<scale>/<trial>/")
    reports_dir: str = opt("reports", "the table goes to reports_dir/calibration-<scale>/report.md")
    device: str = opt("auto", "auto (cuda if available), cuda or cpu")
    workers: int = opt(1, "processes for data generation")
    report_only: bool = opt(False, "only re-render the table from finished runs")
    train_procs: int = opt(1, "pre-training as this many DDP processes (torchrun), as study.py --train_procs")
    rl: bool = opt(False, "the RL sweep on the edge study's base model instead (RL_TRIALS; reports .../rl.md)")


def main(cfg: Config) -> dict:
    if cfg.scale not in TRIALS and not cfg.rl:
        raise UserError(f"no calibration trials for scale {cfg.scale!r}; scales with trials: {', '.join(TRIALS)}")
    if cfg.train_procs < 1:
        raise UserError(f"--train_procs must be >= 1, got {cfg.train_procs}")
    if cfg.rl:
        if cfg.scale not in RL_TRIALS:
            raise UserError(f"no RL trials for scale {cfg.scale!r}; scales with them: {', '.join(RL_TRIALS)}")
        path = run_rl_sweep(cfg, setup_dist(cfg.device).device)
        print(f"RL sweep table: {path}")
        return {"report": str(path)}
    trials = TRIALS[cfg.scale]
    names = [t.name for t in trials]
    chosen = [n.strip() for n in cfg.only.split(",") if n.strip()] or names
    unknown = [n for n in chosen if n not in names]
    if unknown:
        raise UserError(f"unknown trial(s) {', '.join(unknown)}; trials of {cfg.scale}: {', '.join(names)}")
    if not cfg.report_only:
        device = setup_dist(cfg.device).device
        for trial in (t for name in chosen for t in trials if t.name == name):  # in the order given
            ctx = trial_context(cfg.scale, trial, cfg.runs_dir, cfg.workers, cfg.train_procs)
            t0 = time.time()
            with study.runs_lock(ctx.dir):
                ctx.ensure_tokenizer()
                for job in (ctx.base(), ctx.ladder_job()):
                    study.run_job(ctx, job, str(device))
            print(f"=== trial {trial.name}: {(time.time() - t0) / 60:.1f} min ===")
    path = write_report(cfg.scale, trials, cfg.runs_dir, cfg.reports_dir, cfg.workers)
    print(f"calibration table: {path}")
    return {"report": str(path)}


if __name__ == "__main__":
    run_main(main, Config)
