"""The suite's LightningModules: a recurrent core + a linear head (``SequenceSystem``), or a composed model
(``ComposedSystem``: encoder-decoder, captioner, VQA, classifier, frame tagger; bench/run/models.py), over one
``System`` base that owns the optimizer, the pre-clip gradient norms, the metrics and divergence.

It never looks at task or architecture names: the task says which outputs to read, the loss and the metric;
the core says how its parameters group into layers. Metric keys are ``split/name``: ``train/loss``,
``val/mse``, ``val/mse_best``, ``test/acc``; pre-clip gradient norms go under ``grad/`` every step.

Every system uses Lightning's manual optimization: ``_update`` does forward, zero_grad, backward, the pre-clip
norms, clipping and the optimizer step: the same operations in the same order as automatic optimization with
the Trainer's norm clipping (the metrics CSVs are byte-identical to what automatic optimization wrote), without
the automatic loop's closure and its two extra hooks a step: 1.7 % of a small RNN's step (bench/dev/perf.py's
alternating blocks, 7 processes each way: median 0.930 of a bare loop against 0.913).

Truncated BPTT (tasks that declare ``truncation``, e.g. charlm): Lightning 2 dropped it, so the system does as
Lightning's TBPTT page does, with the fixes that page needs: the batch is cut into k-step chunks with
``split(k)`` (not ``tensor_split``, which makes k chunks), the carried state is detached whether it is a
tensor or an LSTM's (h, c) tuple, and the pre-clip gradient norm is measured per chunk *before* clipping (in
manual optimization ``on_before_optimizer_step`` runs after it). One optimizer step per chunk, so
``trainer.global_step``, ``train.max_steps``, ``train.val_every``, the diagnostics cadence and the step of
every logged row all count optimizer updates (chunks), never batches. Tasks that declare ``carries_state``
read consecutive batches of parallel streams: the state goes from one batch to the next, per split, and is
reset at each epoch's start.

Per-step scalars (``train/loss`` and ``grad/*``) go to the loggers as one row per optimizer step, straight
through ``logger.log_metrics``: ``self.log`` costs about a millisecond per call on CPU (its result collection),
which is 10-20 % of a small RNN's step. Epoch-level metrics (val, test) use ``self.log`` as usual.
A logger with an ``every_n_steps`` attribute receives every n-th row only (the W&B mirror, see bench/run/mirror.py).

A single-device run gives Lightning several of the task's batches per Lightning batch (a ``Group``,
bench/run/groups.py): Lightning's per-batch work, 3-8 % of a small RNN's step on CPU, is paid once a group, and
every update, validation, probe and logged row stays where it was.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable

import lightning as L
import torch
import torchmetrics
from torch import nn

import architectures
import tasks
from architectures import RecurrentCore, Trace
from architectures.base import State
from tasks import Task
from tasks.composed import ComposedTask

from ..diag import flow
from .config import OptimConfig, RunConfig
from .groups import Group
from .models import KINDS, Kind

_LAYER = re.compile(r"_l(\d+)$")
_PLAIN = frozenset({"_current_fx_name", "_train_loss", "_preclip_total"})


def detach_state(state: State | None) -> State | None:
    """Cut the graph behind a carried state: a tensor (RNN, GRU) or an (h, c) tuple (LSTM)."""
    if state is None or isinstance(state, torch.Tensor):
        return None if state is None else state.detach()
    return tuple(s.detach() for s in state)


def layer_of(param_name: str) -> str:
    """``core.rnn.weight_hh_l1`` -> ``core.l1``; ``head.weight`` -> ``head``."""
    module, _, leaf = param_name.rpartition(".")
    match = _LAYER.search(leaf)
    top = module.split(".")[0]
    return f"{top}.l{match.group(1)}" if match else top


class System(L.LightningModule):
    """What every system shares: one optimizer, pre-clip gradient norms per layer and step, metrics per split
    with the best validation value, and divergence as a recorded stop. Subclasses own the model and ``_step``."""

    def __init__(self, task: Task, metric: Callable[[], torchmetrics.Metric], extras: Callable[[], dict],
                 optim: OptimConfig | None = None):
        super().__init__()
        self.task = task
        self.optim = optim if optim is not None else OptimConfig()
        self.metrics = nn.ModuleDict({split: metric() for split in ("val", "test")})
        self.extra_metrics = nn.ModuleDict({split: nn.ModuleDict(extras()) for split in ("val", "test")})
        self.key = task.metric_name
        self.best: float | None = None
        self.last: dict[str, float] = {}  # latest computed metric per split
        self.grad_history: list[float] = []  # pre-clip total norm per optimizer step
        self.divergence: dict | None = None
        self._train_loss: float | None = None
        self._layers: list[str] | None = None  # layer names, for per-layer grad norms
        self._layer_index: list[int] | None = None  # parameter -> its layer's index in _layers
        self._preclip_total: torch.Tensor | None = None  # this step's pre-clip total norm, reused for clipping
        self._params: list[nn.Parameter] | None = None  # every parameter, in named_parameters order
        self.automatic_optimization = False  # see the module docstring

    def __setattr__(self, name: str, value) -> None:
        # Lightning names the running hook on the module around every hook call (~46 times a step), and this
        # system keeps two per-step values: plain attributes, never parameters, buffers or modules, so
        # nn.Module's checks (2 us a call, 1 % of a small RNN's step) are skipped for them.
        if name in _PLAIN:
            object.__setattr__(self, name, value)
        else:
            super().__setattr__(name, value)

    def _step(self, batch, split: str) -> torch.Tensor:
        raise NotImplementedError

    def training_step(self, batch, batch_idx):
        if not isinstance(batch, Group):
            self._train_on(batch)
            return
        # several of the task's batches (bench/run/groups.py), pulled from its DataLoader one at a time
        for one in batch:
            if not self._train_on(self._to_device(one)):
                return

    def _train_on(self, batch) -> bool:
        """Train on one of the task's batches; False if the run stopped (diverged)."""
        return self._update(batch)

    def start_train_epoch(self) -> None:
        """A new epoch of the task's training data begins (Lightning's epoch, or a DataLoader epoch in groups)."""

    def on_train_epoch_start(self):
        self.start_train_epoch()

    def _update(self, batch) -> bool:
        """One optimizer step on ``batch``; False (nothing updated, the run stopped) if it diverged."""
        loss = self._step(batch, "train")
        if not math.isfinite(self._train_loss):
            self._write_row({"train/loss": self._train_loss})
            self._diverge(f"non-finite loss {self._train_loss}")
            return False
        opt = self.optimizers()
        opt.zero_grad()
        self.manual_backward(loss)
        self._measure_gradients()
        if self.divergence is not None:
            return False
        self.configure_gradient_clipping(opt, self.optim.clip)
        opt.step()
        return True

    def transfer_batch_to_device(self, batch, device: torch.device, dataloader_idx: int):
        # Lightning's default walks the batch and calls .to(device) on every tensor, every step: 2 % of a small
        # RNN's step on CPU, where a batch from the suite's loaders already is (on CPU .to returns the tensor).
        if device.type == "cpu":
            return batch
        return super().transfer_batch_to_device(batch, device, dataloader_idx)

    def _to_device(self, batch):
        # a group's batches come from the task's DataLoader after Lightning's transfer hooks saw the group
        return self.transfer_batch_to_device(batch, self.device, 0)

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
        # Lightning puts epoch-level rows at its count of batches; a logged "step" overrides that, so val rows
        # sit at the optimizer step like every other row (they differ under truncated BPTT).
        self.log("step", float(self.global_step))
        value = self._compute("val")
        better = self.best is None or (value < self.best if self.task.metric_mode == "min" else value > self.best)
        if math.isfinite(value) and better:
            self.best = value
        if self.best is not None:
            self.log(f"val/{self.key}_best", self.best)

    def on_test_epoch_end(self):
        self.log("step", float(self.global_step))
        self._compute("test")

    def _layer_name(self, param_name: str) -> str:
        return layer_of(param_name)

    def _measure_gradients(self) -> None:
        # Lightning's grad_norm utility gives per-parameter norms one op each; we want per-layer norms, so all
        # parameter norms come from one fused kernel and are summed per layer. The parameters are listed once:
        # walking the module tree for them (metrics included) three times a step cost 2 % of a small RNN's step.
        if self._params is None:
            named = list(self.named_parameters())
            names = [self._layer_name(name) for name, _ in named]
            self._layers = list(dict.fromkeys(names))
            self._layer_index = [self._layers.index(n) for n in names]
            self._params = [p for _, p in named]
        grads = [p.grad for p in self._params]
        present = [g for g in grads if g is not None]
        filled = [g if g is not None else torch.zeros_like(p) for g, p in zip(grads, self._params, strict=True)]
        norms = torch.stack(torch._foreach_norm(filled))
        if len(present) == len(grads) and len({(g.device, g.dtype) for g in grads}) == 1:
            # get_total_norm's own arithmetic on the same per-parameter norms (one device and dtype: one group, in
            # order), so clipping with it stays bit-identical to clip_grad_norm_, and the norms are taken once
            self._preclip_total = torch.linalg.vector_norm(norms, 2.0)
        else:
            self._preclip_total = torch.nn.utils.get_total_norm(present)
        # Per layer in float64, summed in parameter order: the same IEEE operations as index_add_ of the squares
        # in a double tensor, without three torch ops a step. The root stays torch's: its vectorised sqrt is not
        # always math.sqrt to the last bit.
        squares = [0.0] * len(self._layers)
        for layer, norm in zip(self._layer_index, norms.tolist(), strict=True):
            squares[layer] += norm * norm
        values = torch.tensor(squares, dtype=torch.float64).sqrt().tolist()
        total = float(self._preclip_total)
        row = {"train/loss": self._train_loss, "grad/total": total}
        row.update({f"grad/{k}": v for k, v in zip(self._layers, values, strict=True)})
        self._write_row(row)
        if math.isfinite(total):
            self.grad_history.append(total)
        else:
            self._diverge(f"non-finite gradient norm {total}")

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None):
        # Lightning's "norm" clipping is clip_grad_norm_, i.e. get_total_norm + clip_grads_with_norm_: the same
        # two calls here, with the total already measured with the per-layer norms.
        if gradient_clip_val:
            params = self._params if self._params is not None else list(self.parameters())
            torch.nn.utils.clip_grads_with_norm_(params, gradient_clip_val, self._preclip_total)

    # ---- diagnostics (bench/diag/callback.py) ------------------------------------------------------------
    @property
    def probed(self) -> nn.Module:
        """The module the diagnostics put in eval mode while they probe."""
        raise NotImplementedError

    def probe_batch(self, n: int):
        raise NotImplementedError

    def probe(self, batch) -> list[tuple[str, RecurrentCore, flow.FlowProfile, Trace]]:
        """(role, core, gradient-flow profile, trace) for every recurrent core, the main one first."""
        raise NotImplementedError

    def attention_example(self, batch) -> dict | None:
        return None

    # ---- helpers -----------------------------------------------------------------------------------------
    def _write_row(self, row: dict) -> None:
        # A logger may thin per-step rows (the W&B mirror does); the CSV beside the record keeps every step.
        for logger in self.loggers:
            if self.global_step % getattr(logger, "every_n_steps", 1) == 0:
                logger.log_metrics(row, step=self.global_step)

    def _compute(self, split: str) -> float:
        metric = self.metrics[split]
        value = float(metric.compute())
        metric.reset()
        self.last[split] = value
        self.log(f"{split}/{self.key}", value)
        for name, extra in self.extra_metrics[split].items():
            if not extra.update_called:  # e.g. an attention metric of a model without attention
                continue
            self.last[f"{split}/{name}"] = float(extra.compute())
            extra.reset()
            self.log(f"{split}/{name}", self.last[f"{split}/{name}"])
        return value

    def _diverge(self, reason: str) -> None:
        if self.divergence is None:
            last = self.grad_history[-1] if self.grad_history else None
            self.divergence = {"step": int(self.global_step), "reason": reason, "last_finite_grad_norm": last}
        self.trainer.should_stop = True


