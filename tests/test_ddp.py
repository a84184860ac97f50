"""DDP inside one run: two CPU processes (gloo) under ddp_spawn still give one complete, sensible record.

    .venv/bin/pytest tests/test_ddp.py -m slow     # the two DDP runs are slow; the config checks are not

Under ddp_spawn the run trains in child processes, so what the record needs comes back from rank 0 (see
``RankZeroHandback`` in bench/run/train.py); this checks it arrives, and that only rank 0 wrote per-step rows.
"""

import csv
import math

import pytest
from conftest import small

from bench.run.config import resolve
from bench.run.train import train
from bench.store import open_metrics
from options import ConfigError

STEPS = 4


@pytest.fixture(scope="module")
def ddp_record(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp")
    cfg = resolve(small("adding", "gru", **{
        "train.max_steps": STEPS, "train.val_every": 2, "train.accelerator": "cpu", "train.devices": 2,
        "train.strategy": "ddp_spawn"}))
    return out, train(cfg, out, wandb="disabled")


@pytest.mark.slow  # ~60 s on 2 shared cores: two spawns (fit, test) of two processes each
def test_ddp_spawn_record_is_complete(ddp_record):
    out, rec = ddp_record
    assert rec["status"] == "ok", rec["error"]
    assert rec["steps"] == STEPS
    assert math.isfinite(rec["metric"]["test"]) and rec["metric"]["test"] > 0
    assert rec["metric"]["val_best"] is not None and rec["metric"]["val_last"] is not None
    assert rec["grad_norm_preclip"]["steps"] == STEPS and rec["grad_norm_preclip"]["median"] > 0
    assert rec["diagnostics"]["verdict"] in ("healthy", "vanishing", "exploding")
    assert rec["diagnostics"]["profiles"]["steps"][-1] == STEPS
    assert rec["config"]["train"]["devices"] == 2 and (out / "runs" / f"{rec['name']}__{rec['id']}.json").exists()


@pytest.mark.slow  # ~60 s on 2 shared cores: two spawns (fit, test) of two processes each
def test_per_step_rows_from_rank_zero_only_and_test_rows_kept(ddp_record):
    out, rec = ddp_record
    with open_metrics(out / "runs" / rec["metrics_file"]) as f:
        rows = list(csv.DictReader(f))
    assert [row["step"] for row in rows if row.get("grad/total")] == [str(s) for s in range(STEPS)]
    assert [float(row["test/mse"]) for row in rows if row.get("test/mse")] == [rec["metric"]["test"]]


def test_devices_count_in_the_run_id_strategy_does_not():
    base = small("adding", "gru")
    one = resolve(base)
    assert resolve({**base, "train.strategy": "ddp_spawn"}).run_id == one.run_id
    assert resolve({**base, "train.devices": 1}).run_id == one.run_id
    assert resolve({**base, "train.devices": 2}).run_id != one.run_id
    assert "devices" not in one.to_dict()["train"] and "strategy" not in one.to_dict()["train"]


@pytest.mark.parametrize("override, message", [
    ({"train.devices": 0}, "train.devices must be >= 1, got 0"),
    ({"train.strategy": "fsdp"}, "unknown train.strategy 'fsdp'; valid: auto, ddp, ddp_spawn"),
])
def test_bad_ddp_settings_are_one_line_errors(override, message):
    with pytest.raises(ConfigError, match=message):
        resolve({**small("adding", "gru"), **override})
