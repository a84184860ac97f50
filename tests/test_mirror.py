"""The W&B mirror cannot fail a run: a W&B failure after (or before) training is the mirror's, noted in the record.

No test reaches the network: ``wandb.init`` is replaced by a stand-in run or by one that raises.
"""

from __future__ import annotations

import json
import socket
import types

import pytest
import wandb
from conftest import small

from bench import cli
from bench.run import mirror_mode
from bench.run.config import resolve
from bench.run.train import train
from bench.store import Store
from options import ConfigError

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


# ---- the mode, settled before any work ------------------------------------------------------------------------
@pytest.fixture
def logged_in(monkeypatch, tmp_path):
    monkeypatch.delenv("WANDB_MODE", raising=False)  # conftest's "disabled" would decide auto
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    monkeypatch.setattr(mirror_mode, "WANDB_DIR", tmp_path / "wandb")


def no_network(monkeypatch) -> list:
    asked = []

    def refuse(address, timeout):
        asked.append((address, timeout))
        raise TimeoutError("timed out")

    monkeypatch.setattr(socket, "create_connection", refuse)
    return asked


def test_online_without_a_login_is_refused_before_any_work(logged_in, monkeypatch, tmp_path, capsys):
    monkeypatch.delenv("WANDB_API_KEY")
    with pytest.raises(SystemExit) as exc:
        cli.main(["run", "--task", "adding", "--arch", "gru", "--wandb", "online", "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and err.count("\n") == 1
    assert "--wandb online: no W&B login (`wandb login`, or WANDB_API_KEY); use --wandb offline" in err
    assert not (tmp_path / "out").exists()


def test_online_with_a_key_but_no_network_is_refused_within_the_bound(logged_in, monkeypatch):
    asked = no_network(monkeypatch)
    with pytest.raises(ConfigError, match=r"^--wandb online: the W&B server api.wandb.ai:443 did not answer "
                                          r"within 5 s \(TimeoutError\); use --wandb offline"):
        mirror_mode.checked_mode("online")
    assert asked == [(("api.wandb.ai", 443), 5.0)]


def test_auto_falls_back_to_offline_with_one_warning_line(logged_in, monkeypatch, capsys):
    no_network(monkeypatch)
    assert mirror_mode.checked_mode("auto") == "offline"
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("warning: the W&B server api.wandb.ai:443 did not answer")
    monkeypatch.setattr(socket, "create_connection", lambda address, timeout: types.SimpleNamespace(close=lambda: None))
    assert mirror_mode.checked_mode("auto") == "online"


def test_an_offline_folder_that_cannot_be_written(logged_in, monkeypatch, tmp_path, capsys):
    monkeypatch.delenv("WANDB_API_KEY")
    (tmp_path / "file").write_text("")
    monkeypatch.setattr(mirror_mode, "WANDB_DIR", tmp_path / "file" / "wandb")
    with pytest.raises(ConfigError, match=f"^--wandb offline: the W&B folder: {tmp_path}/file is a file, not a "
                                          f"folder \\(set RNNBENCH_WANDB_DIR, or --wandb disabled\\)$"):
        mirror_mode.checked_mode("offline")
    assert mirror_mode.checked_mode("auto") == "disabled"  # not logged in: auto was offline; no mirror, said once
    assert capsys.readouterr().err.startswith(f"warning: the W&B folder: {tmp_path}/file is a file, not a folder")
    assert mirror_mode.checked_mode("disabled") == "disabled"
