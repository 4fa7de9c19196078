"""The calibration sweep: its trials build valid jobs, bad flags fail with a message, and its table renders."""
import json

import pytest

import calibrate
import study
from common import UserError


def test_trials_build_distinct_valid_jobs(tmp_path):
    for scale, trials in calibrate.TRIALS.items():
        assert len({t.name for t in trials}) == len(trials)
        dirs = set()
        for trial in trials:
            ctx = calibrate.trial_context(scale, trial, str(tmp_path), 1)
            base, ladder = ctx.base(), ctx.ladder_job()
            assert base.kind == "pretrain" and ladder.kind == "eval"
            assert ctx.sc.data in base.config["recipe"]  # the trial's data items reach its training data ...
            dirs.add(ctx.dir)
        assert len(dirs) == len(trials)  # ... and every trial has its own folder


def test_the_chosen_row_is_the_study_itself(tmp_path):
    chosen = [t for t in calibrate.TRIALS["tiny"] if t.study_runs]
    assert len(chosen) == 1 and not chosen[0].scale and not chosen[0].pretrain
    ctx = calibrate.trial_context("tiny", chosen[0], str(tmp_path), 1)
    assert ctx.base().config == study.StudyContext("tiny", str(tmp_path), "reports", 1).base().config


def test_report_lists_every_trial_even_unrun(tmp_path):
    out = calibrate.main(calibrate.Config(scale="tiny", runs_dir=str(tmp_path / "runs"),
                                          reports_dir=str(tmp_path / "rep"), report_only=True))
    text = open(out["report"]).read()
    for trial in calibrate.TRIALS["tiny"]:
        assert f"| {trial.name} |" in text
    assert text.count("not run") == len(calibrate.TRIALS["tiny"])


@pytest.mark.parametrize("kw, message", [(dict(scale="nope"), "no calibration trials"),
                                         (dict(only="op2-5-sol,nope"), "unknown trial"),
                                         (dict(train_procs=0), "--train_procs")])
def test_bad_flags(kw, message, tmp_path):
    with pytest.raises(UserError, match=message):
        calibrate.main(calibrate.Config(runs_dir=str(tmp_path), report_only=True, **kw))


def test_measured_rows_survive_a_checkout_without_runs(tmp_path):
    """rows.json keeps each measured row: re-rendering without the runs (they stay out of git) keeps it."""
    first = calibrate.TRIALS["tiny"][0]
    kept = [first.name, "an older note"] + [f"cell{i}" for i in range(len(calibrate.HEADER) - 2)]
    rep = tmp_path / "rep" / "calibration-tiny"
    rep.mkdir(parents=True)
    (rep / "rows.json").write_text(json.dumps({"k": 64, "rows": {first.name: kept}}))
    out = calibrate.main(calibrate.Config(scale="tiny", runs_dir=str(tmp_path / "runs"),
                                          reports_dir=str(tmp_path / "rep"), report_only=True))
    text = open(out["report"]).read()
    assert f"| {first.name} | {first.note} | cell0 |" in text  # the kept cells, under the trial's current note
    assert "verified pass@64" in text
    assert text.count("not run") == len(calibrate.TRIALS["tiny"]) - 1
    assert json.loads((rep / "rows.json").read_text())["rows"][first.name] == kept  # rewritten unchanged


@pytest.mark.parametrize("text", ['{"k": 32}', '{"k": 32, "rows": {"a": ["too", "short"]}}', '[]'])
def test_a_broken_rows_file_is_refused(text, tmp_path):
    rep = tmp_path / "rep" / "calibration-tiny"
    rep.mkdir(parents=True)
    (rep / "rows.json").write_text(text)
    with pytest.raises(UserError, match="not a table of calibration rows"):
        calibrate.main(calibrate.Config(scale="tiny", runs_dir=str(tmp_path / "runs"),
                                        reports_dir=str(tmp_path / "rep"), report_only=True))


def test_rl_trials_reuse_the_edge_studys_runs(tmp_path):
    """Where an RL trial's settings are the edge study's own, its row reads that run (no second copy); the others
    are valid grpo configs of their own."""
    ctx = study.StudyContext("tiny", str(tmp_path), str(tmp_path), 1)
    ctx.bands = {"ID": (2, 6), "edge": (7, 8), "hard": (9, 12)}
    ctx.pools = study.pools_from_bands(ctx.bands)
    names = {t.name: calibrate.rl_jobs(ctx, t)[0].name for t in calibrate.RL_TRIALS["tiny"]}
    assert names["edge"] == "rl-edge" and names["edge-s1"] == "rl-edge-s1"
    assert names["pool2048-100"] == "rlsweep-pool2048-100"
    for trial in calibrate.RL_TRIALS["tiny"]:
        job, evals = calibrate.rl_jobs(ctx, trial)
        study.grpo.check_config(study.grpo.Config(**job.config), 1)
        for step, ev in evals[1:]:  # an intermediate checkpoint is one the run keeps
            assert step % job.config["ckpt_every"] == 0 and ev.config["ckpt"][0].endswith(f"step_{step:06d}.pt")
            assert (job.config["max_steps"] - step) // job.config["ckpt_every"] < job.config["keep_last"]


def test_rl_sweep_runs_at_micro_scale(tmp_path):
    out = calibrate.main(calibrate.Config(scale="micro", rl=True, runs_dir=str(tmp_path / "runs"),
                                          reports_dir=str(tmp_path / "rep")))
    text = open(out["report"]).read()
    rows = [line for line in text.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert [r.split(" | ")[0] for r in rows] == ["| edge", "| pool128-4", "| pool128-4"]
    assert [r.split(" | ")[2] for r in rows] == ["2", "2", "4"]  # the final step, then step 2 and 4 of pool128-4
    assert not (tmp_path / "runs" / "micro" / "rlsweep-edge").exists()  # the study's own run, reused
