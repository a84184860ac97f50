"""The task contract: a LightningDataModule that also declares how the suite scores it.

A task owns its data (generated deterministically from ``config.data_seed``, fixed train/val/test splits), its
sizes (the model is built from ``input_size`` / ``output_size``), which recurrent outputs are read
(``readout``), its loss, its torchmetrics metric with a direction, a chance-level baseline, a literature
"solved" threshold where there is one, and a ``version`` bumped whenever generated data or scoring change.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import ClassVar

import lightning as L
import torch
import torchmetrics
from torch.utils.data import DataLoader, TensorDataset

from options import SEED_MAX, opt
from options.registry import Registry, undeclared

SHAPES = ("many-to-one", "many-to-many", "seq2seq", "one-to-many")

METRIC_MODES = ("min", "max")


def _problem(cls: type[Task]) -> str | None:
    # The contract is the nearest base that lists ``declares`` (Task, or ComposedTask for composed models).
    contract = next(k for k in cls.__mro__ if "declares" in vars(k))
    if missing := undeclared(cls, contract.declares, contract):
        return missing
    if cls.shape not in SHAPES:
        return f"has shape {cls.shape!r}; valid: {', '.join(SHAPES)}"
    if cls.metric_mode not in METRIC_MODES:
        return f"has metric_mode {cls.metric_mode!r}; valid: {', '.join(METRIC_MODES)}"
    return None


TASKS = Registry("task", check=_problem)


def on_disk(**paths: str) -> dict[str, str]:
    """``{"task.<option>": path}`` for the options among ``paths`` whose value names a file or folder on this
    disk: what ``open`` and ``datasets.load_dataset`` read locally (a Hub name is fetched, not read here)."""
    return {f"task.{k}": os.path.expanduser(v) for k, v in paths.items() if v and os.path.exists(os.path.expanduser(v))}


def register(cls: type[Task]) -> type[Task]:
    """Class decorator adding a task under ``cls.name``; refused: a duplicate, a missing declaration, a shape
    or a metric direction the suite does not know."""
    return TASKS.add(cls.name or cls.__qualname__, cls)  # LightningDataModule's ``name`` is None until declared


names, get = TASKS.names, TASKS.get


@dataclass(frozen=True)
class TaskConfig:
    batch_size: int = opt(64, "training batch size", ge=1)
    data_seed: int = opt(1234, "seed of the generated data; fixed across training seeds so they see the same data",
                         ge=0, le=SEED_MAX)


READOUTS = ("last", "flatten")


@dataclass(frozen=True)
class ManyToOneConfig(TaskConfig):
    # Added after records existed: shown only when not "last", so older run ids stay as they were.
    readout: str = opt("last", "what the linear head reads: each direction's final state (last), or every "
                               "step's outputs flattened into one vector (flatten; the MNIST-1D paper's GRU)",
                       choices=READOUTS, omit_default=True)


@dataclass
class Splits:
    train: TensorDataset
    val: TensorDataset
    test: TensorDataset


class Task(L.LightningDataModule):
    """Subclasses set the ClassVars and implement ``make_splits``, ``loss`` and ``make_metric``."""

    name: ClassVar[str]
    # Bumped whenever what a config computes changes (generated data, loss, scoring): it is part of run ids,
    # so a sweep trains the new version again (bench/run/config.py, ``RunConfig.run_id``).
    version: ClassVar[str]
    shape: ClassVar[str]
    variant: ClassVar[str] = ""
    metric_name: ClassVar[str]
    metric_mode: ClassVar[str]  # "min" or "max"
    Config: ClassVar[type] = TaskConfig
    # Streams: batch i + 1 continues batch i, so the system carries the recurrent state across batches.
    carries_state: ClassVar[bool] = False
    # A text task: it has a ``vocab`` (one character per input index) and the ``text`` it reads, so the text
    # tools (rnnbench sample, rnnbench units) work on its runs.
    is_text: ClassVar[bool] = False
    # What a registered task must define itself (or through a shared base such as ``Classification``): the
    # registry refuses it otherwise, naming what is missing, instead of a NotImplementedError mid-run.
    declares: ClassVar[tuple[str, ...]] = ("name", "version", "shape", "metric_name", "metric_mode", "input_size",
                                           "output_size", "seq_len", "baseline", "loss", "make_metric", "make_splits")

    def __init__(self, config: TaskConfig | None = None):
        super().__init__()
        self.config = config if config is not None else self.Config()
        self._splits: Splits | None = None

    @classmethod
    def check(cls, config) -> str | None:
        """A problem with ``config`` that a user can fix (missing files, ...), found before any work; or None."""
        return None

    @classmethod
    def train_size(cls, config) -> int | None:
        """Training examples under ``config`` when known without generating the data (a batch must fit)."""
        return None

    @classmethod
    def image_channels(cls, config) -> int | None:
        """Channels of the images ``config`` gives the model, known without generating the data (a pretrained
        image encoder reads RGB only); None for a task without images."""
        return None

    @classmethod
    def data_files(cls, config) -> dict[str, str]:
        """The local files or folders ``config`` reads, by the option that names each (``{"task.corpus":
        path}``): their content joins the run's identity (``RunConfig.run_id``), so an edited corpus is a new
        run. Generated, packaged and downloaded data name none, which keeps those runs' ids as they were."""
        return {}

    @classmethod
    def truncation_for(cls, config) -> int | None:
        """Truncated BPTT chunk length in steps under ``config``, or None for one backward pass per batch.
        A task that truncates reads windows of ``config.seq_len`` steps per batch."""
        return None

    @classmethod
    def updates_per_batch(cls, config) -> int:
        """Optimizer steps per training batch: one per chunk under truncated BPTT, else one."""
        k = cls.truncation_for(config)
        return config.seq_len // k if k else 1

    @property
    def truncation(self) -> int | None:
        return self.truncation_for(self.config)

    # ---- declared properties ---------------------------------------------------------------------------
    @property
    def input_size(self) -> int:
        raise NotImplementedError

    @property
    def output_size(self) -> int:
        raise NotImplementedError

    @property
    def seq_len(self) -> int:
        raise NotImplementedError

    @property
    def baseline(self) -> float:
        """The metric a model with no memory of the input reaches (see each task for its derivation)."""
        raise NotImplementedError

    @property
    def solved_threshold(self) -> float | None:
        return None

    def is_solved(self, value: float) -> bool | None:
        t = self.solved_threshold
        if t is None:
            return None
        return value < t if self.metric_mode == "min" else value > t

    def describe(self) -> dict:
        return {"name": self.name, "version": self.version, "shape": self.shape, "variant": self.variant,
                "metric": self.metric_name, "mode": self.metric_mode, "baseline": self.baseline,
                "solved_threshold": self.solved_threshold, "input_size": self.input_size,
                "output_size": self.output_size, "seq_len": self.seq_len}

    # ---- scoring -------------------------------------------------------------------------------------------
    def inputs(self, x: torch.Tensor) -> torch.Tensor:
        """What the core reads, from a batch's stored inputs (B, T, ...) -> (B, T, input_size); identity here,
        one-hot for tasks that store token indices."""
        return x

    def readout(self, y: torch.Tensor, directions: int = 1) -> torch.Tensor:
        """Which recurrent outputs the head reads. Many-to-one: (B, T, H) -> (B, H), each direction's final
        state (a reverse direction's is at t = 0), or with the ``flatten`` readout (B, T * H); else as is."""
        if self.shape != "many-to-one":
            return y
        if self.config.readout == "flatten":
            return y.flatten(1)
        if directions == 1:
            return y[:, -1]  # what the cat below gives for one direction, without copying it every step
        forward, *reverse = y.chunk(directions, dim=-1)
        return torch.cat([forward[:, -1], *(r[:, 0] for r in reverse)], dim=-1)

    def readout_size(self, width: int) -> int:
        """Width of what ``readout`` hands the head, for recurrent outputs ``width`` wide."""
        flat = self.shape == "many-to-one" and self.config.readout == "flatten"
        return width * self.seq_len if flat else width

    def loss(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def make_metric(self) -> torchmetrics.Metric:
        raise NotImplementedError

    def metric_update(self, metric: torchmetrics.Metric, pred: torch.Tensor, target: torch.Tensor) -> None:
        metric.update(pred, target)

    def make_extra_metrics(self) -> dict[str, torchmetrics.Metric]:
        """Metrics reported beside the main one (``metric.update(pred, target)``), e.g. perplexity."""
        return {}

    # ---- data ------------------------------------------------------------------------------------------------
    def make_splits(self) -> Splits:
        raise NotImplementedError

    @property
    def splits(self) -> Splits:
        if self._splits is None:
            self._splits = self.make_splits()
        return self._splits

    def setup(self, stage: str | None = None) -> None:
        self.splits  # noqa: B018 - generate once, before the loaders are asked for

    def probe_batch(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """A fixed batch of ``n`` validation sequences for the diagnostics probes (stored inputs, targets)."""
        return self.splits.val[:n]

    def train_dataloader(self) -> DataLoader:
        # Shuffling draws from torch's global RNG, which seed_everything seeds per run.
        return DataLoader(self.splits.train, batch_size=self.config.batch_size, shuffle=True, drop_last=True)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.splits.val, batch_size=1000)

    def test_dataloader(self) -> DataLoader:
        return DataLoader(self.splits.test, batch_size=1000)


class Classification(Task):
    """Many-to-one classification into ``classes`` classes: cross-entropy, accuracy, chance = 1 / classes."""

    shape = "many-to-one"
    Config = ManyToOneConfig
    metric_name = "acc"
    metric_mode = "max"
    classes: ClassVar[int] = 10

    @property
    def output_size(self) -> int:
        return self.classes

    @property
    def baseline(self) -> float:
        return 1.0 / self.classes

    def loss(self, pred, target):
        return torch.nn.functional.cross_entropy(pred, target)

    def make_metric(self):
        return torchmetrics.classification.MulticlassAccuracy(num_classes=self.classes, average="micro")


def generator(seed: int, split: str) -> torch.Generator:
    """An independent generator per split so train/val/test never overlap in draws."""
    offset = {"train": 0, "val": 1, "test": 2}[split]
    return torch.Generator().manual_seed(seed * 3 + offset)

