"""
study.py -- one command per finding of the paper: data -> tokenizer -> base pre-training -> variants
(mid-training / RL) -> evaluation of every model -> one report folder with tables, plots and a verdict.

    python study.py edge --scale tiny            # F1 on 2 CPU cores (the README's main job)
    python study.py context --scale small        # F2 on one GPU
    python study.py all --scale micro            # every study at smoke-test size (seconds to minutes)
    python study.py edge --scale tiny --dry_run  # list the jobs and their settings
    python study.py edge --scale tiny --train_procs 2   # pre-training as two DDP processes (what main.sh does)

Studies (SPEC §1): edge (F1), context (F2), midtrain (F3), process_reward (F4), pretrain_exposure (appendix
A.7), crossover (Yue et al.: pass@k curves of base vs RL up to large k), weak_supervision (scarce data, noisy
and majority-vote rewards). Scales: micro (CI smoke run), tiny (CPU), small (one GPU), paper (SPEC §7).
Smaller scales shrink the op ranges but keep their meaning: ID = the pre-training range, edge = just beyond
it, hard = far beyond it. Except at micro scale, edge and hard are not fixed but read off the base model's
verified pass@k per op (its ladder) by a rule written here before any run (BAND_RULE, SPEC §7): where the base
model has no edge, the study stops before RL and reports "precondition not met". A scale's settings come from a
sweep (calibrate.py, reports/calibration-<scale>/); where they depart from the paper's (the tiny scale's
scale-downs, SPEC §2), Scale.notes says so in every report.

Every job writes into runs/<scale>/<job>/ and is skipped when its output is already there (a training job
that was interrupted resumes from its last checkpoint), so re-running a study only does what is missing, and
studies of one scale share their models (crossover reuses edge's). A job whose folder was made with other
settings is an error, not a silent reuse. The report goes to reports/<study>-<scale>/.
"""

from __future__ import annotations

import contextlib
import datetime
import functools
import hashlib
import json
import math
import os
import shlex
import socket
import statistics
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import datagen
import evaluate
import grpo
import pretrain
from common import (UserError, atomic_write, latest_checkpoint, load_json, markdown_table, opt, plot_lines, plot_panels,
                    preset_config, read_log, run_info, run_main, save_json, setup_dist)


# ----------------------------------------------------------------------------------------------------------------
# Scales

@dataclass(frozen=True)
class Scale:
    """Everything that changes with the compute available; the studies' logic does not."""
    bands: dict  # {"ID": (lo, hi), "edge": ..., "hard": ...}: pre-training range, just beyond, far beyond
    pools: dict  # RL pools {name: (lo, hi)}: at the top of ID, straddling, the edge, far beyond (paper 7-10 ... 17-20)
    pretrain: dict  # pretrain.py preset and overrides for a base model
    grpo: dict  # grpo.py preset and overrides for an RL run
    eval_per_op: int  # held-out problems per op in the evaluation sets
    eval_n: int  # samples per problem (pass@k up to k = eval_n)
    eval_max_new: int  # longest completion when evaluating
    crossover_n: int  # samples per problem for the crossover study
    context_ops: tuple  # op range of the context study (paper: 2-20)
    contexts: str = datagen.PAPER_CONTEXTS  # contexts of every study but `context` (the paper's three)
    mid_share: float = 0.8  # mid-training mixture: this share on the edge band, the rest on ID (paper 0.8)
    budget_rl_steps: int = 0  # midtrain study: RL steps that the whole budget T buys (beta = 1)
    weak_pool_sizes: tuple = (8, 64)  # scarce-data RL pools (plus the full pool)
    eval_beyond: int = 0  # held-out problems per op above ID in the all-bands set (0: eval_per_op): where pass@k is
    #                       near 0, one problem of 16 moves it by 6 points
    edge_drawn: int = 0  # prompts drawn for an RL run on the edge pool before its edge selection (0: the preset's)
    side_steps: int = 0  # pre-training steps of the context and pretrain_exposure base models (0: as the scale's base)
    seconds_hint: str = ""  # expected wall time of the edge study, for the log
    ladder: tuple = ()  # op range of the base model's ladder; set: edge and hard are measured, not fixed
    rl_seeds: int = 1  # RL runs (seeds) on the edge pool
    mix: str = ""  # the base model's op weights over ID, e.g. `2-3:.2,4:.3,5:.5` ('' = uniform; paper 2-4/5-7/8-10
    #                = .2/.3/.5 is the `pretrain_emh_235` study variant, uniform its default)
    data: str = ""  # recipe items every recipe of the scale carries: scale-downs such as `operands=2` (datagen)
    edge_pools: tuple = ("ID", "mixed", "edge", "hard")  # the RL pools the edge study trains on
    edge_reselect: int = 0  # edge pool: keep its prompts at the model's edge, re-selected every K RL steps (0 = off)
    notes: tuple = ()  # where this scale departs from the paper's setup, and why (printed in every report)



SCALES = {
    "micro": Scale(bands={"ID": (2, 3), "edge": (4, 4), "hard": (5, 6)},
                   pools={"ID": (2, 3), "mixed": (3, 4), "edge": (4, 4), "hard": (5, 6)},
                   pretrain=dict(preset="micro", max_steps=30, train_problems=600, model_args="max_seq_len=1024"),
                   grpo=dict(preset="micro", max_steps=2, eval_every=2), eval_per_op=3, eval_n=2, eval_max_new=64,
                   crossover_n=4, context_ops=(2, 4), contexts="zoo", budget_rl_steps=2, weak_pool_sizes=(4,),
                   seconds_hint="about a minute"),
    # 2 CPU cores (reports/calibration-tiny): one context, op 2-6 weighted to the top as the paper's 2-10, the
    # scale-downs in `notes`; no mixed pool
    "tiny": Scale(bands={"ID": (2, 6)}, mix="2-3:.198,4-5:.297,6:.495,7-9:.01",
                  data="operands=2 distractors=0 letters=sequential", pools={}, ladder=(2, 12), rl_seeds=2,
                  edge_pools=("ID", "edge", "hard"), edge_reselect=1000,
                  pretrain=dict(preset="tiny"), grpo=dict(preset="tiny"), eval_per_op=16, eval_n=32,
                  eval_max_new=256, crossover_n=256, context_ops=(3, 6), contexts="zoo", budget_rl_steps=40,
                  side_steps=2000, edge_drawn=1024, eval_beyond=64,
                  seconds_hint="pre-training 30-32 minutes on 2 CPU cores, each RL run 2-5 minutes, each "
                               "evaluation 1-3 minutes: about 55 minutes in all",
                  notes=("Scale-downs (SPEC §2): sums and totals of at most two operands (`operands=2`), so every "
                         "kind of step above op 6 occurs in op 2-6; no distractor sentences (`distractors=0`: with "
                         "half of them this 1.1M-parameter model often names a quantity by the type of one sentence "
                         "and the place of another, and solves op 6 in 8-9 % of its samples); variable letters in "
                         "sequence from a random start (`letters=sequential`); the loss on solution tokens only "
                         "(`--loss_on solution`); bf16; attention and positions restart at each packed sample "
                         "(`--doc_mask`, as at sampling; the paper packs without a mask: calibration row "
                         "chosen-packed).",
                         "Deviation: pre-training has a 1 % tail of op 7-9 (a third of a percent each), as in the "
                         "sparse exposure of the paper's A.7. Without it (calibration row op2-6-d0-20M) the model "
                         "solves op 2-6 (verified pass@32 100 %) and none of 512 samples at each op from 7 to 12: "
                         "no edge.",
                         "The context and pretrain_exposure studies' own base models (four each) pre-train 2,000 "
                         "steps (8M tokens) each on 80,000 problems, not 5,000 on 200,000, so that each study fits "
                         "in two hours on 2 CPU cores.",
                         "The context study runs on op 3-6 (paper: 2-20), context B seen at op 3: with these "
                         "scale-downs op 2 of the teachers context has 200 distinct problems (op 3: 8,000), too few "
                         "to be 1 % or 10 % of 80,000 without each repeating dozens of times.")),
    "small": Scale(bands={"ID": evaluate.PAPER_BANDS["ID"]}, pools={}, ladder=(2, 20), rl_seeds=2,
                   pretrain=dict(preset="small"), grpo=dict(preset="small"),
                   eval_per_op=40, eval_n=32, eval_max_new=512, crossover_n=256, context_ops=(2, 20),
                   budget_rl_steps=100,
                   seconds_hint="not yet timed on a GPU; target about 20 minutes per study on one H100"),
    "paper": Scale(bands={"ID": evaluate.PAPER_BANDS["ID"]}, pools={}, ladder=(2, 20), rl_seeds=2,
                   pretrain=dict(preset="paper"), grpo=dict(preset="paper"),
                   eval_per_op=100, eval_n=128, eval_max_new=1024, crossover_n=1024, context_ops=(2, 20),
                   budget_rl_steps=200,
                   seconds_hint="not run here; pre-training alone is 6e18 FLOPs, ~4 h on one H100 at 40% MFU"),
}


def ops(op_range: tuple) -> str:
    """(lo, hi) -> "lo-hi", as recipes and reports write an op range."""
    return f"{op_range[0]}-{op_range[1]}"


# ----------------------------------------------------------------------------------------------------------------
# Measured bands: where the base model's edge of competence lies is read off its op ladder, by a rule fixed here

@dataclass(frozen=True)
class BandRule:
    """How the bands are chosen from the base model's verified pass@k per op (its ladder). ID is the
    pre-training range. Edge: the first ops above ID whose pass@K (K = the evaluation's samples per problem)
    lies in `edge_passk` and whose pass@1 is at most `edge_max_pass1`, up to `max_width` consecutive ops. Hard:
    the first ops above the edge with no verified sample among at least `hard_min_samples`, up to `max_width`
    consecutive ops. No edge op, or no hard op, and the study stops before RL: precondition not met."""
    edge_passk: tuple = (0.05, 0.60)
    edge_max_pass1: float = 0.15
    hard_min_samples: int = 512
    max_width: int = 4

    def describe(self) -> str:
        return (f"edge = the first ops above ID with verified pass@K in [{self.edge_passk[0]:.0%}, "
                f"{self.edge_passk[1]:.0%}] and pass@1 <= {self.edge_max_pass1:.0%}; hard = the first ops above the "
                f"edge with 0 verified of >= {self.hard_min_samples} samples (each at most {self.max_width} ops)")


BAND_RULE = BandRule()


def _run_from(ladder: dict, start: int, keep, width: int) -> tuple | None:
    """The consecutive ops from `start` for which keep(op) holds, at most `width` of them (None if start fails)."""
    if start not in ladder or not keep(start):
        return None
    end = start
    while end + 1 in ladder and keep(end + 1) and end + 1 - start < width:
        end += 1
    return start, end


def choose_bands(ladder: dict, id_range: tuple, rule: BandRule = BAND_RULE) -> tuple[dict | None, str]:
    """(bands, why) from a ladder {op: {"pass1", "passk", "samples", "verified"}}; bands is None when the
    preconditions of an edge study do not hold at this scale."""
    def is_edge(op):
        r = ladder[op]
        return rule.edge_passk[0] <= r["passk"] <= rule.edge_passk[1] and r["pass1"] <= rule.edge_max_pass1

    def is_hard(op):
        return ladder[op]["verified"] == 0 and ladder[op]["samples"] >= rule.hard_min_samples

    above = sorted(op for op in ladder if op > id_range[1])
    edge = next((run for op in above if (run := _run_from(ladder, op, is_edge, rule.max_width))), None)
    if edge is None:
        return None, "no op above the pre-training range is at the model's edge"
    hard = next((run for op in above if op > edge[1] and (run := _run_from(ladder, op, is_hard, rule.max_width))),
                None)
    if hard is None:
        return None, (f"edge = op {ops(edge)}, but no op above it is out of reach with enough samples: the ladder "
                      f"stops too early or evaluates too few samples")
    return {"ID": tuple(id_range), "edge": edge, "hard": hard}, f"edge = op {ops(edge)}, hard = op {ops(hard)}"


def pools_from_bands(bands: dict) -> dict:
    """The RL pools of the edge study, placed as the paper's are around its bands (ID 2-10, edge 11-14, hard
    15-20 -> pools 7-10, 9-12, 11-14, hard): the top of ID, straddling ID and edge, the edge, far beyond."""
    (lo, hi), (e_lo, e_hi) = bands["ID"], bands["edge"]
    return {"ID": (max(lo, hi - 3), hi), "mixed": (max(lo, hi - 1), min(e_hi, e_lo + 1)), "edge": (e_lo, e_hi),
            "hard": bands["hard"]}


def draws(recipe: str, n: int, seed: int, contexts: dict | None = None) -> list[dict]:
    """The first n problems of a recipe's stream, repeats kept: statistics of what the recipe generates (a small op
    without distractors has fewer distinct problems than a table asks for)."""
    parts, contexts = datagen.parse_recipe(recipe), contexts or datagen.load_contexts()
    return [datagen.sample_at(parts, seed, i, contexts) for i in range(n)]


