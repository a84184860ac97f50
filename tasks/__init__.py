"""Sequence tasks: one file each, every one a LightningDataModule that declares how it is scored.

    from tasks import get
    task = get("adding")(get("adding").Config(seq_len=50))

Every module of this package is imported here, so a new task is one new file decorated with ``@register``.
"""

import importlib
import pkgutil

from .base import SHAPES, Splits, Task, TaskConfig, get, names, register

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["SHAPES", "Splits", "Task", "TaskConfig", "get", "names", "register"]
