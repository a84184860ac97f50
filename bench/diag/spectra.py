"""Spectra: each family's recurrence read by its declared kind, and the recurrent Jacobian's spectral norm.

A block is a matrix W (real or complex), or the vector u of a diagonal recurrence h_{t-1} -> u * h_{t-1}
(IndRNN; a complex u for LRU-like cells): diag(u) has singular values and eigenvalue magnitudes both |u_i|,
so sigma_max = radius = max_i |u_i|.

``recurrence_spectra`` reads a core by its ``spectrum_kind`` (architectures/base.py), one entry per block:

- ``matrix``: sigma_max and the spectral radius of every W_hh block (per gate block for the LSTM and GRU);
- ``diagonal``: the eigenvalue magnitudes |lambda_i| (IndRNN's |u_i|, the LRU's |lambda_i|): their largest
  (sigma_max = radius), smallest and median;
- ``orthogonal``: as matrix, and the drift ||W^T W - I||_F (0 for an orthogonal W: expRNN);
- ``decay`` (minGRU, minLSTM): no weight multiplies h_{t-1}; each step multiplies it by a gate a_t of x_t,
  so the recurrent Jacobian is diag(a_t). On the probe batch each unit's per-step magnitude is the geometric
  mean of its a_t over sequences and steps, exp(mean log a_t): the factor by which, on average, the unit
  carries its state (and its gradient) one step. The entry reads those magnitudes as the diagonal kind does.

Every entry names its ``kind`` and its ``verdict`` (bench/diag/verdict.py, ``spectrum_verdict``); the
diagonal and decay kinds also carry ``bound``, (T - 1) log10(max magnitude) over the probe's T steps.

The recurrent Jacobian is d s_t / d s_{t-1} of one layer's full state s (h, or (h, c) concatenated for the
LSTM), evaluated on the probe batch through the core's own cell (one batched backward per layer).
Its exact spectral norm (largest singular value) is taken for 4 sequences x 4 evenly spaced steps per probe
and averaged: at H = 64 an LSTM state Jacobian is 128 x 128, and 16 of them keep a probe within a few fused
training steps of cost.
"""

from __future__ import annotations

import math

import torch

from .verdict import spectral_bound, spectrum_verdict


def weight_spectra(core) -> dict[str, dict[str, float]]:
    with torch.no_grad():
        return {name: spectrum(w) for name, w in core.recurrent_weights().items()}


def recurrence_spectra(core, trace) -> dict[str, dict]:
    """One entry per recurrent block (a ``decay`` core: per trace entry), read as its ``spectrum_kind`` says,
    with the verdict of that kind over the probe's length."""
    steps = len(trace.h[0]) if trace.h else 0
    with torch.no_grad():
        out = READERS[core.spectrum_kind](core, trace)
    for entry in out.values():
        if "min_abs" in entry:  # a diagonal or decay entry; a magnitude of 0 has no finite bound
            bound = spectral_bound(entry["radius"], steps)
            entry["bound"] = bound if math.isfinite(bound) else None
        entry["verdict"] = spectrum_verdict(entry, steps)
    return out


def _matrix(core, trace) -> dict[str, dict]:
    return {name: {"kind": "matrix", **spectrum(w)} for name, w in core.recurrent_weights().items()}


def _diagonal(core, trace) -> dict[str, dict]:
    return {name: {"kind": "diagonal", **magnitudes(w)} for name, w in core.recurrent_weights().items()}


def _orthogonal(core, trace) -> dict[str, dict]:
    return {name: {"kind": "orthogonal", **spectrum(w), "drift": drift(w)}
            for name, w in core.recurrent_weights().items()}


def _decay(core, trace) -> dict[str, dict]:
    out = {}
    for k, seq in enumerate(trace.inputs):
        layer, direction = trace.where(k)
        a = core.decay(layer, core.project(layer, seq, direction), direction).double()  # (B, T, H)
        out[trace.name(k)] = {"kind": "decay", **magnitudes(a.log().mean(dim=(0, 1)).exp())}
    return out


