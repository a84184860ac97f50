"""Train one run (task x arch x seed x hyper-parameters) with the Lightning Trainer and write its record.

    rnnbench run --task adding --arch lstm --seed 0

The record ``<out>/runs/<task>__<arch>__s<seed>__<id>.json`` is the truth; per-step metrics sit beside it as
``.metrics.csv.xz`` (Lightning's ``CSVLogger`` file, its float32 values written short, xz-compressed; layout:
bench/store.py); W&B mirrors the run (Lightning's ``WandbLogger``, offline unless logged in;
bench/run/mirror.py). A NaN/Inf loss or gradient ends the run as ``diverged``; an exception ends it as
``failed``; either way the caller gets a record and carries on.

Lightning's ``ModelCheckpoint`` keeps the best validation checkpoint (the task's metric and direction) and the
last one in ``<out>/checkpoints/<name>__<id>/`` (git-ignored), with the per-step log while the run trains. A run
that finds a ``last.ckpt`` there and no record resumes from it: the loop, the optimizer, the data order
(bench/run/resumable.py), the RNG and the log, so it ends with the record an uninterrupted run writes. The test
metric is measured twice: on the last model (``test_last/*``) and on the best validation checkpoint (``test/*``,
what the record's ``metric.test`` holds).
"""

from __future__ import annotations

import csv
import logging
import os
import pickle
import shutil
import statistics
import time
import traceback
import warnings
import zipfile
import zlib
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.utilities import rank_zero_only

from tasks import Task

from ..diag.callback import GradientDiagnostics
from ..store import Store, atomic
from . import records
from .config import RunConfig
from .mirror import finish, make_loggers, mirror_error, wandb_id, wandb_mode
from .resumable import ResumableLoader
from .system import System, build


def trainer_for(cfg: RunConfig, task: Task, loggers, progress: bool = False, callbacks=()) -> L.Trainer:
    # max_steps counts optimizer steps; Lightning's val_check_interval counts batches: several steps each under
    # truncated BPTT (config.validate makes val_every a multiple of them).
    per_batch = type(task).updates_per_batch(cfg.task)
    if cfg.train.devices > 1:
        # Spawned DDP processes otherwise take cpu_count // devices torch threads each (Lightning's default),
        # not the run's count, which the record states and bit-reproducibility depends on.
        os.environ.setdefault("OMP_NUM_THREADS", str(torch.get_num_threads()))
    clip = cfg.optim.clip or None
    return L.Trainer(
        accelerator=cfg.train.accelerator, devices=cfg.train.devices, strategy=cfg.train.strategy,
        max_steps=cfg.train.max_steps, max_epochs=-1,
        val_check_interval=min(cfg.train.val_every, cfg.train.max_steps) // per_batch, check_val_every_n_epoch=None,
        num_sanity_val_steps=0, log_every_n_steps=1, deterministic=True, logger=loggers,
        # manual optimization (truncated BPTT) clips in the system: Lightning refuses a Trainer-level clip there
        gradient_clip_val=None if task.truncation else clip, gradient_clip_algorithm="norm",
        enable_model_summary=False, enable_progress_bar=progress, callbacks=list(callbacks),
    )


def checkpointing(task: Task, folder: Path) -> tuple[ModelCheckpoint, ModelCheckpoint]:
    """The best validation checkpoint (``best.ckpt``, by the task's metric and direction) and the latest
    (``last.ckpt``), both checked at every validation. Two callbacks: Lightning's ``save_last`` writes the last
    one only when the best one changed, and a run whose metric stalls must still resume from where it was."""
    common = dict(dirpath=folder, auto_insert_metric_name=False, enable_version_counter=False)
    return (ModelCheckpoint(filename="best", monitor=f"val/{task.metric_name}", mode=task.metric_mode, **common),
            ModelCheckpoint(filename="last", **common))


def stoppers(cfg: RunConfig, task: Task) -> list[EarlyStopping]:
    """``train.patience`` and ``train.stop_when_solved`` as Lightning's EarlyStopping, checked at validations."""
    monitor, mode = f"val/{task.metric_name}", task.metric_mode
    out = []
    if cfg.train.patience:
        out.append(EarlyStopping(monitor, mode=mode, patience=cfg.train.patience, check_on_train_epoch_end=False))
    if cfg.train.stop_when_solved:  # the threshold alone: patience can never run out
        out.append(EarlyStopping(monitor, mode=mode, stopping_threshold=task.solved_threshold,
                                 patience=cfg.train.max_steps + 1, check_finite=False,
                                 check_on_train_epoch_end=False))
    return out


