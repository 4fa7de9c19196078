"""Reliability: no trained model is lost, replaced or mixed up without a clear error (one test per numbered item
of the reliability issue, then the clean-up after a kill). `tests/reliability_drill.py` tries the same things
from the command line and prints what happens."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import common
import datagen
import evaluate
import grpo
import pretrain
import study
import tokenizer as tok_lib
from common import UserError
from conftest import micro_config


def fake_checkpoint(path: Path, step: int) -> None:
    common.save_checkpoint(path, {"model": {"w": torch.full((2,), float(step))}, "step": step}, {"step": step})


def steps_in(folder: Path) -> list[int]:
    return [json.loads(line)["step"] for line in open(folder / "metrics.jsonl") if "loss" in json.loads(line)]


# ----------------------------------------------------------------------------------------------------------------
# 1-3: a model is never deleted or replaced by the checkpoint bookkeeping

def test_1_keep_last_zero_is_refused_and_pruning_keeps_newest_and_final(tmp_path, micro_data):
    with pytest.raises(UserError, match="--keep_last must be > 0"):
        pretrain.main(micro_config(tmp_path, data_dir=str(micro_data), keep_last=0))
    with pytest.raises(UserError, match="--keep_last must be > 0"):
        grpo.check_config(common.preset_config(grpo.Config, grpo.PRESETS, "micro", keep_last=0), world=1)
    with pytest.raises(UserError, match="keep_last must be >= 1"):
        common.prune_checkpoints(tmp_path, 0)
    # an older run's higher-numbered checkpoint never pushes out the one just written, nor final.pt
    fake_checkpoint(tmp_path / "step_000100.pt", 100)
    common.save_step_checkpoint(tmp_path, 4, {"model": {"w": torch.ones(2)}, "step": 4}, {"step": 4}, 1, final=True)
    assert (tmp_path / "step_000004.pt").exists() and common.load_checkpoint(tmp_path / "final.pt")["step"] == 4


def test_2_fresh_run_into_a_used_folder_is_refused_unless_overwrite(tmp_path, micro_data):
    out = tmp_path / "run"
    fake_checkpoint(out / "step_000100.pt", 100)
    common.copy_checkpoint(out / "step_000100.pt", out / "final.pt")
    with pytest.raises(UserError, match=r"already holds a run.*--resume.*--out_dir.*--overwrite"):
        pretrain.main(micro_config(tmp_path, data_dir=str(micro_data), max_steps=2))
    assert common.load_checkpoint(out / "final.pt")["step"] == 100  # untouched
    cfg = micro_config(tmp_path, data_dir=str(micro_data), max_steps=2, eval_every=100, overwrite=True)
    pretrain.main(cfg)
    assert common.load_checkpoint(out / "final.pt")["step"] == 2  # the new model, not the old one
    assert not (out / "step_000100.pt").exists() and steps_in(out) == [1, 2]


def test_3_latest_checkpoint_is_the_highest_step_not_the_newest_file(tmp_path):
    for step in (2, 4):
        fake_checkpoint(tmp_path / f"step_{step:06d}.pt", step)
    later = os.stat(tmp_path / "step_000004.pt").st_mtime + 100
    os.utime(tmp_path / "step_000002.pt", (later, later))  # an old checkpoint touched (or copied) last
    assert common.latest_checkpoint(tmp_path).name == "step_000004.pt"
    assert common.load_checkpoint(tmp_path)["step"] == 4  # what --resume, --init_from and evaluation load
    common.copy_checkpoint(tmp_path / "step_000004.pt", tmp_path / "final.pt")
    assert common.latest_checkpoint(tmp_path).name == "final.pt"  # the same step: final.pt
    fake_checkpoint(tmp_path / "step_000006.pt", 6)  # a run resumed past its old end
    os.utime(tmp_path / "final.pt", (later + 1, later + 1))
    assert common.latest_checkpoint(tmp_path).name == "step_000006.pt"


# ----------------------------------------------------------------------------------------------------------------
# 4-8: wrong results with exit 0

def test_4_a_different_tokenizer_at_the_checkpoints_path_is_an_error(tmp_path, micro_ckpt):
    state = common.load_checkpoint(micro_ckpt)
    assert state["tokenizer_hash"] == tok_lib.tokenizer_hash(state["tokenizer"]) and state["recipe"] == "ops=2-4"
    other = tmp_path / "tokenizer.json"
    texts = [tok_lib.render(r) for r in datagen.generate("ops=2 contexts=zoo", 40, seed=5)]
    tok_lib.save_tokenizer(tok_lib.train_tokenizer(texts, vocab_size=300), other)
    moved = {**state, "tokenizer": str(other)}  # as if the file at the recorded path had been replaced
    torch.save({k: v for k, v in moved.items() if k != "_path"}, tmp_path / "final.pt")
    with pytest.raises(UserError, match="is not the one checkpoint .* was trained with"):
        tok_lib.pinned_tokenizer(common.load_checkpoint(tmp_path / "final.pt"))
    with pytest.raises(UserError, match="is not the one checkpoint"):
        evaluate.main(evaluate.Config(ckpt=[str(tmp_path)], recipe="ops=2", problems=1, n=1, device="cpu",
                                      out_dir=str(tmp_path / "eval")))
    with pytest.raises(UserError, match="is not the one checkpoint"):
        pretrain.main(micro_config(tmp_path, init_from=str(tmp_path / "final.pt"), max_steps=1))


def test_5_second_study_on_a_runs_folder_is_refused_and_a_stale_lock_taken_over(tmp_path, capsys):
    with study.runs_lock(tmp_path):
        with pytest.raises(UserError, match=rf"in use by another study \(pid {os.getpid()} on .* started "):
            with study.runs_lock(tmp_path):
                pass
    assert not (tmp_path / ".lock").exists()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / ".lock").write_text(json.dumps({"pid": dead.pid, "host": study.socket.gethostname()}))
    with study.runs_lock(tmp_path):
        assert json.loads((tmp_path / ".lock").read_text())["pid"] == os.getpid()
    assert "taking over the lock" in capsys.readouterr().out


def test_5_workers_do_not_invalidate_finished_jobs(tmp_path, capsys):
    ctx = study.StudyContext("micro", str(tmp_path), str(tmp_path / "reports"), workers=1)
    job = ctx.base()
    out = ctx.run_dir(job.name)
    fake_checkpoint(out / "final.pt", 30)
    common.save_json(out / "job.json", {"kind": "pretrain", "config": {**job.config, "out_dir": str(out),
                                                                       "device": "cpu", "workers": 8}})
    assert study.run_job(ctx, job, "cpu") == 0.0 and "done already" in capsys.readouterr().out


def test_a_reused_job_reports_the_seconds_it_took_when_it_ran(tmp_path):
    ctx = study.StudyContext("micro", str(tmp_path), str(tmp_path / "reports"), workers=1)
    job = ctx.base()
    out = ctx.run_dir(job.name)
    fake_checkpoint(out / "final.pt", 30)
    common.save_json(out / "job.json", {"kind": "pretrain", "config": {**job.config, "out_dir": str(out),
                                                                       "device": "cpu"}, "seconds": 1804.5})
    assert study.run_job(ctx, job, "cpu") == 1804.5  # the report's timing, not the 0 s of reusing it


@pytest.mark.parametrize("spec, message", [
    ("ops=2:inf,3", "must be a finite number"),
    ("ops=2:nan,3", "must be a finite number"),
    ("ops=2:1e308,3:1e308", "overflow"),
    ("inf*ops=2 + ops=3", "must be a finite number"),
    ("1e308*ops=2 + 1e308*ops=3", "overflow"),
    ("ops=2:-1,3", "must be a finite number >= 0"),
    ("ops=5-2", "reversed; write 2-5"),
])
def test_6_recipe_weights_must_be_finite(spec, message):
    with pytest.raises(UserError, match=message):
        datagen.parse_recipe(spec)


def test_7_record_fields_are_checked_on_reading(tmp_path):
    good = next(datagen.generate("ops=3", 1, seed=0))
    cases = {"answer": ({**good, "answer": str(good["answer"])}, "'answer' must be an integer"),
             "op": ({**good, "op": 3.5}, "'op' must be an integer"),
             "graph": ({**good, "graph": {"nodes": [{"name": "a"}], "query": "a"}}, "graph node 0 is malformed"),
             "query": ({**good, "graph": {**good["graph"], "query": "nobody"}}, "graph 'query'"),
             "mode": ({**good, "mode": "sideways"}, "'mode' must be forward or reverse")}
    for name, (rec, message) in cases.items():
        path = tmp_path / f"{name}.jsonl"
        path.write_text(json.dumps(good) + "\n" + json.dumps(rec) + "\n")
        with pytest.raises(UserError, match=f"{name}.jsonl:2: {message}"):
            datagen.read_jsonl(path)
    binary = tmp_path / "binary.jsonl"
    binary.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(UserError, match="not a UTF-8 text file"):
        datagen.read_jsonl(binary)


def test_8_corrupt_lengths_anywhere_are_refused(tmp_path, micro_data):
    shards = tmp_path / "train"
    shutil.copytree(micro_data / "train", shards)
    lengths = shards / json.loads((shards / "index.json").read_text())["files"][0]["lengths"]
    n = np.fromfile(lengths, dtype="<i4")
    n[len(n) // 2 + 1] = 0  # a row the spot check of a few rows does not read
    n.tofile(lengths)
    with pytest.raises(UserError, match=r"row \d+ has length 0, outside 1\.\.256"):
        tok_lib.PackedShards(shards)


def test_8_non_finite_loss_stops_training_before_it_is_saved(tmp_path, micro_data, monkeypatch):
    real = pretrain.RowLoader.next_batch
    calls = []

    def corrupt_third_batch(self):
        tokens, lengths = real(self)
        calls.append(1)
        return tokens, lengths * 0 if len(calls) == 3 else lengths  # lengths 0: the loss is 0/0

    monkeypatch.setattr(pretrain.RowLoader, "next_batch", corrupt_third_batch)
    cfg = micro_config(tmp_path, data_dir=str(micro_data), max_steps=4, ckpt_every=1, eval_every=100)
    with pytest.raises(UserError, match=r"step 3: the training loss is nan.*step_000002\.pt"):
        pretrain.main(cfg)
    out = Path(cfg.out_dir)
    assert sorted(p.name for p in out.glob("*.pt")) == ["step_000001.pt", "step_000002.pt"]
    assert all(torch.isfinite(v).all() for v in common.load_checkpoint(out)["model"].values())


def test_8_grpo_stops_on_a_non_finite_loss(tmp_path, micro_ckpt, monkeypatch):
    real = grpo.grpo_loss
    monkeypatch.setattr(grpo, "grpo_loss", lambda *a, **kw: (lambda out: (out[0] * float("nan"), out[1]))(
        real(*a, **kw)))
    short = sorted(datagen.generate("ops=2 contexts=zoo", 32, seed=0), key=lambda r: len(tok_lib.render_prompt(r)))
    pool = tmp_path / "pool.jsonl"
    pool.write_text("".join(json.dumps(r) + "\n" for r in short[:8]))
    cfg = common.preset_config(grpo.Config, grpo.PRESETS, "micro", init_from=str(micro_ckpt),
                               out_dir=str(tmp_path / "run"), pool=str(pool), eval_data=str(pool), eval_problems=1,
                               eval_n=1, max_new_tokens=4, eval_every=100, device="cpu")
    with pytest.raises(UserError, match="step 1: the training loss is nan"):
        grpo.main(cfg)
    assert not list((tmp_path / "run").glob("*.pt"))


# ----------------------------------------------------------------------------------------------------------------
# After a kill: temporaries swept, logs truncated to the resumed step, a torn last line dropped

def test_resume_after_a_kill_reads_as_one_run(tmp_path, micro_data):
    cfg = micro_config(tmp_path, data_dir=str(micro_data), max_steps=4, ckpt_every=2, eval_every=100)
    pretrain.main(cfg)
    out = Path(cfg.out_dir)
    # killed after logging step 4 but before its checkpoint, mid-way through a metrics line and an atomic write
    for p in (out / "final.pt", out / "final.pt.json", out / "step_000004.pt", out / "step_000004.pt.json"):
        p.unlink()
    with open(out / "metrics.jsonl", "a") as f:
        f.write('{"step": 5, "lo')
    (out / ".step_000004.pt.x1y2.tmp").write_bytes(b"half a checkpoint")
    pretrain.main(micro_config(tmp_path, data_dir=str(micro_data), max_steps=4, ckpt_every=2, eval_every=100,
                               resume=True))
    assert steps_in(out) == [1, 2, 3, 4]  # not 1, 2, 3, 4, 3, 4
    assert not list(out.glob(".*.tmp")) and common.load_checkpoint(out / "final.pt")["step"] == 4


def test_torn_last_log_line_is_dropped_with_a_warning(tmp_path, capsys):
    (tmp_path / "metrics.jsonl").write_text('{"step": 1, "reward": 0.5}\n{"step": 2, "rew')
    grpo.plot_dynamics(tmp_path)
    assert "dropping a torn last line" in capsys.readouterr().out and (tmp_path / "dynamics.png").exists()
    (tmp_path / "evals.jsonl").write_text('{"step": 1}\nnot json\n{"step": 2}\n')
    with pytest.raises(UserError, match="evals.jsonl:2: not valid JSON"):
        common.read_log(tmp_path / "evals.jsonl")


def test_datagen_leaves_no_temporary_on_error(tmp_path, monkeypatch):
    def killed(*a, **kw):
        yield ("id", 2, "zoo", "forward", "{}")
        raise KeyboardInterrupt

    monkeypatch.setattr(datagen, "generate_lines", killed)
    with pytest.raises(KeyboardInterrupt):
        datagen.main(datagen.Config(ops="2", n=5, out=str(tmp_path / "p.jsonl"), progress=False))
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(UserError, match="is a folder"):
        datagen.main(datagen.Config(ops="2", n=5, out=str(tmp_path), progress=False))


def test_failed_write_is_one_line(monkeypatch, capsys):
    def full_disk(cfg):
        raise OSError(28, "No space left on device", "runs/x/step_000002.pt")

    with pytest.raises(SystemExit) as e:
        common.run_main(full_disk, pretrain.Config, [])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.count("\n") == 1 and "No space left on device" in err


def test_garbage_shard_index_is_one_line(tmp_path):
    cfg = micro_config(tmp_path, data_dir=str(tmp_path / "data"))
    (tmp_path / "data" / "train").mkdir(parents=True)
    (tmp_path / "data" / "train" / "index.json").write_bytes(b"\x00garbage{")
    (tmp_path / "data" / "tokenizer.json").write_text("{}")
    with pytest.raises(UserError, match="shard index .* is not valid JSON"):
        pretrain.prepare_data(cfg, tmp_path / "data" / "tokenizer.json", master=True)
