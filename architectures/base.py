"""The recurrent-core contract shared by every architecture family (the registry is ``registry.py``).

A core wraps one fused torch kernel (``nn.RNN`` / ``nn.LSTM`` / ``nn.GRU``, cuDNN on GPU) and adds a
step-by-step *reference* path that reads the very same parameters. The fused path trains fast; the reference
path exposes every layer's hidden state h_t as its own autograd node, which is what per-timestep gradient
diagnostics and hand-written variants need.

    y, state = core(x, state)                       # x: (B, T, D) -> y: (B, T, H)
    y, state, trace = core.forward_reference(x)     # trace.h[layer][t]: (B, H), a graph node

State follows torch's layout: a tensor (L, B, H), or for the LSTM a tuple (h, c) of such tensors.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from .config import RECURRENT_INITS

State = torch.Tensor | tuple[torch.Tensor, torch.Tensor]



@dataclass
class Trace:
    """Per-step states of the reference path: ``h[layer][t]`` is (B, H); ``c`` likewise for the LSTM cell;
    ``inputs[layer]`` is what the layer read (B, T, D_l) and ``initial[layer]`` its state before step 0."""

    h: list[list[torch.Tensor]] = field(default_factory=list)
    c: list[list[torch.Tensor]] = field(default_factory=list)
    inputs: list[torch.Tensor] = field(default_factory=list)
    initial: list[State] = field(default_factory=list)

    def state_before(self, layer: int, t: int) -> State:
        """The state ``layer`` read at step t: its initial state, or the state after step t - 1."""
        if t == 0:
            return self.initial[layer]
        return (self.h[layer][t - 1], self.c[layer][t - 1]) if self.c else self.h[layer][t - 1]


class RecurrentCore(nn.Module):
    """Base class: a stack of ``layers`` recurrent layers of width ``hidden_size``.

    Subclasses set ``fused_cls`` (the torch module), ``gate_names`` (how W_hh splits into blocks, torch's
    order) and implement ``cell`` (one step of one layer); ``reset_parameters`` applies their init options.
    """

    fused_cls: type[nn.RNNBase]
    gate_names: tuple[str, ...] = ("",)
    has_cell_state = False

    def __init__(self, input_size: int, hidden_size: int = 128, layers: int = 1, dropout: float = 0.0,
                 recurrent_init: str = "default", init_scale: float = 1.0, **fused_kwargs):
        super().__init__()
        if layers < 1 or hidden_size < 1 or input_size < 1:
            raise ValueError("input_size, hidden_size and layers must be positive")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        if recurrent_init not in RECURRENT_INITS:
            raise ValueError(f"unknown recurrent_init {recurrent_init!r}; valid: {', '.join(RECURRENT_INITS)}")
        self.input_size, self.hidden_size, self.layers, self.dropout = input_size, hidden_size, layers, dropout
        self.recurrent_init, self.init_scale = recurrent_init, init_scale
        self.rnn = self.fused_cls(
            input_size, hidden_size, num_layers=layers, dropout=dropout if layers > 1 else 0.0,
            batch_first=True, **fused_kwargs,
        )
        self.reset_parameters()

    def reset_parameters(self) -> None:
        self.rnn.reset_parameters()
        self.init_recurrent(self.recurrent_init, self.init_scale)

    @property
    def output_size(self) -> int:
        return self.hidden_size

    def forward(self, x: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State]:
        """Fused path. x: (B, T, D) -> y: (B, T, H), final state."""
        return self.rnn(x, state)

    # ---- reference path -------------------------------------------------------------------------------
    def layer_params(self, layer: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(W_ih, W_hh, b_ih, b_hh) of ``layer``: the fused module's own tensors, not copies."""
        r = self.rnn
        return (getattr(r, f"weight_ih_l{layer}"), getattr(r, f"weight_hh_l{layer}"),
                getattr(r, f"bias_ih_l{layer}"), getattr(r, f"bias_hh_l{layer}"))

    def cell(self, layer: int, x_proj: torch.Tensor, state: State) -> State:
        """One step of one layer. ``x_proj`` = x_t W_ih^T + b_ih, precomputed for all t at once."""
        raise NotImplementedError

    def gates(self, layer: int, x_proj: torch.Tensor, state: State) -> dict[str, torch.Tensor]:
        """Gate activations of one step (name -> (B, H)), for unit-health diagnostics; none for Elman cells."""
        return {}

    def initial_state(self, batch: int, like: torch.Tensor) -> State:
        h = like.new_zeros(self.layers, batch, self.hidden_size)
        return (h, h.clone()) if self.has_cell_state else h

    def forward_reference(self, x: torch.Tensor, state: State | None = None) -> tuple[torch.Tensor, State, Trace]:
        """Step-by-step path with the fused path's parameters; every h_t is a separate graph node.

        ``trace.inputs[layer]`` keeps each layer's input sequence (B, T, D_l) so diagnostics can replay a step.

        Between layers it applies dropout like the fused kernel, but with its own random mask: the two paths
        agree exactly only with dropout 0 or in eval mode.
        """
        state = self.initial_state(x.shape[0], x) if state is None else state
        per_layer = [s.unbind(0) for s in state] if isinstance(state, tuple) else [state.unbind(0)]
        trace, inp, finals = Trace(), x, []
        for layer in range(self.layers):
            w_ih, _, b_ih, _ = self.layer_params(layer)
            x_proj = inp @ w_ih.T + b_ih
            s = tuple(p[layer] for p in per_layer) if isinstance(state, tuple) else per_layer[0][layer]
            trace.inputs.append(inp)
            trace.initial.append(s)
            hs, cs = [], []
            for t in range(x.shape[1]):
                s = self.cell(layer, x_proj[:, t], s)
                hs.append(s[0] if isinstance(s, tuple) else s)
                if isinstance(s, tuple):
                    cs.append(s[1])
            trace.h.append(hs)
            if cs:
                trace.c.append(cs)
            finals.append(s)
            inp = torch.stack(hs, dim=1)
            if layer < self.layers - 1 and self.dropout > 0:
                inp = nn.functional.dropout(inp, self.dropout, self.training)
        if isinstance(state, tuple):
            final = tuple(torch.stack([f[i] for f in finals]) for i in range(2))
        else:
            final = torch.stack(finals)
        return inp, final, trace

    # ---- introspection --------------------------------------------------------------------------------
    def recurrent_weights(self) -> dict[str, torch.Tensor]:
        """Each layer's W_hh, split into gate blocks: keys ``l{layer}`` or ``l{layer}.{gate}``."""
        out = {}
        for layer in range(self.layers):
            w_hh = self.layer_params(layer)[1]
            blocks = w_hh.chunk(len(self.gate_names), dim=0)
            for gate, block in zip(self.gate_names, blocks, strict=True):
                out[f"l{layer}.{gate}" if gate else f"l{layer}"] = block
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
