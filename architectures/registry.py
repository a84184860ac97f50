"""Registry of architecture names -> (core class, config dataclass, preset defaults).

A name is a family plus preset options: ``irnn`` is the Elman core with ReLU and identity W_hh. The config
dataclass documents every option (it becomes ``--help``); ``build`` turns a config into a core.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

from .base import RecurrentCore


@dataclass(frozen=True)
class Entry:
    name: str
    core: type[RecurrentCore]
    config: type
    preset: dict[str, Any]

    def default_config(self):
        return replace(self.config(), **self.preset)


_REGISTRY: dict[str, Entry] = {}


def register(name: str, core: type[RecurrentCore], config: type, **preset: Any) -> None:
    """Add ``name``; duplicates are refused so two files cannot silently claim one name."""
    if name in _REGISTRY:
        raise ValueError(f"architecture {name!r} is already registered")
    unknown = set(preset) - set(config.__dataclass_fields__)
    if unknown:
        raise ValueError(f"preset for {name!r} sets unknown fields {sorted(unknown)}")
    _REGISTRY[name] = Entry(name, core, config, preset)


def names() -> list[str]:
    return sorted(_REGISTRY)


def entry(name: str) -> Entry:
    if name not in _REGISTRY:
        raise KeyError(f"unknown architecture {name!r}; valid: {', '.join(names())}")
    return _REGISTRY[name]


def build(name: str, input_size: int, config=None) -> RecurrentCore:
    """Instantiate ``name`` for inputs of width ``input_size`` (config: its dataclass, default = preset)."""
    e = entry(name)
    return e.core(input_size, **asdict(config if config is not None else e.default_config()))
