"""Train one run (task x arch x seed x hyper-parameters) with the Lightning Trainer and write its record.

    rnnbench run --task adding --arch lstm --seed 0

The record ``<out>/runs/<task>__<arch>__s<seed>__<id>.json`` is the truth; per-step metrics sit beside it as
``.metrics.csv`` (layout: bench/store.py); W&B mirrors the run (offline unless logged in; bench/run/mirror.py). A NaN/Inf loss or gradient ends the run
as ``diverged``; an exception ends it as ``failed``; either way the caller gets a record and carries on.
"""

from __future__ import annotations

import csv
import ctypes
import logging
import os
import pickle
import platform
import statistics
import tempfile
import time
import traceback
import warnings
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.utilities import rank_zero_only

import tasks
from tasks import Task

from ..diag.callback import GradientDiagnostics
from ..store import Store, atomic
from . import checkpoint, records
from .config import RunConfig
from .groups import UpdateGroups, group_size
from .mirror import close, flush, make_loggers, wandb_id, wandb_mode
from .system import System, build


def no_gpu_no_nvml() -> None:
    """Lightning sets PYTORCH_NVML_BASED_CUDA_CHECK=1 (a CUDA check that cannot poison a fork), which makes
    every ``optimizer.step`` try to load NVML again on a machine without a GPU: 0.1-0.2 ms a step, 1-2 % of a
    small RNN's. Where NVML finds no GPU this process will not use one, so torch's own check (a cached failure)
    is as safe and costs a microsecond."""
    if os.environ.get("PYTORCH_NVML_BASED_CUDA_CHECK") == "1" and torch.cuda.device_count() == 0:
        os.environ["PYTORCH_NVML_BASED_CUDA_CHECK"] = "0"


def keep_heap() -> None:
    """Keep freed heap memory in this process for the next training step (glibc; elsewhere a no-op).

    A training step frees and reallocates the same few MB of tensors. glibc's defaults gave a run of the suite's
    LSTM 7 to 241 page faults a step (separate runs, same config; a bare loop on its own ~0), each a fresh page
    from the kernel at about 3 us on this VM: up to 0.7 ms, 7 % of a step. They came from trimming the heap's
    top and from mmap-ing large tensors afresh. Both thresholds set (``M_TRIM_THRESHOLD`` alone turns off the
    adaptive mmap threshold and made it 5,400 faults a step): 9.3 faults a step in every run, the rest Python's
    own arenas. The process then holds its peak heap, which a training loop reaches every step anyway."""
    global _heap_kept
    if _heap_kept or platform.libc_ver()[0] != "glibc":
        return
    libc = ctypes.CDLL(None)
    libc.mallopt(_M_MMAP_THRESHOLD, 32 << 20)  # the cap of glibc's own adaptive threshold on 64-bit
    libc.mallopt(_M_TRIM_THRESHOLD, 1 << 30)
    _heap_kept = True


_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # malloc.h
_heap_kept = False


def group_of(cfg: RunConfig) -> int:
    """The task's batches per Lightning batch (bench/run/groups.py): 1 for a multi-device or DDP run, whose
    distributed sampler Lightning puts into the task's DataLoader itself."""
    if cfg.train.devices > 1 or cfg.train.strategy != "auto":
        return 1
    per_batch = tasks.get(cfg.task_name).updates_per_batch(cfg.task)
    return group_size(cfg.train.val_every, cfg.train.max_steps, cfg.train.diag_cadence if cfg.train.diag else None,
                      per_batch)


def fit(trainer: L.Trainer, system: System, task: Task, cfg: RunConfig, group: int | None = None) -> None:
    """``trainer.fit`` on ``task``: ``group`` (default ``group_of(cfg)``) of its batches per Lightning batch, in
    ``UpdateGroups``, or the task itself as the datamodule where that is 1. ``trainer_for(cfg, ..., group)``
    made ``trainer``."""
    keep_heap()
    group = group_of(cfg) if group is None else group
    if group == 1:
        trainer.fit(system, datamodule=task)
        return
    task.prepare_data()  # what Lightning does with a datamodule (one process: rank 0), then its setup
    task.setup("fit")
    batches = cfg.train.max_steps // tasks.get(cfg.task_name).updates_per_batch(cfg.task)
    groups = UpdateGroups(task.train_dataloader, group, batches, system.start_train_epoch)
    trainer.fit(system, train_dataloaders=groups, val_dataloaders=task.val_dataloader())


