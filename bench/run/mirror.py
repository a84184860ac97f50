"""The W&B mirror of a run: offline unless the user is logged in, one W&B run per record, every 10th step.

Local run records are the truth; W&B is where people put runs side by side. ``make_loggers`` gives a run its
loggers (the local per-step CSV, and the W&B mirror unless disabled); ``close`` flushes them and finishes the
W&B run. Offline runs land under ``.cache/wandb`` (``RNNBENCH_WANDB_DIR``) and upload later with ``wandb sync``.

A single-device run mirrors through ``WandbProcess``: the W&B run lives in a process of its own
(bench/run/wandb_child.py) and the trainer only pickles each row into a pipe. W&B's client in the training
process cost far more than its ``run.log`` calls: on the bench's tiny LSTM (make bench's harness line) W&B
offline added 0.3-1 ms a step over W&B disabled with a row every 10 steps, i.e. 3-10 ms a row, while a
``run.log`` alone takes 0.2 ms of CPU: the rest is its threads (W&B's event loop, the sender) taking the GIL
from the training thread. A row into the pipe costs about 3 us (pickled and written: 2.6-4.0 us a row over
200 rows). A W&B sweep agent's run (which the agent made in this process) and a multi-device run (whose
logger ``ddp_spawn`` pickles into its ranks, where W&B attaches to the same run) keep the in-process
``WandbMirror``.
"""

from __future__ import annotations

import os
import pickle
import queue
import subprocess
import sys
import threading
import uuid
from pathlib import Path

from lightning.fabric.utilities.logger import _add_prefix
from lightning.pytorch.loggers import CSVLogger, Logger, WandbLogger
from lightning.pytorch.utilities import rank_zero_only

WANDB_DIR = Path(os.environ.get("RNNBENCH_WANDB_DIR", ".cache/wandb"))
PROJECT = "rnnbench"


