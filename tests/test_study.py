"""End-to-end smoke test of the study runner at micro scale: every stage runs, re-runs reuse, interrupts resume."""

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
    for needle in ("What the paper says", "pass@k (verified) by band", "Change in edge-band", "## Jobs"):
        assert needle in text
    assert any(v in text for v in ("**Reproduced**", "**Not reproduced**", "**Inconclusive**"))
    for png in ("pass_at_k.png", "pass_by_op.png"):
        assert (report.parent / png).stat().st_size > 1000
    numbers = json.loads((report.parent / "results.json").read_text())
    assert set(numbers["numbers"]["pass_at_k"]) == {"base", "RL ID (2-3)", "RL mixed (3-4)", "RL edge (4-4)",
                                                    "RL hard (5-6)"}
    runs = tmp / "runs" / "micro"
    for job in ("base", "rl-ID", "rl-mixed", "rl-edge", "rl-hard"):
        assert (runs / job / "final.pt").exists()
        assert (runs / f"eval-{job}" / "results.json").exists()
    assert (runs / "tokenizer.json").exists()


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
    mid = study.main(study.Config(study="midtrain", scale="paper", runs_dir=str(tmp_path), dry_run=True))
    names = [j["name"] for j in mid["midtrain"]["jobs"]]
    assert "mid-b0" in names and "rl-b1" in names and "rl-b0" not in names and "mid-b1" not in names


def test_dry_run_commands_rebuild_each_job(tmp_path):
    """The stand-alone command printed for a job (e.g. to run it under torchrun) parses back to its exact config."""
    import shlex
    from dataclasses import asdict
    from common import parse_config
    ctx = study.Context("tiny", str(tmp_path), str(tmp_path / "reports"), workers=1)
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
        assert any(v in text for v in ("**Reproduced**", "**Not reproduced**", "**Inconclusive**")), name
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
    ctx = study.Context("small", str(tmp_path), str(tmp_path), 1)
    plan = study.build_plan("midtrain", ctx)
    jobs = {j.name: j.config for j in plan.jobs}
    step_cost = study.rl_step_tokens(jobs["rl-b1"], study.mean_prompt_tokens(ctx.sc.pools["edge"]))
    total = ctx.sc.budget_rl_steps * step_cost
    for beta in (0.2, 0.5, 0.8):
        mid = jobs[f"mid-b{beta:g}"]["max_steps"] * jobs[f"mid-b{beta:g}"]["batch_tokens"]
        rl = jobs[f"rl-b{beta:g}"]["max_steps"] * step_cost
        assert mid + rl == pytest.approx(total, rel=0.05)


@pytest.mark.parametrize("argv, message", [
    (["--study=nope"], "unknown study"),
    (["--scale=huge"], "unknown scale"),
])
def test_bad_arguments(argv, message, capsys):
    from common import run_main
    with pytest.raises(SystemExit):
        run_main(study.main, study.Config, argv + ["--dry_run"])
    assert message in capsys.readouterr().err
