"""What a sweep's pool worker runs in tests/test_sweep.py's killed-worker test instead of ``run_locked``: the gru
run's worker SIGKILLs itself mid-training (as the kernel's OOM killer would) while the vanilla run trains on the
other worker. A module of its own: a spawned worker imports it by name, without the test module's fixtures."""

from __future__ import annotations

import os
import signal
import time

import lightning as L

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
