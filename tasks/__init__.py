"""Sequence tasks: one file each, every one a LightningDataModule that declares how it is scored.

    from tasks import get
    task = get("adding")(get("adding").Config(seq_len=50))
"""

from . import adding, copy, mnist1d  # noqa: F401  (importing registers the tasks)
from .base import SHAPES, Splits, Task, TaskConfig, get, names, register

__all__ = ["SHAPES", "Splits", "Task", "TaskConfig", "get", "names", "register"]
