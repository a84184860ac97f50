"""Sweep v0 and the leaderboard: records on a tiny sweep, resume, byte-stable regeneration."""

import json
from pathlib import Path

import pytest

from bench import leaderboard, records, sweep
from bench.config import resolve

ROOT = Path(__file__).resolve().parent.parent

SMALL_ADDING = """
method: grid
parameters:
  task.name: {value: adding}
  task.seq_len: {value: 6}
  task.n_train: {value: 128}
  task.n_val: {value: 32}
  task.n_test: {value: 32}
  task.batch_size: {value: 16}
  arch.hidden_size: {value: 4}
  train.max_steps: {value: 4}
  train.val_every: {value: 2}
"""
# Two documents: vanilla and gru over two seeds, and one vanilla run with a learning rate that diverges.
TINY = (SMALL_ADDING + "  arch.name: {values: [vanilla, gru]}\n  seed: {values: [0, 1]}\n---"
        + SMALL_ADDING + "  arch.name: {value: vanilla}\n  optim.name: {value: sgd}\n  optim.lr: {value: 1.0e+6}\n"
        "  optim.clip: {value: 0}\n  seed: {values: [0]}\n")


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep")
    spec = out / "tiny.yaml"
    spec.write_text(TINY)
    results = sweep.run(spec, out, workers=1, wandb="disabled")
    return spec, out, results


def test_sweep_writes_one_record_per_run_and_carries_on_after_divergence(swept):
    spec, out, results = swept
    assert len(results) == 5
    recs = records.load_all(out)
    assert sorted(r["status"] for r in recs) == ["diverged"] + ["ok"] * 4
    assert {r["id"] for r in recs} == {c.run_id for c in sweep.plan(spec)}
    for r in recs:
        assert r["provenance"]["git_sha"] and "torch" in r["provenance"] and r["params"] > 0
        assert (out / "runs" / r["metrics_file"]).exists() or r["metrics_file"] is None


def test_rerun_skips_recorded_runs(swept, capsys):
    spec, out, _ = swept
    assert sweep.run(spec, out, workers=1, wandb="disabled") == []
    assert "5 already recorded" in capsys.readouterr().out


def test_leaderboard_rows_and_byte_stable_regeneration(swept):
    _, out, _ = swept
    md = leaderboard.write(out)
    first = md.read_text()
    assert leaderboard.write(out).read_text() == first
    rows = leaderboard.build_rows(records.load_all(out))
    labels = {r.label: r for r in rows}
    assert set(labels) == {"vanilla", "gru", "vanilla (optim.clip=0, optim.lr=1e+06, optim.name=sgd)"}
    assert labels["gru"].n_ok == 2 and labels["gru"].std is not None
    diverged = labels["vanilla (optim.clip=0, optim.lr=1e+06, optim.name=sgd)"]
    assert diverged.n_diverged == 1 and diverged.mean is None
    assert "| diverged | verdict | flow init → end |" in first and "test mse ↓" in first and "0/1" in first
    assert "exploding 1/1" in first  # the diverged row's verdict
    assert (out / "flow_adding.png").stat().st_size > 10_000
    csv_text = (out / "leaderboard.csv").read_text()
    assert csv_text.splitlines()[0].startswith("task,label,metric")


def test_reference_column_matches_rows_by_config(swept, tmp_path):
    _, out, _ = swept
    md = leaderboard.render(records.load_all(out), reference=records.load_all(out))
    assert "| reference |" in md and md.count("(n=2)") == 4  # gru and vanilla, mine and the reference


def test_records_are_written_atomically(tmp_path):
    rec = {"name": "x", "id": "1"}
    records.write(rec, tmp_path / "runs" / "x__1.json")
    assert [p.name for p in (tmp_path / "runs").iterdir()] == ["x__1.json"]
    assert json.loads((tmp_path / "runs" / "x__1.json").read_text()) == rec


def test_run_id_hashes_the_resolved_config():
    a = resolve({"task": "adding", "arch": "gru"})
    assert a.run_id == resolve({"task": "adding", "arch": "gru", "arch.hidden_size": 128}).run_id
    assert a.run_id != resolve({"task": "adding", "arch": "gru", "seed": 1}).run_id
    assert a.run_id == resolve({"task": "adding", "arch": "gru", "train.accelerator": "cpu"}).run_id


@pytest.mark.skipif(not (ROOT / "results" / "runs").is_dir(), reason="no committed reference results yet")
def test_committed_leaderboard_regenerates_byte_for_byte():
    recs = records.load_all(ROOT / "results")
    assert (ROOT / "results" / "LEADERBOARD.md").read_text() == leaderboard.render(recs)
    assert (ROOT / "results" / "leaderboard.csv").read_text() == leaderboard.render_csv(recs)


@pytest.mark.skipif(not (ROOT / "results" / "runs").is_dir(), reason="no committed reference results yet")
def test_readme_table_regenerates_from_the_committed_records():
    text = (ROOT / "README.md").read_text()
    start, end = text.index(leaderboard.README_START), text.index(leaderboard.README_END)
    assert text[start:end + len(leaderboard.README_END)] == leaderboard.readme_block(ROOT / "results")


@pytest.mark.skipif(not (ROOT / "results" / "runs").is_dir(), reason="no committed reference results yet")
def test_committed_records_come_from_the_reference_suites():
    # The Makefile's REFERENCE_SUITES: what `make reference` runs into results/.
    suites = [line.split(":=")[1].split() for line in (ROOT / "Makefile").read_text().splitlines()
              if line.startswith("REFERENCE_SUITES")][0]
    planned = {c.run_id for suite in suites for c in sweep.plan(ROOT / suite)}
    recs = records.load_all(ROOT / "results")
    assert {r["id"] for r in recs} == planned
    assert all(not r["provenance"]["git_dirty"] for r in recs)


def test_two_worker_processes_record_every_run(tmp_path):
    spec = tmp_path / "two.yaml"
    spec.write_text(SMALL_ADDING + "  arch.name: {values: [vanilla, gru]}\n  seed: {values: [0]}\n")
    results = sweep.run(spec, tmp_path / "out", workers=2, wandb="disabled")
    assert sorted(r["name"] for r in results) == ["adding__gru__s0", "adding__vanilla__s0"]
    assert all(r["status"] == "ok" and r["provenance"]["torch_threads"] >= 1 for r in results)
    assert len(records.load_all(tmp_path / "out")) == 2