@functools.lru_cache(maxsize=64)
def chance_rate(recipe: str, n: int = 2000) -> float:
    """The outcome reward's chance level at one op's recipe: the probability that two answers drawn from its answer
    distribution agree (sum of squared answer frequencies over n problems drawn from the recipe's stream, repeats
    kept: a small op without distractors has fewer than n distinct problems)."""
    counts: dict = {}
    for rec in draws(recipe, n, seed=7):
        counts[rec["answer"]] = counts.get(rec["answer"], 0) + 1
    return sum((c / n) ** 2 for c in counts.values())


# ----------------------------------------------------------------------------------------------------------------
# Jobs

@dataclass
class Job:
    """One unit of work in runs/<scale>/<name>: a pre-training, RL or evaluation run of the named script."""
    name: str
    kind: str  # "pretrain" | "grpo" | "eval"
    config: dict  # that script's Config fields (out_dir is added by the runner)
    note: str = ""  # what this job is, for the report


@dataclass
class Plan:
    study: str
    scale: str
    jobs: list[Job] = field(default_factory=list)
    evals: dict = field(default_factory=dict)  # label -> eval job name, in report order
    checks: dict = field(default_factory=dict)  # label -> eval job name of a precondition the verdict needs
    compute: list = field(default_factory=list)  # midtrain: one row per variant of the compute accounting

    def add(self, job: Job) -> str:
        if not any(j.name == job.name for j in self.jobs):
            self.jobs.append(job)
        return job.name


class StudyContext:
    """Paths and shared settings of one (scale, runs folder)."""

    def __init__(self, scale_name: str, runs_dir: str, reports_dir: str, workers: int, train_procs: int = 1):
        self.name, self.sc = scale_name, SCALES[scale_name]
        # fixed bands, or (scales with a ladder) ID only until measure_bands() reads edge and hard off the base
        self.bands, self.pools = dict(self.sc.bands), dict(self.sc.pools)
        self.ladder: dict = {}  # op -> the base model's verified pass@k there, once measured
        self.dir = Path(runs_dir) / scale_name
        self.reports = Path(reports_dir)
        self.tokenizer = self.dir / "tokenizer.json"
        self.workers = workers
        self.train_procs = train_procs  # pre-training processes (DDP under torchrun)
        self.evalsets: dict[Path, tuple] = {}  # path -> (op range, contexts, modes) of each held-out set planned

    def run_dir(self, job_name: str) -> Path:
        return self.dir / job_name

    def ensure_tokenizer(self) -> None:
        """Train the tokenizer every job of this context shares, with the scale's settings, unless it exists."""
        probe = self.pretrain("probe", "ops=2").config  # the scale's pre-training settings
        pretrain.ensure_tokenizer(self.tokenizer, probe["tokenizer_problems"], probe["vocab_size"], 0, self.workers)

    # -- job builders --

    def pretrain(self, name: str, recipe: str, note: str = "", init: str | None = None, **overrides) -> Job:
        p = {**self.sc.pretrain, "recipe": recipe, **overrides, "tokenizer": str(self.tokenizer),
             "workers": self.workers, "init_from": str(self.run_dir(init)) if init else ""}
        if init:
            p["model_args"] = ""  # mid-training continues the checkpoint's model as it is
        conf = asdict(preset_config(pretrain.Config, pretrain.PRESETS, p.pop("preset"), **p))
        key = hashlib.blake2b(json.dumps([conf["recipe"], conf["modes"], conf["train_problems"], conf["data_seed"],
                                          conf["seq_len"], "all draws"] + ["by op"] * conf["curriculum"]).encode(),
                             digest_size=4).hexdigest()
        conf["data_dir"] = str(self.dir / "data" / key)  # runs with the same data share one folder
        return Job(name, "pretrain", conf, note)

    def recipe(self, op_weights: str, contexts: str = "", modes: str = "") -> str:
        """A recipe over the scale's contexts (or `contexts`) with its data items: `2-4` or `2-4:.2,5-7:.8`."""
        spec = f"ops={op_weights} contexts={contexts or self.sc.contexts}" + (f" modes={modes}" if modes else "")
        return f"{spec} {self.sc.data}".strip()

    def base(self) -> Job:
        """The scale's base model: pre-trained on the ID band (weighted by the scale's mix)."""
        lo_hi = ops(self.sc.bands["ID"])
        return self.pretrain("base", self.recipe(self.sc.mix or lo_hi),
                             note=f"pre-trained on op {lo_hi}" + (f" ({self.sc.mix})" if self.sc.mix else ""))

    def grpo(self, name: str, init: str, pool_ops: tuple, note: str = "", **overrides) -> Job:
        g = {**self.sc.grpo, "init_from": str(self.run_dir(init)), "pool": self.recipe(ops(pool_ops)), **overrides}
        return Job(name, "grpo", asdict(preset_config(grpo.Config, grpo.PRESETS, g.pop("preset"), **g)), note)

    def eval(self, model_job: str, evalset: Path, n: int, bands: dict, suffix: str = "") -> Job:
        # labelled by the model's job, not by a study's name for it: studies share models and their evaluations
        conf = {"ckpt": [str(self.run_dir(model_job))], "label": [model_job], "data": str(evalset), "problems": 0,
                "n": n, "temperature": 0.7, "max_new_tokens": self.sc.eval_max_new, "seed": 0,
                "bands": ",".join(f"{k}={ops(v)}" for k, v in bands.items()), "keep_text": 1, "show_mistakes": 2}
        return Job(f"eval-{model_job}{suffix}", "eval", conf)

    def all_bands_evalset(self, bands_only: bool = False) -> Path:
        """The held-out set of every study but `context`: every op from the bottom of ID to the top of hard (of
        the ladder, where bands are measured), which the base model's ladder samples; with `bands_only`, the same
        problems on the ops of the bands alone, which every other model of these studies is evaluated on."""
        top = self.sc.ladder[1] if self.sc.ladder else self.sc.bands["hard"][1]
        (lo, hi), beyond = self.sc.bands["ID"], self.sc.eval_beyond
        per_op = {op: beyond for op in range(hi + 1, top + 1)} if beyond else {}
        name = "all-bands"
        if bands_only:
            per_op.update({op: 0 for op in range(lo, top + 1) if evaluate.band_of(op, self.bands) is None})
            name = "bands-" + "_".join(ops(rng) for rng in self.bands.values())
        return self.evalset(name + (f"-beyond{beyond}" if beyond else ""), (lo, top), per_op=per_op)

    def bands_evalset(self) -> Path:
        return self.all_bands_evalset(bands_only=True)

    def ladder_job(self) -> Job:
        """The base model's evaluation on every op of the all-bands set: its ladder, and its row in the reports."""
        job = self.eval("base", self.all_bands_evalset(), self.sc.eval_n, self.sc.bands)
        job.note = "the base model on every op: its ladder"
        return job

    def evalset(self, name: str, op_range: tuple, contexts: str = "", modes: str = "forward",
                per_op: dict | None = None) -> Path:
        """A fixed held-out set (split test) of exactly eval_per_op problems for every op of the range (`per_op`:
        other counts for some ops, 0 to leave one out), written when the first job that reads it runs (planning
        writes nothing)."""
        path = self.dir / "evalsets" / f"{name}.jsonl"
        self.evalsets[path] = (op_range, contexts or self.sc.contexts, modes, per_op or {})
        return path

    def write_evalset(self, path: Path) -> None:
        if path.exists() or path not in self.evalsets:
            return
        (lo, hi), contexts, modes, per_op = self.evalsets[path]
        lines = []
        for op in range(lo, hi + 1):  # an op's problems are the first of its stream: a larger set extends a smaller
            parts = datagen.parse_recipe(self.recipe(str(op), contexts, modes))
            count = per_op.get(op, self.sc.eval_per_op)  # 0: none
            lines += [item.json for item in datagen.generate_lines(parts, count, seed=1000 + op, split="test")]
        atomic_write(path, lambda f: f.write("".join(line + "\n" for line in lines).encode()))


# ----------------------------------------------------------------------------------------------------------------
# Studies: which jobs each finding needs

def plan_edge(ctx: StudyContext, plan: Plan) -> None:
    """F1: base vs RL on four pools (top of ID, mixed, edge, far beyond; those of `edge_pools`), evaluated on every
    band; the edge pool with `rl_seeds` seeds (and filtered to the model's edge where `edge_reselect` is set)."""
    sc = ctx.sc
    base = plan.add(ctx.base())
    evalset = ctx.bands_evalset()
    plan.evals["base"] = plan.add(ctx.ladder_job())
    for pool, rng in ctx.pools.items():
        if pool not in sc.edge_pools:
            continue
        for seed in range(sc.rl_seeds if pool == "edge" else 1):
            job = plan.add(pool_rl_job(ctx, base, pool, seed))
            tag = f" seed {seed}" if seed else ""
            plan.evals[f"RL {pool} ({ops(rng)}){tag}"] = plan.add(ctx.eval(job, evalset, sc.eval_n, ctx.bands))


def pool_rl_job(ctx: StudyContext, base: Job, pool: str, seed: int = 0) -> Job:
    """RL from the base model on one of the edge study's pools; crossover and weak_supervision reuse the edge
    pool's seed-0 run."""
    rng, tag = ctx.pools[pool], f" seed {seed}" if seed else ""
    return ctx.grpo(f"rl-{pool}" + (f"-s{seed}" if seed else ""), base, rng, seed=seed,
                    note=f"RL on op {ops(rng)} ({pool} pool){tag}", **edge_filter(ctx, pool))


def edge_variant(ctx: StudyContext, base: Job, prefix: str, label: str, note: str, **settings) -> Job:
    """RL on the edge pool with some settings changed, named prefix + label; where the settings are the scale's
    own, the edge study's run itself, and where they are a reward variant of the process_reward study, its run
    (one job, one name)."""
    prefix, label = next((("rl-edge-", other) for other, kw in PROCESS_VARIANTS.items() if kw == settings),
                         (prefix, label))
    name = prefix + "".join(c for c in label if c.isalnum())
    job = ctx.grpo(name, base, ctx.pools["edge"], note=note, **edge_filter(ctx), **settings)
    edge_run = pool_rl_job(ctx, base, "edge")
    return edge_run if job.config == edge_run.config else job


def edge_filter(ctx: StudyContext, pool: str = "edge") -> dict:
    """The edge pool is filtered to the model's edge where the scale sets `edge_reselect` (every RL run on it),
    from `edge_drawn` prompts where it sets that: a model that solves 1 % of an op keeps few of a small draw."""
    if pool != "edge" or not ctx.sc.edge_reselect:
        return {}
    settings = dict(reselect_every=ctx.sc.edge_reselect)
    if ctx.sc.edge_drawn:
        settings["pool_size"] = ctx.sc.edge_drawn
    return settings


def plan_crossover(ctx: StudyContext, plan: Plan) -> None:
    """Yue et al.: the same base and RL-on-edge models as `edge`, sampled many more times."""
    sc = ctx.sc
    base = plan.add(ctx.base())
    rl = plan.add(pool_rl_job(ctx, base, "edge"))
    evalset = ctx.bands_evalset()
    suffix = f"-n{sc.crossover_n}"
    plan.evals["base"] = plan.add(ctx.eval(base, evalset, sc.crossover_n, ctx.bands, suffix))
    plan.evals["RL edge"] = plan.add(ctx.eval(rl, evalset, sc.crossover_n, ctx.bands, suffix))


def side_steps(ctx: StudyContext) -> dict:
    """Pre-training length of the context and pretrain_exposure studies' own base models (`Scale.side_steps`),
    with the training problems cut in proportion: the same problems per step as the scale's base model (a narrow
    recipe such as op 2-4 has few distinct problems, and generating 200,000 of them costs minutes)."""
    if not ctx.sc.side_steps:
        return {}
    conf = ctx.pretrain("probe", ctx.recipe("2")).config  # the scale's base settings, as every job gets them
    problems = round(conf["train_problems"] * ctx.sc.side_steps / conf["max_steps"])
    return dict(max_steps=ctx.sc.side_steps, train_problems=problems)


CONTEXT_EXPOSURES = (0, 0.1, 1, 10)  # % of pre-training data in context B (teachers), at its lowest op only


def plan_context(ctx: StudyContext, plan: Plan) -> None:
    """F2: context B seen at 0 / 0.1 / 1 / 10 % (lowest op only) in pre-training, then RL on 50% A / 50% B.
    The precondition is checked on the 0 % base model: it solves A in range, and B barely above op `lo`."""
    lo, hi = ctx.sc.context_ops
    evalset = ctx.evalset("context-B", (lo, hi), contexts="teachers")
    for e in CONTEXT_EXPOSURES:
        share = e / 100
        recipe = f"{1 - share:.6g}*{ctx.recipe(f'{lo}-{hi}', 'zoo')}" + (
            f" + {share:.6g}*{ctx.recipe(str(lo), 'teachers')}" if share else "")
        base = plan.add(ctx.pretrain(f"base-B{e:g}", recipe, note=f"A op {lo}-{hi}, B {e:g}% at op {lo}",
                                     **side_steps(ctx)))
        if e == 0:
            set_a = ctx.evalset("context-A", (lo, hi), contexts="zoo")
            plan.checks["A"] = plan.add(ctx.eval(base, set_a, ctx.sc.eval_n, {"A": (lo, hi)}, suffix="-on-A"))
            plan.checks["B"] = plan.add(ctx.eval(base, evalset, ctx.sc.eval_n, {"B": (lo, hi)}, suffix="-on-B"))
        rl = plan.add(ctx.grpo(f"rl-B{e:g}", base, (lo, hi), pool=ctx.recipe(f"{lo}-{hi}", "zoo,teachers"),
                               note="RL on 50% A / 50% B"))
        plan.evals[f"B {e:g}% + RL"] = plan.add(ctx.eval(rl, evalset, ctx.sc.eval_n, {"B": (lo, hi)}))