class SequenceSystem(System):
    """A recurrent core and a linear head over a task's (B, T, D) inputs."""

    def __init__(self, core: RecurrentCore, task: Task, optim: OptimConfig | None = None):
        super().__init__(task, task.make_metric, task.make_extra_metrics, optim)
        self.core = core
        self.head = nn.Linear(task.readout_size(core.output_size), task.output_size)
        self.truncation = task.truncation
        self._carried: dict[str, State | None] = {"train": None, "val": None, "test": None}

    def forward(self, x: torch.Tensor, state=None):
        y, state = self.core(self.task.inputs(x), state)
        return self.head(self.task.readout(y, self.core.directions)), state

    def _step(self, batch, split: str) -> torch.Tensor:
        x, target = batch
        carried = self.task.carries_state
        pred, state = self(x, self._carried[split] if carried else None)
        if carried:
            self._carried[split] = detach_state(state)
        loss = self.task.loss(pred, target)
        if split == "train":
            self._train_loss = loss.detach().item()
        else:
            self.task.metric_update(self.metrics[split], pred, target)
            for metric in self.extra_metrics[split].values():
                metric.update(pred, target)
            self.log(f"{split}/loss", loss, on_step=False, on_epoch=True)
        return loss

    def _train_on(self, batch) -> bool:
        if self.truncation is None:
            return self._update(batch)
        # one optimizer step per truncation-step chunk; _step carries and detaches the state to the next chunk
        for chunk in zip(*(t.split(self.truncation, dim=1) for t in batch), strict=True):
            if not self._update(chunk):
                return False
        return True

    def start_train_epoch(self):
        self._carried["train"] = None

    def on_validation_epoch_start(self):
        self._carried["val"] = None

    def on_test_epoch_start(self):
        self._carried["test"] = None

    @property
    def probed(self) -> nn.Module:
        return self.core

    def probe_batch(self, n: int):
        x, target = self.task.probe_batch(n)
        return self.task.inputs(x), target

    def probe(self, batch):
        x, target = batch
        profile, trace = flow.profile(self.core, self.head, self.task, x, target)
        return [("core", self.core, profile, trace)]


