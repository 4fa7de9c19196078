"""Tests for pretrain.py: learning, exact resume, DDP equivalence, mid-training, checkpoints and errors."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import common
import datagen
import pretrain
import tokenizer as tok_lib
from common import UserError
from conftest import micro_config

ROOT = Path(__file__).resolve().parent.parent


def losses(out_dir) -> list[float]:
    rows = [json.loads(line) for line in open(Path(out_dir) / "metrics.jsonl")]
    return [r["loss"] for r in rows if "loss" in r]


def test_loss_decreases(micro_ckpt):
    state = common.load_checkpoint(micro_ckpt)
    rows = [json.loads(line) for line in open(micro_ckpt.parent / "metrics.jsonl")]
    train = [r["loss"] for r in rows if "loss" in r]
    assert train[-1] < train[0] - 1.0  # 40 steps take a micro model well below the uniform-guess loss
    val = [r["val_loss"] for r in rows if "val_loss" in r]
    assert val and val[-1] < 4.0
    assert state["step"] == 40 and state["tokens"] == 40 * 2048
    assert state["flops"] == 6 * sum(v.numel() for v in state["model"].values()) * state["tokens"]
    meta = json.loads((micro_ckpt.parent / "final.pt.json").read_text())  # human-readable twin
    assert meta["step"] == 40 and "val_loss" in meta and "model" not in meta
    assert (micro_ckpt.parent / "loss.png").stat().st_size > 1000
    assert (micro_ckpt.parent / "config.json").exists()


def test_resume_is_exact(tmp_path, micro_data):
    full = micro_config(tmp_path / "a", data_dir=str(micro_data), max_steps=8, ckpt_every=100)
    pretrain.main(full)
    # the same schedule, stopped after 4 steps, then resumed to 8
    half = micro_config(tmp_path / "b", data_dir=str(micro_data), max_steps=4, lr_decay_steps=8, ckpt_every=100)
    pretrain.main(half)
    resumed = micro_config(tmp_path / "b", data_dir=str(micro_data), max_steps=8, lr_decay_steps=8,
                           ckpt_every=100, resume=True)
    pretrain.main(resumed)
    assert losses(full.out_dir) == losses(half.out_dir)  # bitwise: same data order, RNG, optimizer state
    a = common.load_checkpoint(Path(full.out_dir) / "final.pt")["model"]
    b = common.load_checkpoint(Path(half.out_dir) / "final.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_resume_refuses_changed_settings(tmp_path, micro_data):
    cfg = micro_config(tmp_path, data_dir=str(micro_data), max_steps=2)
    pretrain.main(cfg)
    with pytest.raises(UserError, match=r"settings differ.*lr"):
        pretrain.main(micro_config(tmp_path, data_dir=str(micro_data), max_steps=4, lr=1e-2, resume=True))


def test_ddp_two_processes_match_one(tmp_path, micro_data):
    """torchrun with 2 CPU processes (gloo) = 1 process with the same global batch (micro-batches per step: 2 vs 1)."""
    flags = ["--preset=micro", f"--data_dir={micro_data}", "--max_steps=4", "--eval_every=100", "--ckpt_every=100"]
    one = tmp_path / "one"
    pretrain.main(common.parse_config(pretrain.Config, flags + [f"--out_dir={one}"], presets=pretrain.PRESETS))
    two = tmp_path / "two"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29533",
                    str(ROOT / "pretrain.py"), *flags, f"--out_dir={two}"], check=True, cwd=ROOT, env=env,
                   capture_output=True, timeout=300)
    assert losses(two) == pytest.approx(losses(one), rel=1e-5, abs=1e-6)


def test_midtraining_starts_from_weights_with_own_recipe(tmp_path, micro_ckpt):
    base = common.load_checkpoint(micro_ckpt)
    cfg = micro_config(tmp_path, init_from=str(micro_ckpt.parent), recipe="ops=5-6", warmup_frac=0.5,
                       max_steps=2, lr=1e-9, min_lr=1e-9)
    out = pretrain.main(cfg)
    mid = common.load_checkpoint(Path(cfg.out_dir) / "final.pt")
    assert mid["tokenizer"] == base["tokenizer"]  # the tokenizer follows the weights
    drift = max((mid["model"][k] - base["model"][k]).abs().max().item() for k in base["model"])
    assert drift < 1e-5  # a vanishing lr leaves the pre-trained weights in place
    index = json.loads((Path(cfg.out_dir) / "data" / "train" / "index.json").read_text())
    assert index["source"]["recipe"] == "ops=5-6" and set(index["by_op"]) == {"5", "6"}
    assert index["source"]["draws"] == "all" and 0 < index["distinct"] <= index["samples"]
    assert index["distinct"] == sum(v["distinct"] for v in index["by_op"].values())
    assert mid["stage"] == "mid-training" and mid["config"]["init_from"] == str(micro_ckpt.parent)
    assert pretrain.lr_at(0, cfg) == pytest.approx(1e-9)  # its own (warmup) schedule
    assert out["train_loss"] < 5.0  # starts where pre-training left off, not at ln(vocab)


def test_lr_schedule():
    cfg = pretrain.Config(max_steps=100, warmup_frac=0.1, lr=1.0, min_lr=0.1)
    lrs = [pretrain.lr_at(s, cfg) for s in range(100)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:])) and lrs[-1] == pytest.approx(0.1, abs=1e-3)


class CountingRows:
    """Stands in for PackedShards: row i is the token i."""
    def __len__(self):
        return 10

    def rows(self, idx):
        return [[i] for i in idx], [1] * len(idx)


def read_rows(loader, batches) -> list[int]:
    return [row for _ in range(batches) for row in loader.next_batch()[0][:, 0].tolist()]


def test_curriculum_reads_the_rows_of_the_run_in_shard_order():
    plain = read_rows(pretrain.RowLoader(CountingRows(), 2, seed=3), 7)
    loader = pretrain.RowLoader(CountingRows(), 2, seed=3, ordered=6)
    first = read_rows(loader, 3)
    assert first == sorted(plain[:6]) and first != plain[:6]  # the same rows, easy (low index) first
    state = loader.state()
    resumed = pretrain.RowLoader(CountingRows(), 2, seed=3)  # a resume restores `ordered` from the checkpoint
    resumed.load_state(state)
    assert read_rows(resumed, 4) == read_rows(loader, 4) == plain[6:]  # the rest of epoch 0, then epoch 1 as ever


def test_curriculum_packs_the_problems_in_op_order(tmp_path, micro_data):
    tokenizer = micro_data / "tokenizer.json"
    cfg = micro_config(tmp_path, data_dir=str(tmp_path / "data"), curriculum=True)
    shard_dir, _ = pretrain.prepare_data(cfg, tokenizer, master=True)
    lines = datagen.generate_lines(pretrain.recipe_parts(cfg), cfg.train_problems, cfg.data_seed, "train",
                                   distinct=False)
    items = sorted(lines, key=lambda item: item.op)
    assert (items[0].op, items[-1].op) == (2, 4)  # the micro recipe's op range
    texts = [tok_lib.render(json.loads(item.json)) for item in items]
    shards, tok = tok_lib.PackedShards(shard_dir), tok_lib.load_tokenizer(tokenizer)
    tokens, lengths = shards.rows(list(range(len(shards))))
    assert "".join(tok_lib.decode(tok, t[:n]) for t, n in zip(tokens, lengths)) == "".join(texts)
    with pytest.raises(UserError, match="order"):  # shards in op order never serve a run without the curriculum
        pretrain.prepare_data(micro_config(tmp_path, data_dir=str(tmp_path / "data")), tokenizer, master=True)


def test_inputs_mask_comes_from_lengths():
    tokens = torch.tensor([[5, 6, tok_lib.EOS_ID, 7, tok_lib.EOS_ID, 1, 1]])
    x, y, mask, doc = pretrain.inputs_from_rows(tokens, torch.tensor([5]), doc_mask=True)
    assert mask.tolist() == [[True, True, True, True, False, False]]
    assert doc[0, :5].tolist() == [0, 0, 0, 1, 1]


def test_solution_loss_counts_only_what_follows_the_solution_tag():
    S, E, P = tok_lib.SOLUTION_ID, tok_lib.EOS_ID, tok_lib.PAD_ID
    # two packed samples: question tokens 20/21, <solution>, answer tokens 30/31, EOS; then padding
    tokens = torch.tensor([[20, 21, S, 30, E, 20, S, 31, E, P, P]])
    x, y, mask, _ = pretrain.inputs_from_rows(tokens, torch.tensor([9]), doc_mask=False, loss_on="solution")
    counted = [int(t) for t, m in zip(y[0], mask[0]) if m]
    assert counted == [30, E, 20, 31, E]  # the EOS's next token (the next sample's start) belongs to the old sample
    full = pretrain.inputs_from_rows(tokens, torch.tensor([9]), doc_mask=False)[2]
    assert full.sum() == 8 and bool((mask <= full).all())


def test_crash_during_save_keeps_last_checkpoint(tmp_path, micro_ckpt, monkeypatch):
    good = tmp_path / "ckpt.pt"
    common.save_checkpoint(good, {"model": {"w": torch.ones(3)}})

    def broken_save(obj, f):
        f.write(b"partial bytes")
        raise KeyboardInterrupt  # killed mid-save

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(KeyboardInterrupt):
        common.save_checkpoint(good, {"model": {"w": torch.zeros(3)}})
    monkeypatch.undo()
    assert torch.equal(common.load_checkpoint(good)["model"]["w"], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pt"]  # no temporary left behind


def test_corrupt_and_missing_checkpoints(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint at all")
    with pytest.raises(UserError, match="cannot be read"):
        common.load_checkpoint(bad)
    with pytest.raises(UserError, match="not found"):
        common.load_checkpoint(tmp_path / "nope.pt")
    with pytest.raises(UserError, match="no checkpoint"):
        common.load_checkpoint(tmp_path)
    torch.save({"weights": 1}, tmp_path / "other.pt")
    with pytest.raises(UserError, match="no 'model' entry"):
        common.load_checkpoint(tmp_path / "other.pt")


@pytest.mark.parametrize("flags, message", [
    (["--bogus=1"], "unknown option --bogus"),
    (["--max_steps=lots"], "expected int"),
    (["--preset=huge"], "unknown preset"),
    (["--preset=micro", "--batch_tokens=1000"], "must be a multiple"),
    (["--preset=micro", "--resume"], "no checkpoint"),
    (["--preset=micro", "--init_from=missing/ckpt.pt"], "not found"),
    (["--preset=micro", "--model=gigantic"], "unknown model preset"),
    (["--preset=micro", "--model_args=n_layer"], "key=value"),
    (["--preset=micro", "--recipe=ops=99"], "outside"),
    (["--preset=micro", "--tokenizer=missing.json"], "not found"),
    (["--preset=micro", "--ckpt_every=0"], "--ckpt_every must be > 0"),
    (["--preset=micro", "--eval_every=0"], "--eval_every must be > 0"),
    (["--preset=micro", "--log_every=0"], "--log_every must be > 0"),
    (["--preset=micro", "--seq_len=0"], "--seq_len must be > 0"),
    (["--preset=micro", "--keep_last=0"], "--keep_last must be > 0"),
    (["--preset=micro", "--lr=-1"], "--lr must be > 0"),
    (["--preset=micro", "--lr=nan"], "--lr must be > 0"),
    (["--preset=micro", "--model_args=n_layer=abc"], "n_layer='abc' is not a number"),
    (["--preset=micro", "--device=tpu"], "--device must be auto, cpu or cuda"),
])
def test_bad_flags(flags, message, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as e:
        common.run_main(pretrain.main, pretrain.Config, flags + [f"--out_dir={tmp_path / 'run'}"],
                        presets=pretrain.PRESETS)
    assert e.value.code == 2
    assert message in capsys.readouterr().err
