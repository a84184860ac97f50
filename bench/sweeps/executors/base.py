"""The executor contract: planned runs in, records out, under the same progress and integrity rules.

An executor is one file in this package that subclasses ``Executor`` and decorates it with ``@register``;
its file name is its ``--executor`` name. Names are found without importing the files (``names``), so
``rnnbench sweep --help`` and a typo never import Ray or W&B; ``get`` imports the one chosen, and a missing
package is one line naming what to install.

Every executor receives the same ``Options`` and the runs the sweep still lacks (planned, validated, not yet
recorded), and hands each finished run to ``progress.result`` (the shared progress lines and ETA). A run is trained
through ``run_locked`` wherever it executes: it holds the run's lock, looks for its record again under the lock,
clears stray temporary files, then trains; so two sweeps on one folder, or a restored Ray trial, never train a
run twice. The sweep (bench/sweeps/sweep.py) plans, reports and writes the summary around any executor.
"""

from __future__ import annotations

import importlib
import pkgutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from options import ConfigError
from options.registry import Registry

from ...store import Store

if TYPE_CHECKING:
    from ...run.config import RunConfig
    from ..progress import Progress

PACKAGE = __name__.rpartition(".")[0]


@dataclass(frozen=True)
class Options:
    """What the command line gives every executor (``rnnbench sweep --help`` documents each)."""

    spec: Path
    wandb: str = "auto"
    workers: int | None = None
    threads: int = 1
    runs_per_gpu: int = 1
    retry_failed: bool = False
    address: str | None = None
    gpus: int | None = None  # visible GPUs; None: ask the machine (RNNBENCH_FAKE_GPUS, then torch)


class Executor:
    """Subclasses set ``name`` (their file name) and ``help``, and implement ``run``."""

    name: ClassVar[str]
    help: ClassVar[str]
    accepts_address: ClassVar[bool] = False

    def __init__(self, options: Options):
        self.options = options

    def check(self, todo: list[RunConfig]) -> None:
        """Refuse, with one ConfigError line, what this executor cannot run; called before any work."""
        if self.options.address is not None and not self.accepts_address:
            raise ConfigError(f"--address is for --executor ray, not {self.name}")

    @property
    def trains_here(self) -> bool:
        """Whether runs train on this machine, so planning checks they fit its memory and GPUs."""
        return True

    def workers(self, todo: list[RunConfig]) -> int:
        """How many runs train at once (the progress line's ETA divides by it)."""
        return 1

    def where(self, todo: list[RunConfig]) -> str:
        return f"the {self.name} executor"

    def run(self, todo: list[RunConfig], store: Store, progress: Progress) -> list[dict]:
        """Train ``todo`` into ``store``; hand each record (or ``skipped``) to ``progress.result`` as it finishes
        (and call ``progress.tick`` while waiting, to redraw the bar); return them."""
        raise NotImplementedError


INSTALL = {"ray": "ray[tune]"}  # pip names that differ from the module's


def _files() -> list[str]:
    """Every executor file of this package, found without importing any."""
    return [m.name for m in pkgutil.iter_modules([str(Path(__file__).parent)]) if m.name != "base"]


def _load(name: str) -> None:
    """Import executor ``name`` (which registers it); a missing package is one line before any work."""
    try:
        importlib.import_module(f"{PACKAGE}.{name}")
    except ModuleNotFoundError as exc:
        package = (exc.name or "").split(".")[0]
        raise ConfigError(f"executor {name!r} needs the {package!r} package: pip install "
                          f"'{INSTALL.get(package, package)}'") from None


EXECUTORS = Registry("executor", find=_files, load=_load)
names, get = EXECUTORS.names, EXECUTORS.get


def register(cls: type[Executor]) -> type[Executor]:
    """Class decorator: add an executor under ``cls.name``, which must be its file's name; no duplicates."""
    module = cls.__module__.rpartition(".")[2]
    if cls.name != module:
        raise ValueError(f"executor {cls.name!r} must live in executors/{cls.name}.py, not {module}.py")
    return EXECUTORS.add(cls.name, cls)


def skipped(cfg: RunConfig, reason: str) -> dict:
    """Stands in for a record when a run was not trained here; sweeps report it and leave it out."""
    return {"status": "skipped", "reason": reason, "id": cfg.run_id, "name": cfg.name}


def run_locked(cfg: RunConfig, store: Store, wandb: str, retry_failed: bool = False, callbacks=()) -> dict:
    """Train ``cfg`` into ``store`` unless another process holds it or its record appeared meanwhile
    (``callbacks``: Lightning callbacks joining the run's own, e.g. the tuned protocol's pruner)."""
    with store.run_lock(cfg.run_id) as owned:
        if not owned:
            return skipped(cfg, "running in another process")
        status = store.status_of(cfg.name, cfg.run_id)  # again, under the lock: another sweep may have finished it
        if status not in (None, "killed") and not (retry_failed and status == "failed"):
            return skipped(cfg, f"recorded meanwhile ({status})")
        store.remove_temp_files(cfg.name, cfg.run_id)
        from ...run.train import train

        return train(cfg, store, wandb=wandb, callbacks=tuple(callbacks))


def record_killed(cfg: RunConfig, store: Store, killed: str, started: float) -> dict:
    """The record of a run whose worker died under it (``killed``: the signal's name, or an exit status), written
    under the run's lock (the dead worker's lock is free) unless the run wrote its own record before dying."""
    with store.run_lock(cfg.run_id) as owned:
        if not owned:
            return skipped(cfg, "running in another process")
        path = store.record_path(cfg.name, cfg.run_id)
        if path.is_file() and path.stat().st_mtime >= started and store.status_of(cfg.name, cfg.run_id):
            return store.read_record(path)
        store.remove_temp_files(cfg.name, cfg.run_id)
        from ...run.train import record_killed as write

        return write(cfg, store, killed, time.time() - started)