class ComposedSystem(System):
    """A composed model (bench/run/models.py: encoder-decoder, captioner, VQA, classifier, frame tagger) on the
    task that names it. Decoders train with teacher forcing and are scored on what they decode (greedy, or beam
    search with ``model.beam`` > 1); the teacher-forced loss is logged on every split."""

    def __init__(self, net: nn.Module, kind: Kind, options, task: ComposedTask, optim: OptimConfig | None = None):
        super().__init__(task, task.make_metric, task.make_extra_metrics, optim)
        self.model, self.kind, self.options = net, kind, options
        self.max_len = task.sizes().get("max_len", 0)  # decoding's step limit, read once (sizes scan the data)

    def _step(self, batch, split: str) -> torch.Tensor:
        loss, scored, _ = self.kind.forward(self.model, batch)
        if split == "train":
            self._train_loss = loss.detach().item()
        else:
            scored.tokens = self.kind.decode(self.model, batch, self.options, self.max_len)
            self.task.score({self.key: self.metrics[split], **self.extra_metrics[split]}, scored, batch)
            self.log(f"{split}/loss", loss, on_step=False, on_epoch=True, batch_size=_rows(batch))
        return loss

    def _layer_name(self, param_name: str) -> str:
        return layer_of(param_name.removeprefix("model."))  # model.encoder.core.rnn.weight_hh_l0 -> encoder.l0

    @property
    def probed(self) -> nn.Module:
        return self.model

    def probe_batch(self, n: int):
        return self.task.probe_batch(n)

    def probe(self, batch):
        cores = self.kind.probe(self.model, batch).cores
        # a decoder with input feeding runs step by step through step(), which keeps no trace: it is not probed
        return [(role, core, flow.profiles(loss, [trace], retain=True)[0], trace)
                for role, (core, trace, loss) in cores.items() if trace is not None]

    def attention_example(self, batch) -> dict | None:
        """Teacher-forced attention of the probe batch's first example: what results/ draws as its map."""
        was_training = self.model.training
        self.model.eval()  # one example: no batch statistics, no dropout draws
        try:
            with torch.no_grad():
                _, scored, _ = self.kind.forward(self.model, {k: v[:1] for k, v in batch.items()})
        finally:
            self.model.train(was_training)
        if scored.weights is None:
            return None
        return {**self.task.describe_example(batch, 0), "grid": list(scored.grid) if scored.grid else None,
                "weights": [[round(float(w), 4) for w in row] for row in scored.weights[0]]}


def _rows(batch: dict) -> int:
    return len(next(iter(batch.values())))


def build(cfg: RunConfig) -> tuple[Task, System]:
    """The task and the system ``cfg`` describes, freshly initialised (seed first for the same weights)."""
    task = tasks.get(cfg.task_name)(cfg.task)
    if isinstance(task, ComposedTask):
        kind = KINDS[task.model]
        task.setup()  # the model's sizes (vocabularies) come from the data
        net = kind.build(task, cfg.arch_name, cfg.arch, cfg.model)
        return task, ComposedSystem(net, kind, cfg.model, task, cfg.optim)
    core = architectures.build(cfg.arch_name, task.input_size, cfg.arch)
    return task, SequenceSystem(core, task, cfg.optim)
