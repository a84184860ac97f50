"""Typed options shared by every recurrent core. Each field's ``help`` becomes a line of ``--help``; ranges and
choices are declared on the field and checked before any work (see ``options``)."""

from __future__ import annotations

from dataclasses import dataclass

from options import opt

RECURRENT_INITS = ("default", "identity", "orthogonal")


@dataclass(frozen=True)
class CoreConfig:
    hidden_size: int = opt(128, "hidden units per layer (H)", ge=1)
    layers: int = opt(1, "stacked recurrent layers", ge=1)
    dropout: float = opt(0.0, "dropout between stacked layers (ignored with layers=1)", ge=0, lt=1)
    recurrent_init: str = opt("default", "W_hh init (default: torch's uniform)",
                              choices=RECURRENT_INITS)
    init_scale: float = opt(1.0, "scale of an identity W_hh / gain of an orthogonal one", ge=0)
    # Added after records existed: shown only when true, so older run ids stay as they were.
    bidirectional: bool = opt(False, "a second set of weights per layer reads each sequence backwards (in an "
                                     "encoder-decoder: the encoder); outputs 2H wide", omit_default=True)
