"""The recurrent-core contract shared by every architecture family (the registry is ``registry.py``).

A core wraps one fused torch kernel (``nn.RNN`` / ``nn.LSTM`` / ``nn.GRU``, cuDNN on GPU) and adds a
step-by-step *reference* path that reads the very same parameters. The fused path trains fast; the reference
path exposes every layer's hidden state h_t as its own autograd node, which is what per-timestep gradient
diagnostics and hand-written variants need.

    y, state = core(x, state)                       # x: (B, T, D) -> y: (B, T, H * directions)
    y, state, trace = core.forward_reference(x)     # trace.h[k][t]: (B, H), a graph node

State follows torch's layout: a tensor (L * directions, B, H), or for the LSTM a tuple (h, c) of such tensors.

A bidirectional core (``bidirectional=True``, Schuster & Paliwal 1997) runs every layer twice, forwards and on
the time-reversed input with its own weights (torch's ``*_reverse`` tensors); the next layer and the output
read both, concatenated (forward first). The trace has one entry per layer and direction, k = layer *
directions + direction, each in its own processing order: for a reverse direction ``inputs[k]`` is the layer's
input flipped in time and ``h[k][t]`` the state after its t-th step, i.e. at position T - 1 - t. So every
entry is an ordinary recurrence that diagnostics replay the same way, and entry 0 is always layer 0 forward.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from .config import RECURRENT_INITS

State = torch.Tensor | tuple[torch.Tensor, torch.Tensor]



@dataclass
class Trace:
    """Per-step states of the reference path, one entry k per layer and direction (see the module docstring):
    ``h[k][t]`` is (B, H); ``c`` likewise for the LSTM cell; ``inputs[k]`` is what the entry read (B, T, D_l),
    in its processing order, and ``initial[k]`` its state before step 0."""

    h: list[list[torch.Tensor]] = field(default_factory=list)
    c: list[list[torch.Tensor]] = field(default_factory=list)
    inputs: list[torch.Tensor] = field(default_factory=list)
    initial: list[State] = field(default_factory=list)
    directions: int = 1

    def state_before(self, k: int, t: int) -> State:
        """The state entry k read at step t: its initial state, or the state after step t - 1."""
        if t == 0:
            return self.initial[k]
        return (self.h[k][t - 1], self.c[k][t - 1]) if self.c else self.h[k][t - 1]

    def after(self, k: int, steps: torch.Tensor) -> State:
        """Entry k's state after ``steps[b]`` (>= 1) steps of sequence b: (B, H), or the LSTM's (h, c)."""
        rows, t = torch.arange(len(steps), device=steps.device), steps - 1
        picked = [torch.stack(seq[k], dim=1)[rows, t] for seq in ((self.h, self.c) if self.c else (self.h,))]
        return tuple(picked) if self.c else picked[0]

    def where(self, k: int) -> tuple[int, int]:
        """(layer, direction) of entry k; direction 1 is the reverse one."""
        return divmod(k, self.directions)

    def name(self, k: int) -> str:
        return entry_name(*self.where(k))


def entry_name(layer: int, direction: int) -> str:
    """``l{layer}``, with an ``r`` for a reverse direction: how diagnostics key a trace entry and its W_hh."""
    return f"l{layer}{'r' if direction else ''}"


def reversal(lengths: torch.Tensor, steps: int) -> torch.Tensor:
    """(B, steps) positions that reverse each row's first ``lengths[b]`` steps and keep its padding in place,
    as a packed sequence's reverse direction reads it; applying it twice is the identity."""
    t = torch.arange(steps, device=lengths.device)
    n = lengths[:, None]
    return torch.where(t < n, n - 1 - t, t)


