"""Per-timestep gradient flow: ||dL/dh_t|| for every step t and layer, through the reference path.

A bidirectional core's trace has an entry per layer and direction, each in its processing order (see
architectures/base.py): entry 0 is still layer 0 forward, and a reverse entry's profile runs from the last
position back to the first, so "first" and "last" mean the first and last step that direction took.

The fused kernels hide h_t inside one op, so the profile runs ``core.forward_reference``, which shares the
fused core's parameters and keeps every h_t as its own graph node, and takes ``torch.autograd.grad`` of the
probe loss with respect to all of them at once (nothing accumulates into ``.grad``).

Composed models (bench/run/models.py) have several cores, each with its trace: ``profiles`` differentiates one
loss with respect to every state of all of them at once (``bench/run/models.py`` says which loss).

Which loss (sequence tasks): the loss of the **last output step only**. For a many-to-one task that is the task loss itself
(it reads only h_T). For a many-to-many task the full loss also reads every h_t directly, and those local
terms would mask how much of the late-step error reaches early steps through the recurrence: the last step's
loss isolates exactly the path the lecture notes analyse (dh_T/dh_t = prod of Jacobians), and in the copy
task it is also a step whose target must be remembered from the start. A many-to-one task with the
``flatten`` readout (tasks/base.py) reads every h_t directly, so its profile is the gradient reaching each
state by any path, not through the recurrence alone: flatter by construction.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch


@dataclass
class FlowProfile:
    norms: list[list[float]]  # [k][t] = ||dL/dh_t|| of trace entry k (a layer, or one direction of it)
    names: list[str] = field(default_factory=list)  # each entry's key (``Trace.name``): l0, l0r, l1, ...

    def ratio(self, layer: int = 0) -> float:
        """log10(||g_first|| / ||g_last||): 0 is flat, -2 means the earliest step gets 1 % of the latest's."""
        return log_ratio(self.norms[layer])

    def fall10(self, layer: int = 0) -> float | None:
        return steps_to_fall_10x(self.norms[layer])


def log_ratio(norms: list[float]) -> float:
    first, last = norms[0], norms[-1]
    if not (math.isfinite(first) and math.isfinite(last)) or last <= 0:
        return float("nan")
    return math.log10(max(first, 1e-45) / last)


def steps_to_fall_10x(norms: list[float]) -> float | None:
    """Steps back from the last one over which the norm falls 10x, from a least-squares fit of log10 norms.

    None when the fitted norm does not fall going back in time (flat or growing).
    """
    points = [(len(norms) - 1 - t, math.log10(n)) for t, n in enumerate(norms) if n > 0 and math.isfinite(n)]
    if len(points) < 2:
        return None
    mean_k = sum(k for k, _ in points) / len(points)
    mean_v = sum(v for _, v in points) / len(points)
    var = sum((k - mean_k) ** 2 for k, _ in points)
    slope = sum((k - mean_k) * (v - mean_v) for k, v in points) / var
    return -1.0 / slope if slope < -1e-9 else None


def last_step(task, y: torch.Tensor, target: torch.Tensor, directions: int = 1):
    """The recurrent outputs and targets of the profile's loss (see the module docstring)."""
    if task.shape == "many-to-one":
        return task.readout(y, directions), target
    return y[:, -1:], target[:, -1:]


def profile(core, head, task, x: torch.Tensor, target: torch.Tensor):
    """Returns (FlowProfile, trace) for the probe batch; the trace is reused by the other diagnostics."""
    y, _, trace = core.forward_reference(x)
    out, tgt = last_step(task, y, target, core.directions)
    loss = task.loss(head(out), tgt)
    flat = [h for entry in trace.h for h in entry]
    grads = torch.autograd.grad(loss, flat, allow_unused=True)
    return FlowProfile(norms_of(trace, grads), names(trace)), trace


def names(trace) -> list[str]:
    return [trace.name(k) for k in range(len(trace.h))]


def norms_of(trace, grads) -> list[list[float]]:
    """Per trace entry and step, the norm of each state's gradient (None, i.e. unreached, counts as 0)."""
    T = len(trace.h[0])
    return [[0.0 if g is None else float(g.norm()) for g in grads[k * T:(k + 1) * T]]
            for k in range(len(trace.h))]


def profiles(loss: torch.Tensor, traces: list, retain: bool = False) -> list[FlowProfile]:
    """One FlowProfile per trace: ||dL/dh_t|| of ``loss`` at every state of every trace, from one backward
    (``retain`` keeps the graph for another loss over the same pass)."""
    flat = [h for trace in traces for layer in trace.h for h in layer]
    grads = torch.autograd.grad(loss, flat, allow_unused=True, retain_graph=retain) if flat else ()
    out, at = [], 0
    for trace in traces:
        n = sum(len(layer) for layer in trace.h)
        out.append(FlowProfile(norms_of(trace, grads[at:at + n]), names(trace)))
        at += n
    return out
