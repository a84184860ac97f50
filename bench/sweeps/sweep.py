"""Sweeps: plan every run of a W&B-format sweep file, run what the results folder lacks, resumably.

    rnnbench sweep sweeps/default.yaml --out results-local --workers 2
    rnnbench sweep sweeps/default.yaml --runs-per-gpu 4          # every GPU, 4 small runs on each
    rnnbench sweep sweeps/default.yaml --executor ray [--address ray://head:10001]
    rnnbench sweep sweeps/default.yaml --dry-run                 # what would train; no torch once planned

Every run is planned and validated before the first one starts (plan.py; grid and random specs: spec.py). Run
ids hash the resolved config, so runs whose record is already in ``--out`` are skipped and an interrupted
sweep, even one killed by SIGKILL, resumes where it stopped; ``--retry-failed`` also reruns runs recorded as
``failed``. Every write is atomic and each run is trained under its lock (bench/store.py), so two sweeps on
one folder never train a run twice. Planning is cached (plan_cache.py): a sweep with nothing left to train, and
any ``--dry-run``, reads the plan, the records and the leaderboard without importing torch.

Executors share everything but the running (executors/base.py): this module plans, reports progress the same
way for all, and writes ``<out>/sweeps/<spec>.json`` (how long, on what, and which runs the spec planned).
``local`` (default, offline) is a process pool over device slots; ``ray`` and ``wandb`` are imported only when
chosen. A tuned file (each family searched with the same budget, then its best retrained on fresh seeds) is
run by tune.py.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import NamedTuple

from ..store import Store
from .executors.base import Options, get
from .plan import Planned, pending, planned
from .progress import Progress


def run(path: Path, out: Path | Store, workers: int | None = None, wandb: str = "auto", threads: int = 1, *,
        executor: str = "local", runs_per_gpu: int = 1, retry_failed: bool = False, address: str | None = None,
        gpus: int | None = None) -> list[dict]:
    """Run what ``out`` lacks with ``executor``; returns the records of the runs trained here."""
    store = out if isinstance(out, Store) else Store(out)
    options = Options(spec=Path(path), wandb=wandb, workers=workers, threads=threads, runs_per_gpu=runs_per_gpu,
                      retry_failed=retry_failed, address=address, gpus=gpus)
    if tuned(path):
        from . import tune

        return tune.run(Path(path), store, options, executor)
    chosen = get(executor)(options)  # a missing package is one line, before planning
    plan = _compare(path, store, chosen, retry_failed)
    todo = [run.config() for run in plan.waiting]  # torch from here on, and only when something is to train
    chosen.check(todo)
    # Where runs would go takes torch to count the GPUs: with nothing to run, it is not asked.
    _announce(path, store, plan, f" on {chosen.where(todo)}" if todo else "")
    workers_now = chosen.workers(todo) if todo else 1
    progress = Progress(len(todo), workers_now)
    started = time.time()
    results = chosen.run(todo, store, progress)
    progress.close()
    results = [r for r in results if r.get("status") != "skipped"]
    wall = time.time() - started
    # a failed run (a killed worker's among them) did not train: counted once, as failed
    print(f"sweep finished in {wall:.0f}s: {len(results) - progress.failed} trained, {progress.failed} failed"
          + (f", {progress.skipped} skipped" if progress.skipped else ""), flush=True)
    if results:
        write_summary(path, store, planned=[r.run_id for r in plan.runs], results=results, workers=workers_now,
                      threads=threads, wall=wall, executor=executor)
    return results


def dry_run(path: Path, out: Path | Store, *, executor: str = "local", retry_failed: bool = False,
            address: str | None = None) -> list[Planned]:
    """Plan and compare with ``out`` as ``run`` would, print the runs still to train; trains and writes
    nothing, and with the plan cached imports no torch. Returns those runs."""
    store = out if isinstance(out, Store) else Store(out)
    if tuned(path):
        from . import tune

        tune.dry_run(Path(path), store)
        return []
    chosen = get(executor)(Options(spec=Path(path), retry_failed=retry_failed, address=address))
    plan = _compare(path, store, chosen, retry_failed)
    chosen.check([])  # its flags only: checking the runs themselves (Ray's strategy) needs them resolved
    _announce(path, store, plan, " (dry run: nothing trains)")
    for run in plan.waiting:
        print(f"  {run.name} [{run.run_id}]", flush=True)
    return plan.waiting


def tuned(path: Path) -> bool:
    """Whether ``path`` is a tuned file (its documents carry ``confirm``: bench/sweeps/tune.py runs it)."""
    from .spec import load_documents
    from .tune import is_tuned

    return is_tuned(load_documents(Path(path)))


class Compared(NamedTuple):
    """A sweep's plan beside the results store."""

    runs: list[Planned]
    waiting: list[Planned]  # not recorded, or recorded as failed when retrying
    statuses: dict[str, str]  # run id -> recorded status
    unreadable: dict[str, str]  # run id -> what is wrong with its record


def _compare(path: Path, store: Store, chosen, retry_failed: bool) -> Compared:
    runs = planned(path, check_machine=chosen.trains_here)
    statuses, unreadable = store.statuses()
    return Compared(runs, pending(runs, statuses, retry_failed), statuses, unreadable)


def _announce(path: Path, store: Store, plan: Compared, where: str) -> None:
    for run in plan.runs:
        if run.run_id in plan.unreadable:
            print(f"warning: {plan.unreadable[run.run_id]}; training {run.name} again", file=sys.stderr, flush=True)
    recorded = sum(run.run_id in plan.statuses for run in plan.runs)
    again = [plan.statuses[run.run_id] for run in plan.waiting if run.run_id in plan.statuses]
    killed, retried = again.count("killed"), again.count("failed")
    print(f"sweep {path}: {len(plan.runs)} runs; {recorded} already recorded in {store.root}"
          + (f" ({killed} killed under their worker: training them again)" if killed else "")
          + (f" ({retried} failed: retrying them)" if retried else "")
          + f"; {len(plan.waiting)} to run{where}", flush=True)


def write_summary(path: Path, store: Store, *, planned: list[str], results: list[dict], workers: int, threads: int,
                  wall: float, executor: str = "local") -> None:
    """``<out>/sweeps/<name>.json``: how long this invocation took, on what; the README quotes it. The planned
    run ids let the leaderboard sum the spec's CPU time from the records without planning it again."""
    from ..run.records import provenance

    summary = {
        "spec": str(path), "planned": len(planned), "planned_ids": sorted(planned), "ran": len(results),
        "executor": executor,
        "statuses": {s: sum(r["status"] == s for r in results) for s in ("ok", "diverged", "failed")},
        "workers": workers, "threads_per_worker": threads, "wall_time_s": round(wall, 1),
        "provenance": provenance(),
    }
    store.write_json(store.sweep_summary_path(path), summary)


def exit_code(results: list[dict]) -> int:
    """Diverged runs are data; only runs that failed make the sweep exit non-zero."""
    return 1 if any(r["status"] == "failed" for r in results) else 0
