"""Two separate readings of a run's gradients, each saying what it measured.

**Flow verdict** (one word: ``vanishing``, ``healthy`` or ``exploding``) reads only the gradient-flow ratio
r = log10(||dL/dh_first|| / ||dL/dh_last||) of the first layer (the one that sees the input, so the one through
which the earliest input must be learned) at the **last probe of training**, i.e. of the model the run produced:

- ``exploding`` if r > +2: the earliest step's gradient is over 100x the latest's (the lecture notes'
  sigma_max(W_hh) > 1 case);
- ``vanishing`` if r < -2: the earliest step receives under 1 % of the latest step's gradient, so with any
  noise from recent steps nothing is learned about inputs that far back;
- ``healthy`` otherwise.

**Spikes** (a count) are the optimizer steps whose pre-clip total gradient norm is over 1000x the run's median
(Pascanu, Mikolov & Bengio 2013: the blow-ups that only clipping contains). An identity-initialised ReLU RNN
can keep a flat flow profile, solve its task and still spike: the two readings are reported side by side,
never folded into one word. A run that hit a non-finite loss or gradient is ``diverged``, its own status.

Two orders of magnitude either way, because one is not enough to call a trained model broken: in the copy
task the last step's target *is* a symbol from the first steps, and a GRU that has learnt it sends that
step's loss back to the start, r of about +1.2, with small and steady gradient norms. For a linear RNN with
W_hh = a I over T steps, r = (T - 1) log10 a exactly, so the verdict flips from vanishing to exploding as a
crosses 1 (tested with T = 200). The ratio at the first probe (initialisation) is recorded beside it.

Records written before the split folded spikes and non-finite gradients into ``exploding``; the leaderboard
re-reads every record through these two functions (``flow_ratio_final`` and the pre-clip norms), so old and
new records are judged by one rule. This module imports nothing heavy: the leaderboard uses it without torch.
"""

from __future__ import annotations

import math
import statistics

VANISHING_BELOW = -2.0
EXPLODING_ABOVE = 2.0
SPIKE_FACTOR = 1000.0
NO_VERDICT = "no verdict"  # a profile was measured, but its final ratio is not finite


def verdict(ratio: float | None) -> str | None:
    """The flow verdict of a final flow ratio; None when there is no finite ratio."""
    if ratio is None or not math.isfinite(ratio):
        return None
    if ratio > EXPLODING_ABOVE:
        return "exploding"
    if ratio < VANISHING_BELOW:
        return "vanishing"
    return "healthy"


def described(ratio: float | None, status: str = "ok") -> str:
    """What a table or picture says of one run's flow: its verdict, or ``no verdict`` where the final ratio is
    not finite (a last step whose gradient is exactly 0 or non-finite; a diverged run), after the run's status
    where it did not finish ``ok``. A run's status is never shown in place of a verdict: "ok" is not one."""
    judged = verdict(ratio) or NO_VERDICT
    return judged if status == "ok" else f"{status}, {judged}"


def spikes(grad_norms: list[float]) -> int:
    """Steps whose pre-clip gradient norm is over ``SPIKE_FACTOR`` x the median of the finite norms."""
    finite = [g for g in grad_norms if math.isfinite(g)]
    if not finite:
        return 0
    median = statistics.median(finite)
    return sum(g > SPIKE_FACTOR * median for g in finite) if median > 0 else 0
