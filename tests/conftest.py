"""Shared fixtures: W&B off, one torch thread per test process, tiny task sizes for quick runs."""

from __future__ import annotations

import os

os.environ["WANDB_MODE"] = "disabled"

import pytest  # noqa: E402
import torch  # noqa: E402

import architectures  # noqa: E402
import tasks  # noqa: E402

torch.set_num_threads(1)

# Small but valid versions of every task, so contract tests train in a second.
SMALL_TASK = {
    "adding": {"task.seq_len": 8, "task.n_train": 256, "task.n_val": 64, "task.n_test": 64, "task.batch_size": 16},
    "copy": {"task.delay": 5, "task.copy_len": 2, "task.n_train": 256, "task.n_val": 64, "task.n_test": 64,
             "task.batch_size": 16},
    "mnist1d": {"task.batch_size": 16},
}
SMALL_ARCH = {"arch.hidden_size": 8}


def small(task: str, arch: str, **extra) -> dict:
    assert set(SMALL_TASK) == set(tasks.names()), "add the new task to SMALL_TASK in tests/conftest.py"
    return {"task.name": task, "arch.name": arch, **SMALL_TASK[task], **SMALL_ARCH, **extra}


TASKS = tasks.names()
ARCHS = architectures.names()


@pytest.fixture(params=[(t, a) for t in TASKS for a in ARCHS], ids=lambda p: f"{p[0]}-{p[1]}")
def task_arch(request):
    return request.param
