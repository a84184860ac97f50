"""Shared fixtures: W&B off, one torch thread per test process, tiny task sizes for quick runs."""

from __future__ import annotations

import os
import struct
import tempfile
from pathlib import Path

os.environ["WANDB_MODE"] = "disabled"

import pytest  # noqa: E402
import torch  # noqa: E402

import architectures  # noqa: E402
import tasks  # noqa: E402

torch.set_num_threads(1)



def write_mnist_idx(root: Path, n_train: int = 40, n_test: int = 20) -> Path:
    """A tiny MNIST in torchvision's layout (<root>/MNIST/raw, uncompressed IDX files), made up on the spot."""
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    g = torch.Generator().manual_seed(0)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        pixels = torch.randint(0, 256, (n, 28, 28), generator=g, dtype=torch.uint8)
        labels = (torch.arange(n) % 10).to(torch.uint8)
        (raw / f"{prefix}-images-idx3-ubyte").write_bytes(
            struct.pack(">IIII", 0x0803, n, 28, 28) + pixels.numpy().tobytes())
        (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(struct.pack(">II", 0x0801, n) + labels.numpy().tobytes())
    return root


MNIST_FIXTURE = write_mnist_idx(Path(tempfile.mkdtemp(prefix="rnnbench-mnist-")))

# Small but valid versions of every task, so contract tests train in a second.
SMALL_TASK = {
    "adding": {"task.seq_len": 8, "task.n_train": 256, "task.n_val": 64, "task.n_test": 64, "task.batch_size": 16},
    "copy": {"task.delay": 5, "task.copy_len": 2, "task.n_train": 256, "task.n_val": 64, "task.n_test": 64,
             "task.batch_size": 16},
    "charlm": {"task.seq_len": 12, "task.tbptt": 6, "task.max_chars": 4000, "task.batch_size": 4},
    "mnist1d": {"task.batch_size": 16},
    "sdigits": {"task.batch_size": 16},
    "smnist": {"task.root": str(MNIST_FIXTURE), "task.download": False, "task.n_val": 8, "task.batch_size": 8},
    "translate": {"task.n_train": 64, "task.n_val": 32, "task.n_test": 32, "task.batch_size": 16,
                  "task.max_number": 9999},
    "translate-long": {"task.n_train": 64, "task.n_val": 32, "task.n_test": 32, "task.batch_size": 16,
                       "task.min_len": 6, "task.max_len": 25, "task.max_number": 999},
    "frames": {"task.n_train": 64, "task.n_val": 16, "task.n_test": 16, "task.batch_size": 16},
    "caption": {"task.n_train": 64, "task.n_val": 16, "task.n_test": 16, "task.batch_size": 16},
    "vqa": {"task.max_questions": 400, "task.n_val_images": 5, "task.batch_size": 16},
    "sentiment": {"task.n_train": 256, "task.n_val": 64, "task.n_test": 64, "task.batch_size": 16},
}
SMALL_ARCH = {"arch.hidden_size": 8}

# A sweep document of 4-step adding runs, for sweep and executor tests (add arch.name and seed lines).
SMALL_ADDING = """
method: grid
parameters:
  task.name: {value: adding}
  task.seq_len: {value: 6}
  task.n_train: {value: 128}
  task.n_val: {value: 32}
  task.n_test: {value: 32}
  task.batch_size: {value: 16}
  arch.hidden_size: {value: 4}
  train.max_steps: {value: 4}
  train.val_every: {value: 2}
"""


def as_float32(text: str) -> float:
    """A metrics CSV cell read as the float32 it holds: the store writes each float32 in the fewest digits that
    read back to it (bench/store.py), so a float32 loss compares to the bit after this."""
    return struct.unpack("f", struct.pack("f", float(text)))[0]


def small(task: str, arch: str, **extra) -> dict:
    assert set(SMALL_TASK) == set(tasks.names()), "add the new task to SMALL_TASK in tests/conftest.py"
    return {"task.name": task, "arch.name": arch, **SMALL_TASK[task], **SMALL_ARCH, **extra}


TASKS = tasks.names()
ARCHS = architectures.names()


@pytest.fixture(params=[(t, a) for t in TASKS for a in ARCHS], ids=lambda p: f"{p[0]}-{p[1]}")
def task_arch(request):
    return request.param


# Tasks read by a core and a linear head; composed tasks (dict batches) have their contract in test_composed.py.
SEQUENCE_TASKS = [t for t in TASKS if not hasattr(tasks.get(t), "model")]


@pytest.fixture(params=[(t, a) for t in SEQUENCE_TASKS for a in ARCHS], ids=lambda p: f"{p[0]}-{p[1]}")
def sequence_task_arch(request):
    return request.param


@pytest.fixture(scope="session")
def lm_run(tmp_path_factory):
    """A tiny trained char-LM run and its results folder, with its checkpoint: for sample, units, bad input."""
    from bench.run.config import resolve
    from bench.run.train import train

    out = tmp_path_factory.mktemp("lm")
    rec = train(resolve(small("charlm", "lstm", **{"train.max_steps": 4, "train.val_every": 4})), out,
                wandb="disabled")
    return rec, out