MID_BETAS = (0.0, 0.2, 0.5, 0.8, 1.0)  # share of the compute budget spent on RL (SPEC §7)
COMPUTE_HEADER = ["variant", "mid-training steps", "mid-training tokens", "RL steps", "RL token-equivalents",
                  "total", "share of T"]


def rl_step_tokens(conf: dict, prompt_len: int) -> float:
    """The cost of one GRPO step of this config (SPEC §7), at its longest responses."""
    seq_tokens = conf["prompts_per_step"] * conf["group_size"] * (prompt_len + conf["max_new_tokens"])
    return grpo.rl_token_cost(seq_tokens, conf["kl_coef"] > 0)


def plan_midtrain(ctx: StudyContext, plan: Plan) -> None:
    """F3: one compute budget T split as mid-training (1 - beta) T + RL beta T, beta in MID_BETAS."""
    sc = ctx.sc
    base = plan.add(ctx.base())
    evalset = ctx.bands_evalset()
    probe = ctx.grpo("probe", base, ctx.pools["edge"]).config
    step_cost = rl_step_tokens(probe, prompt_len=mean_prompt_tokens(ctx.pools["edge"]))
    budget = sc.budget_rl_steps * step_cost  # T, in token-equivalents
    mid_recipe = ctx.recipe(f"{ops(ctx.bands['ID'])}:{1 - sc.mid_share:g},{ops(ctx.pools['edge'])}:{sc.mid_share:g}")
    batch = ctx.pretrain("probe", mid_recipe).config["batch_tokens"]
    for beta in MID_BETAS:
        init = base
        mid_steps = round((1 - beta) * budget / batch)
        if mid_steps > 0:
            init = plan.add(ctx.pretrain(f"mid-b{beta:g}", mid_recipe, init=base, max_steps=mid_steps,
                                         warmup_frac=0.15, note=f"mid-training {mid_steps} steps"))
        rl_steps = round(beta * budget / step_cost)
        last = init
        if rl_steps > 0:
            last = plan.add(ctx.grpo(f"rl-b{beta:g}", init, ctx.pools["edge"], max_steps=rl_steps,
                                     eval_every=max(1, rl_steps // 4), note=f"RL {rl_steps} steps"))
        label = f"beta={beta:g}"
        plan.evals[label] = plan.add(ctx.eval(last, evalset, sc.eval_n, ctx.bands))
        spent = mid_steps * batch + rl_steps * step_cost
        plan.compute.append([label, mid_steps, f"{mid_steps * batch:,.0f}", rl_steps, f"{rl_steps * step_cost:,.0f}",
                             f"{spent:,.0f}", f"{spent / budget:.3f}"])


def mean_prompt_tokens(op_range: tuple) -> int:
    """Mean prompt length for the compute accounting: about 80 + 17 * op tokens with the 2200-token tokenizer
    (measured on datagen output: 112 at op 2, 250 at op 10, 429 at op 20)."""
    return int(80 + 17 * (op_range[0] + op_range[1]) / 2)


PROCESS_VARIANTS = {"outcome": dict(reward="outcome"), "process a=0.2": dict(reward="process", alpha=0.2),
                    "process a=0.5": dict(reward="process", alpha=0.5), "strict": dict(reward="strict")}


def plan_process_reward(ctx: StudyContext, plan: Plan) -> None:
    """F4: RL on the edge pool with outcome, process (alpha 0.2 / 0.5) and strict rewards."""
    sc = ctx.sc
    base = plan.add(ctx.base())
    evalset = ctx.bands_evalset()
    plan.evals["base"] = plan.add(ctx.ladder_job())
    for label, kw in PROCESS_VARIANTS.items():
        job = edge_variant(ctx, base, "rl-edge-", label, f"RL on edge, {label} reward", **kw)
        plan.evals[label] = plan.add(ctx.eval(plan.add(job), evalset, sc.eval_n, ctx.bands))


HARD_SHARES = (0, 20, 50, 100)  # % of pre-training on the upper third of the ID range (appendix A.7)


def plan_pretrain_exposure(ctx: StudyContext, plan: Plan) -> None:
    sc = ctx.sc
    lo, hi = ctx.bands["ID"]
    cut = hi - max(1, (hi - lo + 1) // 3) + 1  # the upper range, e.g. op 8-10 of 2-10
    evalset = ctx.bands_evalset()
    tail, t = mix_tail(sc.mix, hi)  # every base model of the scale keeps its sparse tail above the range
    for h in HARD_SHARES:
        shares = [(ops((lo, cut - 1)), 1 - h / 100), (ops((cut, hi)), h / 100)]
        recipe = ctx.recipe(",".join([f"{r}:{w * (1 - t):.6g}" for r, w in shares if w] + ([tail] if tail else [])))
        base = plan.add(ctx.pretrain(f"base-hard{h}", recipe, note=f"{h}% of pre-training on op {cut}-{hi}",
                                     **side_steps(ctx)))
        rl = plan.add(ctx.grpo(f"rl-hard{h}", base, ctx.pools["edge"], note="RL on the edge pool"))
        plan.evals[f"hard {h}%"] = plan.add(ctx.eval(base, evalset, sc.eval_n, ctx.bands))
        plan.evals[f"hard {h}% + RL"] = plan.add(ctx.eval(rl, evalset, sc.eval_n, ctx.bands))


def mix_tail(mix: str, top: int) -> tuple[str, float]:
    """The items of an op mix (`2-3:.2,...,7-9:.01`) above op `top`, and their total weight: ("7-9:.01", 0.01)."""
    items = [item for item in mix.split(",") if item and int(item.split(":")[0].split("-")[0]) > top]
    return ",".join(items), sum(float(item.split(":")[1]) for item in items)


def plan_weak_supervision(ctx: StudyContext, plan: Plan) -> None:
    sc = ctx.sc
    base = plan.add(ctx.base())
    evalset = ctx.bands_evalset()
    plan.evals["base"] = plan.add(ctx.ladder_job())
    # the scarce pools are the first k prompts of the full pool (at the model's edge where the scale selects it,
    # from `edge_drawn` prompts); where the selection has fewer than k, the report's "RL prompts" column shows the
    # scarce run trained on all of it
    variants = {"all prompts": {}}
    variants.update({f"{k} prompts": dict(max_prompts=k) for k in sc.weak_pool_sizes})
    # label noise flips a binary reward, and a majority vote only defines an outcome reward: where the scale's RL
    # uses the process reward, the noise variants use the strict one (verified or not) and the vote the outcome one
    binary = {} if ctx.grpo("probe", base, ctx.pools["edge"]).config["reward"] != "process" else dict(reward="strict")
    tag = " (strict reward)" if binary else ""
    variants.update({f"noise 0.1{tag}": dict(reward_noise=0.1, **binary),
                     f"noise 0.3{tag}": dict(reward_noise=0.3, **binary),
                     "majority vote": dict(pseudo_label="majority", reward="outcome")})
    if binary:  # the clean run of the reward the noise variants flip
        variants["noise 0" + tag] = dict(binary)
    for label, kw in variants.items():  # a variant whose settings are the edge study's own reuses that run
        job = edge_variant(ctx, base, "rl-weak-", label, f"RL on edge, {label}", **kw)
        plan.evals[label] = plan.add(ctx.eval(plan.add(job), evalset, sc.eval_n, ctx.bands))


# ----------------------------------------------------------------------------------------------------------------
# Running jobs: skip what is done, resume what was interrupted

OUTPUT_NEUTRAL = ("resume", "overwrite", "device", "workers")  # settings that never change a job's outputs
SCRIPTS = {"pretrain": pretrain, "grpo": grpo, "eval": evaluate}  # the script that runs each kind of job


def run_job(ctx: StudyContext, job: Job, device: str) -> float:
    """Run one job unless its output exists; returns the seconds it took (when reused: as recorded, else 0)."""
    out = ctx.run_dir(job.name)
    spec_path = out / "job.json"
    conf = {**job.config, "out_dir": str(out), "device": device}
    recorded = load_json(spec_path, "job file") if spec_path.exists() else {}
    if recorded:
        old = recorded.get("config", {})
        # a setting the record lacks was added to the script after the job ran, which ran as its default does
        default = asdict(SCRIPTS[job.kind].Config())
        changed = sorted(k for k in set(old) | set(conf)
                         if k not in OUTPUT_NEUTRAL and old.get(k, default.get(k)) != conf.get(k))
        if changed:
            raise UserError(f"{out} was made with other settings ({', '.join(changed)}); delete that folder to redo "
                            f"it, or use another --runs_dir")
    spec = {"kind": job.kind, "note": job.note, "config": conf}
    done = out / ("results.json" if job.kind == "eval" else "final.pt")
    if done.exists():
        print(f"[{job.name}] done already, reusing {done}")
        if not spec_path.exists():  # run outside the study (e.g. its --dry_run command under torchrun)
            save_json(spec_path, spec)
        return float(recorded.get("seconds", 0.0))
    out.mkdir(parents=True, exist_ok=True)
    save_json(spec_path, spec)
    if job.kind == "eval":
        ctx.write_evalset(Path(conf["data"]))
    print(f"\n[{job.name}] {job.kind}: {job.note or ''}")
    t0 = time.time()
    if job.kind == "pretrain" and ctx.train_procs > 1:
        run_under_torchrun(job, out, device, ctx.train_procs)
    elif job.kind == "pretrain":
        pretrain.main(pretrain.Config(**{**conf, "resume": latest_checkpoint(out) is not None}))
    elif job.kind == "grpo":
        grpo.main(grpo.Config(**{**conf, "resume": latest_checkpoint(out) is not None}))
    else:
        evaluate.main(evaluate.Config(**conf))
    seconds = time.time() - t0
    save_json(spec_path, {**spec, "seconds": seconds})
    return seconds


def run_under_torchrun(job: Job, out: Path, device: str, procs: int) -> None:
    """A pre-training job as `procs` DDP processes; on a CPU each gets an equal share of the cores (the tiny model
    trains at 12-14k tokens/s as two one-thread processes on 2 quiet cores: its log prints the rate)."""
    resume = latest_checkpoint(out) is not None
    flags = shlex.split(job_command(job, out))[2:] + [f"--device={device}", f"--resume={resume}"]
    env = dict(os.environ)
    if device == "cpu":
        env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or procs) // procs))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={procs}",
           str(Path(__file__).with_name("pretrain.py")), *flags]
    print("  " + " ".join(shlex.quote(c) for c in cmd))
    if subprocess.run(cmd, env=env).returncode != 0:
        raise UserError(f"[{job.name}] pre-training under torchrun failed (its log: {out / 'log.txt'})")


def job_command(job: Job, out: Path) -> str:
    """The stand-alone command that does this job, with the flags that differ from the script's defaults. Run a
    training job under `torchrun --nproc_per_node=N` this way, and the study reuses its final.pt."""
    script = SCRIPTS[job.kind]
    default = asdict(script.Config())
    flags = []
    for k, v in {**job.config, "out_dir": str(out)}.items():
        if v != default.get(k):
            flags += [shlex.quote(f"--{k}={item}") for item in (v if isinstance(v, list) else [v])]
    return f"python {script.__name__}.py {' '.join(flags)}"


# ----------------------------------------------------------------------------------------------------------------
# Reading results back

def load_eval(ctx: StudyContext, job_name: str) -> tuple[dict, list[dict]]:
    """(the evaluation report of that job's one checkpoint, its per-sample verdicts). A report reads each job many
    times, so the files are parsed once per version (a re-run evaluation has a new results.json)."""
    out = ctx.run_dir(job_name)
    return _read_eval(out, (out / "results.json").stat().st_mtime_ns)


def by_study_bands(ctx: StudyContext, job_name: str, bands: dict) -> dict:
    """An evaluation's report with its pass@k per band counted by the study's bands: the base model's ladder is
    sampled before the bands are read off it, so its own report knows only the pre-training range."""
    rep, rows = load_eval(ctx, job_name)
    return {**rep, "pass_at_k": {**rep["pass_at_k"], "band": evaluate.pass_at_k_by(rows, "band", None, bands)}}


@functools.lru_cache(maxsize=128)
def _read_eval(out: Path, _version: int) -> tuple[dict, list[dict]]:
    (label, rep), = json.loads((out / "results.json").read_text())["reports"].items()
    with open(out / f"samples_{label}.jsonl", encoding="utf-8") as f:
        return rep, [json.loads(line) for line in f]


def eval_results(ctx: StudyContext, job_name: str) -> tuple[dict, dict]:
    """(the evaluation report of that job's one checkpoint, per-problem counts {id: {op, n, c_answer, c_verified}})."""
    rep, rows = load_eval(ctx, job_name)
    return rep, evaluate.per_problem(rows)


def sample_profile(ctx: StudyContext, job_name: str, lo: int, hi: int) -> dict:
    """What the samples on op lo..hi look like: shares answer-right / verified / hacked, and how many steps the
    model wrote against how many the gold graph has (a model that never saw longer problems stops early)."""
    rows = [r for r in load_eval(ctx, job_name)[1] if lo <= r["op"] <= hi]
    share = (lambda f: sum(map(f, rows)) / len(rows)) if rows else (lambda f: float("nan"))
    return {"samples": len(rows), "answer": share(lambda r: r["answer_correct"]),
            "verified": share(lambda r: r["verified"]), "hacked": share(lambda r: r["hacked"]),
            "too_few_steps": share(lambda r: r["n_pred"] < r["n_gold"]),
            "steps_written": share(lambda r: r["n_pred"]), "steps_needed": share(lambda r: r["n_gold"])}


def profile_table(ctx: StudyContext, plan: Plan) -> tuple[str, dict]:
    rows, numbers = [], {}
    for label, job in plan.evals.items():
        for band, (lo, hi) in ctx.bands.items():
            p = numbers.setdefault(label, {})[band] = sample_profile(ctx, job, lo, hi)
            rows.append([label, f"{band} (op {lo}-{hi})", p["samples"], pct(p["answer"]), pct(p["verified"]),
                         pct(p["hacked"]), pct(p["too_few_steps"]),
                         f"{p['steps_written']:.1f} / {p['steps_needed']:.1f}"])
    return markdown_table(["model", "band", "samples", "answer right %", "verified %", "hacked %",
                           "fewer steps than needed %", "steps written / needed"], rows), numbers


def band_pass(pp: dict, lo: int, hi: int, k: int, metric: str = "verified") -> dict[str, float]:
    """{problem id: pass@k} over the problems whose op lies in [lo, hi]."""
    key = "c_verified" if metric == "verified" else "c_answer"
    return {pid: evaluate.pass_at_k(p["n"], p[key], min(k, p["n"])) for pid, p in pp.items() if lo <= p["op"] <= hi}


def mean_se(values: list[float]) -> tuple[float, float]:
    m = len(values)
    if m == 0:
        return float("nan"), float("nan")
    mu = sum(values) / m
    var = sum((v - mu) ** 2 for v in values) / (m - 1) if m > 1 else 0.0
    return mu, math.sqrt(var / m)


def paired_delta(a: dict, b: dict) -> tuple[float, float, int]:
    """Mean and standard error of a - b over the problems both dicts score (same held-out problems)."""
    common_ids = sorted(set(a) & set(b))
    mu, se = mean_se([a[i] - b[i] for i in common_ids])
    return mu, se, len(common_ids)


def pct(x: float) -> str:
    return "n/a" if x != x else f"{100 * x:.1f}"


def pass_table(ctx: StudyContext, plan: Plan, bands: dict, ks: list[int], metric: str = "verified") -> tuple[str, dict]:
    """Markdown: pass@k per model and band, with problems x samples; returns (table, {label: {band: {k: p}}})."""
    rows, numbers = [], {}
    for label, job in plan.evals.items():
        _, pp = eval_results(ctx, job)
        numbers[label] = {}
        for band, (lo, hi) in bands.items():
            cells = []
            for k in ks:
                vals = band_pass(pp, lo, hi, k, metric)
                mu, se = mean_se(list(vals.values()))
                numbers[label].setdefault(band, {})[k] = mu
                cells.append(f"{pct(mu)} ± {pct(se)}")
            m = len(band_pass(pp, lo, hi, 1, metric))
            n = min((p["n"] for p in pp.values()), default=0)
            rows.append([label, f"{band} (op {ops((lo, hi))})", f"{m} x {n}", *cells])
    return markdown_table(["model", "band", "problems x samples", *[f"pass@{k}" for k in ks]], rows), numbers


# ----------------------------------------------------------------------------------------------------------------
# Reports

def ladder_of(ctx: StudyContext, job_name: str) -> dict:
    """The base model's ladder from its evaluation: per op, verified pass@1 and pass@K (K = samples per problem),
    the samples and how many were verified, and the outcome reward's chance level."""
    _, pp = eval_results(ctx, job_name)
    ladder = {}
    for op in sorted({p["op"] for p in pp.values()}):
        probs = [p for p in pp.values() if p["op"] == op]
        n = min(p["n"] for p in probs)
        ladder[op] = {"problems": len(probs), "n": n,
                      "pass1": mean_se([evaluate.pass_at_k(p["n"], p["c_verified"], 1) for p in probs])[0],
                      "passk": mean_se([evaluate.pass_at_k(p["n"], p["c_verified"], n) for p in probs])[0],
                      "samples": sum(p["n"] for p in probs), "verified": sum(p["c_verified"] for p in probs),
                      "answer_passk": mean_se([evaluate.pass_at_k(p["n"], p["c_answer"], n) for p in probs])[0],
                      "chance": chance_rate(ctx.recipe(str(op)))}
    return ladder


def measure_bands(ctx: StudyContext) -> str:
    """Read the bands off the base model's ladder (its evaluation must exist): sets ctx.ladder, and ctx.bands and
    ctx.pools when an edge and a hard band qualify. Returns why (or why not)."""
    ctx.ladder = ladder_of(ctx, ctx.ladder_job().name)
    bands, why = choose_bands(ctx.ladder, ctx.sc.bands["ID"])
    if bands is not None:
        ctx.bands, ctx.pools = bands, pools_from_bands(bands)
    return why


def ladder_section(ctx: StudyContext, why: str) -> list[str]:
    """The report's account of how the bands were chosen: the rule, the ladder, the chosen bands and pools."""
    if not ctx.ladder:
        return []  # bands fixed by the scale
    band_of = {op: name for name, (lo, hi) in ctx.bands.items() for op in range(lo, hi + 1)}
    k = max(r["n"] for r in ctx.ladder.values())
    rows = [[op, f"{r['problems']} x {r['n']}", pct(r["pass1"]), pct(r["passk"]), f"{r['verified']}/{r['samples']}",
             pct(r["answer_passk"]), pct(r["chance"]), band_of.get(op, "-")] for op, r in ctx.ladder.items()]
    lines = ["## The base model's ladder and the bands read off it", "",
             f"Rule, fixed in `study.py` before any run: {BAND_RULE.describe()}. Result: {why}.", "",
             markdown_table(["op", "problems x samples", "verified pass@1", f"verified pass@{k}", "verified samples",
                             f"answer pass@{k}", "chance that two answers agree", "band"], rows), "",
             "*Chance that two answers agree*: the outcome reward's chance level at that op (two draws from the op's "
             "answer distribution, 2,000 problems) -- a right answer is worth little as evidence where it is high.",
             ""]
    if ctx.pools:
        lines += ["RL pools: " + ", ".join(f"{k} = op {ops(v)}" for k, v in ctx.pools.items()) + ".", ""]
    return lines + step_type_section(ctx, list(ctx.ladder))


def step_type_section(ctx: StudyContext, op_list: list[int], n: int = 400) -> list[str]:
    """Which kinds of step the problems of each op need (share of n drawn problems with at least one): the edge
    should differ from the pre-training range in depth only, never in the kinds of step."""
    contexts = datagen.load_contexts()
    rows = []
    for op in op_list:
        counts = dict.fromkeys(datagen.STEP_TYPES, 0)
        for rec in draws(ctx.recipe(str(op)), n, seed=11, contexts=contexts):
            for kind in datagen.step_types(rec, contexts):
                counts[kind] += 1
        rows.append([op] + [f"{100 * c / n:.0f}" for c in counts.values()])
    return ["## Kinds of step per op", "",
            f"Share of problems (%, {n} per op, recipe `{ctx.recipe('OP')}`) whose solution has at least one step "
            "of each kind. Pre-training covers op " + ops(ctx.sc.bands["ID"]) + ".", "",
            markdown_table(["op", *datagen.STEP_TYPES], rows), ""]


def verdict_line(ok: bool | None | str, text: str) -> str:
    """ok: True / False / None (inconclusive) / "precondition" (the setup the finding needs does not hold)."""
    mark = {True: "**Reproduced**", False: "**Not reproduced**", None: "**Inconclusive**",
            "precondition": "**Precondition not met**"}[ok]
    return f"{mark}: {text}"


# What the edge study must show to count as reproducing F1, fixed before any run: the base model solves ID
# (pass@K >= 95 %), is at its edge on the edge band (5-60 %) and nowhere on hard (<= 2 %); RL on the edge pool
# then raises edge-band pass@K by >= 10 points and >= 2 standard errors (paired over problems, mean over seeds)
# and raises pass@1, while RL on the in-range and far-too-hard pools moves edge pass@K by under a third of that.
EDGE_CRITERIA = {"id_min": 0.95, "edge": (0.05, 0.60), "hard_max": 0.02, "gain_min": 0.10, "gain_se": 2.0,
                 "others_frac": 1 / 3}


def edge_verdict(base: dict, gain: tuple, gain_pass1: float, others: dict, k: int) -> tuple[bool | None | str, str]:
    """base: the base model's pass@K per band; gain: (delta, SE) of edge-band pass@K after RL on the edge pool;
    gain_pass1: the same for pass@1; others: {pool: delta of edge-band pass@K} for the ID and hard pools."""
    c = EDGE_CRITERIA
    failed = [f"{band} pass@{k} {pct(base[band])} % is not {want}" for band, good, want in (
        ("ID", base["ID"] >= c["id_min"], f">= {c['id_min']:.0%}"),
        ("edge", c["edge"][0] <= base["edge"] <= c["edge"][1], f"in {c['edge'][0]:.0%}-{c['edge'][1]:.0%}"),
        ("hard", base["hard"] <= c["hard_max"], f"<= {c['hard_max']:.0%}")) if not good]
    if failed:
        return "precondition", "the base model " + "; ".join(failed) + " (SPEC §1: RL can only extend an edge)."
    d, se = gain
    if se != se:
        return None, "no standard error for the edge-band change."
    small = all(abs(o) < c["others_frac"] * d for o in others.values())
    ok = d >= c["gain_min"] and d >= c["gain_se"] * se and gain_pass1 > 0 and small
    return ok, (f"RL on the edge pool changes edge-band pass@{k} by {pct(d)} points (SE {pct(se)}; needed >= "
                f"{100 * c['gain_min']:.0f} and >= {c['gain_se']:g} SE) and pass@1 by {pct(gain_pass1)}; the other "
                f"pools change it by " + ", ".join(f"{name} {pct(o)}" for name, o in others.items())
                + " (needed: under a third of the edge pool's).")


def report_edge(ctx: StudyContext, plan: Plan) -> tuple[list[str], dict]:
    reps = [load_eval(ctx, j)[0] for j in plan.evals.values()]
    n = min(rep["samples"] // rep["problems"] for rep in reps)
    ks = evaluate.default_ks(n)
    table, numbers = pass_table(ctx, plan, ctx.bands, ks)
    lo, hi = ctx.bands["edge"]
    per_k = {k: {label: band_pass(eval_results(ctx, job)[1], lo, hi, k) for label, job in plan.evals.items()}
             for k in (1, n)}
    base = per_k[n]["base"]
    deltas = {label: paired_delta(v, base) for label, v in per_k[n].items() if label != "base"}
    lines = ["## pass@k (verified) by band", "", table, "",
             "Mean pass@k over problems ± standard error; *verified* = every step right and the answer right.", "",
             f"## Change in edge-band pass@{n} (verified) against the base model, paired by problem", "",
             markdown_table(["RL pool", f"Δ pass@{n}", "SE", "problems"],
                            [[k, pct(d), pct(se), m] for k, (d, se, m) in deltas.items()]), ""]

    def seed_mean(k):  # per-problem pass@k of RL on the edge pool, averaged over its seeds
        runs = [v for label, v in per_k[k].items() if label.startswith("RL edge")]
        return {pid: sum(r[pid] for r in runs) / len(runs) for pid in runs[0]}

    d_edge, se_edge, _ = paired_delta(seed_mean(n), base)
    d_pass1 = paired_delta(seed_mean(1), per_k[1]["base"])[0]
    others = {k.split(" (")[0]: d for k, (d, _, _) in deltas.items() if k.startswith(("RL ID", "RL hard"))}
    base_k = {band: numbers["base"][band][n] for band in ("ID", "edge", "hard")}
    ok, why = edge_verdict(base_k, (d_edge, se_edge), d_pass1, others, n)
    lines.append(verdict_line(ok, why))
    rl_reward_plot(ctx, plan, report_dir(ctx, plan) / "rl_reward.png")
    lines += ["", "## Reward during RL", "", "The training reward of each RL run, step by step (a running mean over "
              f"{REWARD_SMOOTHING} steps), on the prompts of its own pool.", "", "![RL reward](rl_reward.png)", "",
              rl_runs_table(ctx, plan)]
    profile, profiles = profile_table(ctx, plan)
    lines += ["", "## What the samples look like, per band", "",
              "RL can only sharpen what the model sometimes does: a band where no sample is verified gives RL with "
              "the outcome reward nothing to reinforce but right answers reached by wrong steps (*hacked*). A model "
              "that writes fewer steps than the gold graph has has not learned to extend its chain that far.", "",
              profile, ""]
    return lines, {"pass_at_k": numbers, "edge_deltas": deltas, "edge_gain_seed_mean": [d_edge, se_edge],
                   "edge_gain_pass1": d_pass1, "samples": profiles, "verdict": ok}


REWARD_SMOOTHING = 5  # steps in the running mean of the RL reward plots


def rl_runs_table(ctx: StudyContext, plan: Plan) -> str:
    """Each RL run's prompts (drawn, and kept by each edge selection) and its train reward at the start and end."""
    rows = []
    for job in (j for j in plan.jobs if j.kind == "grpo"):
        steps = rl_metrics(ctx, job.name)[0]
        kept = rl_pools(steps, job.config["reselect_every"])
        smooth = smoothed_reward(steps)
        rows.append([f"{job.name} ({job.note})", job.config["pool_size"], " → ".join(map(str, kept)) or "all",
                     f"{smooth[0][1]:.2f} → {smooth[-1][1]:.2f}" if smooth else ""])
    return markdown_table(["RL run", "prompts drawn", "kept at the edge (each selection)",
                           f"train reward (running mean of {REWARD_SMOOTHING} steps), step 1 → last"], rows)


def rl_metrics(ctx: StudyContext, job_name: str) -> tuple[list[dict], list[dict]]:
    """An RL run's log: one row per step (metrics.jsonl) and one per held-out evaluation (evals.jsonl)."""
    run = ctx.run_dir(job_name)
    return read_log(run / "metrics.jsonl"), read_log(run / "evals.jsonl")


def rl_pools(rows: list[dict], reselect_every: int) -> list[int]:
    """The prompts an RL run trained on after each edge selection (steps 0, K, 2K, ...), from its metrics.jsonl
    rows (grpo.py records `pool_prompts` every step); [] for a run without selection."""
    if not reselect_every:
        return []
    return [int(r["pool_prompts"]) for r in rows if (r["step"] - 1) % reselect_every == 0]


def smoothed_reward(rows: list[dict]) -> list[tuple[int, float]]:
    """(step, the train reward's running mean over the last REWARD_SMOOTHING steps) for each row of metrics.jsonl."""
    rewards = [r["reward"] for r in rows]
    return [(r["step"], statistics.fmean(rewards[max(0, i + 1 - REWARD_SMOOTHING):i + 1])) for i, r in enumerate(rows)]


def rl_reward_plot(ctx: StudyContext, plan: Plan, path: Path) -> None:
    series = {}
    for job in plan.jobs:
        if job.kind == "grpo":
            series[job.note or job.name] = smoothed_reward(rl_metrics(ctx, job.name)[0])
    plot_lines(path, series, xlabel="RL step", ylabel="mean training reward",
               title=f"{plan.study} ({ctx.name} scale): reward during RL")


# Yue et al.'s crossover, fixed before any run. Preconditions: at least `min_samples` samples per problem (else
# the curves have no room to cross) and RL ahead of the base model at k=1 on the edge band by `lead_k1_min` and 2
# standard errors (else RL sharpened nothing). Reproduced iff the base model then matches or beats RL at the
# largest k; not reproduced iff RL is still ahead there by 2 standard errors; inconclusive in between.
CROSSOVER_CRITERIA = {"min_samples": 256, "lead_k1_min": 0.05, "se": 2.0}


def crossover_verdict(lead_1: tuple, lead_n: tuple, n: int) -> tuple[bool | None | str, str]:
    """lead_1, lead_n: (mean, SE) of RL minus base pass@1 and pass@n on the edge band, paired over problems."""
    c = CROSSOVER_CRITERIA
    (d1, se1), (dn, sen) = lead_1, lead_n
    said = (f"on the edge band RL leads the base model by {pct(d1)} points (SE {pct(se1)}) at k=1 and by {pct(dn)} "
            f"(SE {pct(sen)}) at k={n}")
    if n < c["min_samples"]:
        return "precondition", f"{n} samples per problem, fewer than the {c['min_samples']} the curves need to cross."
    if d1 != d1 or dn != dn:
        return None, "no problems to compare."
    if d1 < c["lead_k1_min"] or d1 < c["se"] * se1:
        return "precondition", (said + f"; RL must lead at k=1 by >= {100 * c['lead_k1_min']:.0f} points and "
                                f"{c['se']:g} SE for there to be anything to cross.")
    ok = True if dn <= 0 else (False if dn >= c["se"] * sen else None)
    return ok, said + {True: ": the curves cross.", False: ": RL is still ahead at the largest k.",
                       None: ": the curves meet within the noise."}[ok]


def report_crossover(ctx: StudyContext, plan: Plan) -> tuple[list[str], dict]:
    n = ctx.sc.crossover_n
    ks = evaluate.default_ks(n)
    table, numbers = pass_table(ctx, plan, ctx.bands, ks)
    lines = ["## pass@k (verified) by band", "", table, ""]
    crossings = {band: [numbers["RL edge"][band][k] - numbers["base"][band][k] for k in ks] for band in ctx.bands}
    lo, hi = ctx.bands["edge"]
    pp_rl, pp_base = (eval_results(ctx, plan.evals[label])[1] for label in ("RL edge", "base"))
    lead = {k: paired_delta(band_pass(pp_rl, lo, hi, k), band_pass(pp_base, lo, hi, k))[:2] for k in (1, n)}
    lines.append(verdict_line(*crossover_verdict(lead[1], lead[n], n)))
    return lines, {"pass_at_k": numbers, "rl_minus_base": crossings}


# F2, fixed before any run: after RL, the models whose pre-training showed context B at >= 1 % must solve B above its
# lowest op better than those that saw it at 0 or 0.1 %, by at least `gap_min` (mean pass@n over those ops).
# Inconclusive when no model solves B there at all (RL transferred nothing to compare).
# F2's precondition, on the 0 % base model (verified pass@n): context A solved across its range, context B not
# above its lowest op -- otherwise there is nothing for RL to transfer. Then the verdict: >= 1 % exposure leads.
CONTEXT_CRITERIA = {"gap_min": 0.10, "a_min": 0.50, "b_beyond_max": 0.10}


def context_precondition(a_range: float, b_beyond: float) -> tuple[bool, str]:
    """a_range: the 0 % base model's mean pass@n on A over the study's ops; b_beyond: on B above the lowest op."""
    ok = a_range >= CONTEXT_CRITERIA["a_min"] and b_beyond <= CONTEXT_CRITERIA["b_beyond_max"]
    return ok, (f"the 0 % base model solves context A at {pct(a_range)} (needed >= "
                f"{100 * CONTEXT_CRITERIA['a_min']:.0f}) and context B above its lowest op at {pct(b_beyond)} "
                f"(needed <= {100 * CONTEXT_CRITERIA['b_beyond_max']:.0f})")


def context_verdict(beyond: list[float]) -> tuple[bool | None, str]:
    """beyond: mean pass@n on B above its lowest op, one per exposure in CONTEXT_EXPOSURES (after RL)."""
    said = "mean pass@n on B above the lowest op: " + ", ".join(
        f"{e:g}% exposure {pct(v)}" for e, v in zip(CONTEXT_EXPOSURES, beyond))
    if not any(v > 0 for v in beyond):
        return None, said + "; no model solves B there."
    gap = min(v for e, v in zip(CONTEXT_EXPOSURES, beyond) if e >= 1) - max(
        v for e, v in zip(CONTEXT_EXPOSURES, beyond) if e < 1)
    return gap >= CONTEXT_CRITERIA["gap_min"], (said + f"; >= 1 % exposure leads < 1 % by {pct(gap)} points "
                                                f"(needed >= {100 * CONTEXT_CRITERIA['gap_min']:.0f}).")


def pass_by_op(pp: dict, lo: int, hi: int, n: int) -> dict[int, float]:
    """Mean pass@n over the problems of each op from lo to hi."""
    return {op: mean_se(list(band_pass(pp, op, op, n).values()))[0] for op in range(lo, hi + 1)}


def above_lowest(by_op: dict[int, float], lo: int, hi: int) -> float:
    """The mean over the ops above the lowest one, where transfer to context B has to show."""
    return sum(v for op, v in by_op.items() if op > lo) / max(1, hi - lo)


def report_context(ctx: StudyContext, plan: Plan) -> tuple[list[str], dict]:
    lo, hi = ctx.sc.context_ops
    rows, numbers = [], {}
    n = ctx.sc.eval_n
    for label, job in plan.evals.items():
        _, pp = eval_results(ctx, job)
        by_op = pass_by_op(pp, lo, hi, n)
        numbers[label] = by_op
        rows.append([label, *[pct(by_op[op]) for op in range(lo, hi + 1)]])
    pre = {name: pass_by_op(eval_results(ctx, job)[1], lo, hi, n) for name, job in plan.checks.items()}
    pre_ok, pre_said = context_precondition(sum(pre["A"].values()) / len(pre["A"]), above_lowest(pre["B"], lo, hi))
    lines = [f"## Precondition: the 0 % base model, verified pass@{n} by op", "",
             markdown_table(["context", *[f"op {op}" for op in range(lo, hi + 1)]],
                            [[c, *[pct(pre[c][op]) for op in range(lo, hi + 1)]] for c in ("A", "B")]), "",
             ("Met: " if pre_ok else "Not met: ") + pre_said + ".", "",
             f"## pass@{n} (verified) on context B by op, after RL", "",
             markdown_table(["pre-training exposure of B", *[f"op {op}" for op in range(lo, hi + 1)]], rows), ""]
    ok, said = context_verdict([above_lowest(by_op, lo, hi) for by_op in numbers.values()])
    lines.append(verdict_line(ok, said) if pre_ok else verdict_line("precondition", pre_said + "; " + said))
    topo = topology_analysis(ctx, plan)
    lines += ["", "## Replication or creation", "",
              "For verified context-B solutions: the share whose solution-graph topology is isomorphic to a "
              "context-A topology seen in pre-training (replication), and the mean Weisfeiler-Lehman similarity "
              "to the nearest A topology (1 = same).", ""]
    lines.append(markdown_table(["model", "op", "verified B solutions", "isomorphic to an A graph", "WL similarity"],
                                topo) if topo else "No model wrote a verified context-B solution: nothing to compare.")
    return lines, {"pass_at_n_by_op": numbers, "precondition": {"met": pre_ok, "base_B0_by_op": pre}}


def solution_dag(graph: dict):
    """A record's gold solution graph as an unlabeled networkx DAG: edges parent -> child, each node marked only
    with its kind of rule (sum / diff / copy / const, and whether a constant joins it) -- names do not count."""
    import networkx as nx
    g = nx.DiGraph()
    for node in graph["nodes"]:
        g.add_node(node["name"], kind=node["combine"] + ("+k" if node["k"] is not None else ""))
        for p in node["parents"]:
            g.add_edge(p, node["name"])
    return g


def replication_stats(solved: list[dict], seen: list[dict]) -> tuple[int, float]:
    """For records whose solutions a model got right (`solved`) and records seen in training (`seen`): how many
    solved graphs are isomorphic to some seen graph (replication), and the mean Weisfeiler-Lehman similarity
    (Jaccard of 2-iteration subtree hashes) to the nearest seen graph (1 = same structure, lower = new)."""
    import networkx as nx

    def wl(g):
        with warnings.catch_warnings():  # networkx >= 3.5 notes that its directed-graph hashes changed; ours are
            warnings.simplefilter("ignore")  # only compared within one run
            hashes = nx.weisfeiler_lehman_subgraph_hashes(g, node_attr="kind", iterations=2)
        return {h for hs in hashes.values() for h in hs}

    cands = [(g, wl(g)) for g in map(solution_dag, (r["graph"] for r in seen))]
    iso, sims = 0, []
    for rec in solved:
        g = solution_dag(rec["graph"])
        h = wl(g)
        iso += any(nx.is_isomorphic(g, a, node_match=lambda x, y: x["kind"] == y["kind"]) for a, _ in cands)
        sims.append(max((len(h & ha) / len(h | ha) for _, ha in cands), default=0.0))
    return iso, sum(sims) / max(1, len(sims))


def topology_analysis(ctx: StudyContext, plan: Plan, per_op: int = 30, a_graphs: int = 400) -> list[list]:
    """Compare each verified B solution's solution DAG with the context-A graphs of the same op that pre-training
    showed (the first `a_graphs` problems of its data stream): replicated structure, or a new one?"""
    rows = []
    for label, job in plan.evals.items():
        conf = json.loads((ctx.run_dir(job) / "job.json").read_text())["config"]
        records = {r["id"]: r for r in datagen.read_jsonl(conf["data"])}
        by_op: dict = {}
        for s in load_eval(ctx, job)[1]:
            if s["verified"] and len(by_op.setdefault(s["op"], [])) < per_op:
                by_op[s["op"]].append(records[s["id"]])
        if not any(by_op.values()):
            continue  # nothing verified: no need to rebuild the pre-training graphs
        rl_conf = json.loads((Path(conf["ckpt"][0]) / "job.json").read_text())["config"]
        pt_conf = json.loads((Path(rl_conf["init_from"]) / "job.json").read_text())["config"]
        a_recipe = [p for p in datagen.parse_recipe(pt_conf["recipe"]) if "zoo" in p.contexts]
        a_by_op: dict = {}
        for rec in datagen.generate(a_recipe, a_graphs, seed=pt_conf.get("data_seed", 0), split="train"):
            a_by_op.setdefault(rec["op"], []).append(rec)
        for op, recs in sorted(by_op.items()):
            if recs:
                iso, sim = replication_stats(recs, a_by_op.get(op, []))
                rows.append([label, op, len(recs), f"{iso}/{len(recs)}", f"{sim:.2f}"])
    return rows


# F3, fixed before any run: the best mid-training + RL split must beat spending the whole budget on RL on OOD-hard
# pass@n by 2 standard errors (paired over problems) to reproduce; it fails to reproduce only when even its upper
# bound (mean + 2 SE) stays below the paper's gain (+10.8 points on average); inconclusive in between, and when no
# model solves the hard band at all.
MIDTRAIN_CRITERIA = {"se": 2.0, "paper_gain": 0.108}


def midtrain_verdict(best: str, gain: tuple, solved: float, n: int) -> tuple[bool | None, str]:
    """best: the split with the largest gain; gain: its (mean, SE) OOD-hard pass@n minus full RL's; solved: the
    best mean OOD-hard pass@n of any model."""
    c = MIDTRAIN_CRITERIA
    d, se = gain
    said = (f"the best mid-training + RL split ({best}) changes OOD-hard pass@{n} by {pct(d)} points (SE {pct(se)}) "
            "against spending the whole budget on RL")
    if not solved > 0 or se != se:
        return None, said + "; no model solves the hard band, so there is nothing to compare."
    if d > 0 and d >= c["se"] * se:
        return True, said + "."
    if d + c["se"] * se < c["paper_gain"]:
        return False, said + f"; even +{c['se']:g} SE stays below the paper's +{100 * c['paper_gain']:.1f}."
    return None, said + "; within the noise of both no effect and the paper's."


def report_midtrain(ctx: StudyContext, plan: Plan) -> tuple[list[str], dict]:
    sc = ctx.sc
    n = sc.eval_n
    ks = evaluate.default_ks(n)
    table, numbers = pass_table(ctx, plan, {"edge": ctx.bands["edge"], "hard": ctx.bands["hard"]}, ks)
    lo, hi = ctx.bands["hard"]
    full_rl = band_pass(eval_results(ctx, plan.evals["beta=1"])[1], lo, hi, n)
    deltas = {label: paired_delta(band_pass(eval_results(ctx, job)[1], lo, hi, n), full_rl)
              for label, job in plan.evals.items() if label != "beta=1"}
    lines = ["## Compute accounting (SPEC §7), fixed when the study is planned", "",
             f"Budget T = {sc.budget_rl_steps} RL steps of the edge pool, in pre-training token-equivalents; "
             "mid-training spends (1 - beta) T at its batch size, RL beta T at its step cost.", "",
             markdown_table(COMPUTE_HEADER, plan.compute), "",
             "## pass@k (verified), equal compute", "", table, "",
             f"## OOD-hard pass@{n} against full RL (beta = 1), paired by problem", "",
             markdown_table(["split", f"Δ pass@{n}", "SE", "problems"],
                            [[k, pct(d), pct(se), m] for k, (d, se, m) in deltas.items()]), ""]
    mixed = {k: v for k, v in deltas.items() if k not in ("beta=0",)}
    best = max(mixed, key=lambda k: mixed[k][0])
    solved = max(numbers[label]["hard"][n] for label in numbers)
    lines.append(verdict_line(*midtrain_verdict(best, mixed[best][:2], solved, n)))
    return lines, {"pass_at_k": numbers, "hard_deltas_vs_full_rl": deltas, "best_split": best}


# F4, fixed before any run. Precondition: the outcome-reward model hacks -- at least `outcome_hacked_min` of its
# right answers on the edge band have unverified steps. Reproduced iff every process-aware reward leaves a smaller
# hacked share than the outcome reward and they raise OOD-hard pass@n on average; not reproduced iff one leaves as
# large a share, or they lower OOD-hard pass@n; inconclusive where no model solves the hard band (as for F3).
PROCESS_CRITERIA = {"outcome_hacked_min": 0.05}


def process_reward_verdict(hacked: dict, hard_gain: float, solved: float, n: int) -> tuple[bool | None | str, str]:
    """hacked: {reward: hacked share of right answers on the edge band}, with "outcome"; hard_gain: the mean
    OOD-hard pass@n change of the process-aware rewards against the outcome reward; solved: the best OOD-hard
    pass@n of any RL model."""
    said = (f"hacked share of right answers on the edge band: {', '.join(f'{k} {pct(v)}' for k, v in hacked.items())}"
            f"; process-aware rewards change OOD-hard pass@{n} by {pct(hard_gain)} points on average")
    if any(v != v for v in hacked.values()):
        return None, said + " (a model with no right answers has no hacked share)."
    floor = PROCESS_CRITERIA["outcome_hacked_min"]
    if hacked["outcome"] < floor:
        return "precondition", (said + f"; the outcome reward must hack >= {100 * floor:.0f} % for there to be "
                                "hacking to remove.")
    lower = all(v < hacked["outcome"] for k, v in hacked.items() if k != "outcome")
    if not lower:
        return False, said + "; a process-aware reward leaves as large a hacked share as the outcome reward."
    if not solved > 0:
        return None, said + "; no model solves the hard band, so the OOD-hard half has nothing to compare."
    return hard_gain > 0, said + "."


def report_process_reward(ctx: StudyContext, plan: Plan) -> tuple[list[str], dict]:
    sc = ctx.sc
    n = sc.eval_n
    ks = evaluate.default_ks(n)
    table, numbers = pass_table(ctx, plan, ctx.bands, ks)
    hacked = {}
    for label, job in plan.evals.items():
        rep, _ = eval_results(ctx, job)
        hacked[label] = {b: rep["summary"]["band"].get(b, {}).get("hacked_of_right", float("nan")) for b in ctx.bands}
    lo, hi = ctx.bands["hard"]
    outcome = band_pass(eval_results(ctx, plan.evals["outcome"])[1], lo, hi, n)
    deltas = {label: paired_delta(band_pass(eval_results(ctx, job)[1], lo, hi, n), outcome)
              for label, job in plan.evals.items() if label not in ("outcome", "base")}
    lines = ["## pass@k (verified) by band", "", table, "",
             "## Reward hacking: share of right answers whose steps are not verified", "",
             markdown_table(["model", *ctx.bands], [[k, *[pct(v) for v in row.values()]] for k, row in hacked.items()]),
             "", f"## OOD-hard pass@{n} against the outcome reward, paired by problem", "",
             markdown_table(["reward", f"Δ pass@{n}", "SE", "problems"],
                            [[k, pct(d), pct(se), m] for k, (d, se, m) in deltas.items()]), ""]
    edge_h = {k: v["edge"] for k, v in hacked.items() if k != "base"}
    better = sum(d for d, _, _ in deltas.values()) / max(1, len(deltas))
    solved = max(row["hard"][n] for label, row in numbers.items() if label != "base")
    lines.append(verdict_line(*process_reward_verdict(edge_h, better, solved, n)))
    return lines, {"pass_at_k": numbers, "hacked_of_right": hacked, "hard_deltas_vs_outcome": deltas}


# A.7, fixed before any run (our reading of the appendix: more upper-range exposure in pre-training, more for RL to
# extend). Reproduced iff RL's gain in edge-band pass@n is larger after pre-training with the most upper-range data
# than with none, paired over problems, by > 0 and >= `se` standard errors; not reproduced iff it is not larger.
EXPOSURE_CRITERIA = {"se": 2.0}


def exposure_verdict(gains: dict, diff: tuple, solved: float, n: int) -> tuple[bool | None, str]:
    """gains: {hard share %: mean RL gain of edge pass@n}; diff: (mean, SE) of the most-exposed share's per-problem
    gain minus the 0 % share's; solved: the best edge pass@n of any model, before or after RL."""
    top = max(gains)
    d, se = diff
    said = (f"RL's gain in edge pass@{n} by upper-range share of pre-training: "
            + ", ".join(f"{h} %: {pct(g)}" for h, g in gains.items())
            + f"; {top} % minus 0 %, paired over problems: {pct(d)} (SE {pct(se)})")
    if not solved > 0 or se != se:
        return None, said + "; no model solves the edge band, so there is nothing to compare."
    if d > 0 and d >= EXPOSURE_CRITERIA["se"] * se:
        return True, said + "."
    if d <= 0:
        return False, said + "; more exposure did not leave RL more to gain."
    return None, said + "; within the noise."


def report_pretrain_exposure(ctx: StudyContext, plan: Plan) -> tuple[list[str], dict]:
    sc = ctx.sc
    n, (lo, hi) = sc.eval_n, ctx.bands["edge"]
    ks = evaluate.default_ks(n)
    table, numbers = pass_table(ctx, plan, ctx.bands, ks)
    gain_pp = {}
    for h in HARD_SHARES:
        before = band_pass(eval_results(ctx, plan.evals[f"hard {h}%"])[1], lo, hi, n)
        after = band_pass(eval_results(ctx, plan.evals[f"hard {h}% + RL"])[1], lo, hi, n)
        gain_pp[h] = {pid: after[pid] - before[pid] for pid in after if pid in before}
    gains = {h: mean_se(list(g.values()))[0] for h, g in gain_pp.items()}
    diff = paired_delta(gain_pp[max(HARD_SHARES)], gain_pp[0])
    rows = [[f"{h} %", pct(numbers[f"hard {h}%"]["edge"][n]), pct(numbers[f"hard {h}% + RL"]["edge"][n]),
             pct(gains[h])] for h in HARD_SHARES]
    lines = ["## pass@k (verified) by band, before and after RL", "", table, "",
             f"## RL's gain on the edge band (op {lo}-{hi}) by pre-training exposure", "",
             markdown_table(["upper-range share", f"base edge pass@{n}", "after RL", "gain"], rows), "",
             verdict_line(*exposure_verdict(gains, diff[:2], max(row["edge"][n] for row in numbers.values()), n))]
    return lines, {"pass_at_k": numbers, "edge_gain_by_hard_share": gains, "gain_top_minus_none": diff}


# Weak supervision, fixed before any run. Precondition: RL on all prompts raises held-out edge-band verified pass@1
# by >= `learn_se` standard errors (paired over problems): there is something to learn. A run saturates at the first
# step where its train reward (running mean over REWARD_SMOOTHING steps) reaches `saturated`. Reproduced iff the
# scarcest pool saturates, sooner than all prompts do (or they never do), and ends below all prompts on held-out
# edge pass@1 by >= `gap_se` standard errors: it memorized its few prompts instead of generalizing.
WEAK_CRITERIA = {"learn_se": 2.0, "saturated": 0.9, "gap_se": 2.0}


def saturation_step(rows: list[dict]) -> int | None:
    """The first step whose running-mean train reward (smoothed_reward) reaches WEAK_CRITERIA["saturated"]; None if
    none does. rows: an RL run's metrics.jsonl."""
    return next((step for step, r in smoothed_reward(rows) if r >= WEAK_CRITERIA["saturated"]), None)


def weak_verdict(learn: tuple, sat_all: int | None, sat_scarce: int | None, gap: tuple,
                 scarce: str) -> tuple[bool | None | str, str]:
    """learn: (delta, SE) of edge pass@1, all prompts minus the base model; sat_*: saturation steps; gap: (delta,
    SE) of edge pass@1, all prompts minus the scarcest pool (`scarce`)."""
    c = WEAK_CRITERIA

    def when(step: int | None) -> str:
        return f"at step {step}" if step else "never"

    said = (f"RL on all prompts changes held-out edge pass@1 by {pct(learn[0])} (SE {pct(learn[1])}); train reward "
            f"saturates (>= {c['saturated']:g}) {when(sat_all)} with all prompts and {when(sat_scarce)} with "
            f"{scarce}; all prompts lead {scarce} on held-out edge pass@1 by {pct(gap[0])} (SE {pct(gap[1])})")
    if learn[1] != learn[1] or gap[1] != gap[1]:
        return None, said + " (no standard error)."
    if not (learn[0] > 0 and learn[0] >= c["learn_se"] * learn[1]):
        return "precondition", said + (f"; RL on all prompts must gain >= {c['learn_se']:g} SE for memorizing to "
                                       "be told from generalizing.")
    if sat_scarce is None or (sat_all is not None and sat_all <= sat_scarce):
        return False, said + f"; {scarce} do not saturate sooner than all prompts."
    if gap[0] > 0 and gap[0] >= c["gap_se"] * gap[1]:
        return True, said + "."
    if gap[0] <= 0:
        return False, said + f"; {scarce} generalize as well as all prompts."
    return None, said + "; the gap is within the noise."


def report_weak_supervision(ctx: StudyContext, plan: Plan) -> tuple[list[str], dict]:
    sc = ctx.sc
    n, (lo, hi) = sc.eval_n, ctx.bands["edge"]
    ks = evaluate.default_ks(n)
    table, numbers = pass_table(ctx, plan, ctx.bands, ks)
    base_rep, base_pp = eval_results(ctx, plan.evals["base"])
    s = base_rep["summary"]["all"]["all"]
    faithful = s["pass1_verified"] / s["pass1"] if s["pass1"] else float("nan")
    edge_profile = sample_profile(ctx, plan.evals["base"], lo, hi)
    faithful_edge = edge_profile["verified"] / edge_profile["answer"] if edge_profile["answer"] else float("nan")
    base_edge = {k: band_pass(base_pp, lo, hi, k) for k in (1, n)}
    planned = {job.name: job for job in plan.jobs}
    panels, rows, edge1, sat = {}, [], {}, {}
    for label, job in plan.evals.items():
        if label == "base":
            continue
        run = Path(json.loads((ctx.run_dir(job) / "job.json").read_text())["config"]["ckpt"][0])
        steps, evals = rl_metrics(ctx, run.name)
        rewards = [(r["step"], r["reward"]) for r in steps]
        panels[label] = {"train reward": rewards,
                         "held-out greedy verified": [(e["step"], e["greedy_verified"]) for e in evals]}
        pp = eval_results(ctx, job)[1]
        edge1[label] = band_pass(pp, lo, hi, 1)
        sat[label] = saturation_step(steps)
        d1 = paired_delta(edge1[label], base_edge[1])
        dn = paired_delta(band_pass(pp, lo, hi, n), base_edge[n])
        pools = rl_pools(steps, planned[run.name].config["reselect_every"])
        rows.append([label, " → ".join(map(str, pools)) or "—", sat[label] or "never",
                     f"{rewards[0][1]:.2f} → {rewards[-1][1]:.2f}" if rewards else "",
                     f"{evals[0]['greedy_verified']:.2f} → {evals[-1]['greedy_verified']:.2f}" if evals else "",
                     f"{pct(d1[0])} ± {pct(d1[1])}", f"{pct(dn[0])} ± {pct(dn[1])}"])
    plot_panels(report_dir(ctx, plan) / "saturation.png", panels, xlabel="RL step", ylabel="rate",
                title="train reward vs held-out accuracy, per variant")
    scarce = f"{min(sc.weak_pool_sizes)} prompts"
    learn = paired_delta(edge1["all prompts"], base_edge[1])
    gap = paired_delta(edge1["all prompts"], edge1[scarce])
    verdict = weak_verdict(learn[:2], sat["all prompts"], sat[scarce], gap[:2], scarce)
    lines = ["## pass@k (verified) by band", "", table, "",
             f"Faithfulness of the base model before RL (verified / answer-correct at pass@1): {pct(faithful)} % "
             f"over every op, {pct(faithful_edge)} % on the edge band (op {lo}-{hi}).", "",
             "## Saturation: train reward against held-out accuracy", "",
             f"Saturation: the first RL step whose train reward, averaged over {REWARD_SMOOTHING} steps, reaches "
             f"{WEAK_CRITERIA['saturated']:g}. Held-out greedy verified: grpo's own evaluation, the share of held-out "
             "problems of the pool's ops solved with every step verified; Δ columns are paired over the edge band's "
             "problems against the base model (± SE).", "",
             markdown_table(["variant", "RL prompts", "saturation step", "train reward (first → last step)",
                             "held-out greedy verified (first → last eval)", "Δ edge pass@1", f"Δ edge pass@{n}"],
                            rows),
             "", "![train reward against held-out accuracy](saturation.png)", "",
             verdict_line(*verdict)]
    return lines, {"pass_at_k": numbers, "faithfulness": faithful, "faithfulness_edge": faithful_edge,
                   "saturation_step": sat, "learn_edge_pass1": learn, "gap_edge_pass1": gap, "scarce": scarce}


# The paper's numbers beside ours, one table per report: each function maps the reporter's numbers (and n, the
# samples per problem) to rows of [measure, the paper's figure (copied, labelled), ours (measured)].
def pm(d: tuple) -> str:
    return f"{'+' if d[0] > 0 else ''}{pct(d[0])} ± {pct(d[1])}"


def versus_edge(num: dict, n: int) -> list[list[str]]:
    p, rl = num["pass_at_k"], [k for k in num["pass_at_k"] if k.startswith("RL edge")]
    edge = lambda k: f"{pct(p['base']['edge'][k])} → {pct(sum(p[r]['edge'][k] for r in rl) / len(rl))}"
    moved = {k: pm(d) for k, d in num["edge_deltas"].items() if not k.startswith("RL edge")}
    return [["edge pass@1, base → RL on the edge", "~17 → ~51", edge(1)],
            [f"edge pass@k, base → RL on the edge (paper k = 128, ours {n})", "~43.5 → ~85.5", edge(n)],
            ["edge pass@k gain of RL in range / on the hard band", "near 0 / near 0", " / ".join(moved.values())]]


CONTEXT_PAPER = {"0%": "~0 at every op", "0.1%": "~100 at op 2, ~0 from op 6", "1%": "~99 → 60 (op 3 → 20)",
                 "10%": "~99 → 67 (op 3 → 20)"}


def versus_context(num: dict, n: int) -> list[list[str]]:
    rows = []
    for label, by_op in num["pass_at_n_by_op"].items():
        share, ops_ = label.split()[1], sorted(by_op)
        rows.append([f"B after RL, {share} exposure: pass@k lowest → highest op (paper k = 128 over op 2-20; ours "
                     f"{n} over op {ops_[0]}-{ops_[-1]})", CONTEXT_PAPER.get(share, "-"),
                     f"{pct(by_op[ops_[0]])} → {pct(by_op[ops_[-1]])}"])
    return rows


def versus_midtrain(num: dict, n: int) -> list[list[str]]:
    best = num["best_split"]
    return [[f"OOD-hard pass@k, RL alone (paper k = 128 at op 15-20; ours {n})", "~63 / 30 / 14 / 3 / 0.5 / 0",
             pct(num["pass_at_k"]["beta=1"]["hard"][n])],
            ["OOD-hard pass@k, best mid-training + RL split minus RL alone", "+10.8 (mean over op 15-20)",
             f"{pm(num['hard_deltas_vs_full_rl'][best])} ({best})"]]


PROCESS_PAPER = {"process a=0.2": "+4.5", "process a=0.5": "+3.0", "strict": "+2.6"}


def versus_process_reward(num: dict, n: int) -> list[list[str]]:
    hacked = num["hacked_of_right"]
    rows = [[f"OOD-hard pass@k, outcome reward (paper k = 128; ours {n})", "23.2",
             pct(num["pass_at_k"]["outcome"]["hard"][n])]]
    rows += [[f"OOD-hard pass@k, {k} minus outcome", PROCESS_PAPER.get(k, "-"), pm(d)]
             for k, d in num["hard_deltas_vs_outcome"].items()]
    return rows + [["hacked share of right edge answers: outcome, then each process-aware reward",
                    "lower with process rewards (no share given)",
                    ", ".join(f"{k} {pct(v['edge'])}" for k, v in hacked.items() if k != "base")]]


def versus_exposure(num: dict, n: int) -> list[list[str]]:
    gains = num["edge_gain_by_hard_share"]
    return [[f"RL's gain in edge pass@{n} by upper-range share of pre-training", "larger with more exposure (shape "
             "only)", ", ".join(f"{h} %: {pct(g)}" for h, g in gains.items())],
            ["most exposed minus none, paired by problem", "> 0", pm(num["gain_top_minus_none"])]]


def versus_crossover(num: dict, n: int) -> list[list[str]]:
    edge, top = num["rl_minus_base"]["edge"], max(num["pass_at_k"]["base"]["edge"])
    return [["edge pass@1, RL minus base", "> 0 (RL ahead)", pct(edge[0])],
            [f"edge pass@k at large k, RL minus base (ours k = {top})", "<= 0 (base catches up)", pct(edge[-1])]]


def versus_weak(num: dict, n: int) -> list[list[str]]:
    sat = num["saturation_step"]
    scarce = num["scarce"]
    step = lambda k: "never" if sat[k] is None else str(sat[k])
    vote = num["pass_at_k"]["majority vote"]["edge"][1] - num["pass_at_k"]["base"]["edge"][1]
    return [[f"train reward saturates: {scarce} / all prompts", "scarce data: early / generalizing runs: late",
             f"step {step(scarce)} / {step('all prompts')}"],
            [f"held-out edge pass@1, all prompts minus {scarce}", "> 0 (scarce data memorize)",
             pm(num["gap_edge_pass1"])],
            ["majority-vote reward: saturation step, Δ edge pass@1 vs base", "self-supervised: saturates early",
             f"step {step('majority vote')}, {pct(vote)}"],
            ["faithfulness before RL (verified / answer-correct pass@1), all ops / edge", "predicts generalization",
             f"{pct(num['faithfulness'])} / {pct(num['faithfulness_edge'])}"]]


@dataclass(frozen=True)
class Study:
    """One study: the jobs it plans, the report it writes from them, and what the paper found."""
    plan: Callable[[StudyContext, Plan], None]
    report: Callable[[StudyContext, Plan], tuple[list[str], dict]]  # (markdown lines, numbers for results.json)
    paper: str  # what the paper says, with its numbers, printed at the top of the report
    needs_edge: bool = True  # works on the measured edge: until there is one, only the base model and its ladder
    bands: Callable[[StudyContext], dict] = lambda ctx: ctx.bands  # the op bands of its plots
    versus: Callable[[dict, int], list[list[str]]] = lambda numbers, n: []  # the paper's numbers beside ours


STUDIES = {
    "edge": Study(plan_edge, report_edge, versus=versus_edge, paper=(
        "RL raises pass@k at all k (pass@128 too) only when its data sit at the model's edge of competence. "
        "Paper, OOD-edge (op 11-14): base pass@1 ~17, pass@128 ~43.5; RL on op 11-14: pass@1 ~51, pass@128 "
        "~85.5; RL on op 7-10 (in range) and on op 17-20 (far too hard) stay near the base model.")),
    "context": Study(plan_context, report_context, versus=versus_context, paper=(
        "RL transfers to a long-tail context B only if pre-training showed B at least sparsely (>= 1%). Paper, "
        "pass@128 on B after RL: 0% ~0 at every op; 0.1% ~100 at op 2 but ~0 from op 6; 1% ~99 -> 60 "
        "(op 3 -> 20); 10% ~99 -> 67."), needs_edge=False, bands=lambda ctx: {"B": ctx.sc.context_ops}),
    "midtrain": Study(plan_midtrain, report_midtrain, versus=versus_midtrain, paper=(
        "At equal compute, mid-training + RL beats RL alone on OOD-hard problems. Paper, OOD-hard pass@128 at "
        "op 15/16/17/18/19/20: mid+RL ~79/47/33.5/13.5/2.5/0 vs full RL ~63/30/14/3/0.5/0 (mean +10.8 "
        "points).")),
    "process_reward": Study(plan_process_reward, report_process_reward, versus=versus_process_reward, paper=(
        "Process verification in the reward reduces reward hacking and helps OOD-hard. Paper, OOD-hard "
        "pass@128: outcome-only 23.2; 0.2 outcome + 0.8 process +4.5; 0.5/0.5 +3.0; strict +2.6 "
        "(strict best at pass@1, +5.2).")),
    "pretrain_exposure": Study(plan_pretrain_exposure, report_pretrain_exposure, versus=versus_exposure, paper=(
        "Appendix A.7: how the share of upper-range (hard) data in pre-training changes what RL can "
        "add. (No numbers in SPEC; shapes only.)")),
    "crossover": Study(plan_crossover, report_crossover, versus=versus_crossover, paper=(
        "Yue et al. 2025: RL wins at small k, the base model catches up or wins at large k -- the pass@k "
        "curves cross when RL only sharpens what pre-training put there.")),
    "weak_supervision": Study(plan_weak_supervision, report_weak_supervision, versus=versus_weak, paper=(
        "Weak supervision (arXiv 2604.18574): with scarce data, noisy or self-supervised rewards, "
        "models that generalize show a long pre-saturation phase where train reward and held-out "
        "accuracy rise together; reasoning faithfulness (verified / answer-correct) before RL "
        "predicts it.")),
}


def report_dir(ctx: StudyContext, plan: Plan) -> Path:
    return ctx.reports / f"{plan.study}-{ctx.name}"


def jobs_table(ctx: StudyContext, plan: Plan) -> str:
    """One row per job of the plan: what it is, its main settings and its wall time."""
    job_rows = []
    for job in plan.jobs:
        spec = json.loads((ctx.run_dir(job.name) / "job.json").read_text())
        c = spec["config"]
        what = {"pretrain": lambda: f"{c['model']} model, {c['max_steps']} steps x {c['batch_tokens']:,} tokens, "
                                    f"recipe `{c['recipe']}`" + (f", from {Path(c['init_from']).name}"
                                                                 if c.get("init_from") else ""),
                "grpo": lambda: f"{c['max_steps']} steps x {c['prompts_per_step']} prompts x {c['group_size']}, "
                                f"pool `{c['pool']}`, reward {c['reward']}, lr {c['lr']:g}",
                "eval": lambda: f"{c['n']} samples/problem, temperature {c['temperature']}"}[job.kind]()
        job_rows.append([job.name, job.kind, job.note, what, f"{spec.get('seconds', 0):.0f}"])
    return markdown_table(["job", "kind", "what", "settings", "seconds"], job_rows)


def write_report(ctx: StudyContext, plan: Plan, seconds: dict, device, bands_why: str = "") -> Path:
    out = report_dir(ctx, plan)
    out.mkdir(parents=True, exist_ok=True)
    if lacks_bands(plan.study, ctx):
        return write_precondition_report(ctx, plan, seconds, device, bands_why)
    body, numbers = STUDIES[plan.study].report(ctx, plan)
    versus = STUDIES[plan.study].versus(numbers, ctx.sc.eval_n)
    if versus:
        body += ["", "## The paper's numbers beside ours", "",
                 "The paper's figures are copied from it (its scale and op ranges, labelled); ours are measured "
                 "above.", "", markdown_table(["measure", "paper", f"ours ({ctx.name} scale)"], versus)]
    bands = STUDIES[plan.study].bands(ctx)
    reports = {label: by_study_bands(ctx, job, bands) for label, job in plan.evals.items()}
    evaluate.plot_pass_at_k(reports, bands, out / "pass_at_k.png", "verified",
                            title=f"{plan.study} ({ctx.name} scale): pass@k, verified")
    evaluate.plot_by_op(reports, out / "pass_by_op.png", "verified")
    info = run_info(device)
    data = training_data(plan)
    text = [f"# {plan.study} study, {ctx.name} scale", "",
            f"**What the paper says.** {STUDIES[plan.study].paper}", "",
            f"Run with `python study.py {plan.study} --scale {ctx.name}` on {info.get('gpu', info['device'])} "
            f"({info['cpu_threads']} CPU threads), git {info['git']}, {info['time']}. Bands: "
            + ", ".join(f"{k} = op {ops(v)}" for k, v in bands.items()) + ".", "",
            *notes_section(ctx), *data_section(data), "![pass@k curves](pass_at_k.png)", "",
            *(ladder_section(ctx, bands_why) if STUDIES[plan.study].needs_edge else []),
            *body, "", "![pass@n by op](pass_by_op.png)", "",
            "## Jobs", "", jobs_table(ctx, plan), ""]
    (out / "report.md").write_text("\n".join(text), encoding="utf-8")
    save_json(out / "results.json", {"study": plan.study, "scale": ctx.name, "run": info, "numbers": numbers,
                                     "bands": ctx.bands, "ladder": ctx.ladder, "training_data": data,
                                     "jobs": {j.name: j.config for j in plan.jobs}, "seconds": seconds})
    return out / "report.md"


def training_data(plan: Plan) -> dict:
    """What each pre-training job of the plan trained on, as its shard index counted it: the share of each op and
    context (percent), problems and distinct problems (older indexes lack the distinct count)."""
    out = {}
    for job in plan.jobs:
        path = Path(job.config.get("data_dir") or "-") / "train" / "index.json"
        if job.kind == "pretrain" and path.exists():
            index = load_json(path, "shard index")
            out[job.name] = {"samples": index["samples"], "distinct": index.get("distinct"),
                             **{key: {k: 100 * v["samples"] / index["samples"] for k, v in index[key].items()}
                                for key in ("by_op", "by_context")}}
    return out


def data_section(data: dict) -> list[str]:
    rows = [[name, f"{d['samples']:,}", f"{d['distinct']:,}" if d["distinct"] else "-",
             ", ".join(f"{op}: {v:.1f}" for op, v in d["by_op"].items()),
             ", ".join(f"{c}: {v:.1f}" for c, v in d["by_context"].items())] for name, d in data.items()]
    return ["## Training data, as drawn", "",
            "Each pre-training job's data as its shard index counted it: every draw of the recipe is kept, so the "
            "shares follow the recipe's weights; an op with few distinct problems repeats them.", "",
            markdown_table(["model", "problems", "distinct", "% by op", "% by context"], rows), ""] if rows else []


def notes_section(ctx: StudyContext) -> list[str]:
    """Where the scale departs from the paper's setup (Scale.notes), said before any number."""
    return ["## Where this scale departs from the paper", "", *(f"- {note}" for note in ctx.sc.notes), ""] \
        if ctx.sc.notes else []


def write_precondition_report(ctx: StudyContext, plan: Plan, seconds: dict, device, why: str) -> Path:
    """The report of a study that stopped before RL: the base model has no edge (or no hard band) to work on."""
    out = report_dir(ctx, plan)
    info = run_info(device)
    rep, rows = load_eval(ctx, ctx.ladder_job().name)
    lo, hi = ctx.bands["ID"]
    bands = {"ID": (lo, hi), "above ID": (hi + 1, ctx.sc.ladder[1])}
    curves = {"pass_at_k": {"band": evaluate.pass_at_k_by(rows, "band", bands=bands)}}
    evaluate.plot_pass_at_k({"base": curves}, bands, out / "pass_at_k.png", "verified",
                            title=f"{plan.study} ({ctx.name} scale): the base model's pass@k, verified")
    evaluate.plot_by_op({"base": rep}, out / "pass_by_op.png", "verified")
    text = [f"# {plan.study} study, {ctx.name} scale", "",
            f"**What the paper says.** {STUDIES[plan.study].paper}", "",
            f"Run with `python study.py {plan.study} --scale {ctx.name}` on {info.get('gpu', info['device'])} "
            f"({info['cpu_threads']} CPU threads), git {info['git']}, {info['time']}.", "",
            verdict_line("precondition", why + ". The study stopped before RL: no variant was trained, and nothing "
                                               "here is evidence for or against the finding."), "",
            *notes_section(ctx), *ladder_section(ctx, why), "![pass@k curves](pass_at_k.png)", "",
            "![pass@n by op](pass_by_op.png)", "",
            "## Jobs", "", jobs_table(ctx, plan), ""]
    (out / "report.md").write_text("\n".join(text), encoding="utf-8")
    save_json(out / "results.json", {"study": plan.study, "scale": ctx.name, "run": info, "verdict": "precondition",
                                     "why": why, "ladder": ctx.ladder, "seconds": seconds,
                                     "jobs": {j.name: j.config for j in plan.jobs}})
    return out / "report.md"


# ----------------------------------------------------------------------------------------------------------------
# One study at a time per runs folder

@contextlib.contextmanager
def runs_lock(folder: Path):
    """Hold `folder/.lock` while a study runs: a second study on the same folder would redo every unfinished job
    at the same time and interleave their files. A lock left by a dead process on this host is taken over."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / ".lock"
    me = {"pid": os.getpid(), "host": socket.gethostname(),
          "started": datetime.datetime.now().isoformat(timespec="seconds")}
    while True:
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            break
        except FileExistsError:
            try:
                holder = json.loads(path.read_text())
            except (OSError, ValueError):
                holder = {}
            if holder.get("host") == me["host"] and not pid_alive(holder.get("pid", 0)):
                print(f"warning: taking over the lock {path} of process {holder['pid']}, which is no longer running")
                path.unlink(missing_ok=True)
                continue
            raise UserError(f"{folder} is in use by another study (pid {holder.get('pid', '?')} on "
                            f"{holder.get('host', '?')}, started {holder.get('started', '?')}); wait for it to end, "
                            f"use another --runs_dir, or delete {path} if that process is gone") from None
    with os.fdopen(fd, "w") as f:
        json.dump(me, f)
    try:
        yield
    finally:
        path.unlink(missing_ok=True)


def pid_alive(pid: int) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by another user
        return True
    return True


# ----------------------------------------------------------------------------------------------------------------
# Command line

@dataclass
class Config:
    study: str = opt("edge", " / ".join([*STUDIES, "all"]))
    scale: str = opt("tiny", "micro (smoke test) / tiny (CPU) / small (one GPU) / paper (SPEC §7)")
    runs_dir: str = opt("runs", "models and evaluations go to runs_dir/<scale>/<job>/")
    reports_dir: str = opt("reports", "the report goes to reports_dir/<study>-<scale>/")
    device: str = opt("auto", "auto (cuda if available), cuda or cpu")
    workers: int = opt(1, "processes for data generation")
    train_procs: int = opt(1, "pre-training as this many DDP processes (torchrun); 2 suits a 2-core CPU")
    dry_run: bool = opt(False, "print the jobs and exit")


def lacks_bands(study: str, ctx: StudyContext) -> bool:
    """True when the study needs an edge band that this scale has not measured (yet) or whose base model has none:
    then only the base model and its ladder are planned, and the report says why."""
    return STUDIES[study].needs_edge and "edge" not in ctx.bands


def build_plan(study: str, ctx: StudyContext) -> Plan:
    plan = Plan(study, ctx.name)
    if lacks_bands(study, ctx):
        plan.add(ctx.base())
        plan.evals["base"] = plan.add(ctx.ladder_job())
        return plan
    STUDIES[study].plan(ctx, plan)
    return plan


def print_jobs(ctx: StudyContext, jobs: list[Job], dry_run: bool) -> None:
    for job in jobs:
        print(f"  {job.kind:<8} {job.name:<22} {job.note}")
        if dry_run:
            print(f"           {job_command(job, ctx.run_dir(job.name))}")
            if job.kind == "eval" and not Path(job.config["data"]).exists():
                print("           (its --data set is written when the study runs this job)")


def ladder_phase(ctx: StudyContext, cfg: Config, device) -> tuple[str, dict]:
    """At a scale with a ladder: pre-train the base model, evaluate it on every op of the ladder and read the
    bands off it (a dry run only reads them if that evaluation exists). Returns (why, seconds per job)."""
    jobs = [ctx.base(), ctx.ladder_job()]
    print(f"=== bands of the {cfg.scale} scale: measured on the base model's ladder, op {ops(ctx.sc.ladder)} ===")
    print_jobs(ctx, jobs, cfg.dry_run)
    seconds = {}
    if not cfg.dry_run:
        seconds = {job.name: run_job(ctx, job, str(device)) for job in jobs}
    elif not (ctx.run_dir(jobs[1].name) / "results.json").exists():
        print("  (edge and hard bands, and the jobs that use them, are planned once these two have run)")
        return "not measured yet", seconds
    why = measure_bands(ctx)
    print("bands: " + (", ".join(f"{k} = op {ops(v)}" for k, v in ctx.bands.items()) if "edge" in ctx.bands else
                       "none") + f" -- {why}")
    return why, seconds


def main(cfg: Config) -> dict:
    if cfg.scale not in SCALES:
        raise UserError(f"unknown scale {cfg.scale!r}; choose one of {', '.join(SCALES)}")
    studies = list(STUDIES) if cfg.study == "all" else [cfg.study]
    for s in studies:
        if s not in STUDIES:
            raise UserError(f"unknown study {s!r}; choose one of {', '.join(STUDIES)} or all")
    if cfg.train_procs < 1:
        raise UserError(f"--train_procs must be >= 1, got {cfg.train_procs}")
    ctx = StudyContext(cfg.scale, cfg.runs_dir, cfg.reports_dir, cfg.workers, cfg.train_procs)
    device = setup_dist(cfg.device).device
    if cfg.dry_run:
        return run_studies(ctx, cfg, studies, device)
    with runs_lock(ctx.dir):
        ctx.ensure_tokenizer()
        return run_studies(ctx, cfg, studies, device)


def run_studies(ctx: StudyContext, cfg: Config, studies: list[str], device) -> dict:
    """Measure the bands where the scale asks for it, then plan, run and report each study."""
    why, ladder_seconds, t_start = "", {}, time.time()
    if ctx.sc.ladder and any(STUDIES[s].needs_edge for s in studies):
        why, ladder_seconds = ladder_phase(ctx, cfg, device)
    results = {}
    for study in studies:
        t0 = time.time()
        plan = build_plan(study, ctx)
        print(f"=== {study} study, {cfg.scale} scale: {len(plan.jobs)} jobs ({ctx.sc.seconds_hint} for edge) ===")
        print_jobs(ctx, plan.jobs, cfg.dry_run)
        if plan.compute:
            print(markdown_table(COMPUTE_HEADER, plan.compute))
        if cfg.dry_run:
            results[study] = {"jobs": [asdict(j) for j in plan.jobs]}
            continue
        seconds = {job.name: ladder_seconds[job.name] if job.name in ladder_seconds else run_job(ctx, job, str(device))
                   for job in plan.jobs}
        path = write_report(ctx, plan, seconds, device, why)
        total = time.time() - t0
        print(f"=== {study}: report at {path} ({total / 60:.1f} min; {(time.time() - t_start) / 60:.1f} min since the "
              f"start) ===")
        results[study] = {"report": str(path), "seconds": total}
    return results


if __name__ == "__main__":
    argv = sys.argv[1:]
    if argv and not argv[0].startswith("-"):  # `python study.py edge --scale tiny`
        argv = [f"--study={argv[0]}", *argv[1:]]
    run_main(main, Config, argv)
