"""The suite's LightningModules: a recurrent core + a linear head (``SequenceSystem``), or a composed model
(``ComposedSystem``: encoder-decoder, captioner, VQA, classifier, frame tagger; bench/run/models.py), over one
``System`` base that owns the optimizer and its schedule, the pre-clip gradient norms, the metrics and divergence.

    task, system = build(resolve({"task": "adding", "arch": "lstm"}))   # freshly initialised, seed first
    system = System.load_from_checkpoint("best.ckpt")               # rebuilt from the checkpoint alone

A system is built from the run's config (``RunConfig.to_dict()``), which ``save_hyperparameters`` puts into every
checkpoint, so ``load_from_checkpoint(path)`` needs no other input. It never looks at task or architecture
names: the task says which outputs to read, the loss and the metric; the core says how its parameters group
into layers. Metric keys are ``split/name``: ``train/loss``, ``val/mse``, ``val/mse_best``, ``test/acc``; the
pre-clip gradient norms go under ``grad/`` (``grad/total`` every step, one per layer every 10th step).
Validation and test metrics go through ``self.log``; the per-step row (loss and norms) goes to the loggers'
``log_metrics`` (``_log_step`` says why).

Lightning owns the loop. Automatic optimization wherever a task has no truncation: ``training_step`` returns the
loss, the Trainer clips (``gradient_clip_val``, norm), and ``on_before_optimizer_step`` measures the gradient
norms before clipping with ``lightning.pytorch.utilities.grad_norm``.

Truncated BPTT (tasks that declare ``truncation``, e.g. charlm) uses manual optimization, as Lightning's TBPTT
page does, with the fixes that page needs: the batch is cut into k-step chunks with ``split(k)`` (not
``tensor_split``, which makes k chunks), the carried state is detached whether it is a tensor or an LSTM's
(h, c) tuple, and the norms are measured per chunk *before* ``clip_gradients`` (in manual optimization
``on_before_optimizer_step`` runs inside ``opt.step()``, after clipping). One optimizer step per chunk, so
``trainer.global_step``, ``train.max_steps``, ``train.val_every``, the diagnostics cadence and the step of every
logged row count chunks.
Tasks that declare ``carries_state`` read consecutive batches of parallel streams: the state goes from one
batch to the next, per split, and is reset at each epoch's start.

Every row sits at the optimizer step it belongs to (validation and test log a ``step``, which Lightning would
otherwise set to its count of batches), so train, validation, probe and test rows line up on one axis.

A checkpoint also holds what the record is made of besides the weights (best validation value, gradient history,
a carried state), so a run resumed from ``last.ckpt`` ends with the record an uninterrupted run writes.
"""

from __future__ import annotations

import functools
import math
import re

import lightning as L
import torch
from lightning.pytorch.utilities import grad_norm
from torch import nn

import architectures
import tasks
from architectures import RecurrentCore, Trace
from architectures.base import State
from tasks import Task
from tasks.composed import ComposedTask

from ..diag import flow
from .config import RunConfig, flatten, milestone_steps, resolve
from .mirror import MIRROR_EVERY, is_mirror
from .models import KINDS

# The per-layer norms go in every 10th step's row (the rows W&B mirrors), and in a step whose total is not finite;
# the total and the loss in every row (spikes, clipping and divergence read them). Every step's per-layer norms
# were half of a run's metrics file, the bulk of results/, and no report reads them finer than this.
LAYER_NORMS_EVERY = MIRROR_EVERY
_LAYER = re.compile(r"_l(\d+)$")
_NORM_KEY = "grad_2.0_norm"  # grad_norm's key prefix for norm_type=2


def detach_state(state: State | None) -> State | None:
    """Cut the graph behind a carried state: a tensor (RNN, GRU) or an (h, c) tuple (LSTM)."""
    if state is None or isinstance(state, torch.Tensor):
        return None if state is None else state.detach()
    return tuple(s.detach() for s in state)


