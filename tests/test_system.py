"""The system over every task x architecture: contract, smoke, determinism, gradient norms, divergence."""

import csv
import math
import statistics

import lightning as L
import pytest
import torch
from conftest import as_float32, small
from lightning.pytorch.loggers.logger import Logger
from lightning.pytorch.utilities import grad_norm

from bench.run.config import resolve
from bench.run.system import LAYER_NORMS_EVERY, build, layer_of
from bench.run.train import train
from bench.store import open_metrics


def _batch(task):
    task.setup()
    return next(iter(task.train_dataloader()))


def test_contract_shapes_and_one_step_changes_parameters(sequence_task_arch):
    L.seed_everything(0, verbose=False)
    task, system = build(resolve(small(*sequence_task_arch)))
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


class StepLosses(Logger):
    """Keeps the training loss of every optimizer step (the system writes one row per step to its loggers)."""

    name, version = "steps", 0

    def __init__(self):
        super().__init__()
        self.losses: list[float] = []

    def log_metrics(self, metrics, step=None):
        if "train/loss" in metrics:
            self.losses.append(metrics["train/loss"])

    def log_hyperparams(self, *args, **kwargs):
        pass


# Valid range of each metric a task may declare (and of the extra metrics beside it); a new metric goes here.
METRIC_RANGE = {"acc": (0.0, 1.0), "mse": (0.0, math.inf), "ce": (0.0, math.inf), "bpc": (0.0, math.inf),
                "ppl": (1.0, math.inf), "exact": (0.0, 1.0), "token_acc": (0.0, 1.0), "bleu": (0.0, 1.0),
                "monotone": (0.0, 1.0), "acc_hidden": (0.0, 1.0)}


def metric_range(name: str) -> tuple[float, float]:
    """The valid range of a metric; per-length exact match (exact_len3_4, ...) is an exact match."""
    return METRIC_RANGE["exact" if name.startswith("exact_len") else name]
OVERFIT_STEPS = 30


