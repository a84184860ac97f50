"""A run's loggers: Lightning's ``CSVLogger`` (the per-step truth the record points at) and Lightning's
``WandbLogger``, the W&B mirror: offline unless the user is logged in, one W&B run per record.

Local run records are the truth; W&B is where people put runs side by side. Offline runs land under
``.cache/wandb`` (``RNNBENCH_WANDB_DIR``) and upload later with ``wandb sync``. Lightning hands the mirror the
run's config (the system's hyper-parameters) and every row the CSV gets.

The mirror cannot fail a run (``Mirror``): W&B failing to start (no login, no network, a folder it cannot write),
to log or to finish is kept as one line, the record's ``mirror_error``, and the run goes on without it.
``finish`` runs after the record is written: a W&B finish that waits on the network loses nothing.
"""

from __future__ import annotations

import sys
import uuid
from pathlib import Path

from lightning.pytorch.loggers import CSVLogger, WandbLogger

from .mirror_mode import WANDB_DIR, wandb_mode  # noqa: F401 (wandb_mode: where callers found it)

PROJECT = "rnnbench"
MIRROR_EVERY = 10  # the W&B mirror gets every 10th per-step row (side-by-side charts); the CSV keeps every step


class Mirror(WandbLogger):
    """Lightning's ``WandbLogger`` that keeps its first error as one line in ``error`` instead of raising it, and
    does nothing after one: what Lightning calls (start, hyper-parameters, rows, finalize) and ``log_now``,
    ``finish``."""

    error: str | None = None

    def _guarded(self, method, *args, **kwargs):
        if self.error is not None:
            return None
        try:
            return method(*args, **kwargs)
        except Exception as exc:  # W&B's errors are many kinds (UsageError, CommError, OSError, timeouts)
            self.error = one_line(exc)
            return None

    @property
    def experiment(self):  # None once failed: Lightning's setup only touches it, our calls go through _guarded
        return self._guarded(WandbLogger.experiment.fget, self)

    def log_hyperparams(self, *args, **kwargs) -> None:
        self._guarded(super().log_hyperparams, *args, **kwargs)

    def log_metrics(self, *args, **kwargs) -> None:
        self._guarded(super().log_metrics, *args, **kwargs)

    def after_save_checkpoint(self, *args, **kwargs) -> None:
        self._guarded(super().after_save_checkpoint, *args, **kwargs)

    def finalize(self, status: str) -> None:
        self._guarded(super().finalize, status)

    def log_now(self, row: dict) -> None:
        """``row`` (pictures) straight to the W&B run."""
        self._guarded(lambda: self.experiment.log(row))

    def finish(self, status: str) -> None:
        """Finish this record's W&B run (not a sweep agent's, which the agent finishes)."""
        def end():
            run = self.experiment
            if run is not None and not getattr(run, "sweep_id", None):
                run.finish(exit_code=0 if status == "success" else 1)
        self._guarded(end)


def one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def is_mirror(logger) -> bool:
    """Whether ``logger`` mirrors to W&B."""
    return isinstance(logger, Mirror)


def init_kwargs(mode: str, **kwargs) -> dict:
    """``wandb.init``'s arguments for a new W&B run in the project, under ``WANDB_DIR``: one per record, even
    when a process trains many."""
    WANDB_DIR.mkdir(parents=True, exist_ok=True)
    return dict(project=PROJECT, dir=str(WANDB_DIR), mode=mode, reinit="create_new", **kwargs)


def start_run(mode: str, **kwargs):
    """A new W&B run in this process (``init_kwargs``)."""
    import wandb

    return wandb.init(**init_kwargs(mode, **kwargs))


def make_loggers(cfg, folder: Path, mode: str, provenance: dict) -> list:
    """The CSV log in ``folder/log/metrics.csv``, and the W&B mirror unless ``mode`` is disabled."""
    loggers = [CSVLogger(folder, name="log", version="", flush_logs_every_n_steps=500)]
    if mode == "disabled":
        return loggers
    # Under a W&B sweep agent (executors/wandb.py) the agent's run, tied to the sweep, is the one. W&B is
    # imported only if it already is (the agent's process).
    wandb = sys.modules.get("wandb")
    agent = wandb.run if wandb is not None and wandb.run is not None and wandb.run.sweep_id else None
    if agent is not None:
        loggers.append(Mirror(experiment=agent))
        return loggers
    init = init_kwargs(mode, group=cfg.task_name, id=f"{cfg.run_id}-{uuid.uuid4().hex[:8]}",
                       tags=[cfg.arch_name, cfg.arch_label, f"commit:{provenance['git_sha'][:8]}"])
    project, save_dir, run_id = init.pop("project"), init.pop("dir"), init.pop("id")
    loggers.append(Mirror(name=cfg.name, project=project, save_dir=save_dir, version=run_id, **init))
    return loggers


def wandb_id(loggers: list) -> str | None:
    return next((lg.version for lg in loggers if is_mirror(lg)), None)


def mirror_error(loggers: list) -> str | None:
    """Why the W&B mirror failed, one line; None when it did not (or there is none)."""
    return next((lg.error for lg in loggers if is_mirror(lg) and lg.error), None)


def finish(loggers: list, status: str = "success") -> str | None:
    """Finalize and finish the W&B mirror (one W&B run per record, even when a process trains many); never
    raises. Returns ``mirror_error``."""
    for logger in loggers:
        if is_mirror(logger):
            logger.finalize(status)
            logger.finish(status)
    return mirror_error(loggers)
