"""Parallel scans over time for recurrences that are linear in the state (minGRU, minLSTM, LRU):

    h_t = a_t * h_{t-1} + b_t        # element-wise; a_t, b_t depend on the inputs only

    h = linear_scan(a, b, h0)        # a, b: (B, T, H), real or complex; h0: (B, H) -> h: (B, T, H)
    h = log_scan(log_a, log_b, h0)   # a_t > 0 and b_t > 0, given by their logarithms

Both compute the unrolled form h_t = A_t h_0 + sum_{s<=t} (A_t / A_s) b_s, A_t = a_1 ... a_t, with the initial
state entering linearly: any h_0, of either sign, gives what the step-by-step cell gives (minGRU-pytorch #9 is
the bug of passing h_0 through a log).
"""

from __future__ import annotations

import torch


def linear_scan(a: torch.Tensor, b: torch.Tensor, h0: torch.Tensor) -> torch.Tensor:
    """Hillis & Steele's doubling scan: after round k, position t holds the map h -> a h + b of its last 2^k
    steps, composed as (a2, b2) o (a1, b1) = (a2 a1, a2 b1 + b2). log2(T) rounds, each one whole-tensor op."""
    steps, span = a.shape[1], 1
    while span < steps:
        b = torch.cat([b[:, :span], a[:, span:] * b[:, :-span] + b[:, span:]], dim=1)
        a = torch.cat([a[:, :span], a[:, span:] * a[:, :-span]], dim=1)
        span *= 2
    return a * h0[:, None] + b


def log_scan(log_a: torch.Tensor, log_b: torch.Tensor, h0: torch.Tensor) -> torch.Tensor:
    """The log-space scan of Feng et al. (2024), after Heinsen (2023): log A_t is a cumulative sum and the sum
    over s a ``logcumsumexp``, so no product of many factors below 1 underflows."""
    log_prod = log_a.cumsum(dim=1)
    return log_prod.exp() * h0[:, None] + (log_prod + (log_b - log_prod).logcumsumexp(dim=1)).exp()
