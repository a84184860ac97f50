"""Interchangeable recurrent cores: plain ``nn.Module``s with one contract (see ``base.py``).

    from architectures import build, names
    core = build("lstm", input_size=2)            # registry defaults
    y, state = core(torch.randn(8, 100, 2))       # (B, T, H)

Every module of this package is imported here, so a new family is one new file that calls ``register``.
"""

import importlib
import pkgutil

from .base import RecurrentCore, Trace
from .registry import build, entry, names

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["RecurrentCore", "Trace", "build", "entry", "names"]
