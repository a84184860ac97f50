"""The recurrent decoder every encoder-decoder model shares (``Seq2Seq``, ``Captioner``), over any registered core.

    decoder = Decoder(vocab_size=V, memory_size=M, summary_size=F, core="gru")
    memory = decoder.memory(values, mask)                        # values (B, S, M), mask (B, S): True = real
    logits, weights, trace = decoder(tgt_in, memory, decoder.initial(summary))   # (B, T, V), (B, T, S) or None

Luong, Pham & Manning 2015 (global attention, sec. 3.1-3.3), at target step t:
    h_t        = core([E y_{t-1} ; h~_{t-1} with input feeding], state)      # the core's top-layer output
    c_t, a_t   = attention(h_t, memory)                                      # see attention.py
    h~_t       = tanh(W_c [c_t ; h_t])                                       # eq. 5
    logits_t   = W_o h~_t                                                    # eq. 6
The first state comes from the encoder's summary through a learned bridge, s_0 = tanh(W_b summary) (Bahdanau et
al. 2015, app. A.2.2), laid out as the decoder core's state. The bridge is why any encoder family (or an image
encoder) feeds any decoder family whatever their widths, depths, directions, or the LSTM's (h, c) pair. The
decoder itself reads left to right: a bidirectional decoder core is refused.

With ``refeed_context`` the summary z (every encoder layer's final state) also reaches every step, as the context
vector c of Cho et al. 2014 (sec. 2.2: h<t> = f(h<t-1>, y_{t-1}, c), P(y_t | y_{t-1}, h<t>, c);
bentrevett/pytorch-seq2seq notebook 2): the strong baseline without attention, whose decoder state need not carry
the source all the way by itself.
    h_t        = core([E y_{t-1} ; h~_{t-1} with input feeding ; z], state)
    h~_t       = tanh(W_c [c_t ; h_t ; E y_{t-1} ; z])                       # c_t: width 0 without attention

Teacher forcing has the cores' two paths. Without input feeding the core runs fused over the whole target and
attention is one batched product (fast); ``reference=True`` runs the core's step-by-step path instead, whose
trace holds every decoder state as a graph node. Input feeding makes step t read h~_{t-1}, so it always runs
step by step through ``step``, the same function greedy and beam decoding call.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import nn

from .attention import build_attention
from .base import RecurrentCore, State, Trace
from .registry import build, entry


def flatten_state(state: State) -> torch.Tensor:
    """A core's state, (L, B, H) or the LSTM's (h, c), as one (B, parts * L * H) summary vector per sequence."""
    parts = state if isinstance(state, tuple) else (state,)
    return torch.cat([p.transpose(0, 1).reshape(p.shape[1], -1) for p in parts], dim=-1)


def unflatten_state(flat: torch.Tensor, core: RecurrentCore) -> State:
    """Inverse of ``flatten_state`` for ``core``'s layout: (B, parts * L * H) -> (L, B, H) or (h, c)."""
    entries = core.layers * core.directions
    parts = flat.view(flat.shape[0], -1, entries, core.hidden_size).permute(1, 2, 0, 3).contiguous()
    return tuple(parts.unbind(0)) if core.has_cell_state else parts[0]


def state_width(core: RecurrentCore) -> int:
    """Width of ``flatten_state``: every layer's (and direction's) h, and c for the LSTM."""
    return (2 if core.has_cell_state else 1) * core.layers * core.directions * core.hidden_size


def select_state(state: State, rows: torch.Tensor) -> State:
    """The batch rows ``rows`` of a state (batch is dim 1 in torch's layout)."""
    return tuple(s[:, rows] for s in state) if isinstance(state, tuple) else state[:, rows]


@dataclass
class Memory:
    """What the decoder attends over: values (B, S, M), mask (B, S) True on real positions, and keys: the
    attention's query-independent half of the score (``Attention.prepare``), computed once per sequence."""

    values: torch.Tensor
    mask: torch.Tensor
    keys: torch.Tensor | None = None

    def index(self, rows: torch.Tensor) -> Memory:
        return Memory(self.values[rows], self.mask[rows], None if self.keys is None else self.keys[rows])


class Carry(NamedTuple):
    """What one decoding step hands the next: the core's state, h~_{t-1} (B, H), zeros before step 1, and the
    re-fed context z (B, F), or None."""

    state: State
    feed: torch.Tensor
    context: torch.Tensor | None = None

    def index(self, rows: torch.Tensor) -> Carry:
        context = None if self.context is None else self.context[rows]
        return Carry(select_state(self.state, rows), self.feed[rows], context)


@dataclass
class Output:
    """A teacher-forced pass: logits (B, T, V), attention weights (B, T, S) or None, the memory attended over,
    and with ``reference=True`` the traces whose states are graph nodes (``encoder_trace.h[layer][s]``: (B, H),
    so ``autograd.grad(loss, encoder_trace.h[-1])`` is dL/dh^enc_s at every source position s)."""

    logits: torch.Tensor
    weights: torch.Tensor | None
    memory: Memory
    encoder_trace: Trace | None = None
    decoder_trace: Trace | None = None


