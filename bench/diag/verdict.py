"""One word per run — ``vanishing``, ``exploding`` or ``healthy`` — and the rule behind it.

The rule reads two things. First the gradient-flow ratio r = log10(||dL/dh_first|| / ||dL/dh_last||) of the
first layer (the one that sees the input, so the one through which the earliest input must be learned) at the
**last probe of training**, i.e. of the model the run produced. Second the run's pre-clip gradient norms.

- ``exploding`` if the run hit a non-finite loss or gradient; or r > +2, the earliest step's gradient is over
  100x the latest's (the lecture notes' sigma_max(W_hh) > 1 case); or the run had gradient spikes, a pre-clip
  norm over 1000x the run's median (Pascanu, Mikolov & Bengio 2013: the blow-ups that only clipping contains;
  an identity-initialised ReLU RNN can keep a flat profile and still do this).
- ``vanishing`` if r < -2: the earliest step receives under 1 % of the latest step's gradient, so with any
  noise from recent steps nothing is learned about inputs that far back.
- ``healthy`` otherwise.

Two orders of magnitude either way, because one is not enough to call a trained model broken: in the copy
task the last step's target *is* a symbol from the first steps, and a GRU that has learnt it sends that
step's loss back to the start, r of about +1.2, with small and steady gradient norms. For a linear RNN with
W_hh = a I over T steps, r = (T - 1) log10 a exactly, so the verdict flips from vanishing to exploding as a
crosses 1 (tested with T = 200). The ratio at the first probe (initialisation) is recorded beside it.
"""

from __future__ import annotations

import math

VANISHING_BELOW = -2.0
EXPLODING_ABOVE = 2.0
SPIKE_FACTOR = 1000.0


def verdict(ratio: float | None, nonfinite: bool = False, spike: float | None = None) -> str | None:
    """``spike``: the run's max pre-clip gradient norm over its median (None when unknown)."""
    if nonfinite or (spike is not None and spike > SPIKE_FACTOR):
        return "exploding"
    if ratio is None or not math.isfinite(ratio):
        return None
    if ratio > EXPLODING_ABOVE:
        return "exploding"
    if ratio < VANISHING_BELOW:
        return "vanishing"
    return "healthy"
