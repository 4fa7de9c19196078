"""The command line every script gets from its config dataclass (common.parse_config): flag forms, presets,
--config files, --help, and one clear line for each bad input."""

import json
import subprocess
import sys
from dataclasses import dataclass, fields
from pathlib import Path

import pytest

import common
from common import UserError, opt, parse_config

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Toy:
    preset: str = opt("small", "scale preset")
    n: int = opt(3, "how many")
    lr: float = opt(0.1, "learning rate")
    name: str = opt("", "a name")
    fast: bool = opt(False, "go fast")
    limit: int | None = opt(None, "an optional limit")
    ckpt: list[str] = opt([], "checkpoints; repeat to add more")
    pair: tuple[int, ...] = opt((1, 2), "two numbers")


PRESETS = {"small": dict(n=5), "big": dict(n=50, lr=0.5, name="big run")}


def parse(*argv, presets=None):
    return parse_config(Toy, list(argv), presets=presets)


def test_flag_forms():
    assert parse("--n=7", "--name", "x y").n == 7 and parse("--n", "7").n == 7
    assert parse("--name=a=b").name == "a=b" and parse("--name=").name == ""
    assert parse("--n=1e6").n == 1_000_000 and parse("--lr", "-1").lr == -1.0
    assert parse("--n=5", "--n=6").n == 6


@pytest.mark.parametrize("argv, value", [
    (["--fast"], True), (["--fast", "--n=1"], True), (["--fast=false"], False), (["--fast", "no"], False),
    (["--fast=ON"], True), (["--fast=off"], False), (["--fast=1"], True), (["--fast=0"], False), ([], False),
])
def test_bool_flags(argv, value):
    assert parse(*argv).fast is value


def test_optional_list_and_tuple_fields():
    assert parse().limit is None and parse("--limit=4").limit == 4
    assert parse("--limit=4", "--limit=none").limit is None and parse("--limit", "null").limit is None
    assert parse("--ckpt=a, b,,c").ckpt == ["a", "b", "c"]
    assert parse("--ckpt", "a", "--ckpt", "b,c").ckpt == ["a", "b", "c"]  # a repeated list flag appends
    assert parse("--pair=3,4").pair == (3, 4)
    assert Toy().ckpt == [] and Toy().ckpt is not Toy().ckpt


def test_preset_first_then_flags_in_any_order():
    for argv in (["--preset=big", "--n=9"], ["--n=9", "--preset", "big"]):
        cfg = parse(*argv, presets=PRESETS)
        assert (cfg.preset, cfg.n, cfg.lr, cfg.name) == ("big", 9, 0.5, "big run")
    assert parse("--preset=big", "--preset=small", presets=PRESETS).n == 5
    assert parse(presets=PRESETS).n == 3  # no --preset: the dataclass defaults
    assert common.preset_config(Toy, PRESETS, "big", n=1) == Toy(preset="big", n=1, lr=0.5, name="big run")


def test_config_file(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"n": 8, "fast": True, "ckpt": ["x", "y"], "preset": "big"}))
    cfg = parse("--config", str(path), presets=PRESETS)
    assert (cfg.n, cfg.fast, cfg.ckpt, cfg.lr) == (8, True, ["x", "y"], 0.5)  # the file's preset, then its options
    assert parse("--config", str(path), "--n=2").n == 2  # a flag after the file overrides it ...
    assert parse("--n=2", f"--config={path}").n == 8  # ... the file overrides a flag before it
    assert parse(f"--config={path}", "--ckpt=z").ckpt == ["z"]
    assert parse("--ckpt=q", f"--config={path}", "--ckpt=z").ckpt == ["x", "y", "z"]


@pytest.mark.parametrize("text, message", [
    (None, "config file '{p}' not found"),
    ("{nope", "config file '{p}' is not valid JSON: Expecting property name"),
    ("[1]", "config file '{p}' must hold a JSON object of options"),
    ('{"bogus": 1, "n": 2}', "config file '{p}' has unknown options: bogus"),
    ('{"n": "many"}', "--n: expected int, got 'many'"),
])
def test_bad_config_files(tmp_path, text, message):
    path = tmp_path / "c.json"
    if text is not None:
        path.write_text(text)
    with pytest.raises(UserError) as e:
        parse("--config", str(path))
    assert str(e.value).startswith(message.format(p=path))


@pytest.mark.parametrize("argv, message", [
    (["--bogus=1"], "unknown option --bogus; see --help"),
    (["--bogus", "1"], "unknown option --bogus; see --help"),
    (["--nam=x"], "unknown option --nam (did you mean --name?); see --help"),
    (["--fas"], "unknown option --fas (did you mean --fast?); see --help"),
    (["stray"], "unexpected argument 'stray'; options look like --name=value (see --help)"),
    (["--n=3", "-x"], "unexpected argument '-x'; options look like --name=value (see --help)"),
    (["--n=abc"], "--n: expected int, got 'abc'"),
    (["--n=2.5"], "--n: expected int, got '2.5'"),
    (["--lr", "fast"], "--lr: expected float, got 'fast'"),
    (["--fast=maybe"], "--fast: expected bool, got 'maybe'"),
    (["--pair=1,x"], "--pair: expected int, got 'x'"),
    (["--n"], "--n needs a value"),
    (["--name", "--n=1"], "--name needs a value"),
    (["--config"], "--config needs a value"),
    (["--preset=huge"], "unknown preset 'huge'; choose one of: small, big"),
])
def test_bad_input_messages(argv, message):
    with pytest.raises(UserError) as e:
        parse(*argv, presets=PRESETS)
    assert str(e.value) == message


def test_run_main_prints_one_line_and_exits_2(capsys):
    with pytest.raises(SystemExit) as e:
        common.run_main(lambda cfg: None, Toy, ["--n=abc"])
    assert e.value.code == 2
    assert capsys.readouterr().err == "error: --n: expected int, got 'abc'\n"


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_help_lists_presets_and_options(flag, capsys):
    with pytest.raises(SystemExit) as e:
        parse_config(Toy, ["--n=2", flag], doc="toy.py -- a toy script.", presets=PRESETS)
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("toy.py -- a toy script.")
    assert "--config FILE" in out and "big      n=50, lr=0.5, name=big run" in out
    for line in ("--n int", "how many [default: 3]", "--fast [bool]", "--limit int", "--ckpt list"):
        assert line in out


def test_every_script_flag_has_help():
    import bench
    import calibrate
    import datagen
    import evaluate
    import grpo
    import hf
    import model
    import pretrain
    import study
    import tokenizer
    classes = [calibrate.Config, datagen.Config, evaluate.Config, grpo.Config, hf.CLIConfig, model.CLIConfig,
               pretrain.Config, study.Config, tokenizer.Config] + [cls for cls, _ in bench.BENCHMARKS.values()]
    for cls in classes:
        assert all(f.metadata.get("help") for f in fields(cls)), cls
    assert "torch" not in subprocess.run([sys.executable, "-c", "import sys, evaluate; print(sorted(sys.modules))"],
                                         cwd=ROOT, capture_output=True, text=True, check=True).stdout


def test_study_takes_the_study_name_first(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "study.py"), "nope", "--scale", "micro", "--dry_run"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stderr.startswith("error: unknown study 'nope'")
