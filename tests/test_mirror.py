"""The W&B mirror cannot fail a run: a W&B failure after (or before) training is the mirror's, noted in the record.

No test reaches the network: ``wandb.init`` is replaced by a stand-in run or by one that raises.
"""

from __future__ import annotations

import json
import types

import pytest
import wandb
from conftest import small

from bench.run.config import resolve
from bench.run.train import train
from bench.store import Store

STEPS = 6


@pytest.fixture
def cfg():
    return resolve(small("adding", "gru", **{"train.max_steps": STEPS, "train.val_every": 3}))


def on_disk(store: Store, rec: dict) -> dict:
    return json.loads(store.record_path(rec["name"], rec["id"]).read_text())


def assert_trained(store: Store, rec: dict) -> None:
    """The run's record on disk says it trained, with its steps, metric and checkpoints."""
    saved = on_disk(store, rec)
    assert saved["status"] == "ok" and saved["error"] is None and saved["steps"] == STEPS
    assert saved["metric"]["test"] is not None
    assert (store.root / saved["checkpoint"]).is_file() and (store.root / saved["checkpoint_last"]).is_file()


def test_a_mirror_that_cannot_start_leaves_the_run_ok(cfg, tmp_path, monkeypatch):
    # online without a login: wandb.init raises when Lightning first touches the run (at setup)
    def no_login(**kwargs):
        raise wandb.errors.UsageError("No API key configured. Use `wandb login` to log in.\nmore")

    monkeypatch.setattr(wandb, "init", no_login)
    store = Store(tmp_path)
    rec = train(cfg, store, wandb="online")
    assert_trained(store, rec)
    assert on_disk(store, rec)["mirror_error"] == "UsageError: No API key configured. Use `wandb login` to log in."


class FinishFails:
    """A stand-in W&B run that takes rows and fails to finish (a read-only home, a network gone)."""

    def __init__(self, store: Store, cfg, **kwargs):
        self.store, self.cfg, self.rows, self.id = store, cfg, [], kwargs.get("id")
        self.config = types.SimpleNamespace(update=lambda *a, **k: None)

    def log(self, row, **kwargs):
        self.rows.append(row)

    def finish(self, exit_code=0):
        # the record and the checkpoints are on disk before W&B finishes
        self.record_before_finish = on_disk(self.store, {"name": self.cfg.name, "id": self.cfg.run_id})
        raise OSError(30, "Read-only file system", "/home/u/.config/wandb/settings")


def test_a_mirror_that_fails_to_finish_keeps_the_record_and_checkpoint(cfg, tmp_path, monkeypatch):
    store = Store(tmp_path)
    runs = []
    monkeypatch.setattr(wandb, "init", lambda **kw: runs.append(FinishFails(store, cfg, **kw)) or runs[-1])
    rec = train(cfg, store, wandb="offline")
    [run] = runs
    assert run.rows, "the mirror got the rows while the run trained"
    assert run.record_before_finish["status"] == "ok" and run.record_before_finish["mirror_error"] is None
    assert_trained(store, rec)
    assert on_disk(store, rec)["mirror_error"] == (
        "OSError: [Errno 30] Read-only file system: '/home/u/.config/wandb/settings'")
    assert rec["mirror_error"] == on_disk(store, rec)["mirror_error"]
