"""Smoke runs of the benchmarks at toy sizes: they run, print their Markdown rows, and reject bad input. The
numbers themselves are measured by `python bench.py ...` on a quiet machine, never asserted here."""

import pytest

import bench


def test_model_benchmark_runs_against_transformers(capsys):
    pytest.importorskip("transformers")
    bench.main(["model", "--preset=micro", "--device=cpu", "--batch_size=2", "--seq_len=32", "--steps=1",
                "--prompts=2", "--n=2", "--max_new_tokens=4", "--reps=1"])
    out = capsys.readouterr().out
    assert "| train step | micro | cpu | fp32 |" in out and "| sampling | micro | cpu | fp32 |" in out


def test_data_and_verify_benchmarks_run(capsys):
    bench.main(["data", "--seconds=0.05", "--ops=5", "--scale_n=300", "--workers=1"])
    bench.main(["verify", "--n=40", "--seconds=0.1"])
    bench.main(["fidelity", "--n=20", "--ops=5,7", "--modes=reverse", "--contexts=teachers"])
    out = capsys.readouterr().out
    assert "| datagen | forward | 5 |" in out and "| verify (gold) | all |" in out
    assert "measured elsewhere" in out and "### teachers, op 7, reverse" in out and "| query is an aggregate |" in out


@pytest.mark.parametrize("argv", [["nosuch"], ["verify", "--n=0"], ["model", "--bogus=1"], ["model", "--steps=0"],
                                  ["data", "--ops=5,x"], ["tokenizer", "--n=0"], ["fidelity", "--rows=some"]])
def test_bad_input_is_one_clear_error(argv, capsys):
    with pytest.raises(SystemExit) as e:
        bench.main(argv)
    assert e.value.code == 2 and "error:" in capsys.readouterr().err