READERS = {"matrix": _matrix, "diagonal": _diagonal, "orthogonal": _orthogonal, "decay": _decay}


def magnitudes(v: torch.Tensor) -> dict[str, float]:
    """The magnitudes |v_i| of a diagonal recurrence (real or complex): largest (= sigma_max = radius of
    diag(v)), smallest and median."""
    m = v.detach().abs().double()
    top = float(m.max())
    return {"sigma_max": top, "radius": top, "min_abs": float(m.min()), "median_abs": float(m.median())}


def drift(w: torch.Tensor) -> float:
    """||W^H W - I||_F: how far W is from orthogonal (unitary), in float64 (complex128)."""
    w = w.detach().to(torch.complex128 if w.is_complex() else torch.float64)
    eye = torch.eye(w.shape[-1], dtype=w.dtype, device=w.device)
    return float(torch.linalg.matrix_norm(w.mH @ w - eye))


def spectrum(w: torch.Tensor) -> dict[str, float]:
    """sigma_max and spectral radius of one block: a matrix, or a diagonal recurrence's vector u."""
    # float64, or complex128: .double() would drop a complex block's imaginary part
    w = w.detach().to(torch.complex128 if w.is_complex() else torch.float64)
    if w.dim() == 1:
        top = float(w.abs().max())
        return {"sigma_max": top, "radius": top}
    return {"sigma_max": float(torch.linalg.matrix_norm(w, ord=2)),
            "radius": float(torch.linalg.eigvals(w).abs().max())}


def _flat(state) -> torch.Tensor:
    return torch.cat(state, dim=-1) if isinstance(state, tuple) else state


def _unflat(vec: torch.Tensor, like):
    return tuple(vec.split(like[0].shape[-1], dim=-1)) if isinstance(like, tuple) else vec


def jacobian_norms(core, trace, samples: int = 4, steps: int = 4) -> dict[str, float]:
    """Mean ||d s_t / d s_{t-1}||_2 per layer (and direction: ``l0r``) over ``samples`` sequences x ``steps``
    evenly spaced steps.

    Each Jacobian row is one backward pass; all rows of all (sequence, step) pairs go through the cell as one
    batch of copies (row k of a copy selects output k), so a layer costs one forward and one backward.
    """
    out = {}
    T = len(trace.h[0])
    ts = sorted({round(i * (T - 1) / max(1, steps - 1)) for i in range(min(steps, T))})
    for k in range(len(trace.h)):  # one entry per layer and direction, each in its processing order
        layer, direction = trace.where(k)
        like = trace.state_before(k, 0)
        with torch.no_grad():
            x_proj = core.project(layer, trace.inputs[k][:samples], direction)[:, ts]
            x_proj = x_proj.reshape(-1, x_proj.shape[-1])
            prev = torch.stack([_flat(trace.state_before(k, t))[:samples] for t in ts], dim=1)
            prev = prev.reshape(-1, prev.shape[-1])  # (N, n): N (sequence, step) pairs, state size n
        n_pairs, n = prev.shape
        copies = prev.repeat_interleave(n, dim=0).requires_grad_(True)
        new = _flat(core.cell(layer, x_proj.repeat_interleave(n, dim=0), _unflat(copies, like), direction))
        select = torch.eye(n, dtype=new.dtype, device=new.device).repeat(n_pairs, 1)
        (rows,) = torch.autograd.grad((new * select).sum(), copies)
        out[trace.name(k)] = float(spectral_norms(rows.reshape(n_pairs, n, n)).mean())
    return out


def spectral_norms(jac: torch.Tensor) -> torch.Tensor:
    """Largest singular value of each matrix in ``jac`` (N, n, n), exactly: sqrt of the top eigenvalue of
    J^T J (a symmetric eigensolve costs about half of a batched SVD on CPU)."""
    gram = (jac.transpose(1, 2) @ jac).double()
    return torch.linalg.eigvalsh(gram)[:, -1].clamp_min(0).sqrt()