def trainer_for(cfg: RunConfig, loggers, progress: bool = False, callbacks=(), group: int | None = None) -> L.Trainer:
    no_gpu_no_nvml()
    task = tasks.get(cfg.task_name)
    # max_steps counts optimizer steps; Lightning's val_check_interval counts Lightning batches: several steps
    # each under truncated BPTT (config.validate makes val_every a multiple) and in groups (bench/run/groups.py,
    # whose size divides it). The systems clip (manual optimization).
    per_batch = task.updates_per_batch(cfg.task) * (group_of(cfg) if group is None else group)
    if min(cfg.train.val_every, cfg.train.max_steps) % per_batch:
        raise ValueError(f"a group of {per_batch} updates does not divide the validation cadence "
                         f"{min(cfg.train.val_every, cfg.train.max_steps)}: validation would move (group_of divides it)")
    if cfg.train.devices > 1:
        # Spawned DDP processes otherwise take cpu_count // devices torch threads each (Lightning's default),
        # not the run's count, which the record states and bit-reproducibility depends on.
        os.environ.setdefault("OMP_NUM_THREADS", str(torch.get_num_threads()))
    return L.Trainer(
        accelerator=cfg.train.accelerator, devices=cfg.train.devices, strategy=cfg.train.strategy,
        max_steps=cfg.train.max_steps, max_epochs=-1,
        val_check_interval=min(cfg.train.val_every, cfg.train.max_steps) // per_batch, check_val_every_n_epoch=None,
        num_sanity_val_steps=0, log_every_n_steps=1, deterministic=True, logger=loggers,
        enable_checkpointing=False, enable_model_summary=False, enable_progress_bar=progress,
        callbacks=list(callbacks),
    )


class RankZeroHandback(L.Callback):
    """Brings what the record needs back from a ``ddp_spawn`` run, which trains in child processes: the main
    process's system and diagnostics callback never see the steps, metrics, gradient norms or probes. Rank 0
    pickles them at the end of fit and of test; ``restore`` loads them into the main process's objects. Under
    ``ddp`` the main process is rank 0 and the round trip changes nothing; single-device runs skip it."""

    def __init__(self, path: Path, diag: GradientDiagnostics | None):
        self.path, self.diag = Path(path), diag

    def setup(self, trainer, pl_module, stage):
        quiet()  # a spawned child starts with fresh warning filters and log levels

    def on_train_end(self, trainer, pl_module):
        self._save(trainer, pl_module)

    def on_test_end(self, trainer, pl_module):
        self._save(trainer, pl_module)

    def _save(self, trainer, system) -> None:
        if trainer.world_size == 1 or not trainer.is_global_zero:
            return
        state = {"global_step": int(trainer.global_step), "best": system.best, "last": system.last,
                 "grad_history": system.grad_history, "divergence": system.divergence,
                 "probes": self.diag.history if self.diag else None}
        with atomic(self.path) as tmp:
            tmp.write_bytes(pickle.dumps(state))

    def restore(self, trainer, system) -> int:
        """Load rank 0's state into ``system`` (and the diagnostics) if a spawned run left one; the steps."""
        if not self.path.exists():
            return int(trainer.global_step)
        state = pickle.loads(self.path.read_bytes())
        system.best, system.last, system.divergence = state["best"], state["last"], state["divergence"]
        system.grad_history = state["grad_history"]
        if self.diag is not None:
            self.diag.history = state["probes"]
        for logger in trainer.loggers:  # the next phase's writer must know the columns rank 0 wrote
            writer = logger.experiment if isinstance(logger, CSVLogger) else None
            if writer is not None and os.path.isfile(writer.metrics_file_path):
                with open(writer.metrics_file_path, newline="") as f:
                    writer.metrics_keys = next(csv.reader(f), [])
        return state["global_step"]


