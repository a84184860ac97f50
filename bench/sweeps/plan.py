"""Planning a sweep: every run of a sweep file, resolved and validated before the first one starts.

    python -c "from bench.sweeps.plan import plan; print(len(plan('sweeps/default.yaml')))"
    python -c "from bench.sweeps.plan import planned; print(planned('sweeps/default.yaml')[0])"  # cached: no torch

Documents expand into dotted overrides (bench/sweeps/spec.py); each is resolved into a RunConfig, whose run id
hashes the resolved config, so the same run planned twice is one run. ``pending`` compares the plan with a
results store: runs without a readable record are to do (an unreadable record is named and its run trained
again), so are runs whose worker was killed under them (recorded ``failed``, ``killed``: nothing about the run
failed), and with ``retry_failed`` so are runs recorded as ``failed`` (diverged runs are results, not failures).

Resolving imports the registries, so torch and Lightning; a plan without error is therefore kept
(bench/sweeps/plan_cache.py): for each run its id, name and overrides, and what the machine check reads of each
run. ``planned`` answers from it without torch and checks this machine's memory again every time (GPUs asked for
still need torch to be counted); ``Planned.config`` resolves a run when it is to train.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from options import ConfigError

from ..run.config import RunConfig, check_devices, check_memory
from . import plan_cache
from .spec import anchored_documents, expand_file


@dataclass(frozen=True)
class Planned:
    """A planned run: what names it and finds its record; ``config()`` resolves it (imports torch)."""

    run_id: str
    name: str
    overrides: dict
    cfg: RunConfig | None = field(default=None, repr=False, compare=False)  # known when planned in this process

    def config(self) -> RunConfig:
        if self.cfg is not None:
            return self.cfg
        from ..run.config import resolve

        cfg = resolve(self.overrides, check_machine=False)  # the machine was checked when it was planned
        if cfg.run_id != self.run_id:  # the key hashes all that decides it: a bug, not a user's mistake
            raise RuntimeError(f"{self.name}: planned as {self.run_id}, resolves to {cfg.run_id}; "
                               f"delete {plan_cache.folder()}")
        return cfg


def plan(path: Path, check_machine: bool = True) -> list[RunConfig]:
    """Every run of the sweep, validated, duplicates (same resolved config) removed. ``check_machine``: also
    refuse runs that cannot fit this machine (memory, GPUs); off when they train elsewhere (a Ray cluster)."""
    return [run.config() for run in planned(path, check_machine)]


def planned(path: Path, check_machine: bool = True) -> list[Planned]:
    """``plan`` without resolving what the plan cache holds: the same runs in the same order, the same errors."""
    name = plan_cache.key(path, check_machine)
    entry, cfgs = plan_cache.load(name), None
    if entry is None:
        storable, started = plan_cache.watchable(), time.time_ns()  # asked before planning imports the registries
        with plan_cache.reads() as reads:
            entry, cfgs = _resolve_all(path, check_machine)
        if storable and entry["error"] is None:
            plan_cache.store(name, entry, reads, started)
    runs = _replay(entry, path)
    return runs if cfgs is None else [replace(run, cfg=cfg) for run, cfg in zip(runs, cfgs, strict=True)]


def _resolve_all(path: Path, check_machine: bool) -> tuple[dict, list[RunConfig]]:
    """Plan ``path`` from its overrides: the entry the cache keeps (with the error planning stopped at) and the
    configs."""
    entry: dict = {"runs": [], "checks": [], "error": None}
    try:
        documents = expand_file(path)
        metrics = {doc: anchor.metric for doc, anchor, _ in anchored_documents(path) if anchor.metric}
    except ConfigError as exc:
        entry["error"] = str(exc)
        return entry, []
    import tasks

    from ..run.config import memory_need, resolve

    seen, cfgs = set(), []
    for doc, overrides in documents:
        try:
            cfg = resolve(overrides, check_machine=False)
            if doc in metrics:
                check_metric(metrics[doc], cfg)
            if check_machine:
                check = {"doc": doc, "accelerator": cfg.train.accelerator, "devices": cfg.train.devices,
                         "memory": None}
                entry["checks"].append(check)  # before the estimate: GPUs are checked first, as validate does
                if cfg.model is None:  # composed models' sizes come from their data: not estimated
                    check["memory"] = memory_need(cfg, tasks.get(cfg.task_name)(cfg.task))
        except ConfigError as exc:
            entry["error"] = f"{path} document {doc}: {exc}"
            break
        if cfg.run_id not in seen:
            seen.add(cfg.run_id)
            cfgs.append(cfg)
            entry["runs"].append({"id": cfg.run_id, "name": cfg.name, "overrides": overrides})
    return entry, cfgs


def check_metric(metric: str, cfg: RunConfig) -> None:
    """An anchor's ``metric`` is one its task reports beside the main one (REPRODUCTION.md reads its test value
    from the records); a typo would be judged on a missing number."""
    import tasks

    task = tasks.get(cfg.task_name)(cfg.task)
    extra = sorted(task.make_extra_metrics())
    if metric not in extra:
        raise ConfigError(f"anchor metric {metric!r} is not one task {cfg.task_name} reports; valid: "
                          f"{', '.join(extra) or 'none'} (or leave it out for the task's metric, {task.metric_name})")


def _replay(entry: dict, path: Path) -> list[Planned]:
    """The machine check of every run resolved, in order, then the error planning stopped at, if any."""
    for check in entry["checks"]:
        try:
            check_devices(check["accelerator"], check["devices"])
            if check["memory"] is not None:
                check_memory(*check["memory"])
        except ConfigError as exc:
            raise ConfigError(f"{path} document {check['doc']}: {exc}") from None
    if entry["error"] is not None:
        raise ConfigError(entry["error"])
    return [Planned(run["id"], run["name"], run["overrides"]) for run in entry["runs"]]


def pending(runs: list, statuses: dict[str, str], retry_failed: bool = False) -> list:
    """The planned runs (``Planned`` or ``RunConfig``) without a readable record (``statuses``: run id ->
    recorded status, from the store), those whose worker was killed (``killed``), and those recorded as failed
    when retrying."""
    done = {i for i, status in statuses.items() if status != "killed" and not (retry_failed and status == "failed")}
    return [r for r in runs if r.run_id not in done]
