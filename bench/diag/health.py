"""Unit health on the probe batch: saturated units, dead ReLU units, gate means.

- saturation: fraction of h values with |h| > 0.99 (a tanh unit there passes almost no gradient).
- dead units: fraction of hidden units that are exactly 0 for every sequence and step (a dead ReLU: IRNN).
- gates: mean activation of each gate the core reports (LSTM input/forget/output, GRU reset/update, minGRU's
  update z, minLSTM's normalised f' and i').
- gate saturation: fraction of each gate's activations within GATE_EPS = 0.1 of 0 or of 1, the thresholds of
  Karpathy, Johnson & Fei-Fei 2015 ("Visualizing and Understanding Recurrent Networks", left- and right-
  saturated gates). A saturated gate passes almost no gradient to its pre-activation, and a forget gate
  saturated at 1 (or at 0) carries the state and its gradient unchanged (or cuts them).
"""

from __future__ import annotations

import torch

GATE_EPS = 0.1


def unit_health(core, trace) -> dict:
    out: dict = {"saturation": {}, "dead_units": {}, "gates": {}, "gate_saturation": {}}
    with torch.no_grad():
        for k, hs in enumerate(trace.h):  # one entry per layer and direction (keys l0, l0r, l1, ...)
            name, (layer, direction) = trace.name(k), trace.where(k)
            h = torch.stack(hs, dim=1)  # (B, T, H)
            out["saturation"][name] = float((h.abs() > 0.99).float().mean())
            out["dead_units"][name] = float((h == 0).all(dim=0).all(dim=0).float().mean())
            x_proj = core.project(layer, trace.inputs[k], direction)  # (B, T, G)
            # Every step's previous state, stacked (B, T, H): all gates of the layer in one batched call.
            prev = [trace.state_before(k, t) for t in range(len(hs))]
            prev = (tuple(torch.stack([p[i] for p in prev], dim=1) for i in range(2))
                    if isinstance(prev[0], tuple) else torch.stack(prev, dim=1))
            gates = core.gates(layer, x_proj, prev, direction)
            out["gates"].update({f"{name}.{g}": float(v.mean()) for g, v in gates.items()})
            out["gate_saturation"].update({f"{name}.{g}": gate_saturation(v) for g, v in gates.items()})
    return out


def gate_saturation(gate: torch.Tensor, eps: float = GATE_EPS) -> float:
    """Fraction of a gate's activations (values in [0, 1]) within ``eps`` of 0 or of 1."""
    return float(((gate < eps) | (gate > 1 - eps)).float().mean())
