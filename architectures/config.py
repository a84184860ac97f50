"""Typed options shared by every recurrent core. Each field's ``help`` becomes a line of ``--help``."""

from __future__ import annotations

from dataclasses import dataclass, field


def opt(default, help: str):  # noqa: A002 - mirrors argparse's name
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class CoreConfig:
    hidden_size: int = opt(128, "hidden units per layer (H)")
    layers: int = opt(1, "stacked recurrent layers")
    dropout: float = opt(0.0, "dropout between stacked layers (ignored with layers=1)")
    recurrent_init: str = opt("default", "W_hh init: default (torch uniform), identity, orthogonal")
    init_scale: float = opt(1.0, "scale of an identity W_hh / gain of an orthogonal one")
