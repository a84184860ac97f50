"""Attention over a memory of S vectors (encoder states, image grid cells): ``none``, ``additive``, ``multiplicative``.

    att = build_attention("additive", query_size=H, value_size=M, size=A)
    context, weights = att(query, values, mask)   # (B, H) or (B, T, H) queries; values (B, S, M); mask (B, S)
    # context: (B, [T,] M), weights: (B, [T,] S), rows sum to 1 and are exactly 0 where mask is False

Scores (h: the query, the decoder's top-layer state h_t; k_s: memory vector s):
    additive       (Bahdanau, Cho & Bengio 2015, sec. 3.1, app. A.1.2):    e_s = v^T tanh(W_q h + W_k k_s)
    multiplicative (Luong, Pham & Manning 2015, eq. 8, "general"):         e_s = h^T W_a k_s
    a = softmax(e) over real positions only; context = sum_s a_s k_s.
Both scores are used in Luong's place (after the decoder step, query h_t, see ``decoder.py``), as OpenNMT's
"mlp" and "general" global attention do; Bahdanau's query s_{i-1} would forbid the fused teacher-forced pass.

``prepare`` computes the query-independent half of a score (W_k k_s, W_a k_s) once per sequence, so decoding
step by step does not redo it; ``none`` has no weights and a context of width 0, which the decoder concatenates
like any other, so no code branches on the kind.
"""

from __future__ import annotations

import torch
from torch import nn

from options.registry import Registry

ATTENTION = Registry("attention")


class Attention(nn.Module):
    """Base: masking, softmax and the weighted sum; subclasses give ``prepare`` and ``score``."""

    def __init__(self, query_size: int, value_size: int, size: int):
        super().__init__()
        self.context_size = value_size

    def prepare(self, values: torch.Tensor) -> torch.Tensor | None:
        """values (B, S, M) -> keys (B, S, K) that ``score`` reads; once per sequence."""
        return values

    def score(self, query: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        """query (B, T, H), keys (B, S, K) -> scores (B, T, S)."""
        raise NotImplementedError

    def forward(self, query: torch.Tensor, values: torch.Tensor, mask: torch.Tensor,
                keys: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """query (B, H) or (B, T, H); values (B, S, M); mask (B, S), True on real positions -> context, weights."""
        single = query.dim() == 2
        q = query[:, None] if single else query
        keys = self.prepare(values) if keys is None else keys
        # -inf before the softmax makes padded weights exactly 0 (exp(-inf) = 0), not merely small
        scores = self.score(q, keys).masked_fill(~mask[:, None, :], float("-inf"))
        weights = scores.softmax(dim=-1)
        context = weights @ values
        return (context[:, 0], weights[:, 0]) if single else (context, weights)


@ATTENTION.register("none")
class NoAttention(Attention):
    """No attention: a context of width 0 and no weights (the plain encoder-decoder of Sutskever et al. 2014)."""

    def __init__(self, query_size: int, value_size: int, size: int):
        super().__init__(query_size, value_size, size)
        self.context_size = 0

    def prepare(self, values: torch.Tensor) -> None:
        return None

    def forward(self, query, values, mask, keys=None) -> tuple[torch.Tensor, None]:
        return query.new_zeros(*query.shape[:-1], 0), None


@ATTENTION.register("additive")
class AdditiveAttention(Attention):
    """e_s = v^T tanh(W_q h + W_k k_s), Bahdanau et al. 2015; ``size`` is the width of the tanh layer. Scoring T
    queries at once builds a (B, T, S, size) tensor: the price of the batched teacher-forced pass."""

    def __init__(self, query_size: int, value_size: int, size: int):
        super().__init__(query_size, value_size, size)
        self.query = nn.Linear(query_size, size, bias=False)
        self.key = nn.Linear(value_size, size, bias=False)
        self.v = nn.Linear(size, 1, bias=False)

    def prepare(self, values: torch.Tensor) -> torch.Tensor:
        return self.key(values)

    def score(self, query: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        return self.v(torch.tanh(self.query(query)[:, :, None] + keys[:, None])).squeeze(-1)


@ATTENTION.register("multiplicative")
class MultiplicativeAttention(Attention):
    """e_s = h^T W_a k_s, Luong et al. 2015 "general" (``size`` unused: the score is bilinear)."""

    def __init__(self, query_size: int, value_size: int, size: int):
        super().__init__(query_size, value_size, size)
        self.bilinear = nn.Linear(value_size, query_size, bias=False)

    def prepare(self, values: torch.Tensor) -> torch.Tensor:
        return self.bilinear(values)

    def score(self, query: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        return query @ keys.transpose(1, 2)


def build_attention(kind: str, query_size: int, value_size: int, size: int) -> Attention:
    """The attention ``kind`` for queries of width ``query_size`` over values of width ``value_size``."""
    return ATTENTION.get(kind)(query_size, value_size, size)
