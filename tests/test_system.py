"""The system over every task x architecture: contract, smoke, determinism, gradient norms, divergence."""

import csv

import lightning as L
import pytest
import torch
from conftest import small

from bench.run.config import resolve
from bench.run.system import build
from bench.run.train import train


def _batch(task):
    task.setup()
    return next(iter(task.train_dataloader()))


def test_contract_shapes_and_one_step_changes_parameters(task_arch):
    L.seed_everything(0, verbose=False)
    task, system = build(resolve(small(*task_arch)))
    x, target = _batch(task)
    assert task.inputs(x).shape[1:] == (task.seq_len, task.input_size)
    pred, _ = system(x)
    expected = (x.shape[0], task.output_size) if task.shape == "many-to-one" else (*x.shape[:2], task.output_size)
    assert pred.shape == expected
    before = [p.detach().clone() for p in system.parameters()]
    opt = system.configure_optimizers()
    loss = task.loss(pred, target)
    loss.backward()
    opt.step()
    assert torch.isfinite(loss)
    changed = [not torch.equal(a, b.detach()) for a, b in zip(before, system.parameters(), strict=True)]
    assert all(changed), "every parameter should receive a gradient and move"


def test_fast_dev_run_smoke(task_arch):
    task, system = build(resolve(small(*task_arch)))
    trainer = L.Trainer(fast_dev_run=True, accelerator="cpu", logger=False, enable_progress_bar=False,
                        enable_model_summary=False)
    trainer.fit(system, datamodule=task)
    trainer.test(system, datamodule=task, verbose=False)
    assert "test" in system.last


def _losses(record, out):
    with open(out / "runs" / record["metrics_file"]) as f:
        return [row["train/loss"] for row in csv.DictReader(f) if row["train/loss"]]


def test_same_seed_gives_bitwise_identical_losses(task_arch, tmp_path):
    cfg = resolve(small(*task_arch, **{"train.max_steps": 6, "train.val_every": 2}))
    a = train(cfg, tmp_path / "a", wandb="disabled")
    b = train(cfg, tmp_path / "b", wandb="disabled")
    assert a["status"] == b["status"] == "ok"
    la, lb = _losses(a, tmp_path / "a"), _losses(b, tmp_path / "b")
    assert len(la) == 6 and la == lb  # compared as the exact logged strings
    assert a["metric"]["test"] == b["metric"]["test"]


def test_other_seed_gives_other_losses(tmp_path):
    runs = [train(resolve(small("adding", "gru", seed=s, **{"train.max_steps": 4})), tmp_path, wandb="disabled")
            for s in (0, 1)]
    assert _losses(runs[0], tmp_path) != _losses(runs[1], tmp_path)


def test_gradient_norms_are_logged_per_layer_before_clipping(tmp_path):
    cfg = resolve(small("adding", "lstm", **{"arch.layers": 2, "optim.clip": 1e-4, "train.max_steps": 5}))
    rec = train(cfg, tmp_path, wandb="disabled")
    with open(tmp_path / "runs" / rec["metrics_file"]) as f:
        rows = [r for r in csv.DictReader(f) if r["grad/total"]]
    assert len(rows) == 5
    assert {"grad/core.l0", "grad/core.l1", "grad/head"} <= set(rows[0])
    # Clipped norms could not exceed 1e-4: these are the pre-clip values.
    assert min(float(r["grad/total"]) for r in rows) > 1e-3
    for r in rows:  # the per-layer norms recombine into the total
        parts = sum(float(r[k]) ** 2 for k in ("grad/core.l0", "grad/core.l1", "grad/head"))
        assert parts ** 0.5 == pytest.approx(float(r["grad/total"]), rel=1e-4)
    assert rec["grad_norm_preclip"]["steps"] == 5 and rec["grad_norm_preclip"]["median"] > 1e-3


def test_huge_learning_rate_is_recorded_as_diverged(tmp_path):
    cfg = resolve(small("adding", "vanilla", **{"optim.name": "sgd", "optim.lr": 1e6, "optim.clip": 0}))
    rec = train(cfg, tmp_path, wandb="disabled")
    assert rec["status"] == "diverged"
    assert rec["divergence"]["step"] < 20 and rec["divergence"]["last_finite_grad_norm"] > 0
    assert rec["metric"]["test"] is None and rec["metric"]["solved"] is False
    assert (tmp_path / "runs" / f"{rec['name']}__{rec['id']}.json").exists()


def test_wandb_offline_mirror_gets_the_run_and_the_flow_pictures(tmp_path, monkeypatch):
    import bench.run.mirror

    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setattr(bench.run.mirror, "WANDB_DIR", tmp_path / "wandb")
    rec = train(resolve(small("adding", "gru", **{"train.max_steps": 20})), tmp_path / "out", wandb="offline")
    assert rec["wandb_mode"] == "offline" and rec["wandb_id"].startswith(rec["id"])
    runs = list((tmp_path / "wandb" / "wandb").glob(f"offline-run-*-{rec['id']}-*"))
    assert len(runs) == 1
    files = [str(p.relative_to(runs[0])) for p in runs[0].rglob("*") if p.is_file()]
    assert any("media/images/diag/flow_heatmap" in f for f in files)
    assert any("media/table/diag/flow_profiles" in f for f in files)
