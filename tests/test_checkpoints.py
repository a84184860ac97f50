"""Lightning's checkpoints in a run: best and last, the test on the best, resume after a kill, reload from the file
alone, early stopping and learning-rate schedules."""

import csv
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import small

import tasks
from bench.run.config import resolve
from bench.run.system import SequenceSystem, System
from bench.run.train import train
from bench.store import open_metrics

KILL = """
import json, os, signal, sys
import lightning as L
import torch
from bench.run.config import resolve
from bench.run.train import train

torch.set_num_threads(1)


class Kill(L.Callback):  # what the kernel's OOM killer or a `kill -9` does, at a step of our choosing
    def on_train_batch_end(self, trainer, *args):
        if trainer.global_step >= int(sys.argv[3]):
            os.kill(os.getpid(), signal.SIGKILL)


train(resolve(json.loads(sys.argv[1])), sys.argv[2], wandb="disabled", callbacks=(Kill(),))
"""

# What differs between an interrupted-then-resumed run's record and an uninterrupted one's: where and how long.
CIRCUMSTANCES = ("wall_time_s", "cpu_time_s", "provenance", "checkpoint", "checkpoint_last", "resumed_from")


def _record_and_log(rec, out):
    return {k: v for k, v in rec.items() if k not in CIRCUMSTANCES}, (out / "runs" / rec["metrics_file"]).read_bytes()


@pytest.mark.parametrize("name, arch, extra, kill_at, resumed_from", [
    # 16 batches an epoch: checkpoints every 6 steps, killed at 20, resumed from 18 in the middle of epoch 2,
    # with dropout drawing from the RNG the loader's shuffle draws from
    ("adding", "lstm", {"arch.layers": 2, "arch.dropout": 0.3, "train.val_every": 6}, 20, 18),
    # a checkpoint where an epoch ends (16): the next epoch's order is drawn after the resume
    ("adding", "gru", {"train.val_every": 8}, 18, 16),
    # truncated BPTT, with the state carried from batch to batch
    ("charlm", "gru", {"train.val_every": 6}, 14, 12),
    ("translate", "lstm", {"train.val_every": 4}, 10, 8),
])
def test_a_killed_run_resumes_from_its_last_checkpoint_to_the_same_record(tmp_path, name, arch, extra, kill_at,
                                                                          resumed_from):
    overrides = small(name, arch, **{"train.max_steps": 30, **extra})
    cfg = resolve(overrides)
    whole = train(cfg, tmp_path / "whole", wandb="disabled")

    killed = subprocess.run([sys.executable, "-c", KILL, json.dumps(overrides), str(tmp_path / "cut"), str(kill_at)],
                            capture_output=True, text=True)
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert not (tmp_path / "cut" / "runs").exists() or not list((tmp_path / "cut" / "runs").glob("*.json"))
    resumed = train(cfg, tmp_path / "cut", wandb="disabled")

    assert resumed["resumed_from"] == resumed_from and whole["resumed_from"] is None
    assert _record_and_log(resumed, tmp_path / "cut") == _record_and_log(whole, tmp_path / "whole")


# A metric first logged after the checkpoint at step 18 (as a gradient spike's first diag/spike is): Lightning's CSV
# writer then rewrites the whole file under a wider header, so the file's first bytes at the kill are no longer
# the rows the checkpoint had. The same key is logged again after the resume, as the uninterrupted run logs it.
LATE_KEY = KILL.replace("train(resolve(", """
class LateKey(L.Callback):
    def on_train_batch_end(self, trainer, *args):
        if trainer.global_step == 19:
            trainer.loggers[0].log_metrics({"late/key": 1.0}, step=19)
            trainer.loggers[0].save()


callbacks = (Kill(),) if int(sys.argv[3]) else ()
train(resolve(""").replace("callbacks=(Kill(),))", "callbacks=(LateKey(), *callbacks))")


