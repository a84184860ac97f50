"""Code versions in run identity: bumping a task's or an architecture's ``version`` makes a sweep train it again,
while every id recorded before versions joined run ids stays as it was."""

import json
from pathlib import Path

import pytest
from conftest import SMALL_ADDING

import architectures
import tasks
from bench.run.config import content_digest, flatten, resolve
from bench.sweeps import sweep
from bench.sweeps.plan import pending, plan

RECORDS = Path(__file__).resolve().parent.parent / "results" / "runs"


def test_today_s_versions_leave_the_ids_as_they_were():
    for task in tasks.names():
        cfg = resolve({"task": task, "arch": architectures.names()[0]}, check_machine=False)
        assert cfg.code_versions() == {}, task
    for arch in architectures.names():
        assert resolve({"task": "adding", "arch": arch}, check_machine=False).code_versions() == {}, arch


@pytest.mark.skipif(not RECORDS.is_dir(), reason="no committed reference results")
def test_committed_records_keep_their_ids():
    # one record of every task and architecture in the reference (charlm's were made at its version 2)
    seen, records = set(), []
    for path in sorted(RECORDS.glob("*.json")):
        rec = json.loads(path.read_text())
        if (rec["task"], rec["arch"]) not in seen:
            seen.add((rec["task"], rec["arch"]))
            records.append(rec)
    assert {r["task"] for r in records} >= {"charlm", "adding"}
    for rec in records:
        assert resolve(flatten(rec["config"]), check_machine=False).run_id == rec["id"], rec["name"]


@pytest.mark.parametrize("section", ["task", "arch"])
def test_a_version_bump_changes_the_run_id(section, monkeypatch):
    cfg = resolve({"task": "adding", "arch": "gru"}, check_machine=False)
    before = cfg.run_id
    cls = tasks.get("adding") if section == "task" else architectures.entry("gru").core
    monkeypatch.setattr(cls, "version", "2")
    assert cfg.code_versions() == {section: "2"} and cfg.run_id != before
    monkeypatch.undo()
    assert cfg.run_id == before


def test_a_sweep_trains_a_bumped_architecture_again(tmp_path, monkeypatch, capsys):
    # planning keeps plans keyed by the source files; the bump here edits no file, so plan without the cache
    monkeypatch.setenv("RNNBENCH_PLAN_CACHE", str(tmp_path / "plans"))
    spec, out = tmp_path / "one.yaml", tmp_path / "out"
    spec.write_text(SMALL_ADDING + "  arch.name: {value: gru}\n  seed: {value: 0}\n")
    [first] = sweep.run(spec, out, workers=1, wandb="disabled")
    assert sweep.run(spec, out, workers=1, wandb="disabled") == []
    monkeypatch.setattr(architectures.entry("gru").core, "version", "2")
    statuses = {json.loads(p.read_text())["id"]: "ok" for p in (out / "runs").glob("*.json")}
    assert [c.name for c in pending(plan(spec), statuses)] == [first["name"]]
    [again] = sweep.run(spec, out, workers=1, wandb="disabled")
    assert again["status"] == "ok" and again["id"] != first["id"]


def test_offline_defaults_read_no_file_so_their_ids_hash_no_data():
    for task in tasks.names():
        assert resolve({"task": task, "arch": "gru"}, check_machine=False).data_digests() == {}, task


def test_an_edited_corpus_is_a_new_run_that_a_resumed_sweep_plans(tmp_path, monkeypatch):
    monkeypatch.setenv("RNNBENCH_PLAN_CACHE", str(tmp_path / "plans"))  # the cache must see the edit too
    corpus, spec = tmp_path / "corpus.txt", tmp_path / "lm.yaml"
    corpus.write_text("the quick brown fox jumps over the lazy dog. " * 100)
    spec.write_text("method: grid\nparameters:\n  task.name: {value: charlm}\n  arch.name: {value: gru}\n"
                    f"  task.corpus: {{value: '{corpus}'}}\n  task.seq_len: {{value: 12}}\n"
                    "  task.tbptt: {value: 6}\n  task.batch_size: {value: 4}\n")
    [before] = plan(spec)
    first = before.run_id  # a RunConfig's id is computed when asked: kept as it was before the edit
    assert before.data_digests() == {"task.corpus": content_digest(str(corpus))}
    assert pending(plan(spec), {first: "ok"}) == []
    corpus.write_text("the quick brown fox jumps over the lazy cat. " * 100)
    [after] = pending(plan(spec), {first: "ok"})
    assert after.name == before.name and after.run_id != first
    assert content_digest(str(tmp_path)) != content_digest(str(corpus))  # a folder hashes its names and bytes