class WandbMirror(WandbLogger):
    """The in-process W&B mirror, for a run W&B already holds in this process (a sweep agent's) or one that
    ``ddp_spawn`` pickles into its ranks; every other run mirrors through ``WandbProcess``. It gets every 10th
    per-step row (10-step resolution is plenty for side-by-side charts; the local CSV keeps every step), and
    sends its rows from a thread of its own.

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


class WandbProcess(Logger):
    """The W&B mirror in a process of its own (bench/run/wandb_child.py; see the module docstring): the same
    rows as ``WandbMirror`` (every 10th per-step row, ``trainer/global_step`` in each, epoch metrics, pictures
    through ``log_now``), in the order they were logged. The W&B run starts while the trainer sets up.
    ``flush`` waits for every row sent and raises what W&B raised since the last flush (so a failed
    ``wandb.init`` or ``run.log`` fails the run, as it did in-process); ``finish`` ends the W&B run and the
    process. Nothing of W&B is imported here, unless a caller makes pictures."""

    every_n_steps = 10
    STEP = "trainer/global_step"

    def __init__(self, init: dict):
        super().__init__()
        self.id = init["id"]
        self._proc = subprocess.Popen([sys.executable, str(Path(__file__).with_name("wandb_child.py"))],
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self._send("init", init)

    @property
    def name(self) -> str:
        return PROJECT

    @property
    def version(self) -> str:
        return self.id

    @rank_zero_only
    def log_metrics(self, metrics, step=None) -> None:
        self._send("log", dict(metrics) if step is None else dict(metrics, **{self.STEP: step}))

    def log_hyperparams(self, params, *args, **kwargs) -> None:
        pass  # the run's config goes with wandb.init (make_loggers); the systems keep no hparams of their own

    def log_now(self, row: dict) -> None:
        """``row`` (W&B media welcome) to the run, after every row sent before it."""
        self._send("log", row)

    def flush(self, check: bool = True) -> None:
        """Return once the W&B process has handled every row; raise what W&B raised (without ``check``, forget it)."""
        error = self._ask("flush", None)
        if error and check:
            raise RuntimeError(f"the W&B mirror failed:\n{error}")

    def finalize(self, status: str) -> None:
        # Lightning finalizes after fit and after test: the run goes on. A run that already failed is recorded
        # with its own error; a send that failed after it is not news.
        if self._proc is not None:
            self.flush(check=status == "success")

    def finish(self, status: str = "success") -> None:
        """End the W&B run (exit code 0 for ``success``, else 1) and its process."""
        if self._proc is None:
            return
        try:
            error = self._ask("finish", 0 if status == "success" else 1)
        finally:
            self._proc.wait()
            self._proc = None
        if error and status == "success":
            raise RuntimeError(f"the W&B mirror failed:\n{error}")

    def _send(self, op: str, payload) -> None:
        try:
            self._proc.stdin.write(pickle.dumps((op, payload)))
            self._proc.stdin.flush()
        except (BrokenPipeError, AttributeError):
            raise RuntimeError(f"the W&B mirror's process is gone{self._exit()}") from None

    def _ask(self, op: str, payload):
        self._send(op, payload)
        try:
            return pickle.load(self._proc.stdout)
        except EOFError:
            raise RuntimeError(f"the W&B mirror's process is gone{self._exit()}") from None

    def _exit(self) -> str:
        code = None if self._proc is None else self._proc.poll()
        return "" if code is None else f" (exit code {code})"

    def __getstate__(self):
        raise TypeError("WandbProcess stays in its process: make_loggers gives multi-device runs WandbMirror")


def is_mirror(logger) -> bool:
    """Whether ``logger`` mirrors to W&B (in this process or its own)."""
    return isinstance(logger, (WandbLogger, WandbProcess))


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


def make_loggers(cfg, csv_dir: str, mode: str, provenance: dict) -> list:
    loggers = [CSVLogger(csv_dir, name="", version="", flush_logs_every_n_steps=500)]
    # Created here, in the main process: a ddp_spawn child that created its own writer would delete the rows
    # an earlier phase (fit, before test) wrote into the same folder.
    _ = loggers[0].experiment
    if mode == "disabled":
        return loggers
    # Under a W&B sweep agent (executors/wandb.py) the agent's run, tied to the sweep, is the one. W&B is
    # imported only if it already is (the agent's process); a run of its own needs none of it here.
    wandb = sys.modules.get("wandb")
    agent = wandb.run if wandb is not None and wandb.run is not None and wandb.run.sweep_id else None
    if agent is not None:
        loggers.append(WandbMirror(experiment=agent))
        return loggers
    init = init_kwargs(
        mode, group=cfg.task_name, name=cfg.name, id=f"{cfg.run_id}-{uuid.uuid4().hex[:8]}",
        config=cfg.to_dict(), tags=[cfg.arch_name, cfg.arch_label, f"commit:{provenance['git_sha'][:8]}"],
    )
    if cfg.train.devices > 1:  # ddp_spawn pickles the loggers into its ranks: W&B attaches there in-process
        import wandb

        loggers.append(WandbMirror(experiment=wandb.init(**init)))
    else:
        loggers.append(WandbProcess(init))
    return loggers


def wandb_id(loggers: list) -> str | None:
    return next((lg.version for lg in loggers if is_mirror(lg)), None)  # both mirrors' version is the run's id


def flush(loggers: list) -> None:
    """Wait for every W&B row still queued; raise what sending one raised."""
    for logger in loggers:
        if isinstance(logger, (WandbMirror, WandbProcess)):
            logger.flush()


def close(loggers: list, status: str = "success") -> None:
    """Flush every logger and finish the W&B run: one W&B run per record, even when a worker trains many."""
    for logger in loggers:
        try:
            logger.finalize(status)
        finally:
            if isinstance(logger, WandbProcess):
                logger.finish(status)
            elif isinstance(logger, WandbLogger):
                logger.experiment.finish()