@functools.cache  # asked for every parameter at every optimizer step; the answer never changes
def layer_of(param_name: str) -> str:
    """``core.rnn.weight_hh_l1`` -> ``core.l1``; ``head.weight`` -> ``head``."""
    module, _, leaf = param_name.rpartition(".")
    match = _LAYER.search(leaf)
    top = module.split(".")[0]
    return f"{top}.l{match.group(1)}" if match else top


class System(L.LightningModule):
    """What every system shares: the run's config, its task, one optimizer (and schedule), pre-clip gradient norms
    per layer and step, metrics per split with the best validation value, and divergence as a recorded stop.
    Subclasses build the model and own ``_step``."""

    def __init__(self, config: dict):
        super().__init__()
        self.save_hyperparameters()  # the config alone rebuilds the system: load_from_checkpoint(path)
        self.cfg: RunConfig = resolve(flatten(config), check_machine=False)
        self.task: Task = tasks.get(self.cfg.task_name)(self.cfg.task)
        self.optim = self.cfg.optim
        self.key = self.task.metric_name
        self.metrics = nn.ModuleDict({split: self.task.make_metric() for split in ("val", "test")})
        self.extra_metrics = nn.ModuleDict({split: nn.ModuleDict(self.task.make_extra_metrics())
                                            for split in ("val", "test")})
        self.best: float | None = None
        self.last: dict[str, float] = {}  # latest computed metric per split
        self.grad_history: list[float] = []  # pre-clip total norm per optimizer step
        self.divergence: dict | None = None
        self.test_prefix = "test"  # "test_last" while the last model (not the best checkpoint) is tested
        self._train_loss: float | None = None
        self.truncation: int | None = self.task.truncation
        self.automatic_optimization = self.truncation is None

    @classmethod
    def load_from_checkpoint(cls, checkpoint_path, *args, **kwargs):
        """Lightning's ``load_from_checkpoint``; on ``System`` itself, the subclass the checkpoint's config needs."""
        if cls is System:
            hparams = torch.load(checkpoint_path, map_location="cpu", weights_only=True)["hyper_parameters"]
            system = system_class(hparams["config"]["task"]["name"])
            return system.load_from_checkpoint(checkpoint_path, *args, **kwargs)
        return super().load_from_checkpoint(checkpoint_path, *args, **kwargs)

    def _step(self, batch, split: str) -> torch.Tensor:
        raise NotImplementedError

    def training_step(self, batch, batch_idx):
        if self.truncation is not None:
            return self._train_truncated(batch)
        loss = self._step(batch, "train")
        if not math.isfinite(self._train_loss):
            self._log_step({"train/loss": self._train_loss})
            self._diverge(f"non-finite loss {self._train_loss}")
            return None  # Lightning skips backward and the optimizer step
        return loss

    def _train_truncated(self, batch) -> None:
        """One optimizer step per ``truncation``-step chunk; ``_step`` carries and detaches the state."""
        opt, schedule = self.optimizers(), self.lr_schedulers()
        for chunk in zip(*(t.split(self.truncation, dim=1) for t in batch), strict=True):
            loss = self._step(chunk, "train")
            if not math.isfinite(self._train_loss):
                self._log_step({"train/loss": self._train_loss})
                self._diverge(f"non-finite loss {self._train_loss}")
                return
            opt.zero_grad()
            self.manual_backward(loss)
            if not self._measure_gradients():
                return
            self.clip_gradients(opt, gradient_clip_val=self.optim.clip or None, gradient_clip_algorithm="norm")
            opt.step()
            if schedule is not None:
                schedule.step()

    def validation_step(self, batch, batch_idx):
        self._step(batch, "val")

    def test_step(self, batch, batch_idx):
        self._step(batch, "test")

    def configure_optimizers(self):
        o = self.optim
        cls = {"adam": torch.optim.Adam, "rmsprop": torch.optim.RMSprop, "sgd": torch.optim.SGD}[o.name]
        momentum = {"momentum": o.momentum} if o.name == "sgd" else {}
        optimizer = cls(self._param_groups(), lr=o.lr, weight_decay=o.weight_decay, **momentum)
        if o.schedule == "none":
            return optimizer
        # every schedule below multiplies each group's own lr, so a scaled group keeps its ratio to the rest
        if o.schedule == "cosine":  # from lr to 0 over the budget
            schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=self.cfg.train.max_steps)
        elif o.schedule == "multistep":
            schedule = torch.optim.lr_scheduler.MultiStepLR(optimizer, list(milestone_steps(o.milestones)), o.gamma)
        else:
            schedule = torch.optim.lr_scheduler.StepLR(optimizer, step_size=o.step_every, gamma=o.gamma)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    def _param_groups(self) -> list[dict]:
        """One group at optim.lr of every parameter that no core scales, then one per learning-rate scale a core declares
        (``RecurrentCore.lr_scales``: expRNN's skew-symmetric A). The authors of such cores step two optimizers
        of one kind; one optimizer with a group each is the same update, as Adam, RMSprop and SGD keep their
        state per parameter and read only their own group's lr. With no scale declared this is
        ``self.parameters()`` in one group, as before, so checkpoints and runs stay as they were."""
        scales = {id(p): s for core in self.modules() if isinstance(core, RecurrentCore)
                  for p, s in core.lr_scales().items() if s != 1}
        params = list(self.parameters())
        groups = [{"params": [p for p in params if id(p) not in scales]}]
        for scale in sorted(set(scales.values())):
            groups.append({"params": [p for p in params if scales.get(id(p)) == scale],
                           "lr": self.optim.lr * scale})
        return groups

    # ---- hooks -----------------------------------------------------------------------------------------
    def on_train_epoch_start(self):
        self.start_train_epoch()

    def start_train_epoch(self) -> None:
        """A new epoch of the task's training data begins."""

    def on_before_optimizer_step(self, optimizer):
        # Manual optimization measured before it clipped (_train_truncated); a skipped step (a non-finite loss:
        # training_step returned None) has no gradients to measure.
        if self.automatic_optimization and self.divergence is None:
            self._measure_gradients()

    def on_validation_epoch_end(self):
        value = self._compute("val")
        better = self.best is None or (value < self.best if self.task.metric_mode == "min" else value > self.best)
        if math.isfinite(value) and better:
            self.best = value
        if self.best is not None:
            self.log(f"val/{self.key}_best", self.best)
        self.log("step", float(self.global_step))

    def on_test_epoch_end(self):
        self._compute("test")
        self.log("step", float(self.global_step))

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["rnnbench"] = {"best": self.best, "last": dict(self.last), "grad_history": self.grad_history,
                                  "divergence": self.divergence}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        if self._trainer is not None and self.trainer.state.fn != "fit":
            return  # testing a checkpoint's weights: this run's own history stays
        state = checkpoint.get("rnnbench", {})
        self.best, self.last = state.get("best"), dict(state.get("last", {}))
        self.grad_history = list(state.get("grad_history", []))
        self.divergence = state.get("divergence")

    # ---- gradients -------------------------------------------------------------------------------------
    def _layer_name(self, param_name: str) -> str:
        return layer_of(param_name)

    def _measure_gradients(self) -> bool:
        """Log the pre-clip gradient norms of this step (the total; per layer on LAYER_NORMS_EVERY's steps); False
        (and no update: the gradients are dropped) if they are not finite, which ends the run as diverged."""
        norms = grad_norm(self, norm_type=2)
        total = float(norms.pop(f"{_NORM_KEY}_total"))
        row = {"train/loss": self._train_loss, "grad/total": total}
        if self.global_step % LAYER_NORMS_EVERY == 0 or not math.isfinite(total):
            by_layer: dict[str, list[torch.Tensor]] = {}
            for key, norm in norms.items():
                by_layer.setdefault(self._layer_name(key.removeprefix(f"{_NORM_KEY}/")), []).append(norm)
            # a layer's norm is the norm of its parameters' norms, in float32 as Lightning takes the total: the
            # store writes a float32 in a few digits (bench/store.py), where a float64's 17 would be a third of it
            row.update({f"grad/{layer}": torch.linalg.vector_norm(torch.stack(ns)).item()
                        for layer, ns in by_layer.items()})
        self._log_step(row)
        if math.isfinite(total):
            self.grad_history.append(total)
            return True
        self._diverge(f"non-finite gradient norm {total}")
        for p in self.parameters():
            p.grad = None  # the optimizer then leaves every parameter (and its own state) as it was
        return False

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
    def _log_step(self, row: dict) -> None:
        # Straight to the loggers (Logger.log_metrics, what the Trainer itself calls with self.log's values): a
        # self.log call costs about 1 ms on CPU (Lightning moves its result metric to the device on every call),
        # and these five or so every step took rnnbench from 0.929 to 0.783 of a bare loop in make bench.
        # W&B gets every MIRROR_EVERY-th row (its client costs ~1 ms a row); the CSV, the record's, every one.
        step = self.global_step
        for logger in self.loggers:
            if step % MIRROR_EVERY == 0 or not is_mirror(logger):
                logger.log_metrics(row, step=step)

    def _compute(self, split: str) -> float:
        name = self.test_prefix if split == "test" else split
        metric = self.metrics[split]
        value = float(metric.compute())
        metric.reset()
        self.last[name] = value
        self.log(f"{name}/{self.key}", value)
        for extra_name, extra in self.extra_metrics[split].items():
            if not extra.update_called:  # e.g. an attention metric of a model without attention
                continue
            self.last[f"{name}/{extra_name}"] = float(extra.compute())
            extra.reset()
            self.log(f"{name}/{extra_name}", self.last[f"{name}/{extra_name}"])
        return value

    def _diverge(self, reason: str) -> None:
        if self.divergence is None:
            last = self.grad_history[-1] if self.grad_history else None
            self.divergence = {"step": int(self.global_step), "reason": reason, "last_finite_grad_norm": last}
        self.trainer.should_stop = True