def test_a_resume_keeps_the_checkpoints_rows_when_the_log_was_rewritten_under_a_wider_header_after_it(tmp_path):
    overrides = small("adding", "gru", **{"train.max_steps": 24, "train.val_every": 6})

    def run(out, kill_at=0):
        return subprocess.run([sys.executable, "-c", LATE_KEY, json.dumps(overrides), str(out), str(kill_at)],
                              capture_output=True, text=True)

    assert run(tmp_path / "whole").returncode == 0
    assert run(tmp_path / "cut", kill_at=20).returncode == -9
    resumed = run(tmp_path / "cut")
    assert resumed.returncode == 0, resumed.stderr[-2000:]

    def record(out):
        rec = json.loads(next((out / "runs").glob("*.json")).read_text())
        return _record_and_log(rec, out)

    (rec, log), whole = record(tmp_path / "cut"), record(tmp_path / "whole")
    with open_metrics(tmp_path / "cut" / "runs" / rec["metrics_file"]) as f:
        assert rec["status"] == "ok" and "late/key" in next(csv.reader(f))
    assert (rec, log) == whole


def test_the_test_metric_is_the_best_checkpoints_and_the_last_models_is_kept(tmp_path):
    rec = train(resolve(small("mnist1d", "gru", **{"train.max_steps": 12, "train.val_every": 3, "optim.lr": 0.05})),
                tmp_path, wandb="disabled")
    m = rec["metric"]
    assert m["test_from"] == "best" and m["test"] is not None and m["test_last"] is not None
    best = torch.load(tmp_path / rec["checkpoint"], weights_only=True)
    last = torch.load(tmp_path / rec["checkpoint_last"], weights_only=True)
    assert last["global_step"] == 12
    # the best checkpoint holds the best validation value the run saw, which is the record's
    assert best["callbacks"][next(k for k in best["callbacks"] if k.startswith("ModelCheckpoint"))][
        "best_model_score"].item() == pytest.approx(m["val_best"])
    with open_metrics(tmp_path / "runs" / rec["metrics_file"]) as f:
        rows = list(csv.DictReader(f))
    assert [float(r["test/acc"]) for r in rows if r["test/acc"]] == [pytest.approx(m["test"])]
    assert [float(r["test_last/acc"]) for r in rows if r["test_last/acc"]] == [pytest.approx(m["test_last"])]


def test_load_from_checkpoint_needs_no_other_input(tmp_path):
    rec = train(resolve(small("adding", "lstm", **{"train.max_steps": 4, "train.val_every": 2})), tmp_path,
                wandb="disabled")
    system = System.load_from_checkpoint(tmp_path / rec["checkpoint"])
    assert type(system) is SequenceSystem and system.cfg.run_id == rec["id"]
    again = SequenceSystem.load_from_checkpoint(tmp_path / rec["checkpoint"])
    assert all(torch.equal(a, b) for a, b in zip(system.state_dict().values(), again.state_dict().values(),
                                                 strict=True))
    x = torch.randn(3, system.task.seq_len, system.task.input_size)
    assert system(x)[0].shape == (3, system.task.output_size)


def test_patience_stops_a_run_that_no_longer_improves(tmp_path):
    # SGD at lr 1e-30 leaves every float32 weight as it is: validation never improves after the first
    cfg = resolve(small("adding", "gru", **{"optim.name": "sgd", "optim.lr": 1e-30, "train.max_steps": 40,
                                            "train.val_every": 4, "train.patience": 2}))
    rec = train(cfg, tmp_path, wandb="disabled")
    assert rec["status"] == "ok" and rec["steps"] == 12 and rec["stopped"]["step"] == 12
    assert "did not improve in the last 2 records" in rec["stopped"]["reason"]


def test_stop_when_solved_stops_at_the_first_validation_past_the_threshold(tmp_path, monkeypatch):
    monkeypatch.setattr(tasks.get("adding"), "solved_threshold", property(lambda self: 10.0))  # any MSE solves it
    rec = train(resolve(small("adding", "gru", **{"train.max_steps": 40, "train.val_every": 4,
                                                  "train.stop_when_solved": True})), tmp_path, wandb="disabled")
    assert rec["steps"] == 4 and rec["stopped"]["step"] == 4 and "threshold" in rec["stopped"]["reason"]
    assert rec["metric"]["solved"] is True