class Decoder(nn.Module):
    """Attentional recurrent decoder; ``core`` is any name of the core registry, ``attention`` any attention kind.

    memory_size: width M of the vectors attended over; summary_size: width F of the vector the first state is
    made from (and, with ``refeed_context``, that every step reads); attention_size: width of the additive
    score's tanh layer (default: the core's hidden size).
    """

    def __init__(self, vocab_size: int, memory_size: int, summary_size: int, core: str = "lstm",
                 core_config=None, embed_size: int = 64, attention: str = "additive",
                 attention_size: int | None = None, input_feed: bool = False, pad: int = 0,
                 refeed_context: bool = False):
        super().__init__()
        config = core_config if core_config is not None else entry(core).default_config()
        if config.bidirectional:
            raise ValueError("a decoder generates left to right and cannot read ahead: bidirectional must be "
                             "False")
        hidden = config.hidden_size
        self.input_feed, self.refeed_context, self.pad = input_feed, refeed_context, pad
        context = summary_size if refeed_context else 0
        self.attention = build_attention(attention, hidden, memory_size, attention_size or hidden)
        self.embed = nn.Embedding(vocab_size, embed_size, padding_idx=pad)
        self.core = build(core, embed_size + (hidden if input_feed else 0) + context, config)
        self.bridge = nn.Linear(summary_size, state_width(self.core))
        readout_extra = embed_size + context if refeed_context else 0
        self.combine = nn.Linear(self.attention.context_size + hidden + readout_extra, hidden)
        self.out = nn.Linear(hidden, vocab_size)

    def forward(self, tgt_in: torch.Tensor, memory: Memory, carry: Carry,
                reference: bool = False) -> tuple[torch.Tensor, torch.Tensor | None, Trace | None]:
        """Teacher forcing. tgt_in (B, T): START, y_1 .. y_{T-1} -> logits (B, T, V), weights (B, T, S) or None,
        and the core's trace (``reference`` without input feeding; else None)."""
        if self.input_feed:
            return (*self._steps(tgt_in, memory, carry), None)
        x = self.embed(tgt_in)
        extra = () if carry.context is None else (x, carry.context[:, None].expand(-1, x.shape[1], -1))
        x_in = torch.cat(extra, dim=-1) if extra else x
        if reference:
            h, _, trace = self.core.forward_reference(x_in, carry.state)
        else:
            (h, _), trace = self.core(x_in, carry.state), None
        logits, _, weights = self.readout(h, memory, extra)
        return logits, weights, trace

    def memory(self, values: torch.Tensor, mask: torch.Tensor) -> Memory:
        return Memory(values, mask, self.attention.prepare(values))

    def initial(self, summary: torch.Tensor) -> Carry:
        """summary (B, F) -> the first step's carry: s_0 = tanh(W_b summary) in the core's layout, h~_0 = 0, and
        z = summary with ``refeed_context``."""
        state = unflatten_state(torch.tanh(self.bridge(summary)), self.core)
        feed = summary.new_zeros(summary.shape[0], self.core.hidden_size)
        return Carry(state, feed, summary if self.refeed_context else None)

    def readout(self, h: torch.Tensor, memory: Memory, extra: tuple[torch.Tensor, ...] = ()):
        """h (B, [T,] H), extra: [E y_{t-1}, z] when the context is re-fed -> logits (B, [T,] V),
        h~ (B, [T,] H), weights (B, [T,] S) or None."""
        context, weights = self.attention(h, memory.values, memory.mask, memory.keys)
        attended = torch.tanh(self.combine(torch.cat([context, h, *extra], dim=-1)))
        return self.out(attended), attended, weights

    def step(self, token: torch.Tensor, carry: Carry, memory: Memory):
        """One step: token (B,) -> logits (B, V), the next Carry, weights (B, S) or None."""
        x = self.embed(token)
        extra = () if carry.context is None else (x, carry.context)
        if self.input_feed:
            x = torch.cat([x, carry.feed], dim=-1)
        if extra:
            x = torch.cat([x, carry.context], dim=-1)
        h, state = self.core(x[:, None], carry.state)
        logits, attended, weights = self.readout(h[:, 0], memory, extra)
        return logits, Carry(state, attended, carry.context), weights

    def _steps(self, tgt_in: torch.Tensor, memory: Memory, carry: Carry):
        logits, weights = [], []
        for t in range(tgt_in.shape[1]):
            step_logits, carry, step_weights = self.step(tgt_in[:, t], carry, memory)
            logits.append(step_logits)
            weights.append(step_weights)
        return torch.stack(logits, dim=1), None if weights[0] is None else torch.stack(weights, dim=1)
