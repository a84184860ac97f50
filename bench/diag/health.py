"""Unit health on the probe batch: saturated units, dead ReLU units, gate means.

- saturation: fraction of h values with |h| > 0.99 (a tanh unit there passes almost no gradient).
- dead units: fraction of hidden units that are exactly 0 for every sequence and step (a dead ReLU: IRNN).
- gates: mean activation of each gate the core reports (LSTM input/forget/output, GRU reset/update).
"""

from __future__ import annotations

import torch


def unit_health(core, trace) -> dict:
    out: dict = {"saturation": {}, "dead_units": {}, "gates": {}}
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
    return out