class LogAtCheckpoint(L.Callback):
    """Writes the CSV log's buffered rows with every checkpoint and keeps the log, compressed, inside it: a resumed
    run starts from those rows and logs the later ones again. Not a length into the file on disk: Lightning's
    writer rewrites the whole file under a wider header when a key first appears (a gradient spike's
    ``diag/spike``), in place, so after the checkpoint the file's first bytes may no longer be its rows."""

    def __init__(self, logger: CSVLogger):
        self.logger = logger

    def on_save_checkpoint(self, trainer, pl_module, checkpoint):
        self.logger.save()
        path = Path(self.logger.experiment.metrics_file_path)
        checkpoint["rnnbench_log"] = zlib.compress(path.read_bytes() if path.is_file() else b"", 1)


def resumable(path: Path) -> Path | None:
    """``path`` if it is a checkpoint a run can resume from (a complete zip archive, as torch.save writes)."""
    return path if path.is_file() and zipfile.is_zipfile(path) else None


def continue_log(logger: CSVLogger, kept: bytes) -> None:
    """Start ``logger``'s file with ``kept`` (the rows a resumed run's checkpoint had), header included."""
    writer = logger.experiment  # Lightning's writer deletes an earlier file as it starts: write after it
    Path(writer.metrics_file_path).write_bytes(kept)
    header = kept.split(b"\n", 1)[0].decode()
    writer.metrics_keys = next(csv.reader([header]), []) if header else []


def fit(trainer: L.Trainer, system: System, task: Task, cfg: RunConfig, ckpt_path: Path | None = None) -> None:
    """``trainer.fit`` on ``task``, from ``ckpt_path`` if given. A single-device run trains on the task's loader
    made resumable mid-epoch; a multi-device one hands Lightning the datamodule (its sampler goes in the loader)."""
    if cfg.train.devices > 1:
        trainer.fit(system, datamodule=task, ckpt_path=ckpt_path)
        return
    task.prepare_data()  # what Lightning does with a datamodule (one process: rank 0), then its setup
    task.setup("fit")
    trainer.fit(system, train_dataloaders=ResumableLoader(task.train_dataloader()),
                val_dataloaders=task.val_dataloader(), ckpt_path=ckpt_path)


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
    # a resumed run's log folder holds the rows it keeps (continue_log writes them back after the writer starts)
    warnings.filterwarnings("ignore", message=".*Experiment logs directory.*")
    # a non-finite loss skips its step on purpose (the run is recorded as diverged)
    warnings.filterwarnings("ignore", message=".*`training_step` returned `None`.*")


