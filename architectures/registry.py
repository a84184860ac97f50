"""Registry of architecture names -> (core class, config dataclass, preset defaults).

A name is a family plus preset options: ``irnn`` is the Elman core with ReLU and identity W_hh. The config
dataclass documents every option (it becomes ``--help``); ``build`` turns a config into a core. The registry
is the shared one (options/registry.py): duplicates refused, a typo lists the valid names, and a core that
does not declare its ``version``, ``gate_names`` or ``cell``, or declares a ``spectrum_kind`` the diagnostics
do not know, is refused when it registers.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

from options.registry import Registry, undeclared

from .base import SPECTRUM_KINDS, RecurrentCore

# ``version`` names the code: bump it when a change alters what a config computes (init, equations), and the
# run ids change with it, so a sweep trains the family again (bench/run/config.py, ``RunConfig.run_id``).
DECLARES = ("version", "gate_names", "cell")


@dataclass(frozen=True)
class Entry:
    name: str
    core: type[RecurrentCore]
    config: type
    preset: dict[str, Any]

    def default_config(self):
        return replace(self.config(), **self.preset)


def problem(e: Entry) -> str | None:
    """What keeps a core from registering: an undeclared part of the contract, or a recurrence the diagnostics
    cannot read (``spectrum_kind``, and for the decay kind its ``decay``)."""
    kind = e.core.spectrum_kind
    if kind not in SPECTRUM_KINDS:
        return f"declares spectrum_kind {kind!r}; valid: {', '.join(SPECTRUM_KINDS)}"
    return undeclared(e.core, DECLARES + (("decay",) if kind == "decay" else ()), RecurrentCore)


ARCHITECTURES = Registry("architecture", check=problem)


def register(name: str, core: type[RecurrentCore], config: type, **preset: Any) -> None:
    """Add ``name``; duplicates are refused so two files cannot silently claim one name, and so is a core that
    does not declare what ``DECLARES`` lists."""
    unknown = set(preset) - set(config.__dataclass_fields__)
    if unknown:
        raise ValueError(f"preset for {name!r} sets unknown fields {sorted(unknown)}")
    ARCHITECTURES.add(name, Entry(name, core, config, preset))


names, entry = ARCHITECTURES.names, ARCHITECTURES.get


def build(name: str, input_size: int, config=None) -> RecurrentCore:
    """Instantiate ``name`` for inputs of width ``input_size`` (config: its dataclass, default = preset)."""
    e = entry(name)
    return e.core(input_size, **asdict(config if config is not None else e.default_config()))
