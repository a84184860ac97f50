"""Checkpoints and `rnnbench sample`: greedy vs temperature sampling from a trained char-LM run."""

import json

import pytest
import torch
from conftest import small

from bench import cli
from bench.run import checkpoint
from bench.run.config import resolve
from bench.run.train import train
from bench.store import Store
from bench.text import sample


def test_the_checkpoint_restores_the_trained_weights(lm_run):
    rec, out = lm_run
    assert rec["checkpoint"] == f"checkpoints/{rec['name']}__{rec['id']}/best.ckpt" and (out / rec["checkpoint"]).is_file()
    assert rec["checkpoint_last"] == f"checkpoints/{rec['name']}__{rec['id']}/last.ckpt"
    record, _, cfg, task, system = checkpoint.load(rec["name"], Store(out))
    assert record["id"] == cfg.run_id == rec["id"] and not system.training
    saved = torch.load(out / rec["checkpoint"], weights_only=True)["state_dict"]
    assert all(torch.equal(saved[k], v) for k, v in system.state_dict().items())


def test_sample_greedy_and_temperatures_beside_the_record(lm_run, capsys):
    rec, out = lm_run
    argv = ["sample", rec["name"], "--out", str(out), "--greedy", "--temperature", "0.5", "--temperature", "1",
            "--length", "40", "--wandb", "disabled"]
    assert cli.main(argv) == 0
    printed = capsys.readouterr().out
    assert "greedy" in printed and "T=0.5" in printed and "T=1" in printed
    path = out / "runs" / f"{rec['name']}__{rec['id']}.samples.jsonl"
    saved = [json.loads(line) for line in path.read_text().splitlines()]
    assert [s["decoding"] for s in saved] == ["greedy", "T=0.5", "T=1"]
    assert all(len(s["text"]) == 40 and s["prime"] == "The " for s in saved)
    assert cli.main(argv) == 0  # appends; same seed, same samples
    again = [json.loads(line) for line in path.read_text().splitlines()]
    assert [s["text"] for s in again[3:]] == [s["text"] for s in saved]


def test_greedy_ignores_the_seed_and_sampling_follows_it(lm_run):
    _, _, cfg, task, system = checkpoint.load(lm_run[0]["name"], Store(lm_run[1]))
    assert sample.generate(system, task, "The ", 30, None, seed=0) == sample.generate(system, task, "The ", 30,
                                                                                      None, seed=1)
    hot = {sample.generate(system, task, "The ", 30, 1.0, seed=s) for s in range(3)}
    assert len(hot) == 3  # different seeds, different samples


def test_distinct_ngrams_measures_loops():
    assert sample.distinct_ngrams("the the the the the ") < 0.4 < sample.distinct_ngrams("a quick brown fox")
    assert sample.distinct_ngrams("abc") == 1.0


@pytest.mark.parametrize("extra, message", [
    (["--prime", "\u00e9t\u00e9"], "--prime has characters outside the model's vocabulary"),
    (["--temperature", "0"], "--temperature: must be >= 0.01 and <= 100, got 0.0"),
])
def test_bad_sampling_input_is_one_line_exit_2(lm_run, extra, message, capsys):
    rec, out = lm_run
    with pytest.raises(SystemExit) as exc:
        cli.main(["sample", rec["name"], "--out", str(out), "--wandb", "disabled", *extra])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and message in err and err.count("\n") == 1


def test_sampling_needs_a_language_model_and_a_checkpoint(tmp_path, capsys):
    rec = train(resolve(small("adding", "gru", **{"train.max_steps": 2})), tmp_path, wandb="disabled")
    with pytest.raises(SystemExit) as exc:
        cli.main(["sample", rec["name"], "--out", str(tmp_path), "--wandb", "disabled"])
    assert exc.value.code == 2 and "not a character language model" in capsys.readouterr().err
    (tmp_path / rec["checkpoint"]).unlink()
    with pytest.raises(SystemExit) as exc:
        cli.main(["sample", rec["name"], "--out", str(tmp_path), "--wandb", "disabled"])
    assert exc.value.code == 2 and "has no checkpoint" in capsys.readouterr().err