class RecurrentCore(nn.Module):
    """Base class: a stack of ``layers`` recurrent layers of width ``hidden_size``.

    Subclasses set ``fused_cls`` (the torch module), ``gate_names`` (how W_hh splits into blocks, torch's
    order) and implement ``cell`` (one step of one layer); ``reset_parameters`` applies their init options.
    """

    fused_cls: type[nn.RNNBase]
    gate_names: tuple[str, ...] = ("",)
    has_cell_state = False

    def __init__(self, input_size: int, hidden_size: int = 128, layers: int = 1, dropout: float = 0.0,
                 recurrent_init: str = "default", init_scale: float = 1.0, bidirectional: bool = False,
                 **fused_kwargs):
        super().__init__()
        if layers < 1 or hidden_size < 1 or input_size < 1:
            raise ValueError("input_size, hidden_size and layers must be positive")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        if recurrent_init not in RECURRENT_INITS:
            raise ValueError(f"unknown recurrent_init {recurrent_init!r}; valid: {', '.join(RECURRENT_INITS)}")
        self.input_size, self.hidden_size, self.layers, self.dropout = input_size, hidden_size, layers, dropout
        self.recurrent_init, self.init_scale = recurrent_init, init_scale
        self.directions = 2 if bidirectional else 1
        self.rnn = self.fused_cls(
            input_size, hidden_size, num_layers=layers, dropout=dropout if layers > 1 else 0.0,
            batch_first=True, bidirectional=bidirectional, **fused_kwargs,
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self.rnn.reset_parameters()
        self.init_recurrent(self.recurrent_init, self.init_scale)

    @property
    def output_size(self) -> int:
        return self.directions * self.hidden_size

    def forward(self, x: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:
        """Fused path. x: (B, T, D) -> y: (B, T, H * directions), final state."""
        return self.rnn(x, state)

    # ---- reference path -------------------------------------------------------------------------------
    def layer_params(self, layer: int, direction: int = 0) -> tuple[torch.Tensor, ...]:
        """(W_ih, W_hh, b_ih, b_hh) of ``layer`` (``direction`` 1: its reverse half): the fused module's own
        tensors, not copies."""
        r, suffix = self.rnn, f"l{layer}{'_reverse' if direction else ''}"
        return (getattr(r, f"weight_ih_{suffix}"), getattr(r, f"weight_hh_{suffix}"),
                getattr(r, f"bias_ih_{suffix}"), getattr(r, f"bias_hh_{suffix}"))

    def layers_and_directions(self) -> list[tuple[int, int]]:
        """Every (layer, direction) in torch's order, which is the trace's and the state's."""
        return [(layer, d) for layer in range(self.layers) for d in range(self.directions)]

    def cell(self, layer: int, x_proj: torch.Tensor, state: State, direction: int = 0) -> State:
        """One step of one layer. ``x_proj`` = x_t W_ih^T + b_ih, precomputed for all t at once."""
        raise NotImplementedError

    def gates(self, layer: int, x_proj: torch.Tensor, state: State,
              direction: int = 0) -> dict[str, torch.Tensor]:
        """Gate activations of one step (name -> (B, H)), for unit-health diagnostics; none for Elman cells."""
        return {}

    def initial_state(self, batch: int, like: torch.Tensor) -> State:
        h = like.new_zeros(self.layers * self.directions, batch, self.hidden_size)
        return (h, h.clone()) if self.has_cell_state else h

    def forward_reference(self, x: torch.Tensor, state: State | None = None,
                          lengths: torch.Tensor | None = None) -> tuple[torch.Tensor, State, Trace]:
        """Step-by-step path with the fused path's parameters; every h_t is a separate graph node.

        ``trace.inputs[k]`` keeps each entry's input sequence (B, T, D_l) so diagnostics can replay a step.
        ``lengths`` (B,), for right-padded x, is what packing the input does on the fused path: a reverse
        direction starts at each sequence's last real step, and the final state is each entry's state after
        ``lengths`` steps (outputs at padded positions are computed but mean nothing).

        Between layers it applies dropout like the fused kernel, but with its own random mask: the two paths
        agree exactly only with dropout 0 or in eval mode.
        """
        batch, steps = x.shape[:2]
        state = self.initial_state(batch, x) if state is None else state
        full = (lengths if lengths is not None else torch.full((batch,), steps)).to(x.device)
        rows, order = torch.arange(batch, device=x.device)[:, None], reversal(full, steps)
        trace, inp, finals = Trace(directions=self.directions), x, []
        for layer in range(self.layers):
            outs = []
            for direction in range(self.directions):
                k = len(trace.h)
                seq = inp[rows, order] if direction else inp
                s = tuple(p[k] for p in state) if isinstance(state, tuple) else state[k]
                trace.inputs.append(seq)
                trace.initial.append(s)
                finals.append(self._run(layer, direction, seq, s, trace))
                out = torch.stack(trace.h[k], dim=1)
                outs.append(out[rows, order] if direction else out)  # back to input positions
            inp = torch.cat(outs, dim=-1)
            if layer < self.layers - 1 and self.dropout > 0:
                inp = nn.functional.dropout(inp, self.dropout, self.training)
        if lengths is not None:  # each sequence's state after its own length, not after its padding
            finals = [trace.after(k, full) for k in range(len(trace.h))]
        if isinstance(state, tuple):
            final = tuple(torch.stack([f[i] for f in finals]) for i in range(2))
        else:
            final = torch.stack(finals)
        return inp, final, trace

    def _run(self, layer: int, direction: int, seq: torch.Tensor, s: State, trace: Trace) -> State:
        """One layer in one direction over ``seq`` (B, T, D_l) from state ``s``; appends its steps to
        ``trace`` and returns the state after the last step."""
        w_ih, _, b_ih, _ = self.layer_params(layer, direction)
        x_proj = seq @ w_ih.T + b_ih
        hs, cs = [], []
        for t in range(seq.shape[1]):
            s = self.cell(layer, x_proj[:, t], s, direction)
            hs.append(s[0] if isinstance(s, tuple) else s)
            if isinstance(s, tuple):
                cs.append(s[1])
        trace.h.append(hs)
        if cs:
            trace.c.append(cs)
        return s

    # ---- introspection --------------------------------------------------------------------------------
    def recurrent_weights(self) -> dict[str, torch.Tensor]:
        """Each layer's W_hh, split into gate blocks: keys ``l{layer}`` or ``l{layer}.{gate}``
        (``l{layer}r``... for a reverse direction)."""
        out = {}
        for layer, direction in self.layers_and_directions():
            w_hh = self.layer_params(layer, direction)[1]
            blocks = w_hh.chunk(len(self.gate_names), dim=0)
            name = entry_name(layer, direction)
            for gate, block in zip(self.gate_names, blocks, strict=True):
                out[f"{name}.{gate}" if gate else name] = block
        return out

    def init_recurrent(self, how: str, scale: float = 1.0) -> None:
        """Re-initialise every W_hh block: ``default`` (torch), ``orthogonal`` or ``identity`` (times scale)."""
        if how == "default":
            return
        with torch.no_grad():
            for block in self.recurrent_weights().values():
                if how == "identity":
                    block.copy_(scale * torch.eye(self.hidden_size))
                elif how == "orthogonal":
                    nn.init.orthogonal_(block, gain=scale)
                else:
                    raise ValueError(f"unknown recurrent_init {how!r}; valid: {', '.join(RECURRENT_INITS)}")