def test_stop_when_solved_is_refused_where_a_task_declares_no_threshold():
    no_threshold = next(t for t in tasks.names() if tasks.get(t).solved_threshold.fget(None) is None)
    with pytest.raises(ValueError, match="declares no solved threshold; valid: false"):
        resolve(small(no_threshold, "gru", **{"train.stop_when_solved": True}))


@pytest.mark.parametrize("schedule, extra, factor", [
    ("cosine", {}, 0.0),  # lr to 0 over train.max_steps
    ("step", {"optim.step_every": 4, "optim.gamma": 0.5}, 0.25),  # halved at 4 and at 8
])
def test_schedules_step_with_the_optimizer(tmp_path, schedule, extra, factor):
    cfg = resolve(small("adding", "gru", **{"optim.schedule": schedule, "train.max_steps": 8, "train.val_every": 8,
                                            **extra}))
    rec = train(cfg, tmp_path, wandb="disabled")
    last = torch.load(tmp_path / rec["checkpoint_last"], weights_only=True)
    lr = last["optimizer_states"][0]["param_groups"][0]["lr"]
    assert math.isclose(lr, factor * cfg.optim.lr, abs_tol=1e-12)


def test_the_new_options_at_their_defaults_leave_run_ids_as_they_were():
    base = resolve(small("adding", "gru"))
    spelled = resolve(small("adding", "gru", **{"optim.schedule": "none", "train.patience": 0,
                                                "train.stop_when_solved": False}))
    assert base.run_id == spelled.run_id and "schedule" not in base.to_dict()["optim"]
    assert resolve(small("adding", "gru", **{"train.patience": 3})).run_id != base.run_id


def test_a_leaderboard_row_shows_one_kind_of_test_value_and_says_which():
    from bench.reports.leaderboard import build_rows, render

    committed = [json.loads(p.read_text()) for p in sorted(Path("results/runs").glob("adding__gru__s[0-2]__*.json"))]
    # the default suite's fixed-budget rows (the tuned reference has GRU runs at T = 100 under the same names)
    row_of = {r["name"]: r for r in committed
              if r["config"]["task"]["seq_len"] == 100 and r["config"]["train"]["max_steps"] == 2000}
    old = list(row_of.values())
    assert len(old) == 3 and all("test_from" not in r["metric"] for r in old)

    def checkpointed(rec, best):  # what a record written now holds: both test values
        m = {**rec["metric"], "test": best, "test_last": rec["metric"]["test"], "test_from": "best"}
        return {**rec, "metric": m}

    new = [checkpointed(r, 0.5) for r in old]
    (row,) = [r for r in build_rows(new) if r.label == "gru"]
    assert row.tested == "best" and row.mean == 0.5
    mixed = [*new[:2], old[2]]  # one seed without a best checkpoint: the whole row shows the last models
    (row,) = [r for r in build_rows(mixed) if r.label == "gru"]
    assert row.tested == "last" and row.mean == pytest.approx(sum(r["metric"]["test"] for r in old) / 3)
    assert "| best val ckpt |" in render(new) and "| last model |" in render(mixed)


def test_a_results_folder_given_as_a_relative_path_records_its_checkpoints(tmp_path, monkeypatch):
    # as `make sweep` names it (results-local); Lightning makes the checkpoint paths absolute
    monkeypatch.chdir(tmp_path)
    rec = train(resolve(small("adding", "gru", **{"train.max_steps": 4, "train.val_every": 2})), "out",
                wandb="disabled")
    assert rec["status"] == "ok", rec["error"]
    assert rec["checkpoint"] == f"checkpoints/{rec['name']}__{rec['id']}/best.ckpt"
    assert (tmp_path / "out" / rec["checkpoint_last"]).is_file()
