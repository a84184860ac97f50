"""The README's Python API, step by step: build a core from the registry, train a small run, load its best
checkpoint and evaluate it, read its record back."""

import lightning as L
import pytest
import torch
from conftest import small

from architectures import build, names
from bench.run.config import resolve
from bench.run.system import System
from bench.run.train import train
from bench.store import Store


@pytest.mark.parametrize("arch", names())
def test_a_core_from_the_registry_is_a_plain_module(arch):
    core = build(arch, input_size=2)
    y, _ = core(torch.randn(8, 10, 2))
    assert isinstance(core, torch.nn.Module) and y.shape == (8, 10, core.output_size)


def test_train_load_the_best_checkpoint_evaluate_and_read_the_record(tmp_path):
    cfg = resolve(small("adding", "gru", **{"train.max_steps": 8, "train.val_every": 4}))
    record = train(cfg, tmp_path, wandb="disabled")
    assert record["status"] == "ok" and record["metric"]["test_from"] == "best"

    system = System.load_from_checkpoint(tmp_path / record["checkpoint"])
    L.Trainer(logger=False, enable_progress_bar=False).test(system, datamodule=system.task, verbose=False)
    assert system.last["test"] == pytest.approx(record["metric"]["test"])

    again, path = Store(tmp_path).find(record["name"])
    assert again == record and path == tmp_path / "runs" / f"{record['name']}__{record['id']}.json"