def quiet() -> None:
    """Lightning's and W&B's banners drown the one summary line a run should print."""
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)
    os.environ.setdefault("WANDB_SILENT", "true")
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*Checkpoint directory.*")
    warnings.filterwarnings("ignore", message=".*GPU available but not used.*")
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")
    # the systems' own transfer_batch_to_device (a CPU fast path) is meant to win over the datamodule's default
    warnings.filterwarnings("ignore", message=".*overridden `transfer_batch_to_device`.*")


def train(cfg: RunConfig, out: Store | str | Path, wandb: str = "auto", progress: bool = False,
          callbacks: tuple[L.Callback, ...] = ()) -> dict:
    """Run ``cfg`` to completion, write its record into the results store ``out`` and return the record.
    ``callbacks`` join the run's own (benchmarks measure through them)."""
    quiet()
    store = out if isinstance(out, Store) else Store(out)
    provenance = records.provenance()
    # Under strategy=ddp every rank runs this function; only rank 0 mirrors to W&B and writes the record.
    rank_zero = rank_zero_only.rank == 0
    mode = wandb_mode(wandb) if rank_zero else "disabled"
    started, cpu_started = time.time(), time.process_time()
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    task, system = build(cfg)
    params = sum(p.numel() for p in system.parameters())
    status, error, test_value, steps = "ok", None, None, 0
    with tempfile.TemporaryDirectory(prefix="rnnbench-") as tmp:
        loggers = make_loggers(cfg, tmp, mode, provenance)
        diag = GradientDiagnostics(cfg.train.diag_cadence) if cfg.train.diag else None
        handback = RankZeroHandback(Path(tmp) / "rank0.pkl", diag)
        trainer = trainer_for(cfg, loggers, progress, callbacks=[c for c in (diag, handback, *callbacks) if c])
        try:
            fit(trainer, system, task, cfg)
            steps = handback.restore(trainer, system)
            if system.divergence is None:
                trainer.test(system, datamodule=task, verbose=False)
                handback.restore(trainer, system)
                test_value = system.last["test"]
            else:
                status, steps = "diverged", system.divergence["step"]
            flush(loggers)  # the W&B rows still queued: a failed send fails the run, as it would have inline
        except Exception as exc:  # a failed run is data too: record it and let the sweep carry on
            status, error = "failed", "".join(traceback.format_exception_only(exc)).strip()
            traceback.print_exc()
        finally:
            close(loggers, "success" if status == "ok" else status)
        ckpt = checkpoint.save(system, cfg, store) if status != "failed" and rank_zero else None
        metrics_src, metrics_dest = Path(tmp) / "metrics.csv", store.metrics_path(cfg.name, cfg.run_id)
        record = records.make(
            cfg, task, status=status, error=error, divergence=system.divergence, steps=steps, params=params,
            test=test_value, val_last=system.last.get("val"),
            val_best=system.best, grad_norm=_summary(system.grad_history), wall_time_s=time.time() - started,
            # spawned DDP ranks train in other processes: their CPU time is not ours to report
            cpu_time_s=time.process_time() - cpu_started if cfg.train.devices == 1 else None,
            provenance=provenance, wandb_mode=mode, accelerator=str(trainer.accelerator.__class__.__name__),
            wandb_id=wandb_id(loggers), metrics_file=metrics_dest.name if metrics_src.exists() else None,
            checkpoint=str(ckpt.relative_to(store.root)) if ckpt else None,
            extra={k: v for k, v in system.last.items() if "/" in k},
            diagnostics=diag.summary(system.grad_history, cfg.optim.clip, status == "diverged") if diag else None,
        )
        if metrics_src.exists() and rank_zero:
            store.copy_in(metrics_src, metrics_dest)
    if rank_zero:
        store.write_record(record)
    return record


def _summary(history: list[float]) -> dict:
    if not history:
        return {"median": None, "max": None, "steps": 0}
    return {"median": statistics.median(history), "max": max(history), "steps": len(history)}

