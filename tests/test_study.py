"""End-to-end smoke test of the study runner at micro scale: every stage runs, re-runs reuse, interrupts resume."""

import collections
import dataclasses
import json
from pathlib import Path

import pytest

import study
from common import UserError


@pytest.fixture(scope="module")
def edge_micro(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("study")
    cfg = study.Config(study="edge", scale="micro", runs_dir=str(tmp / "runs"), reports_dir=str(tmp / "reports"))
    out = study.main(cfg)
    return cfg, out, tmp


def test_edge_study_end_to_end(edge_micro):
    cfg, out, tmp = edge_micro
    report = Path(out["edge"]["report"])
    text = report.read_text()
    assert report == tmp / "reports" / "edge-micro" / "report.md"
    for needle in ("What the paper says", "Training data, as drawn", "pass@k (verified) by band", "Change in edge-band",
                   "kept at the edge", "## Jobs"):
        assert needle in text
    assert any(v in text for v in ("**Reproduced**", "**Not reproduced**", "**Inconclusive**",
                                   "**Precondition not met**"))
    for png in ("pass_at_k.png", "pass_by_op.png"):
        assert (report.parent / png).stat().st_size > 1000
    numbers = json.loads((report.parent / "results.json").read_text())
    assert set(numbers["numbers"]["pass_at_k"]) == {"base", "RL ID (2-3)", "RL mixed (3-4)", "RL edge (4-4)",
                                                    "RL hard (5-6)"}
    drawn = numbers["training_data"]["base"]  # the micro base model's recipe: ops 2-3, uniform
    assert set(drawn["by_op"]) == {"2", "3"} and sum(drawn["by_op"].values()) == pytest.approx(100)
    assert 0 < drawn["distinct"] <= drawn["samples"]
    runs = tmp / "runs" / "micro"
    for job in ("base", "rl-ID", "rl-mixed", "rl-edge", "rl-hard"):
        assert (runs / job / "final.pt").exists()
        assert (runs / f"eval-{job}" / "results.json").exists()
    assert (runs / "tokenizer.json").exists()


def test_plots_count_every_model_by_the_study_bands(edge_micro):
    """The base model's ladder is sampled before the bands are known; its curves are counted by them anyway."""
    cfg, _, tmp = edge_micro
    ctx = study.StudyContext("micro", cfg.runs_dir, cfg.reports_dir, 1)
    rep = study.by_study_bands(ctx, "eval-base", {"ID": (2, 3), "edge": (4, 6)})
    per_op = study.load_eval(ctx, "eval-base")[0]["pass_at_k"]["op"]
    assert list(rep["pass_at_k"]["band"]) == ["ID", "edge"]
    assert rep["pass_at_k"]["band"]["edge"]["problems"] == sum(per_op[op]["problems"] for op in ("4", "5", "6"))


def test_rerun_reuses_everything(edge_micro, capsys):
    cfg, _, tmp = edge_micro
    study.main(cfg)
    log = capsys.readouterr().out
    assert log.count("done already") == 10  # 5 models + 5 evaluations, nothing recomputed
    assert "step 1/" not in log


def test_job_run_outside_the_study_is_reused(edge_micro, capsys):
    """A model trained by the job's stand-alone command (no job.json, e.g. under torchrun) is reused and reported."""
    cfg, out, tmp = edge_micro
    (tmp / "runs" / "micro" / "rl-ID" / "job.json").unlink()
    study.main(cfg)
    assert "[rl-ID] done already" in capsys.readouterr().out
    assert (tmp / "runs" / "micro" / "rl-ID" / "job.json").exists()
    assert "| rl-ID | grpo |" in Path(out["edge"]["report"]).read_text()


def test_interrupted_job_resumes(edge_micro, capsys):
    cfg, _, tmp = edge_micro
    run = tmp / "runs" / "micro" / "rl-edge"
    (run / "final.pt").unlink()  # as if killed after its last step checkpoint
    for p in run.glob("step_*.pt"):
        if p.name != "step_000002.pt":
            p.unlink()
    (tmp / "runs" / "micro" / "eval-rl-edge" / "results.json").unlink()
    study.main(cfg)
    log = capsys.readouterr().out
    assert "resuming at step 2" in log and (run / "final.pt").exists()


def test_settings_added_later_count_at_their_default(edge_micro, capsys):
    # a job recorded before a script gained a setting is reused while the study asks for that setting's default
    cfg, _, tmp = edge_micro
    spec = tmp / "runs" / "micro" / "rl-hard" / "job.json"
    recorded = spec.read_text()
    data = json.loads(recorded)
    assert data["config"].pop("sampler") == "shared"
    spec.write_text(json.dumps(data))
    study.main(cfg)
    assert "[rl-hard] done already" in capsys.readouterr().out
    data["config"]["sampler"] = "plain"  # but a recorded value other than what the study asks for is a change
    spec.write_text(json.dumps(data))
    with pytest.raises(UserError, match=r"other settings \(sampler\)"):
        study.main(cfg)
    spec.write_text(recorded)


def test_changed_settings_are_refused(edge_micro, monkeypatch):
    cfg, _, tmp = edge_micro
    spec = tmp / "runs" / "micro" / "rl-hard" / "job.json"
    data = json.loads(spec.read_text())
    data["config"]["lr"] = 123.0
    spec.write_text(json.dumps(data))
    with pytest.raises(UserError, match=r"other settings \(lr\)"):
        study.main(cfg)


def test_every_study_plans(tmp_path):
    for name in study.STUDIES:
        out = study.main(study.Config(study=name, scale="tiny", runs_dir=str(tmp_path), dry_run=True))
        jobs = out[name]["jobs"]
        assert jobs and all(j["kind"] in ("pretrain", "grpo", "eval") for j in jobs)
        assert len({j["name"] for j in jobs}) == len(jobs)
    assert not any(tmp_path.iterdir())  # a dry run writes nothing
    side = [j for j in study.main(study.Config(study="context", scale="tiny", runs_dir=str(tmp_path),
                                               dry_run=True))["context"]["jobs"] if j["kind"] == "pretrain"]
    # the context study's shorter base models see the main base model's problems per step (5,000 steps, 200,000)
    assert {(j["config"]["max_steps"], j["config"]["train_problems"]) for j in side} == {(2000, 80_000)}
    # once the bands are known (measured on the base model's ladder), every study plans its variants
    ctx = study.StudyContext("tiny", str(tmp_path), str(tmp_path / "reports"), 1)
    ctx.bands = {"ID": (2, 3), "edge": (4, 5), "hard": (6, 8)}
    ctx.pools = study.pools_from_bands(ctx.bands)
    for name in study.STUDIES:
        jobs = study.build_plan(name, ctx).jobs
        assert len({j.name for j in jobs}) == len(jobs) and any(j.kind == "grpo" for j in jobs), name
    # the exposure study's base models keep the scale's sparse tail above the range (1 % of op 7-9 at tiny)
    ctx.bands = {"ID": (2, 6), "edge": (7, 8), "hard": (9, 12)}
    ctx.pools = study.pools_from_bands(ctx.bands)
    recipes = [j.config["recipe"].split()[0] for j in study.build_plan("pretrain_exposure", ctx).jobs
               if j.kind == "pretrain"]
    assert recipes == ["ops=2-5:0.99,7-9:.01", "ops=2-5:0.792,6-6:0.198,7-9:.01", "ops=2-5:0.495,6-6:0.495,7-9:.01",
                       "ops=6-6:0.99,7-9:.01"]
    assert study.mix_tail("2-3:.5,4:.4,7-9:.1", 6) == ("7-9:.1", 0.1) and study.mix_tail("", 6) == ("", 0)
    # jobs of the same name are the same job in every study that plans them (crossover reuses edge's RL run)
    configs = {}
    for name in study.STUDIES:
        for j in study.build_plan(name, ctx).jobs:
            assert configs.setdefault(j.name, j.config) == j.config, (name, j.name)
    # every RL variant is a config grpo.py accepts (the weak-supervision noise needs a binary reward)
    for job_name, conf in configs.items():
        if job_name.startswith("rl-"):
            study.grpo.check_config(study.grpo.Config(**conf), 1)
    # and the same job has one name: a variant whose settings are another study's run reuses that run
    names = {}
    for job_name, conf in configs.items():
        key = json.dumps(conf, sort_keys=True)
        assert names.setdefault(key, job_name) == job_name, (job_name, names[key])
    ctx = study.StudyContext("paper", str(tmp_path), str(tmp_path / "reports"), 1)
    ctx.bands = dict(study.evaluate.PAPER_BANDS)
    ctx.pools = study.pools_from_bands(ctx.bands)
    names = [j.name for j in study.build_plan("midtrain", ctx).jobs]
    assert "mid-b0" in names and "rl-b1" in names and "rl-b0" not in names and "mid-b1" not in names


def test_dry_run_commands_rebuild_each_job(tmp_path):
    """The stand-alone command printed for a job (e.g. to run it under torchrun) parses back to its exact config."""
    import shlex
    from dataclasses import asdict
    from common import parse_config
    ctx = study.StudyContext("tiny", str(tmp_path), str(tmp_path / "reports"), workers=1)
    plan = study.build_plan("process_reward", ctx)
    for job in plan.jobs:
        out = ctx.run_dir(job.name)
        script, *argv = shlex.split(study.job_command(job, out))[1:]
        module = {"pretrain.py": study.pretrain, "grpo.py": study.grpo, "evaluate.py": study.evaluate}[script]
        parsed = asdict(parse_config(module.Config, argv))
        want = {**job.config, "out_dir": str(out)}
        assert {k: parsed[k] for k in want} == want, job.name


def test_every_study_runs_at_micro_scale(tmp_path):
    """All seven studies end to end at micro scale (about a minute): each writes a report with a verdict."""
    cfg = study.Config(study="all", scale="micro", runs_dir=str(tmp_path / "runs"), reports_dir=str(tmp_path / "rep"))
    out = study.main(cfg)
    assert set(out) == set(study.STUDIES)
    for name, res in out.items():
        text = Path(res["report"]).read_text()
        assert any(v in text for v in ("**Reproduced**", "**Not reproduced**", "**Inconclusive**",
                                   "**Precondition not met**")), name
        assert "## The paper's numbers beside ours" in text, name  # labelled paper figures next to ours
    assert "Replication or creation" in Path(out["context"]["report"]).read_text()


def test_replication_stats():
    """A solved graph seen in training is a replication (similarity 1); longer graphs are new structures."""
    import datagen
    seen = list(datagen.generate("ops=3 contexts=zoo", 60, seed=0))
    assert study.replication_stats(seen[:10], seen) == (10, 1.0)
    longer = list(datagen.generate("ops=8 contexts=teachers", 10, seed=1))
    iso, sim = study.replication_stats(longer, seen)
    assert iso == 0 and 0 < sim < 1
    # names do not count: the same structure with every quantity renamed is still a replication
    g = seen[0]["graph"]
    renamed = {"nodes": [{**nd, "name": "B " + nd["name"], "parents": ["B " + p for p in nd["parents"]]}
                         for nd in g["nodes"]]}
    assert study.replication_stats([{"graph": renamed}], seen[:1]) == (1, 1.0)


def test_midtrain_budget_is_equal_compute(tmp_path):
    """Each beta spends (1 - beta) T on mid-training and beta T on RL (SPEC §7 token-equivalents)."""
    ctx = study.StudyContext("small", str(tmp_path), str(tmp_path), 1)
    ctx.bands = dict(study.evaluate.PAPER_BANDS)
    ctx.pools = study.pools_from_bands(ctx.bands)
    plan = study.build_plan("midtrain", ctx)
    jobs = {j.name: j.config for j in plan.jobs}
    step_cost = study.rl_step_tokens(jobs["rl-b1"], study.mean_prompt_tokens(ctx.pools["edge"]))
    total = ctx.sc.budget_rl_steps * step_cost
    for beta in (0.2, 0.5, 0.8):
        mid = jobs[f"mid-b{beta:g}"]["max_steps"] * jobs[f"mid-b{beta:g}"]["batch_tokens"]
        rl = jobs[f"rl-b{beta:g}"]["max_steps"] * step_cost
        assert mid + rl == pytest.approx(total, rel=0.05)
    # the report's accounting table says what the jobs do
    rows = {row[0]: row for row in plan.compute}
    assert list(rows) == [f"beta={b:g}" for b in study.MID_BETAS]
    for beta in study.MID_BETAS:
        row, mid, rl = rows[f"beta={beta:g}"], jobs.get(f"mid-b{beta:g}"), jobs.get(f"rl-b{beta:g}")
        assert row[1] == (mid["max_steps"] if mid else 0) and row[3] == (rl["max_steps"] if rl else 0)
        assert float(row[6]) == pytest.approx(1.0, abs=0.05)


@pytest.mark.parametrize("argv, message", [
    (["--study=nope"], "unknown study"),
    (["--scale=huge"], "unknown scale"),
])
def test_bad_arguments(argv, message, capsys):
    from common import run_main
    with pytest.raises(SystemExit):
        run_main(study.main, study.Config, argv + ["--dry_run"])
    assert message in capsys.readouterr().err


# ----------------------------------------------------------------------------------------------------------------
# Measured bands and the edge verdict, on synthetic numbers

def rung(pass1, passk, samples=512):
    return {"pass1": pass1, "passk": passk, "samples": samples, "verified": round(passk * samples)}


def test_band_rule_on_synthetic_ladders():
    solved, edge, out = rung(0.9, 1.0), rung(0.05, 0.3), rung(0.0, 0.0)
    ladder = {2: solved, 3: solved, 4: edge, 5: rung(0.01, 0.06), 6: out, 7: out, 8: out}
    bands, why = study.choose_bands(ladder, (2, 3))
    assert bands == {"ID": (2, 3), "edge": (4, 5), "hard": (6, 8)} and why == "edge = op 4-5, hard = op 6-8"
    # an op above ID that is still solved is skipped; one between edge and hard that is neither is a gap
    ladder = {2: solved, 3: solved, 4: rung(0.5, 0.9), 5: edge, 6: rung(0.001, 0.02), 7: out, 8: out}
    assert study.choose_bands(ladder, (2, 3))[0] == {"ID": (2, 3), "edge": (5, 5), "hard": (7, 8)}
    # each band is at most max_width ops
    wide = {op: solved if op <= 3 else edge if op <= 9 else out for op in range(2, 16)}
    assert study.choose_bands(wide, (2, 3))[0] == {"ID": (2, 3), "edge": (4, 7), "hard": (10, 13)}
    # no edge: the base model solves nothing beyond ID (the tiny scale's failed precondition)
    bands, why = study.choose_bands({2: solved, 3: solved, 4: out, 5: out}, (2, 3))
    assert bands is None and "no op above the pre-training range" in why
    # pass@1 too high is not an edge either
    assert study.choose_bands({2: solved, 3: solved, 4: rung(0.3, 0.5), 5: out}, (2, 3))[0] is None
    # an edge, but nothing beyond it was sampled enough to call it out of reach
    bands, why = study.choose_bands({2: solved, 3: solved, 4: edge, 5: rung(0, 0, samples=64)}, (2, 3))
    assert bands is None and "out of reach" in why


def test_pools_from_the_paper_bands():
    bands = {"ID": (2, 10), "edge": (11, 14), "hard": (15, 18)}
    assert study.pools_from_bands(bands) == {"ID": (7, 10), "mixed": (9, 12), "edge": (11, 14), "hard": (15, 18)}
    assert study.pools_from_bands({"ID": (2, 3), "edge": (4, 4), "hard": (6, 7)}) == \
        {"ID": (2, 3), "mixed": (2, 4), "edge": (4, 4), "hard": (6, 7)}


def test_no_edge_plans_no_rl(tmp_path):
    ctx = study.StudyContext("tiny", str(tmp_path / "runs"), str(tmp_path / "reports"), 1)
    plan = study.build_plan("edge", ctx)
    assert [j.kind for j in plan.jobs] == ["pretrain", "eval"] and list(plan.evals) == ["base"]
    ctx.bands = {"ID": (2, 5), "edge": (6, 7), "hard": (9, 10)}
    ctx.pools = study.pools_from_bands(ctx.bands)
    plan = study.build_plan("edge", ctx)
    rl = {j.name: j.config for j in plan.jobs if j.kind == "grpo"}
    assert list(rl) == ["rl-ID", "rl-edge", "rl-edge-s1", "rl-hard"]  # the scale's pools; two seeds on the edge
    assert {rl["rl-edge"]["seed"], rl["rl-edge-s1"]["seed"]} == {0, 1}
    assert all(c["pool"].endswith(ctx.sc.data) for c in rl.values())  # every pool carries the scale's data items
    tiny = study.SCALES["tiny"]
    assert [c["reselect_every"] for c in rl.values()] == [0, tiny.edge_reselect, tiny.edge_reselect, 0]  # only edge
    assert [c["pool_size"] for c in rl.values()][1:3] == [tiny.edge_drawn] * 2  # ... drawn large before the filter
    assert rl["rl-ID"]["pool_size"] != tiny.edge_drawn


def test_held_out_set_has_more_problems_above_the_range(tmp_path, monkeypatch):
    sc = dataclasses.replace(study.SCALES["micro"], eval_per_op=2, eval_beyond=5, ladder=(2, 5))
    monkeypatch.setitem(study.SCALES, "micro", sc)
    ctx = study.StudyContext("micro", str(tmp_path / "runs"), str(tmp_path / "reports"), 1)
    path = ctx.all_bands_evalset()
    ctx.write_evalset(path)
    ops = collections.Counter(json.loads(line)["op"] for line in path.read_text().splitlines())
    assert ops == {2: 2, 3: 2, 4: 5, 5: 5}  # ID = op 2-3 at micro
    # every model but the base model's ladder samples the ops of the bands alone: the ladder's problems there
    ctx.bands = {"ID": (2, 3), "edge": (5, 5)}
    only = ctx.bands_evalset()
    ctx.write_evalset(only)
    ladder = [line for line in path.read_text().splitlines() if json.loads(line)["op"] != 4]
    assert only.read_text().splitlines() == ladder and only != path
    plain = dataclasses.replace(sc, eval_beyond=0)
    monkeypatch.setitem(study.SCALES, "micro", plain)
    assert study.StudyContext("micro", str(tmp_path / "runs"), str(tmp_path / "reports"), 1).all_bands_evalset() \
        != path  # another set, another file: a finished evaluation of the other is never reused for it


def test_edge_verdict_thresholds():
    base = {"ID": 0.97, "edge": 0.30, "hard": 0.0}
    ok, why = study.edge_verdict(base, (0.15, 0.05), 0.04, {"RL ID": 0.02, "RL hard": -0.01}, 32)
    assert ok is True
    assert study.edge_verdict(base, (0.08, 0.02), 0.04, {"RL ID": 0.0}, 32)[0] is False  # gain < 10 points
    assert study.edge_verdict(base, (0.15, 0.10), 0.04, {"RL ID": 0.0}, 32)[0] is False  # < 2 SE
    assert study.edge_verdict(base, (0.15, 0.05), -0.01, {"RL ID": 0.0}, 32)[0] is False  # pass@1 fell
    assert study.edge_verdict(base, (0.15, 0.05), 0.04, {"RL ID": 0.06}, 32)[0] is False  # other pool moves it too
    assert study.edge_verdict(base, (0.15, float("nan")), 0.04, {}, 32)[0] is None
    for bad in ({"ID": 0.90}, {"edge": 0.0}, {"edge": 0.7}, {"hard": 0.05}):
        ok, why = study.edge_verdict({**base, **bad}, (0.3, 0.01), 0.1, {}, 32)
        assert ok == "precondition" and "base model" in why
    assert study.verdict_line("precondition", "x").startswith("**Precondition not met**")


def test_crossover_verdict_thresholds():
    v = study.crossover_verdict
    assert v((0.20, 0.03), (-0.02, 0.02), 256)[0] is True  # RL ahead at k=1, the base model catches up at k=256
    assert v((0.20, 0.03), (0.10, 0.02), 256)[0] is False  # RL still ahead by 5 SE at the largest k
    assert v((0.20, 0.03), (0.02, 0.02), 256)[0] is None  # ahead by 1 SE: within the noise
    assert v((0.20, 0.03), (-0.1, 0.02), 64)[0] == "precondition"  # too few samples for the curves to cross
    assert v((0.03, 0.01), (-0.1, 0.02), 256)[0] == "precondition"  # RL barely moved pass@1
    assert v((0.08, 0.05), (-0.1, 0.02), 256)[0] == "precondition"  # ... or not beyond 2 SE


def test_context_verdict_thresholds():
    v = study.context_verdict  # one value per exposure 0 / 0.1 / 1 / 10 %
    assert v([0.0, 0.05, 0.40, 0.60])[0] is True
    assert v([0.0, 0.35, 0.40, 0.60])[0] is False  # 0.1 % transfers nearly as well as 1 %
    assert v([0.0, 0.0, 0.05, 0.60])[0] is False  # 1 % does not transfer
    assert v([0.0, 0.0, 0.0, 0.0])[0] is None  # nothing transfers at all


def test_midtrain_verdict_thresholds():
    v = study.midtrain_verdict
    assert v("beta=0.2", (0.12, 0.04), 0.3, 32)[0] is True
    assert v("beta=0.2", (0.02, 0.02), 0.3, 32)[0] is False  # even +2 SE (6 points) is below the paper's 10.8
    assert v("beta=0.2", (0.06, 0.04), 0.3, 32)[0] is None  # 1.5 SE: neither shown nor excluded
    assert v("beta=0.2", (0.0, 0.0), 0.0, 32)[0] is None  # no model solves the hard band


def test_process_reward_verdict_thresholds():
    v = study.process_reward_verdict
    assert v({"outcome": 0.30, "process 0.2": 0.10, "strict": 0.05}, 0.03, 0.2, 32)[0] is True
    assert v({"outcome": 0.30, "process 0.2": 0.35, "strict": 0.05}, 0.03, 0.2, 32)[0] is False  # one hacks more
    assert v({"outcome": 0.30, "process 0.2": 0.35}, 0.0, 0.0, 32)[0] is False  # hacks more, hard band unsolved
    assert v({"outcome": 0.30, "process 0.2": 0.10}, -0.02, 0.2, 32)[0] is False  # OOD-hard falls
    assert v({"outcome": 0.30, "process 0.2": 0.10}, 0.0, 0.0, 32)[0] is None  # no model solves the hard band
    assert v({"outcome": 0.01, "process 0.2": 0.0}, 0.03, 0.2, 32)[0] == "precondition"  # nothing to remove
    assert v({"outcome": 0.30, "process 0.2": float("nan")}, 0.03, 0.2, 32)[0] is None


def test_pretrain_exposure_verdict_thresholds():
    v = study.exposure_verdict
    gains = {0: 0.02, 20: 0.05, 50: 0.08, 100: 0.12}
    assert v(gains, (0.10, 0.04), 0.5, 32)[0] is True
    assert v(gains, (0.06, 0.04), 0.5, 32)[0] is None  # 1.5 SE
    assert v(gains, (-0.01, 0.04), 0.5, 32)[0] is False  # the most exposed model leaves RL no more to gain
    assert v(gains, (0.10, float("nan")), 0.5, 32)[0] is None
    assert v(dict.fromkeys(gains, 0.0), (0.0, 0.0), 0.0, 32)[0] is None  # nothing solved: nothing to compare


def test_weak_supervision_verdict_thresholds():
    v = study.weak_verdict
    assert v((0.10, 0.03), 30, 10, (0.08, 0.03), "8 prompts")[0] is True  # scarce saturates first, generalizes less
    assert v((0.10, 0.03), None, 10, (0.08, 0.03), "8 prompts")[0] is True  # all prompts never saturate
    assert v((0.03, 0.03), 30, 10, (0.08, 0.03), "8 prompts")[0] == "precondition"  # 1 SE: nothing shown learned
    assert v((0.10, 0.03), 10, 20, (0.08, 0.03), "8 prompts")[0] is False  # scarce saturates later
    assert v((0.10, 0.03), 30, None, (0.08, 0.03), "8 prompts")[0] is False  # scarce never saturates
    assert v((0.10, 0.03), 30, 10, (-0.02, 0.03), "8 prompts")[0] is False  # scarce generalizes as well
    assert v((0.10, 0.03), 30, 10, (0.04, 0.03), "8 prompts")[0] is None  # gap within 2 SE
    assert v((0.10, float("nan")), 30, 10, (0.04, 0.03), "8 prompts")[0] is None


def test_saturation_step_uses_the_running_mean():
    w = study.REWARD_SMOOTHING
    rising = [{"step": i + 1, "reward": 1.0 if i >= 3 else 0.0} for i in range(20)]
    # the running mean over w steps first reaches 0.9 once w steps in a row (or 0.9 of them) are at 1
    assert study.saturation_step(rising) == 3 + w
    assert study.saturation_step([{"step": i + 1, "reward": 0.5} for i in range(20)]) is None
    assert study.saturation_step([]) is None


def test_measured_scale_without_an_edge_stops_before_rl(tmp_path, monkeypatch):
    """The micro model has no edge: with measured bands the study writes a 'precondition not met' report and
    trains no RL variant."""
    sc = study.SCALES["micro"]
    monkeypatch.setitem(study.SCALES, "micro", dataclasses.replace(sc, bands={"ID": sc.bands["ID"]}, pools={},
                                                                   ladder=(2, 5)))
    cfg = study.Config(study="edge", scale="micro", runs_dir=str(tmp_path / "runs"),
                       reports_dir=str(tmp_path / "reports"))
    out = study.main(cfg)
    text = Path(out["edge"]["report"]).read_text()
    assert "**Precondition not met**" in text and "The base model's ladder" in text
    assert not list((tmp_path / "runs" / "micro").glob("rl-*"))
    res = json.loads((tmp_path / "reports" / "edge-micro" / "results.json").read_text())
    assert res["verdict"] == "precondition" and set(res["ladder"]) == {"2", "3", "4", "5"}


def test_context_precondition_thresholds():
    p = study.context_precondition  # (0 % base model on A over the range, on B above the lowest op)
    assert p(0.9, 0.0)[0] is True
    assert p(0.9, 0.3)[0] is False  # B already solved without exposure: nothing to transfer
    assert p(0.2, 0.0)[0] is False  # A itself not learned


def test_rl_pools_at_each_selection():
    """The prompts an RL run trained on after each edge selection, from the pool size grpo.py records per step."""
    rows = [{"step": s, "pool_prompts": 36 if s <= 25 else 30} for s in range(1, 61)]
    assert study.rl_pools(rows, 25) == [36, 30, 30]  # selections at steps 0, 25 and 50
    assert study.rl_pools(rows, 1000) == [36] and study.rl_pools(rows, 0) == []


def test_paper_beside_ours_rows():
    """The comparison table takes ours from the reporter's numbers: the scarcest pool's row, the last k, signed
    deltas."""
    weak = {"saturation_step": {"all prompts": None, "64 prompts": 25, "8 prompts": 12, "majority vote": 5},
            "scarce": "8 prompts",
            "gap_edge_pass1": (0.1, 0.03, 64), "faithfulness": 0.8, "faithfulness_edge": 0.05,
            "pass_at_k": {"base": {"edge": {1: 0.02}}, "majority vote": {"edge": {1: 0.0}}}}
    rows = study.versus_weak(weak, 32)
    assert rows[0][0].startswith("train reward saturates: 8 prompts") and rows[0][2] == "step 12 / never"
    assert rows[1][2] == "+10.0 ± 3.0" and rows[2][2] == "step 5, -2.0" and rows[3][2] == "80.0 / 5.0"
    cross = {"rl_minus_base": {"edge": [0.1, 0.02, -0.05]}, "pass_at_k": {"base": {"edge": {1: 0, 16: 0, 256: 0}}}}
    assert [r[2] for r in study.versus_crossover(cross, 32)] == ["10.0", "-5.0"]
    assert "k = 256" in study.versus_crossover(cross, 32)[1][0]
