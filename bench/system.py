"""The one LightningModule of the suite: any recurrent core + a linear head, trained on any task.

It never looks at task or architecture names: the task says which outputs to read, the loss and the metric;
the core says how its parameters group into layers. Metric keys are ``split/name``: ``train/loss``,
``val/mse``, ``val/mse_best``, ``test/acc``; pre-clip gradient norms go under ``grad/`` every step.
"""

from __future__ import annotations

import math
import re

import lightning as L
import torch
from lightning.pytorch.utilities import grad_norm
from torch import nn

from architectures import RecurrentCore
from tasks import Task

from .config import OptimConfig

_LAYER = re.compile(r"_l(\d+)$")


def layer_of(param_name: str) -> str:
    """``core.rnn.weight_hh_l1`` -> ``core.l1``; ``head.weight`` -> ``head``."""
    module, _, leaf = param_name.rpartition(".")
    match = _LAYER.search(leaf)
    top = module.split(".")[0]
    return f"{top}.l{match.group(1)}" if match else top


class SequenceSystem(L.LightningModule):
    def __init__(self, core: RecurrentCore, task: Task, optim: OptimConfig | None = None):
        super().__init__()
        self.core, self.task = core, task
        self.optim = optim if optim is not None else OptimConfig()
        self.head = nn.Linear(core.output_size, task.output_size)
        self.metrics = nn.ModuleDict({split: task.make_metric() for split in ("val", "test")})
        self.key = task.metric_name
        self.best: float | None = None
        self.last: dict[str, float] = {}  # latest computed metric per split
        self.grad_history: list[float] = []  # pre-clip total norm per optimizer step
        self.divergence: dict | None = None

    def forward(self, x: torch.Tensor, state=None):
        y, state = self.core(x, state)
        return self.head(self.task.readout(y)), state

    def _step(self, batch, split: str) -> torch.Tensor:
        x, target = batch
        pred, _ = self(x)
        loss = self.task.loss(pred, target)
        if split == "train":
            self.log("train/loss", loss, on_step=True, on_epoch=False, prog_bar=True)
        else:
            self.task.metric_update(self.metrics[split], pred, target)
            self.log(f"{split}/loss", loss, on_step=False, on_epoch=True)
        return loss

    def training_step(self, batch, batch_idx):
        loss = self._step(batch, "train")
        if not torch.isfinite(loss):
            self._diverge(f"non-finite loss {loss.item()}")
            return None  # skips backward and the optimizer step
        return loss

    def validation_step(self, batch, batch_idx):
        self._step(batch, "val")

    def test_step(self, batch, batch_idx):
        self._step(batch, "test")

    def configure_optimizers(self):
        o = self.optim
        cls = {"adam": torch.optim.Adam, "rmsprop": torch.optim.RMSprop, "sgd": torch.optim.SGD}[o.name]
        return cls(self.parameters(), lr=o.lr, weight_decay=o.weight_decay)

    # ---- hooks -----------------------------------------------------------------------------------------
    def on_validation_epoch_end(self):
        value = self._compute("val")
        better = self.best is None or (value < self.best if self.task.metric_mode == "min" else value > self.best)
        if math.isfinite(value) and better:
            self.best = value
        if self.best is not None:
            self.log(f"val/{self.key}_best", self.best)

    def on_test_epoch_end(self):
        self._compute("test")

    def on_before_optimizer_step(self, optimizer):
        # In automatic optimization this runs before Lightning clips: these are the pre-clip norms.
        norms = grad_norm(self, norm_type=2)
        total = norms.pop("grad_2.0_norm_total", torch.tensor(float("nan")))
        squares: dict[str, float] = {}
        for key, value in norms.items():
            layer = layer_of(key.removeprefix("grad_2.0_norm/"))
            squares[layer] = squares.get(layer, 0.0) + float(value) ** 2
        self.log("grad/total", total, on_step=True, on_epoch=False)
        self.log_dict({f"grad/{k}": math.sqrt(v) for k, v in squares.items()}, on_step=True, on_epoch=False)
        total = float(total)
        if math.isfinite(total):
            self.grad_history.append(total)
        else:
            self._diverge(f"non-finite gradient norm {total}")

    # ---- helpers -----------------------------------------------------------------------------------------
    def _compute(self, split: str) -> float:
        metric = self.metrics[split]
        value = float(metric.compute())
        metric.reset()
        self.last[split] = value
        self.log(f"{split}/{self.key}", value)
        return value

    def _diverge(self, reason: str) -> None:
        if self.divergence is None:
            last = self.grad_history[-1] if self.grad_history else None
            self.divergence = {"step": int(self.global_step), "reason": reason, "last_finite_grad_norm": last}
        self.trainer.should_stop = True
