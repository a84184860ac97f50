"""Sweeps: plan every run of a W&B-format sweep file, run what the results folder lacks, resumably.

    python -m bench sweep sweeps/default.yaml --out results-local --workers 2
    python -m bench sweep sweeps/default.yaml --runs-per-gpu 4          # every GPU, 4 small runs on each
    python -m bench sweep sweeps/default.yaml --executor ray [--address ray://head:10001]

Every run is planned and validated before the first one starts (grid and random specs: bench/spec.py). Run
ids hash the resolved config, so runs whose record is already in ``--out`` are skipped and an interrupted
sweep, even one killed by SIGKILL, resumes where it stopped; ``--retry-failed`` also reruns runs recorded as
``failed`` (diverged runs are results, not failures). Records and metrics CSVs are written to a temporary file
and renamed, and each run is trained under a lock on ``<out>/locks/<id>.lock``, so two sweeps on one folder
never train a run twice (bench/slots.py).

Executors share everything but the running: ``local`` (default, offline) is a process pool over device
slots, every visible GPU x ``--runs-per-gpu`` or CPU workers of ``--threads`` torch threads each (1 by
default: bit-identical results need equal thread counts, and the committed reference used one); ``ray`` and
``wandb`` live in bench/executor_ray.py and bench/executor_wandb.py and are imported only when chosen.
"""

from __future__ import annotations

import importlib
import os
import sys
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from multiprocessing import get_context
from pathlib import Path

from . import records, slots
from .config import ConfigError, RunConfig, resolve
from .progress import Progress, summary_line
from .spec import METHODS, expand, expand_file, load_documents

__all__ = ["EXECUTORS", "METHODS", "expand", "load_documents", "main_exit_code", "pending", "plan", "run",
           "summary_line", "write_summary"]
EXECUTORS = ("local", "ray", "wandb")
PACKAGES = {"ray": "ray[tune]", "wandb": "wandb"}


def plan(path: Path) -> list[RunConfig]:
    """Every run of the sweep, validated, duplicates (same resolved config) removed."""
    seen, runs = set(), []
    for doc, overrides in expand_file(path):
        try:
            cfg = resolve(overrides)
        except ConfigError as exc:
            raise ConfigError(f"{path} document {doc}: {exc}") from None
        if cfg.run_id not in seen:
            seen.add(cfg.run_id)
            runs.append(cfg)
    return runs


def pending(cfgs: list[RunConfig], out: Path, retry_failed: bool = False) -> list[RunConfig]:
    """The planned runs ``out`` has no record of, plus those recorded as failed when retrying."""
    done = records.existing_ids(out)
    if retry_failed:
        done -= {r["id"] for r in records.load_all(out) if r["status"] == "failed"}
    return [c for c in cfgs if c.run_id not in done]


def executor_module(name: str):
    """bench.executor_<name>, imported on demand; a missing package is one line, before any work."""
    if name not in EXECUTORS:
        raise ConfigError(f"unknown executor {name!r}; valid: {', '.join(EXECUTORS)}")
    try:
        return importlib.import_module(f"bench.executor_{name}")
    except ModuleNotFoundError as exc:
        if exc.name == f"bench.executor_{name}":
            raise ConfigError(f"executor {name!r} is not in this installation "
                              f"(no bench/executor_{name}.py)") from None
        package = (exc.name or "").split(".")[0]
        raise ConfigError(f"executor {name!r} needs the {package!r} package: pip install "
                          f"'{PACKAGES.get(name, package)}'") from None


