"""One word per run — ``vanishing``, ``exploding`` or ``healthy`` — and the rule behind it.

The rule reads the gradient-flow ratio r = log10(||dL/dh_first|| / ||dL/dh_last||) of the first layer (the one
that sees the input, so the one through which the earliest input must be learned) at the **last probe of
training**, i.e. of the model the run produced:

- ``exploding`` if the run hit a non-finite loss or gradient, or r > +1: the earliest step's gradient is over
  10x the latest's, so updates are dominated by the far past and only clipping keeps steps bounded.
- ``vanishing`` if r < -2: the earliest step receives under 1 % of the latest step's gradient, so with any
  noise from recent steps nothing is learned about inputs that far back.
- ``healthy`` otherwise.

The thresholds are asymmetric on purpose: some decay is normal (recent inputs matter more for most losses),
while growth across the sequence is a symptom already at one order of magnitude. For a linear RNN with
W_hh = a I over T steps, r = (T - 1) log10 a exactly, so the verdict flips from vanishing to exploding as a
crosses 1 (tested). The ratio at the first probe (initialisation) is recorded beside it.
"""

from __future__ import annotations

import math

VANISHING_BELOW = -2.0
EXPLODING_ABOVE = 1.0
VERDICTS = ("vanishing", "healthy", "exploding")


def verdict(ratio: float | None, nonfinite: bool = False) -> str | None:
    if nonfinite:
        return "exploding"
    if ratio is None or not math.isfinite(ratio):
        return None
    if ratio > EXPLODING_ABOVE:
        return "exploding"
    if ratio < VANISHING_BELOW:
        return "vanishing"
    return "healthy"
