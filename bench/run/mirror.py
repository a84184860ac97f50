"""The W&B mirror of a run: offline unless the user is logged in, one W&B run per record, every 10th step.

Local run records are the truth; W&B is where people put runs side by side. ``make_loggers`` gives a run its
loggers (the local per-step CSV, and the W&B mirror unless disabled); ``close`` flushes them and finishes the
W&B run. Offline runs land under ``.cache/wandb`` (``RNNBENCH_WANDB_DIR``) and upload later with ``wandb sync``.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path

from lightning.pytorch.loggers import CSVLogger, WandbLogger

WANDB_DIR = Path(os.environ.get("RNNBENCH_WANDB_DIR", ".cache/wandb"))
PROJECT = "rnnbench"


class WandbMirror(WandbLogger):
    """The W&B mirror gets every 10th per-step row: a ``run.log`` costs ~0.5 ms on CPU, 5 % of a small RNN's
    step, and 10-step resolution is plenty for side-by-side charts. The local CSV keeps every step."""

    every_n_steps = 10


def wandb_mode(requested: str) -> str:
    """``auto`` means online when the user is logged in (API key in env or ~/.netrc), else offline."""
    if requested != "auto":
        return requested
    if os.environ.get("WANDB_MODE"):
        return os.environ["WANDB_MODE"]
    netrc = Path.home() / ".netrc"
    logged_in = os.environ.get("WANDB_API_KEY") or (netrc.exists() and "api.wandb.ai" in netrc.read_text())
    return "online" if logged_in else "offline"


def start_run(mode: str, **kwargs):
    """A new W&B run in the project, under ``WANDB_DIR``: one per record, even when a process trains many."""
    import wandb

    WANDB_DIR.mkdir(parents=True, exist_ok=True)
    return wandb.init(project=PROJECT, dir=str(WANDB_DIR), mode=mode, reinit="create_new", **kwargs)


def make_loggers(cfg, csv_dir: str, mode: str, provenance: dict) -> list:
    loggers = [CSVLogger(csv_dir, name="", version="", flush_logs_every_n_steps=500)]
    # Created here, in the main process: a ddp_spawn child that created its own writer would delete the rows
    # an earlier phase (fit, before test) wrote into the same folder.
    _ = loggers[0].experiment
    if mode != "disabled":
        import wandb

        # Under a W&B sweep agent (executors/wandb.py) the agent's run, tied to the sweep, is the one.
        agent = wandb.run if wandb.run is not None and wandb.run.sweep_id else None
        run = agent or start_run(
            mode, group=cfg.task_name, name=cfg.name, id=f"{cfg.run_id}-{uuid.uuid4().hex[:8]}",
            config=cfg.to_dict(), tags=[cfg.arch_name, cfg.arch_label, f"commit:{provenance['git_sha'][:8]}"],
        )
        loggers.append(WandbMirror(experiment=run))
    return loggers


def wandb_id(loggers: list) -> str | None:
    return next((lg.experiment.id for lg in loggers if isinstance(lg, WandbLogger)), None)


def close(loggers: list, status: str = "success") -> None:
    """Flush every logger and finish the W&B run: one W&B run per record, even when a worker trains many."""
    for logger in loggers:
        logger.finalize(status)
        if isinstance(logger, WandbLogger):
            logger.experiment.finish()