def run(path: Path, out: Path, workers: int | None = None, wandb: str = "auto", threads: int = 1, *,
        executor: str = "local", runs_per_gpu: int = 1, retry_failed: bool = False, address: str | None = None,
        gpus: int | None = None) -> list[dict]:
    """Run what ``out`` lacks with ``executor``; returns the records of the runs trained here."""
    module = executor_module(executor) if executor != "local" else None
    cfgs = plan(path)
    recorded = records.existing_ids(out) & {c.run_id for c in cfgs}
    todo = pending(cfgs, out, retry_failed)
    retried = len(todo) - (len(cfgs) - len(recorded))
    plan_slots = slots.slot_plan(slots.gpu_count(gpus), workers=workers, runs_per_gpu=runs_per_gpu,
                                 threads=threads)[:max(1, len(todo))]
    where = slots.describe(plan_slots) if executor == "local" else f"the {executor} executor"
    print(f"sweep {path}: {len(cfgs)} runs; {len(recorded)} already recorded in {out}"
          + (f" ({retried} failed: retrying them)" if retried else "") + f"; {len(todo)} to run on {where}",
          flush=True)
    progress = Progress(len(todo), len(plan_slots))
    started = time.time()
    if module is None:
        results = run_local(todo, out, plan_slots, wandb, retry_failed, progress)
    elif executor == "ray":
        results = module.run(todo, out, wandb=wandb, threads=threads, address=address, runs_per_gpu=runs_per_gpu,
                             on_result=progress.result)
    else:
        results = module.run(path, todo, out, wandb=wandb, on_result=progress.result)
    progress.close()
    results = [r for r in results if r.get("status") != "skipped"]
    wall = time.time() - started
    print(f"sweep finished in {wall:.0f}s: {len(results)} trained, {progress.failed} failed"
          + (f", {progress.skipped} skipped" if progress.skipped else ""), flush=True)
    if results:
        write_summary(path, out, planned=len(cfgs), results=results, workers=len(plan_slots),
                      threads=threads, wall=wall, executor=executor)
    return results


def run_local(todo: list[RunConfig], out: Path, plan_slots: list[slots.Slot], wandb: str, retry_failed: bool,
              progress: Progress) -> list[dict]:
    """Runs over the slots. A run over several GPUs (``train.devices`` > 1, DDP) cannot live in a worker pinned
    to one: those run after the packed ones, one at a time in this process, which sees every GPU."""
    pinned = any(device is not None for device, _ in plan_slots)
    big = {c.run_id for c in todo if pinned and getattr(c.train, "devices", 1) > 1}
    small = [c for c in todo if c.run_id not in big]
    threads = plan_slots[0][1]
    return (_run_on(small, out, plan_slots, wandb, retry_failed, progress)
            + _run_on([c for c in todo if c.run_id in big], out, [(None, threads)], wandb, retry_failed, progress))


def _run_on(todo: list[RunConfig], out: Path, plan_slots: list[slots.Slot], wandb: str, retry_failed: bool,
            progress: Progress) -> list[dict]:
    """One CPU slot runs in this process; anything else is a pool of fresh interpreters, one per slot."""
    if not todo:
        return []
    if len(plan_slots) == 1 and plan_slots[0][0] is None:
        slots.pin(plan_slots[0])
        return [progress.result(slots.execute(cfg, str(out), wandb, retry_failed)) for cfg in todo]
    ctx = get_context("spawn")  # fresh interpreters: no inherited torch/CUDA/W&B state, pinned before import
    queue = ctx.Queue()
    for slot in plan_slots:
        queue.put(slot)
    results = []
    with ProcessPoolExecutor(len(plan_slots), mp_context=ctx, initializer=slots.init_worker,
                             initargs=(queue, os.getpid())) as pool:
        waiting = {pool.submit(slots.execute, cfg, str(out), wandb, retry_failed) for cfg in todo}
        while waiting:
            finished, waiting = wait(waiting, timeout=1.0, return_when=FIRST_COMPLETED)
            for fut in finished:
                results.append(progress.result(fut.result()))
            progress.tick()
    return results


def write_summary(path: Path, out: Path, *, planned: int, results: list[dict], workers: int, threads: int,
                  wall: float, executor: str = "local") -> None:
    """``out/sweeps/<name>.json``: how long this invocation took, on what; the README quotes it."""
    summary = {
        "spec": str(path), "planned": planned, "ran": len(results), "executor": executor,
        "statuses": {s: sum(r["status"] == s for r in results) for s in ("ok", "diverged", "failed")},
        "workers": workers, "threads_per_worker": threads, "wall_time_s": round(wall, 1),
        "provenance": records.provenance(),
    }
    records.write(summary, Path(out) / "sweeps" / f"{Path(path).stem}.json")


def main_exit_code(results: list[dict]) -> int:
    """Diverged runs are data; only runs that failed make the sweep exit non-zero."""
    return 1 if any(r["status"] == "failed" for r in results) else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit("use: python -m bench sweep FILE")
