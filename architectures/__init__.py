"""Interchangeable recurrent cores: plain ``nn.Module``s with one contract (see ``base.py``).

    from architectures import build, names
    core = build("lstm", input_size=2)            # registry defaults
    y, state = core(torch.randn(8, 100, 2))       # (B, T, H)
"""

from . import elman, gru, lstm  # noqa: F401  (importing registers the families)
from .base import RecurrentCore, Trace
from .registry import build, entry, names

__all__ = ["RecurrentCore", "Trace", "build", "entry", "names"]
