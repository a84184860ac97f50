"""Separate readings of a run's gradients and of its recurrence, each saying what it measured.

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

**Spectrum verdict** (per recurrent entry, at every probe; bench/diag/spectra.py): what the recurrence itself
implies, read the way the family is built (its ``spectrum_kind``, architectures/base.py). With T the probe's
length and m the largest per-step magnitude of the entry, the bound b = (T - 1) log10 m is the flow ratio that
m alone would give over the probe, and it is judged by the flow verdict's thresholds:

- ``diagonal`` (IndRNN's u, the LRU's lambda): m = max_i |lambda_i|. ``exploding`` if b > +2 (some mode grows
  over 100x across the probe: for the LRU impossible, |lambda| < 1 by construction; for IndRNN a |u_i| past
  its bound, or no bound), ``vanishing`` if b < -2 (even the slowest mode keeps under 1 % of a state, and of
  its gradient, over T steps), ``healthy`` otherwise. For one LRU layer whose loss reads its last step, b is an
  upper bound of the measured flow ratio (the gradient goes back through diag(lambda)^H alone); IndRNN's ReLU
  can only lower it further.
- ``decay`` (minGRU's 1 - z_t, minLSTM's f'_t): m = the largest per-unit geometric mean of a_t on the probe
  batch, judged the same way. a_t is a sigmoid, below 1, so ``exploding`` cannot happen: ``vanishing`` says
  the gates forget faster than the task's span; a unit whose gate stays near 1 (copy) keeps it ``healthy``.
- ``orthogonal`` (expRNN): every singular value of W_hh is 1 by construction, so W_hh itself neither shrinks
  nor grows a gradient over any T (modReLU passes one unchanged or not at all); what can fail is the construction. ``healthy``
  if the drift ||W^T W - I||_F <= 1e-3 (float32 rounding of the matrix exponential is ~1e-6 at H = 128),
  ``drifted`` otherwise: W_hh is no longer the orthogonal matrix the family promises, and sigma_max says how far.
- ``matrix`` (tanh and ReLU RNNs, LSTM and GRU blocks, coRNN, antisymmetric and Lipschitz RNNs): no verdict
  (None). W_hh's spectrum bounds the gradient only together with the nonlinearity's and the gates'
  derivatives, and several of these families add an identity path around W_hh; the flow verdict is their
  reading, and sigma_max and the radius are reported beside it.

Gate saturation (bench/diag/health.py) has no verdict: it explains one. A forget gate (LSTM f, minLSTM f',
minGRU 1 - z) saturated near 1 carries the gradient, near 0 cuts it.

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
DRIFT_TOLERANCE = 1e-3  # ||W^T W - I||_F beyond which an orthogonal recurrence has drifted
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


def spectral_bound(magnitude: float, steps: int) -> float:
    """(steps - 1) log10(magnitude): the log10 flow ratio that a per-step factor ``magnitude`` gives over
    ``steps`` steps; -inf for a magnitude of 0."""
    return (steps - 1) * math.log10(magnitude) if magnitude > 0 else -math.inf


def spectrum_verdict(entry: dict, steps: int) -> str | None:
    """The verdict of one spectrum entry (``kind`` and its measures, bench/diag/spectra.py) over a probe of
    ``steps`` steps; None for the matrix kind, which the spectrum alone does not decide (module docstring)."""
    kind = entry["kind"]
    if kind == "orthogonal":
        return "healthy" if entry["drift"] <= DRIFT_TOLERANCE else "drifted"
    if kind in ("diagonal", "decay"):
        bound = spectral_bound(entry["radius"], steps)
        return "vanishing" if bound == -math.inf else verdict(bound)
    return None
