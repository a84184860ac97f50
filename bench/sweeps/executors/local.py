"""The local executor (the default, offline): a process pool over this machine's GPU slots or CPU cores.

    rnnbench sweep sweeps/default.yaml --workers 2                 # CPU: 2 workers, 1 torch thread each
    rnnbench sweep sweeps/default.yaml --runs-per-gpu 4            # every GPU, 4 small runs on each

A slot is ``(CUDA_VISIBLE_DEVICES or None, torch threads)``. With GPUs, every GPU gets ``runs_per_gpu`` slots
(small runs packed on one device); without, CPU slots share the cores, ``threads`` each (1 by default, as the
committed reference: results are bit-identical only at equal thread counts). Each pool worker takes one slot
from a queue in its initializer and pins itself before torch is imported there, so Lightning's ``auto``
accelerator sees exactly one GPU. ``RNNBENCH_FAKE_GPUS=N`` pretends N GPUs exist (tests, dry runs).

One CPU slot trains in this process; anything else is a pool of fresh (spawned) interpreters, one per slot.
A run over several GPUs (``train.devices`` > 1, DDP) cannot live in a worker pinned to one: those run after
the packed ones, one at a time in this process, which sees every GPU. Each run goes through ``run_locked``
(base.py). This module imports no torch at import time: a spawned worker loads it after pinning.
"""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from multiprocessing import get_context
from typing import TYPE_CHECKING

from options import ConfigError

from ...store import Store
from ..progress import Progress
from .base import Executor, register, run_locked

if TYPE_CHECKING:
    from ...run.config import RunConfig

Slot = tuple[str | None, int]


def gpu_count(override: int | None = None) -> int:
    """Visible GPUs: ``override``, else ``RNNBENCH_FAKE_GPUS``, else torch's count."""
    if override is not None:
        return override
    fake = os.environ.get("RNNBENCH_FAKE_GPUS", "")
    if fake:
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


@register
class Local(Executor):
    name = "local"
    help = "a process pool over GPUs / CPU cores (offline)"

    def slots(self, todo: list[RunConfig]) -> list[Slot]:
        o = self.options
        return slot_plan(gpu_count(o.gpus), workers=o.workers, runs_per_gpu=o.runs_per_gpu,
                         threads=o.threads)[:max(1, len(todo))]

    def workers(self, todo: list[RunConfig]) -> int:
        return len(self.slots(todo))

    def where(self, todo: list[RunConfig]) -> str:
        return describe(self.slots(todo))

    def run(self, todo: list[RunConfig], store: Store, progress: Progress) -> list[dict]:
        if not todo:
            return []  # nothing to place: the GPUs are not counted (that imports torch)
        plan = self.slots(todo)
        pinned = any(device is not None for device, _ in plan)
        big = {c.run_id for c in todo if pinned and c.train.devices > 1}
        small = [c for c in todo if c.run_id not in big]
        return (self._run_on(small, store, plan, progress)
                + self._run_on([c for c in todo if c.run_id in big], store, [(None, plan[0][1])], progress))

    def _run_on(self, todo: list[RunConfig], store: Store, plan: list[Slot],
                progress: Progress) -> list[dict]:
        if not todo:
            return []
        wandb, retry = self.options.wandb, self.options.retry_failed
        if len(plan) == 1 and plan[0][0] is None:
            pin(plan[0])
            return [progress.result(run_locked(cfg, store, wandb, retry)) for cfg in todo]
        ctx = get_context("spawn")  # fresh interpreters: no inherited torch/CUDA/W&B state, pinned before import
        queue = ctx.Queue()
        for slot in plan:
            queue.put(slot)
        results = []
        with ProcessPoolExecutor(len(plan), mp_context=ctx, initializer=init_worker,
                                 initargs=(queue, os.getpid())) as pool:
            waiting = {pool.submit(run_locked, cfg, store, wandb, retry) for cfg in todo}
            while waiting:
                finished, waiting = wait(waiting, timeout=1.0, return_when=FIRST_COMPLETED)
                for fut in finished:
                    results.append(progress.result(fut.result()))
                progress.tick()
        return results