@pytest.mark.filterwarnings("ignore:You requested to overfit")  # overfit_batches turns shuffling off
def test_smoke_loss_falls_on_one_batch_and_metrics_are_in_range(task_arch):
    """Train the real system on one fixed training batch (Lightning's overfit_batches): the loss must fall; then
    validate and test on the held-out splits: every metric must be a number in its valid range."""
    L.seed_everything(0, verbose=False)
    cfg = resolve(small(*task_arch, **{"optim.lr": 1e-2}))
    task, system = build(cfg)
    assert task.metric_name in METRIC_RANGE, f"add the valid range of {task.metric_name!r} to METRIC_RANGE"
    steps = StepLosses()
    trainer = L.Trainer(
        accelerator="cpu", max_steps=OVERFIT_STEPS, max_epochs=-1, overfit_batches=1, logger=steps,
        check_val_every_n_epoch=None, val_check_interval=10**9, num_sanity_val_steps=0, log_every_n_steps=1,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(system, datamodule=task)
    assert system.divergence is None and len(steps.losses) == OVERFIT_STEPS
    losses = steps.losses
    assert all(math.isfinite(v) for v in losses)
    # Medians of five steps, so one bounce (or an IRNN's first exploding steps) decides nothing. Over 30 Adam
    # steps at lr 1e-2 the drop is 10-95 % on every task x arch; 5 % leaves room for other machines' floats.
    early, late = statistics.median(losses[:5]), statistics.median(losses[-5:])
    assert late < 0.95 * early, f"the loss did not fall on one fixed batch: {losses}"

    trainer.validate(system, datamodule=task, verbose=False)
    trainer.test(system, datamodule=task, verbose=False)
    lo, hi = METRIC_RANGE[task.metric_name]
    assert lo <= task.baseline <= hi
    for split in ("val", "test"):
        value = system.last[split]
        assert math.isfinite(value) and lo <= value <= hi, f"{split}/{task.metric_name} = {value}"
    assert system.best == system.last["val"]
    for key, value in system.last.items():
        if "/" in key:  # extra metrics, e.g. test/ppl (may overflow to inf for a model this bad, never NaN)
            extra_lo, extra_hi = metric_range(key.split("/", 1)[1])
            assert extra_lo <= value <= extra_hi, f"{key} = {value}"


def _losses(record, out):
    with open_metrics(out / "runs" / record["metrics_file"]) as f:
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


def test_gradient_norms_are_logged_before_clipping_per_layer_every_tenth_step(tmp_path):
    steps = 2 * LAYER_NORMS_EVERY + 1
    cfg = resolve(small("adding", "lstm", **{"arch.layers": 2, "optim.clip": 1e-4, "train.max_steps": steps}))
    rec = train(cfg, tmp_path, wandb="disabled")
    with open_metrics(tmp_path / "runs" / rec["metrics_file"]) as f:
        rows = [r for r in csv.DictReader(f) if r["grad/total"]]
    assert [int(r["step"]) for r in rows] == list(range(steps))
    # Clipped norms could not exceed 1e-4: these are the pre-clip values.
    assert min(float(r["grad/total"]) for r in rows) > 1e-3
    layers = ("grad/core.l0", "grad/core.l1", "grad/head")
    with_layers = [r for r in rows if all(r.get(k) for k in layers)]
    assert [int(r["step"]) for r in with_layers] == list(range(0, steps, LAYER_NORMS_EVERY))
    for r in with_layers:  # the per-layer norms recombine into the total
        parts = sum(float(r[k]) ** 2 for k in layers)
        assert parts ** 0.5 == pytest.approx(float(r["grad/total"]), rel=1e-4)
    assert not any(r.get(k) for r in rows if r not in with_layers for k in layers)
    assert rec["grad_norm_preclip"]["steps"] == steps and rec["grad_norm_preclip"]["median"] > 1e-3


@pytest.mark.parametrize("clip", [1e-3, 0.0])
def test_training_equals_a_hand_written_loop_with_global_norm_clipping(clip, tmp_path):
    """Each optimizer step is forward, zero_grad, backward, clip_grad_norm_, Adam: the losses and pre-clip norms
    equal a plain loop's to the bit, with clipping that binds (1e-3) and with none (0)."""
    cfg = resolve(small("adding", "lstm", **{"train.max_steps": 8, "train.val_every": 8, "train.diag": False,
                                             "optim.clip": clip}))
    rec = train(cfg, tmp_path, wandb="disabled")
    with open_metrics(tmp_path / "runs" / rec["metrics_file"]) as f:
        rows = [r for r in csv.DictReader(f) if r["train/loss"]]

    L.seed_everything(cfg.seed, workers=True, verbose=False)
    task, system = build(cfg)
    task.setup("fit")
    opt, expected = system.configure_optimizers(), []
    for x, y in task.train_dataloader():
        loss = task.loss(system(x)[0], y)
        opt.zero_grad()
        loss.backward()
        params = list(system.parameters())
        norm = torch.nn.utils.clip_grad_norm_(params, clip) if clip else torch.nn.utils.get_total_norm(
            [p.grad for p in params])
        opt.step()
        expected.append((loss.item(), norm.item()))
        if len(expected) == cfg.train.max_steps:
            break
    assert [(as_float32(r["train/loss"]), as_float32(r["grad/total"])) for r in rows] == expected
    if clip:
        assert min(n for _, n in expected) > 10 * clip  # the clip bound every step


def test_per_layer_norms_recombine_lightnings_grad_norm_per_parameter():
    """The row holds Lightning's grad_norm total and, per layer, the norm of its parameters' norms (in float32,
    as Lightning takes the total)."""
    L.seed_everything(0, verbose=False)
    task, system = build(resolve(small("adding", "gru", **{"arch.layers": 3})))
    x, target = _batch(task)
    system._train_loss = 1.0
    task.loss(system(x)[0], target).backward()
    rows = []
    system._log_step = rows.append
    assert system._measure_gradients()
    names = [n for n, _ in system.named_parameters()]
    layers = list(dict.fromkeys(layer_of(n) for n in names))
    assert layers == ["core.l0", "core.l1", "core.l2", "head"]
    norms = grad_norm(system, norm_type=2)
    for layer in layers:
        squares = sum(float(norms[f"grad_2.0_norm/{n}"]) ** 2 for n in names if layer_of(n) == layer)
        assert rows[0][f"grad/{layer}"] == pytest.approx(math.sqrt(squares), rel=1e-6)
        assert as_float32(repr(rows[0][f"grad/{layer}"])) == rows[0][f"grad/{layer}"]  # a float32: written short
    assert rows[0]["grad/total"] == float(norms["grad_2.0_norm_total"])
    assert system.grad_history == [rows[0]["grad/total"]]


def test_a_non_finite_step_between_the_tenths_logs_its_per_layer_norms(monkeypatch):
    """Which layer blew up: the row of a step whose total is not finite holds the per-layer norms, whatever
    its step; a finite step off the cadence holds the total alone."""
    L.seed_everything(0, verbose=False)
    task, system = build(resolve(small("adding", "gru")))
    monkeypatch.setattr(type(system), "global_step", property(lambda self: LAYER_NORMS_EVERY + 3))
    x, target = _batch(task)
    system._train_loss = 1.0
    task.loss(system(x)[0], target).backward()
    rows, reasons = [], []
    system._log_step, system._diverge = rows.append, reasons.append  # _diverge stops the Trainer: none here
    assert system._measure_gradients()
    next(system.head.parameters()).grad[0] = math.inf
    assert not system._measure_gradients()
    assert set(rows[0]) == {"train/loss", "grad/total"}
    assert rows[1]["grad/head"] == math.inf and math.isfinite(rows[1]["grad/core.l0"])
    assert reasons == ["non-finite gradient norm inf"]


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
