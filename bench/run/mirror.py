"""A run's loggers: Lightning's ``CSVLogger`` (the per-step truth the record points at) and Lightning's
``WandbLogger``, the W&B mirror: offline unless the user is logged in, one W&B run per record.

Local run records are the truth; W&B is where people put runs side by side. Offline runs land under
``.cache/wandb`` (``RNNBENCH_WANDB_DIR``) and upload later with ``wandb sync``. Lightning hands the mirror the
run's config (the system's hyper-parameters) and every row the CSV gets.
"""

from __future__ import annotations

import os
import sys
import uuid
from pathlib import Path

from lightning.pytorch.loggers import CSVLogger, WandbLogger

WANDB_DIR = Path(os.environ.get("RNNBENCH_WANDB_DIR", ".cache/wandb"))
PROJECT = "rnnbench"
MIRROR_EVERY = 10  # the W&B mirror gets every 10th per-step row (side-by-side charts); the CSV keeps every step


def is_mirror(logger) -> bool:
    """Whether ``logger`` mirrors to W&B."""
    return isinstance(logger, WandbLogger)


def wandb_mode(requested: str) -> str:
    """``auto`` means online when the user is logged in (API key in env or ~/.netrc), else offline."""
    if requested != "auto":
        return requested
    if os.environ.get("WANDB_MODE"):
        return os.environ["WANDB_MODE"]
    netrc = Path.home() / ".netrc"
    logged_in = os.environ.get("WANDB_API_KEY") or (netrc.exists() and "api.wandb.ai" in netrc.read_text())
    return "online" if logged_in else "offline"


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
        loggers.append(WandbLogger(experiment=agent))
        return loggers
    init = init_kwargs(mode, group=cfg.task_name, id=f"{cfg.run_id}-{uuid.uuid4().hex[:8]}",
                       tags=[cfg.arch_name, cfg.arch_label, f"commit:{provenance['git_sha'][:8]}"])
    project, save_dir, run_id = init.pop("project"), init.pop("dir"), init.pop("id")
    loggers.append(WandbLogger(name=cfg.name, project=project, save_dir=save_dir, version=run_id, **init))
    return loggers


def wandb_id(loggers: list) -> str | None:
    return next((lg.version for lg in loggers if is_mirror(lg)), None)


def close(loggers: list, status: str = "success") -> None:
    """Write what the loggers hold and finish the W&B run (not a sweep agent's, which the agent finishes): one
    W&B run per record, even when a process trains many."""
    for logger in loggers:
        logger.finalize(status)
        if is_mirror(logger) and not getattr(logger.experiment, "sweep_id", None):
            logger.experiment.finish(exit_code=0 if status == "success" else 1)
