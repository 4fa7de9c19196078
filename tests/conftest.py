"""Shared fixtures: one micro-scale data folder and one pre-trained micro checkpoint for the whole session."""

import os
from pathlib import Path

import pytest

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # tests fork; keep the Rust thread pool out of that

import common  # noqa: E402
import pretrain  # noqa: E402


def micro_config(tmp: Path, **overrides) -> pretrain.Config:
    return common.preset_config(pretrain.Config, pretrain.PRESETS, "micro", out_dir=str(tmp / "run"), **overrides)


@pytest.fixture(scope="session")
def micro_data(tmp_path_factory) -> Path:
    """A data folder (tokenizer, shards, val problems) for micro runs, built once."""
    tmp = tmp_path_factory.mktemp("micro-data")
    cfg = micro_config(tmp, data_dir=str(tmp / "data"))
    tok = Path(cfg.data_dir) / "tokenizer.json"
    pretrain.prepare_data(cfg, tok, master=True)
    return Path(cfg.data_dir)


@pytest.fixture(scope="session")
def micro_ckpt(tmp_path_factory, micro_data) -> Path:
    """A micro model pre-trained for 40 steps on op 2-4 (seconds on a CPU)."""
    tmp = tmp_path_factory.mktemp("micro-base")
    cfg = micro_config(tmp, data_dir=str(micro_data), max_steps=40, eval_every=40, ckpt_every=40, log_every=20)
    pretrain.main(cfg)
    return Path(cfg.out_dir) / "final.pt"
