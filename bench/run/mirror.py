"""The W&B mirror of a run: offline unless the user is logged in, one W&B run per record, every 10th step.

Local run records are the truth; W&B is where people put runs side by side. ``make_loggers`` gives a run its
loggers (the local per-step CSV, and the W&B mirror unless disabled); ``close`` flushes them and finishes the
W&B run. Offline runs land under ``.cache/wandb`` (``RNNBENCH_WANDB_DIR``) and upload later with ``wandb sync``.
"""

from __future__ import annotations

import os
import queue
import threading
import uuid
from pathlib import Path

from lightning.fabric.utilities.logger import _add_prefix
from lightning.pytorch.loggers import CSVLogger, WandbLogger
from lightning.pytorch.utilities import rank_zero_only

WANDB_DIR = Path(os.environ.get("RNNBENCH_WANDB_DIR", ".cache/wandb"))
PROJECT = "rnnbench"


class WandbMirror(WandbLogger):
    """The W&B mirror gets every 10th per-step row (10-step resolution is plenty for side-by-side charts; the
    local CSV keeps every step), and sends its rows from a thread of its own.

    A ``run.log`` hands its record to W&B's event-loop thread and waits for it. Measured on the bench LSTM
    (12 ms steps, bench/dev/perf.py's bare loop, 30 rows): a row logged inline made its step and the next one
    1.2-2.1 ms slower in all; sent from this thread, 0.8-1.4 ms (repeats spread by +-0.6 ms). W&B's own Python
    still takes the GIL, so the thread hides only the waiting, and the W&B rows still cost 1-3 % of a small
    RNN's training time on CPU (make bench's tiny-model line: +0.3 ms a step offline over disabled, a row every
    10 steps). The training thread only queues the row; the sender logs them in order. ``flush`` waits for
    the queue and raises what a send raised (train.py flushes inside the run, so a failed send fails the run as
    a failed ``run.log`` did); ``log_now`` logs anything else (pictures) after the queued rows."""

    every_n_steps = 10

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._rows: queue.SimpleQueue = queue.SimpleQueue()
        self._sender: threading.Thread | None = None
        self._failed: BaseException | None = None

    @rank_zero_only
    def log_metrics(self, metrics, step=None) -> None:
        self._raise()
        metrics = _add_prefix(metrics, self._prefix, self.LOGGER_JOIN_CHAR)
        row = dict(metrics) if step is None else dict(metrics, **{"trainer/global_step": step})
        if self._sender is None:
            self._sender = threading.Thread(target=self._send, args=(self.experiment,), daemon=True,
                                            name="rnnbench-wandb-mirror")
            self._sender.start()
        self._rows.put(row)

    def _send(self, run) -> None:
        while (row := self._rows.get()) is not None:
            if self._failed is None:  # after a failure the rest are dropped; flush re-raises it
                try:
                    run.log(row)
                except BaseException as exc:  # noqa: BLE001 - handed to the training thread by _raise
                    self._failed = exc

    def flush(self, check: bool = True) -> None:
        """Return once every queued row is in the W&B run; raise what a send raised (without ``check``, forget it)."""
        if self._sender is not None:
            self._rows.put(None)
            self._sender.join()
            self._sender = None
        if check:
            self._raise()
        else:
            self._failed = None

    def log_now(self, row: dict) -> None:
        """``run.log(row)`` from this thread, after every queued row."""
        self.flush()
        self.experiment.log(row)

    def _raise(self) -> None:
        if self._failed is not None:
            failed, self._failed = self._failed, None
            raise failed

    def __getstate__(self) -> dict:
        # ddp_spawn pickles the loggers into its processes: the queue and thread stay here, empty
        self.flush()
        return {**super().__getstate__(), "_rows": None, "_sender": None, "_failed": None}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._rows = queue.SimpleQueue()

    def finalize(self, status: str) -> None:
        # A run that already failed is recorded with its own error; a send that failed after it is not news.
        self.flush(check=status == "success")
        super().finalize(status)


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


def flush(loggers: list) -> None:
    """Wait for every W&B row still queued; raise what sending one raised."""
    for logger in loggers:
        if isinstance(logger, WandbMirror):
            logger.flush()


def close(loggers: list, status: str = "success") -> None:
    """Flush every logger and finish the W&B run: one W&B run per record, even when a worker trains many."""
    for logger in loggers:
        try:
            logger.finalize(status)
        finally:
            if isinstance(logger, WandbLogger):
                logger.experiment.finish()
