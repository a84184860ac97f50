"""Greedy and beam-search decoding for a ``Decoder`` at evaluation (training uses teacher forcing, ``Decoder.forward``).

    tokens, lengths = greedy(decoder, memory, summary, max_len=20, start=1, end=2)     # (B, T <= 20), (B,)
    tokens, lengths = beam(decoder, memory, summary, max_len=20, start=1, end=2, width=4)

Both stop a sequence at its END token, which is kept (``lengths`` counts it); the positions after it hold the
decoder's ``pad``. Decoding stops as soon as every sequence has ended and never runs past ``max_len`` steps.
"""

from __future__ import annotations

from typing import NamedTuple

import torch

from .decoder import Decoder, Memory


class Decoded(NamedTuple):
    tokens: torch.Tensor   # (B, T), T <= max_len; pad after END
    lengths: torch.Tensor  # (B,): tokens up to and including END, or T where END never came


def check_limits(max_len: int, width: int = 1) -> None:
    if max_len < 1:
        raise ValueError(f"max_len must be >= 1, got {max_len}")
    if width < 1:
        raise ValueError(f"beam width must be >= 1, got {width}")


@torch.no_grad()
def greedy(decoder: Decoder, memory: Memory, summary: torch.Tensor, max_len: int, start: int, end: int) -> Decoded:
    """The most likely next token at every step. summary (B, F): what ``decoder.initial`` reads."""
    check_limits(max_len)
    batch = summary.shape[0]
    carry = decoder.initial(summary)
    token = torch.full((batch,), start, dtype=torch.long, device=summary.device)
    done = torch.zeros(batch, dtype=torch.bool, device=summary.device)
    lengths, out = torch.zeros_like(token), []
    for _ in range(max_len):
        logits, carry, _ = decoder.step(token, carry, memory)
        token = logits.argmax(dim=-1).masked_fill(done, decoder.pad)
        lengths += (~done).long()
        done = done | (token == end)
        out.append(token)
        if done.all():
            break
    return Decoded(torch.stack(out, dim=1), lengths)


@torch.no_grad()
def beam(decoder: Decoder, memory: Memory, summary: torch.Tensor, max_len: int, start: int, end: int,
         width: int, length_penalty: float = 0.0) -> Decoded:
    """Beam search: the ``width`` best prefixes by summed log-probability. An ended prefix stays in the beam with
    its score frozen (its only continuation is pad, at log-probability 0). The winner maximises
    score / length ** length_penalty (0: the plain sum, which favours short outputs; a simpler form of the
    length penalty of Wu et al. 2016, sec. 7)."""
    check_limits(max_len, width)
    batch, k = summary.shape[0], width
    rows = torch.arange(batch, device=summary.device).repeat_interleave(k)
    memory, carry = memory.index(rows), decoder.initial(summary[rows])
    # the k copies of START are one prefix: only the first may expand, or the beam would hold k duplicates
    scores = summary.new_full((batch, k), float("-inf"))
    scores[:, 0] = 0
    token = torch.full((batch * k,), start, dtype=torch.long, device=summary.device)
    done = torch.zeros(batch * k, dtype=torch.bool, device=summary.device)
    lengths, history = torch.zeros_like(token), token.new_zeros(batch * k, 0)
    for _ in range(max_len):
        logits, carry, _ = decoder.step(token, carry, memory)
        logp = _freeze_ended(logits.log_softmax(dim=-1), done, decoder.pad)
        vocab = logp.shape[-1]
        scores, flat = (scores.reshape(-1, 1) + logp).view(batch, k * vocab).topk(k, dim=-1)
        parent = (flat // vocab + torch.arange(batch, device=flat.device)[:, None] * k).view(-1)
        token = (flat % vocab).view(-1)
        carry, done, lengths, history = carry.index(parent), done[parent], lengths[parent], history[parent]
        lengths += (~done).long()
        done = done | (token == end)
        history = torch.cat([history, token[:, None]], dim=1)
        if done.all():
            break
    ranked = scores / lengths.view(batch, k).clamp(min=1).to(scores.dtype) ** length_penalty
    best = ranked.argmax(dim=-1) + torch.arange(batch, device=ranked.device) * k
    return Decoded(history[best], lengths[best])


def _freeze_ended(logp: torch.Tensor, done: torch.Tensor, pad: int) -> torch.Tensor:
    """Ended rows may only continue with pad, at no cost, so their score stays what it was at END."""
    frozen = torch.full_like(logp[0], float("-inf"))
    frozen[pad] = 0
    return torch.where(done[:, None], frozen, logp)
