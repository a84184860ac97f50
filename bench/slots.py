"""Device slots and one locked run: what each local sweep worker is, and how it runs a run safely.

    python -c "from bench.slots import slot_plan; print(slot_plan(2, workers=None, runs_per_gpu=4))"

A slot is ``(CUDA_VISIBLE_DEVICES or None, torch threads)``. With GPUs, every GPU gets ``runs_per_gpu`` slots
(small runs packed on one device); without, CPU slots share the cores, ``threads`` each (1 by default, as the
committed reference: results are bit-identical only at equal thread counts). Each pool worker takes one slot
from a queue in its initializer and pins itself before torch is imported there, so Lightning's ``auto``
accelerator sees exactly one GPU. ``RNNBENCH_FAKE_GPUS=N`` pretends N GPUs exist (tests, dry runs).

Runs are locked: a worker holds ``<out>/locks/<run_id>.lock`` (``flock``) for the run's duration, so two
sweeps pointed at one folder never train the same run twice; the kernel drops the lock when a process dies,
even by SIGKILL. This module imports no torch at import time: a spawned worker loads it before pinning.
"""

from __future__ import annotations

import fcntl
import json
import os
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .config import RunConfig

Slot = tuple[str | None, int]


def gpu_count(override: int | None = None) -> int:
    """Visible GPUs: ``override``, else ``RNNBENCH_FAKE_GPUS``, else torch's count."""
    if override is not None:
        return override
    fake = os.environ.get("RNNBENCH_FAKE_GPUS", "")
    if fake:
        from .config import ConfigError

        if not fake.isdigit():
            raise ConfigError(f"RNNBENCH_FAKE_GPUS must be a whole number >= 0, got {fake!r}")
        return int(fake)
    import torch

    return torch.cuda.device_count()


def slot_plan(gpus: int, *, workers: int | None, runs_per_gpu: int = 1, threads: int = 1,
              cores: int | None = None) -> list[Slot]:
    """Where each worker runs. GPUs round-robin (0, 1, 0, 1, ...) so a ``workers`` cap still spreads over
    devices; without GPUs, ``workers`` CPU slots (default: one per ``threads`` cores)."""
    if gpus > 0:
        slots = [(str(g), threads) for _ in range(runs_per_gpu) for g in range(gpus)]
        return slots[:workers] if workers else slots
    cores = cores or os.cpu_count() or 1
    return [(None, threads)] * (workers or max(1, cores // threads))


def describe(slots: list[Slot]) -> str:
    gpus = sorted({d for d, _ in slots if d is not None}, key=int)
    what = f"{len(slots)} worker(s) x {slots[0][1]} thread(s)"
    return what + (f" on {len(gpus)} GPU(s), {len(slots) // max(1, len(gpus))} per GPU" if gpus else "")


def pin(slot: Slot) -> None:
    device, threads = slot
    if device is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = device  # before CUDA initialises in this process
    import torch

    torch.set_num_threads(threads)


def init_worker(slots, parent: int) -> None:
    """Pool initializer: take one slot from the queue and pin to it, then watch the parent."""
    pin(slots.get())
    threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True).start()


def _exit_with_parent(parent: int) -> None:
    """A pool worker outlives a killed sweep otherwise, training on with nobody to collect its result."""
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(1)


@contextmanager
def file_lock(path: Path, wait: bool = False):
    """Yields True when this process now holds ``path``'s lock, False when another holds it (``wait=False``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # The file stays: unlinking a lock file races with a process that has just opened it.
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)  # releases the lock


def run_lock(out: Path, run_id: str):
    return file_lock(Path(out) / "locks" / f"{run_id}.lock")


def record_path(out: Path, cfg: RunConfig) -> Path:
    return Path(out) / "runs" / f"{cfg.name}__{cfg.run_id}.json"


def recorded_status(out: Path, cfg: RunConfig) -> str | None:
    path = record_path(out, cfg)
    return json.loads(path.read_text())["status"] if path.exists() else None


def skipped(cfg: RunConfig, reason: str) -> dict:
    """Stands in for a record when a run was not trained here; sweeps report it and leave it out."""
    return {"status": "skipped", "reason": reason, "id": cfg.run_id, "name": cfg.name}


def remove_temp_files(out: Path, cfg: RunConfig) -> None:
    """A process killed between writing and renaming leaves ``*.tmp*`` files (record, metrics CSV, checkpoint);
    only the lock holder may clear them, since only it could be writing them."""
    for folder in ("runs", "checkpoints"):
        for stale in (Path(out) / folder).glob(f"{cfg.name}__{cfg.run_id}.*tmp*"):
            stale.unlink(missing_ok=True)


def execute(cfg: RunConfig, out: str, wandb: str, retry_failed: bool = False) -> dict:
    """Train ``cfg`` into ``out`` unless another process holds it or its record appeared meanwhile."""
    with run_lock(Path(out), cfg.run_id) as owned:
        if not owned:
            return skipped(cfg, "running in another process")
        status = recorded_status(Path(out), cfg)  # again, under the lock: another sweep may have finished it
        if status is not None and not (retry_failed and status == "failed"):
            return skipped(cfg, f"recorded meanwhile ({status})")
        remove_temp_files(Path(out), cfg)
        from .run import train

        return train(cfg, Path(out), wandb=wandb)
