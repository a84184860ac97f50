"""The local executor (the default, offline): a process pool over this machine's GPU slots or CPU cores.

    rnnbench sweep sweeps/default.yaml --workers 2                 # CPU: 2 workers, 1 torch thread each
    rnnbench sweep sweeps/default.yaml --runs-per-gpu 4            # every GPU, 4 small runs on each

A slot is ``(CUDA_VISIBLE_DEVICES or None, torch threads)``. With GPUs, every GPU gets ``runs_per_gpu`` slots
(small runs packed on one device); without, CPU slots share the cores, ``threads`` each (1 by default, as the
committed reference: results are bit-identical only at equal thread counts). Each pool worker takes one slot
from a queue in its initializer and pins itself before torch is imported there, so Lightning's ``auto``
accelerator sees exactly one GPU. ``RNNBENCH_FAKE_GPUS=N`` pretends N GPUs exist (tests, dry runs).

One CPU slot trains in this process (``Inline``); anything else is a pool of fresh (spawned) interpreters, one per
slot (``Pool`` of ``Worker``; the tuned sweep's trials use the same two). A worker killed under its run (the kernel's
OOM killer, ``kill -9``) costs that run alone: it is recorded ``failed``, naming the signal, a fresh worker takes the
slot, the other workers' runs carry on, and a resume trains the killed run again.
A run over several GPUs (``train.devices`` > 1, DDP) cannot live in a worker pinned to one: those run after
the packed ones, one at a time in this process, which sees every GPU. Each run goes through ``run_locked``
(base.py). This module imports no torch at import time: a spawned worker loads it after pinning.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import deque
from multiprocessing import get_context
from multiprocessing.connection import wait
from typing import TYPE_CHECKING, NamedTuple

from options import ConfigError

from ...store import Store
from ..progress import Progress
from .base import Executor, record_killed, register, run_locked

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


class Worker:
    """A spawned interpreter pinned to ``slot``, calling the functions it is handed one at a time. Not a
    ProcessPoolExecutor: a worker killed there breaks the whole pool (``BrokenProcessPool``), and every run in
    flight on the other workers is lost with it; here the parent knows which run each worker holds."""

    def __init__(self, ctx, slot: Slot):
        self.slot, self.job, self.started = slot, None, 0.0
        self.conn, theirs = ctx.Pipe()
        self.process = ctx.Process(target=serve, args=(theirs, slot, os.getpid()))
        self.process.start()
        theirs.close()  # the worker's end lives in the worker alone: its death reads as end-of-file here

    def give(self, job, fn, *args) -> None:
        self.job, self.started = job, time.time()
        try:
            self.conn.send((fn, args))
        except OSError:
            pass  # it died since its last job: ``answered`` says so next, and the job is recorded as killed

    def answered(self) -> bool:
        """Whether the job has ended: a result came, or the worker died."""
        return self.conn.poll() or not self.process.is_alive()

    def take(self):
        """The job's result; raises what the job raised; EOFError when the worker died under it."""
        ok, value = self.conn.recv()
        self.job = None
        if not ok:
            raise value
        return value

    def death(self) -> str:
        """How the worker died: the signal's name (``SIGKILL``), or its exit status."""
        self.process.join(timeout=10)
        code = self.process.exitcode
        return signal.Signals(-code).name if code is not None and code < 0 else f"exit status {code}"

    def stop(self) -> None:
        try:
            self.conn.send(None)
        except OSError:
            pass  # already dead
        self.process.join(timeout=10)
        if self.process.is_alive():
            self.process.kill()


class Killed(NamedTuple):
    """A job's outcome when its worker died under it."""

    signal: str  # the signal's name (SIGKILL), or the exit status
    started: float  # when the job was handed out (a record written since is the job's own)


class Pool:
    """A ``Worker`` per slot, each handed one job at a time by ``give``; ``ended`` collects what finished. Workers
    start when first given a job; one that dies under its job ends that job as ``Killed`` and is replaced when its
    slot is next given a job."""

    def __init__(self, slots: list[Slot]):
        self.ctx = get_context("spawn")  # fresh interpreters: no inherited torch/CUDA/W&B state, pinned before import
        self.slots = slots
        self.workers: list[Worker | None] = [None] * len(slots)

    @property
    def busy(self) -> int:
        return sum(w is not None and w.job is not None for w in self.workers)

    @property
    def free(self) -> int:
        return len(self.workers) - self.busy

    def give(self, job, fn, *args) -> None:
        """Call ``fn(*args)`` on a free worker; ``job`` (not None) names the call in ``ended``."""
        i = next(i for i, w in enumerate(self.workers) if w is None or w.job is None)
        if self.workers[i] is None or not self.workers[i].process.is_alive():
            self.workers[i] = Worker(self.ctx, self.slots[i])
        self.workers[i].give(job, fn, *args)

    def ended(self, timeout: float) -> list[tuple]:
        """``(job, result or Killed)`` for each job that ended, waiting up to ``timeout`` seconds for the first;
        raises what a job raised."""
        busy = [w for w in self.workers if w is not None and w.job is not None]
        wait([end for w in busy for end in (w.conn, w.process.sentinel)], timeout=timeout)
        out = []
        for worker in busy:
            if not worker.answered():
                continue
            job = worker.job
            try:
                out.append((job, worker.take()))
            except (EOFError, OSError):  # killed under its job
                worker.job = None
                out.append((job, Killed(worker.death(), worker.started)))
        return out

    def close(self) -> None:
        for worker in self.workers:
            if worker is not None:
                worker.stop()


class Inline:
    """``Pool``'s interface for one CPU slot in this process: ``give`` runs the job at once (a worker would cost a
    fresh interpreter and a torch import for nothing)."""

    def __init__(self, slot: Slot):
        pin(slot)
        self.done: list[tuple] = []  # the job run by ``give``, until ``ended`` hands it over

    @property
    def busy(self) -> int:
        return len(self.done)

    @property
    def free(self) -> int:
        return 1 - self.busy

    def give(self, job, fn, *args) -> None:
        self.done.append((job, fn(*args)))

    def ended(self, timeout: float) -> list[tuple]:
        done, self.done = self.done, []
        return done

    def close(self) -> None:
        pass


def pool(plan: list[Slot]) -> Pool | Inline:
    return Inline(plan[0]) if len(plan) == 1 and plan[0][0] is None else Pool(plan)


def serve(conn, slot: Slot, parent: int) -> None:
    """A worker's life: pin to ``slot``, then call what the parent sends until it sends None."""
    pin(slot)
    threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True).start()
    while (job := conn.recv()) is not None:
        fn, args = job
        try:
            conn.send((True, fn(*args)))
        except Exception as exc:  # the parent raises it, as a pool's future would
            conn.send((False, exc))


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
        waiting, results, workers = deque(todo), [], pool(plan)
        try:
            while waiting or workers.busy:
                while waiting and workers.free:
                    cfg = waiting.popleft()
                    workers.give(cfg, run_locked, cfg, store, wandb, retry)
                for cfg, rec in workers.ended(timeout=1.0):
                    if isinstance(rec, Killed):  # the run is recorded; a fresh worker takes the slot
                        rec = record_killed(cfg, store, rec.signal, rec.started)
                    results.append(progress.result(rec))
                progress.tick()
        finally:
            workers.close()
        return results
