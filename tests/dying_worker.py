"""What a sweep's pool worker runs in the killed-worker tests instead of the real job. tests/test_sweep.py: the gru
run's worker SIGKILLs itself mid-training (as the kernel's OOM killer would) while the vanilla run trains on the
other worker. tests/test_tune.py: the first trial to start does the same while the other trains on. A module of
its own: a spawned worker imports it by name, without the test module's fixtures."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import lightning as L

from bench.run.config import resolve
from bench.store import Store
from bench.sweeps import tune
from bench.sweeps.executors import base


class DieMidTraining(L.Callback):
    def __init__(self, store, other: str):
        self.store, self.other = store, other

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step < 2:
            return
        deadline = time.time() + 30  # the other run is in flight: its first checkpoint is written, its record not
        while not any(self.store.checkpoints.glob(f"{self.other}__*/*.ckpt")) and time.time() < deadline:
            time.sleep(0.02)
        finished = any(self.store.runs.glob(f"{self.other}__*.json"))
        (self.store.root / "killed-while-other-finished").write_text(str(finished))
        os.kill(os.getpid(), signal.SIGKILL)


def run_locked(cfg, store, wandb, retry_failed=False, callbacks=()):
    if cfg.arch_name == "gru":
        callbacks = (*callbacks, DieMidTraining(store, "adding__vanilla__s0"))
    return base.run_locked(cfg, store, wandb, retry_failed, callbacks)


class HoldUntilKilled(L.Callback):
    """Keeps a run in flight, once it has a checkpoint, until the dying trial's worker is about to go."""

    def __init__(self, store, own: str):
        self.store, self.own = store, own

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if not any(self.store.checkpoints.glob(f"*__{self.own}/*.ckpt")):
            return
        deadline = time.time() + 30
        while not (self.store.root / "killed-while-other-finished").exists() and time.time() < deadline:
            time.sleep(0.02)


class DieAfterTheOtherTrialCheckpoints(L.Callback):
    """``DieMidTraining`` for trials of one family, which share a name and differ in their run id (``own``)."""

    def __init__(self, store, own: str):
        self.store, self.own = store, own

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step < 2:
            return
        deadline = time.time() + 30
        while not self._other(self.store.checkpoints.glob("*/*.ckpt")) and time.time() < deadline:
            time.sleep(0.02)
        finished = bool(self._other(self.store.runs.glob("*.json")))
        (self.store.root / "killed-while-other-finished").write_text(str(finished))
        os.kill(os.getpid(), signal.SIGKILL)

    def _other(self, paths) -> list:
        return [p for p in paths if self.own not in str(p)]


def train_trial(study, journal, trial_id, overrides, out, wandb, threads):
    """The tuned sweep's trial; the first to start (it creates ``dies``) is killed once the other checkpointed."""
    import torch

    store, cfg = Store(out), resolve(overrides, check_machine=False)
    try:
        (store.root / "dies").open("x").close()
        extra = DieAfterTheOtherTrialCheckpoints(store, cfg.run_id)
    except FileExistsError:
        extra = HoldUntilKilled(store, cfg.run_id)
    torch.set_num_threads(threads)
    return base.run_locked(cfg, store, wandb, callbacks=(tune.pruning_callback(study, Path(journal), trial_id), extra))
