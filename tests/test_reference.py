"""The committed reference is real: its runs reproduce bit for bit, and the suite's claims hold."""

import json
from pathlib import Path

import pytest
import torch

from bench.run.train import train
from bench.sweeps.plan import plan

ROOT = Path(__file__).resolve().parent.parent
RECORDS = ROOT / "results" / "runs"
pytestmark = pytest.mark.skipif(not RECORDS.is_dir(), reason="no committed reference results yet")


def suite_run(name: str, tmp_path) -> tuple[dict, dict]:
    """Retrain one run of the default suite the way the reference did (one torch thread, no W&B)."""
    cfg = next(c for c in plan(ROOT / "sweeps" / "default.yaml") if c.name == name)
    reference = json.loads((RECORDS / f"{cfg.name}__{cfg.run_id}.json").read_text())
    threads = torch.get_num_threads()
    torch.set_num_threads(reference["provenance"]["torch_threads"])
    try:
        return train(cfg, tmp_path, wandb="disabled"), reference
    finally:
        torch.set_num_threads(threads)


def test_a_committed_run_reproduces_bit_for_bit(tmp_path):
    mine, reference = suite_run("copy__vanilla__s0", tmp_path)
    assert mine["metric"]["test"] == reference["metric"]["test"]
    assert mine["metric"]["val_best"] == reference["metric"]["val_best"]
    assert mine["diagnostics"]["verdict"] == reference["diagnostics"]["verdict"] == "vanishing"
    assert mine["diagnostics"]["profiles"] == reference["diagnostics"]["profiles"]


@pytest.mark.slow
@pytest.mark.parametrize("name, solved, verdict", [
    ("adding__gru__s0", True, "healthy"),
    ("adding__vanilla__s0", False, "vanishing"),
])
def test_the_suite_separates_gated_cells_from_the_tanh_rnn(name, solved, verdict, tmp_path):
    mine, reference = suite_run(name, tmp_path)
    assert mine["metric"]["solved"] is solved and mine["diagnostics"]["verdict"] == verdict
    assert mine["metric"]["test"] == reference["metric"]["test"]