class SequenceSystem(System):
    """A recurrent core and a linear head over a task's (B, T, D) inputs."""

    def __init__(self, config: dict):
        super().__init__(config)
        self.core = architectures.build(self.cfg.arch_name, self.task.input_size, self.cfg.arch)
        self.head = nn.Linear(self.task.readout_size(self.core.output_size), self.task.output_size)
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
            self.log(f"{self.test_prefix if split == 'test' else split}/loss", loss, on_step=False, on_epoch=True)
        return loss

    def start_train_epoch(self):
        self._carried["train"] = None

    def on_validation_epoch_start(self):
        self._carried["val"] = None

    def on_test_epoch_start(self):
        self._carried["test"] = None

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint["rnnbench"]["carried"] = self._carried["train"]  # a carries_state task's stream, mid-epoch

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        super().on_load_checkpoint(checkpoint)
        if self._trainer is None or self.trainer.state.fn == "fit":
            self._carried["train"] = checkpoint.get("rnnbench", {}).get("carried")

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

    def __init__(self, config: dict):
        super().__init__(config)
        self.kind, self.options = KINDS[self.task.model], self.cfg.model
        self.task.setup()  # the model's sizes (vocabularies) come from the data
        self.model = self.kind.build(self.task, self.cfg.arch_name, self.cfg.arch, self.options)
        self.max_len = self.task.sizes().get("max_len", 0)  # decoding's step limit, read once (sizes scan the data)

    def _step(self, batch, split: str) -> torch.Tensor:
        loss, scored, _ = self.kind.forward(self.model, batch)
        if split == "train":
            self._train_loss = loss.detach().item()
        else:
            scored.tokens = self.kind.decode(self.model, batch, self.options, self.max_len)
            self.task.score({self.key: self.metrics[split], **self.extra_metrics[split]}, scored, batch)
            self.log(f"{self.test_prefix if split == 'test' else split}/loss", loss, on_step=False, on_epoch=True,
                     batch_size=_rows(batch))
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


def system_class(task_name: str) -> type[System]:
    """The system a task trains with: a composed model for a task that names one, else a core and a head."""
    return ComposedSystem if issubclass(tasks.get(task_name), ComposedTask) else SequenceSystem


def build(cfg: RunConfig) -> tuple[Task, System]:
    """The task and the system ``cfg`` describes, freshly initialised (seed first for the same weights)."""
    system = system_class(cfg.task_name)(cfg.to_dict())
    return system.task, system