def train(cfg: RunConfig, out: Store | str | Path, wandb: str = "auto", progress: bool = False,
          callbacks: tuple[L.Callback, ...] = ()) -> dict:
    """Run ``cfg`` to completion (resuming its ``last.ckpt`` if an earlier attempt left one), write its record into
    the results store ``out`` and return the record. ``callbacks`` join the run's own."""
    quiet()
    store = out if isinstance(out, Store) else Store(out)
    provenance = records.provenance()
    # Under strategy=ddp every rank runs this function; only rank 0 mirrors to W&B and writes the record.
    rank_zero = rank_zero_only.rank == 0
    mode = wandb_mode(wandb) if rank_zero else "disabled"
    started, cpu_started = time.time(), time.process_time()
    folder = store.checkpoint_dir(cfg.name, cfg.run_id)
    # a record means the run finished: rerunning it trains afresh
    resume = None if store.record_path(cfg.name, cfg.run_id).is_file() else resumable(folder / "last.ckpt")
    saved = torch.load(resume, map_location="cpu", weights_only=True) if resume else {}
    if "rnnbench_log" not in saved:  # none, or one from before the log's rows travelled inside it: train afresh
        resume, saved = None, {}
    kept = zlib.decompress(saved["rnnbench_log"]) if resume else b""
    if resume is None and rank_zero:
        shutil.rmtree(folder, ignore_errors=True)  # what an earlier attempt left, from before its first checkpoint
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    task, system = build(cfg)
    params = sum(p.numel() for p in system.parameters())
    status, error, steps, tests, stopped = "ok", None, 0, {}, None
    loggers = make_loggers(cfg, folder, mode, provenance)
    continue_log(loggers[0], kept)
    diag = GradientDiagnostics(cfg.train.diag_cadence) if cfg.train.diag else None
    handback = RankZeroHandback(folder / "rank0.pkl", diag)
    (saver, latest), stops = checkpointing(task, folder), stoppers(cfg, task)
    trainer = trainer_for(cfg, task, loggers, progress, callbacks=[
        c for c in (diag, handback, saver, latest, LogAtCheckpoint(loggers[0]), *stops, *callbacks) if c])
    try:
        fit(trainer, system, task, cfg, resume)
        steps = handback.restore(trainer, system)
        # EarlyStopping's, or any callback's that stops the run the same way (the tuned protocol's pruner)
        stopped = next(({"step": steps, "reason": s.stopping_reason_message} for s in (*stops, *callbacks)
                        if getattr(s, "stopping_reason_message", None)), None)
        if system.divergence is None:
            tests = test(trainer, system, task, saver, handback)
        else:
            status, steps = "diverged", system.divergence["step"]
    except Exception as exc:  # a failed run is data too: record it and let the sweep carry on
        status, error = "failed", "".join(traceback.format_exception_only(exc)).strip()
        traceback.print_exc()
    finally:
        loggers[0].finalize("success" if status == "ok" else status)  # the CSV log; W&B finishes after the record
    metrics_src = Path(loggers[0].experiment.metrics_file_path)
    metrics_dest = store.metrics_path(cfg.name, cfg.run_id)
    best, last = Path(saver.best_model_path) if saver.best_model_path else None, folder / "last.ckpt"
    record = records.make(
        cfg, task, status=status, error=error, divergence=system.divergence, steps=steps, params=params,
        test=tests.get("test"), test_last=tests.get("test_last"), test_from=tests.get("from"),
        val_last=system.last.get("val"), val_best=system.best, grad_norm=_summary(system.grad_history),
        wall_time_s=time.time() - started,
        # spawned DDP ranks train in other processes: their CPU time is not ours to report
        cpu_time_s=time.process_time() - cpu_started if cfg.train.devices == 1 else None,
        provenance=provenance, wandb_mode=mode, accelerator=str(trainer.accelerator.__class__.__name__),
        wandb_id=wandb_id(loggers), mirror_error=mirror_error(loggers),
        metrics_file=metrics_dest.name if metrics_src.exists() else None,
        checkpoint=_relative(best if best and best.is_file() else last, store),
        checkpoint_last=_relative(last, store), stopped=stopped,
        resumed_from=saved.get("global_step"),
        extra={k: v for k, v in system.last.items() if "/" in k},
        diagnostics=diag.summary(system.grad_history, cfg.optim.clip, status == "diverged") if diag else None,
    )
    if rank_zero:
        if metrics_src.exists():
            store.compress_in(metrics_src, metrics_dest)
        store.write_record(record)
        store.drop_older_metrics(cfg.name, cfg.run_id)  # a rerun of a run recorded in an older format
    # W&B's finish may wait on the network, or fail: the record and the checkpoints are written by now
    error = finish(loggers, "success" if status == "ok" else status)
    if error != record["mirror_error"]:
        record["mirror_error"] = error
        if rank_zero:
            store.write_record(record)
    return record


def record_killed(cfg: RunConfig, store: Store, killed: str, wall_time_s: float) -> dict:
    """Write and return the record of a run whose process died under it before it wrote one (the OOM killer,
    ``kill -9``), as its sweep saw it: ``failed`` with nothing measured, ``killed`` naming the signal (or exit
    status). A resume trains it again, as a run never recorded (bench/store.py, ``standing``)."""
    task, system = build(cfg)
    record = records.make(
        cfg, task, status="failed", error=f"worker killed by {killed}", divergence=None, steps=0,
        params=sum(p.numel() for p in system.parameters()), test=None, val_last=None, val_best=None,
        grad_norm=_summary([]), wall_time_s=wall_time_s, provenance=records.provenance(), wandb_mode=None,
        accelerator=None, metrics_file=None)
    store.write_record({**record, "killed": killed})
    return {**record, "killed": killed}


def test(trainer: L.Trainer, system: System, task: Task, saver: ModelCheckpoint, handback) -> dict:
    """The test metric of the last model (``test_last``), then of the best validation checkpoint (``test``; the
    last model's where no validation gave one)."""
    system.test_prefix = "test_last"
    trainer.test(system, dataloaders=task.test_dataloader(), verbose=False)
    handback.restore(trainer, system)
    out = {"test_last": system.last["test_last"]}
    system.test_prefix = "test"
    if saver.best_model_path:
        trainer.test(system, dataloaders=task.test_dataloader(), ckpt_path=saver.best_model_path, verbose=False)
        handback.restore(trainer, system)
        return {**out, "test": system.last["test"], "from": "best"}
    return {**out, "test": out["test_last"], "from": "last"}


def _relative(path: Path | None, store: Store) -> str | None:
    # Lightning makes a checkpoint's path absolute; the store's root may be relative (results-local)
    return str(path.resolve().relative_to(store.root.resolve())) if path is not None and path.is_file() else None


def _summary(history: list[float]) -> dict:
    if not history:
        return {"median": None, "max": None, "steps": 0}
    return {"median": statistics.median(history), "max": max(history), "steps": len(history)}

