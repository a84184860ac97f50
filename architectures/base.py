"""The recurrent-core contract shared by every architecture family (the registry is ``registry.py``).

A family is written once, as its step function ``cell`` (one step of one layer), and the base class runs it as
a layer: stacked, bidirectional, over packed or right-padded sequences (each sequence's final state at its own
length), with dropout between layers. Two paths read the very same parameters:

- the **fast path**, ``core(x, state)``: a fused torch kernel where the family has one (``fused_cls`` =
  ``nn.RNN`` / ``nn.LSTM`` / ``nn.GRU``, cuDNN on GPU); a family without one (``fused_cls = None``, the generic
  path) runs its ``scan`` where it has one (every step of a layer at once: minGRU, minLSTM, LRU, whose
  recurrence is linear in the state; on a CPU only where ``scan_on_cpu`` says it pays there), and its cell
  step by step otherwise (IndRNN, coRNN, ...);
- the **reference path**, ``core.forward_reference(x, state, lengths)``: step by step through ``cell``, every
  layer's hidden state h_t its own autograd node, which is what per-timestep gradient diagnostics need.

    y, state = core(x, state)                       # x: (B, T, D) or a PackedSequence -> y: (B, T, H * directions)
    y, state, trace = core.forward_reference(x)     # trace.h[k][t]: (B, H), a graph node

Parameters are named as torch's kernels name theirs on both paths (``rnn.weight_ih_l0``, ``rnn.weight_hh_l0``,
``rnn.bias_ih_l0``, ``rnn.weight_hh_l0_reverse``, ...): ``layer_params``, checkpoints and the per-layer
gradient norms (``layer_of`` in bench/run/system.py groups ``*_l<k>``) read every family alike. A generic cell
declares its tensors in ``layer_shapes``; W_hh may be a vector u (a diagonal recurrence, h_{t-1} * u), or be
absent where no weight multiplies h_{t-1} (minGRU: 1 - z_t does, a gate of x_t alone; ``gate_names = ()``,
no recurrent blocks). A cell that computes its recurrence from its tensors (the Lipschitz RNN's A and W) does
so once per run through ``once_per_run``, not once per step.

State follows torch's layout: a tensor (L * directions, B, H), or for the LSTM a tuple (h, c) of such tensors.

A bidirectional core (``bidirectional=True``, Schuster & Paliwal 1997) runs every layer twice, forwards and on
the time-reversed input with its own weights (torch's ``*_reverse`` tensors); the next layer and the output
read both, concatenated (forward first). The trace has one entry per layer and direction, k = layer *
directions + direction, each in its own processing order: for a reverse direction ``inputs[k]`` is the layer's
input flipped in time and ``h[k][t]`` the state after its t-th step, i.e. at position T - 1 - t. So every
entry is an ordinary recurrence that diagnostics replay the same way, and entry 0 is always layer 0 forward.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from .config import RECURRENT_INITS

State = torch.Tensor | tuple[torch.Tensor, torch.Tensor]

# What a family's recurrence is, so each is read in its own terms (bench/diag/spectra.py, the verdict rule in
# bench/diag/verdict.py); a core declares one as ``spectrum_kind``:
#   matrix      ``recurrent_weights`` gives W_hh blocks (or a vector): singular values and eigenvalues
#   diagonal    it gives the vector lambda that multiplies h_{t-1} element-wise (IndRNN's u, the LRU's complex
#               lambda): the eigenvalue magnitudes |lambda_i|
#   orthogonal  a matrix kept orthogonal by its parametrisation (expRNN): as matrix, and the drift ||W^T W - I||
#   decay       no weight multiplies h_{t-1}, a gate of x_t does (minGRU's 1 - z_t): ``decay`` gives it per step,
#               and the probe batch gives its magnitudes
SPECTRUM_KINDS = ("matrix", "diagonal", "orthogonal", "decay")


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


def suffix(layer: int, direction: int) -> str:
    """torch's name ending for one layer and direction: ``l1``, or ``l1_reverse``."""
    return f"l{layer}{'_reverse' if direction else ''}"


class CellWeights(nn.Module):
    """The generic path's stand-in for the torch kernel's parameters: the tensors a cell declares, one set per
    layer and direction, named as the kernel would name them (``weight_ih_l0``, ``weight_hh_l1_reverse``)."""

    def __init__(self, shapes: dict[str, tuple[int, ...]], hidden_size: int):
        super().__init__()
        self.hidden_size = hidden_size
        for name, shape in shapes.items():
            self.register_parameter(name, nn.Parameter(torch.empty(shape)))
        self.reset_parameters()  # as torch's kernels do on construction (the core draws again)

    def reset_parameters(self) -> None:
        """torch's RNN init, U(-1/sqrt(H), 1/sqrt(H)) for every tensor in the kernel's order: a generic twin
        of a fused family draws the same numbers from the same seed."""
        bound = 1 / math.sqrt(self.hidden_size)
        for p in self.parameters():
            nn.init.uniform_(p, -bound, bound)


class RecurrentCore(nn.Module):
    """Base class: a stack of ``layers`` recurrent layers of width ``hidden_size``.

    Subclasses implement ``cell`` (one step of one layer) and set ``gate_names`` (how W_hh splits into blocks,
    torch's order) and ``fused_cls``: the torch module of the same equations, or None for the generic path,
    whose tensors ``layer_shapes`` declares. ``reset_parameters`` applies their init options.
    """

    fused_cls: type[nn.RNNBase] | None = None
    gate_names: tuple[str, ...] = ("",)
    has_cell_state = False
    spectrum_kind = "matrix"  # one of SPECTRUM_KINDS
    # whether ``core(x)`` runs the family's ``scan`` on a CPU too (on a GPU it always does). A scan does more
    # arithmetic than the loop (log2 T doubling rounds, or logcumsumexp) to gain parallelism that one CPU
    # thread does not have: where ``make bench-speed`` measures it slower than the cell loop on CPU, the family
    # sets this False and its CPU runs take the loop, which the equivalence tests prove equal to the scan.
    scan_on_cpu = True

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
        if self.fused_cls is None:  # fused_kwargs only repeat, for a kernel, options the cell reads itself
            self.rnn = CellWeights(self._shapes(input_size), hidden_size)
        else:
            self.rnn = self.fused_cls(
                input_size, hidden_size, num_layers=layers, dropout=dropout if layers > 1 else 0.0,
                batch_first=True, bidirectional=bidirectional, **fused_kwargs,
            )
        self.reset_parameters()

    def layer_shapes(self, input_size: int) -> dict[str, tuple[int, ...]]:
        """Generic path: the tensors of one layer and direction reading ``input_size`` features. By default
        torch's four, with one (H, .) block per gate; a diagonal recurrence declares ``weight_hh`` as (H,)."""
        g = len(self.gate_names) * self.hidden_size
        return {"weight_ih": (g, input_size), "weight_hh": (g, self.hidden_size), "bias_ih": (g,), "bias_hh": (g,)}

    def _shapes(self, input_size: int) -> dict[str, tuple[int, ...]]:
        widths = [input_size] + [self.directions * self.hidden_size] * (self.layers - 1)
        return {f"{name}_{suffix(layer, d)}": shape for layer, d in self.layers_and_directions()
                for name, shape in self.layer_shapes(widths[layer]).items()}

    def reset_parameters(self) -> None:
        self.rnn.reset_parameters()
        self.init_recurrent(self.recurrent_init, self.init_scale)

    @property
    def output_size(self) -> int:
        return self.directions * self.hidden_size

    def forward(self, x: torch.Tensor | PackedSequence, state: State | None = None
                ) -> tuple[torch.Tensor | PackedSequence, State]:
        """Fast path. x: (B, T, D) -> y: (B, T, H * directions), final state; a PackedSequence in gives one out,
        and each sequence's final state at its own length, as torch's kernels do."""
        if self.fused_cls is not None:
            return self.rnn(x, state)
        if isinstance(x, PackedSequence):
            return self._packed(x, state)
        return self._generic(x, state)

    def _generic(self, x: torch.Tensor, state: State | None, lengths: torch.Tensor | None = None
                 ) -> tuple[torch.Tensor, State]:
        """The generic fast path: the family's ``scan`` where it has one (and where it pays, ``scan_on_cpu``),
        else its cell step by step."""
        if not self.scans(x):
            y, state, _ = self.forward_reference(x, state, lengths)
            return y, state
        return self._stack(x, state, lengths, lambda layer, d, seq, s: self.scan(
            layer, self.project(layer, seq, d), s, d))

    def scans(self, x: torch.Tensor) -> bool:
        """Whether the fast path runs the family's ``scan`` over ``x``, rather than its cell step by step."""
        return type(self).scan is not RecurrentCore.scan and (self.scan_on_cpu or x.device.type != "cpu")

    def _packed(self, x: PackedSequence, state: State | None) -> tuple[PackedSequence, State]:
        """The generic path over a packed batch: unpacked to right-padded with lengths, run, packed again with
        the input's batch order (states stay in the caller's order, as torch's kernels keep them)."""
        padded, lengths = pad_packed_sequence(x, batch_first=True)
        y, state = self._generic(padded, state, lengths.to(padded.device))
        order = x.sorted_indices if x.sorted_indices is not None else torch.arange(len(lengths))
        data = pack_padded_sequence(y[order], lengths[order.cpu()], batch_first=True).data
        return x._replace(data=data), state

    # ---- reference path -------------------------------------------------------------------------------
    def layer_params(self, layer: int, direction: int = 0) -> tuple[torch.Tensor | None, ...]:
        """(W_ih, W_hh, b_ih, b_hh) of ``layer`` (``direction`` 1: its reverse half): the module's own tensors,
        not copies; None for a tensor the cell does not have (IndRNN's one bias is b_ih)."""
        r, end = self.rnn, suffix(layer, direction)
        return tuple(getattr(r, f"{name}_{end}", None) for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"))

    def project(self, layer: int, x: torch.Tensor, direction: int = 0) -> torch.Tensor:
        """x W_ih^T + b_ih of every step at once, (B, T, D_l) -> (B, T, G): the ``x_proj`` that ``cell`` reads."""
        w_ih, _, b_ih, _ = self.layer_params(layer, direction)
        return x @ w_ih.T if b_ih is None else x @ w_ih.T + b_ih

    def layers_and_directions(self) -> list[tuple[int, int]]:
        """Every (layer, direction) in torch's order, which is the trace's and the state's."""
        return [(layer, d) for layer in range(self.layers) for d in range(self.directions)]

    def cell(self, layer: int, x_proj: torch.Tensor, state: State, direction: int = 0) -> State:
        """One step of one layer. ``x_proj`` = x_t W_ih^T + b_ih, precomputed for all t at once."""
        raise NotImplementedError

    def scan(self, layer: int, x_proj: torch.Tensor, state: State, direction: int = 0) -> State:
        """Optional: every step of one layer at once, x_proj (B, T, G) from ``state`` (B, H) -> the state after
        each step, (B, T, H) (or a pair of such), equal to running ``cell`` T times. A family whose recurrence
        is linear in the state given the inputs implements it as a parallel scan over time."""
        raise NotImplementedError

    def once_per_run(self, key: object, make):
        """``make()``, computed once per run of the layers and reused by every step of it (the Lipschitz RNN's
        A and W); called outside a run (a diagnostic calling ``cell`` on its own) it is computed anew."""
        memo = self.__dict__.get("_memo")
        if memo is None:
            return make()
        if key not in memo:
            memo[key] = make()
        return memo[key]

    def gates(self, layer: int, x_proj: torch.Tensor, state: State,
              direction: int = 0) -> dict[str, torch.Tensor]:
        """Gate activations of one step (name -> (B, H)), for unit-health diagnostics; none for Elman cells."""
        return {}

    def decay(self, layer: int, x_proj: torch.Tensor, direction: int = 0) -> torch.Tensor:
        """``spectrum_kind = "decay"`` only: what multiplies h_{t-1} element-wise in each step, a function of
        x_proj (..., G) alone -> (..., H); the recurrent Jacobian is exactly its diagonal matrix."""
        raise NotImplementedError

    def initial_state(self, batch: int, like: torch.Tensor) -> State:
        h = like.new_zeros(self.layers * self.directions, batch, self.hidden_size)
        return (h, h.clone()) if self.has_cell_state else h

    def forward_reference(self, x: torch.Tensor, state: State | None = None,
                          lengths: torch.Tensor | None = None) -> tuple[torch.Tensor, State, Trace]:
        """Step-by-step path with the fast path's parameters; every h_t is a separate graph node.

        ``trace.inputs[k]`` keeps each entry's input sequence (B, T, D_l) so diagnostics can replay a step.
        ``lengths`` (B,), for right-padded x, is what packing the input does on the fused path: a reverse
        direction starts at each sequence's last real step, and the final state is each entry's state after
        ``lengths`` steps (outputs at padded positions are computed but mean nothing).

        Between layers it applies dropout like the fused kernel, but with its own random mask: the two paths
        agree exactly only with dropout 0 or in eval mode (on the generic path they are one path).
        """
        trace = Trace(directions=self.directions)

        def run(layer: int, direction: int, seq: torch.Tensor, s: State) -> State:
            trace.inputs.append(seq)
            trace.initial.append(s)
            self._run(layer, direction, seq, s, trace)
            h = torch.stack(trace.h[-1], dim=1)
            return (h, torch.stack(trace.c[-1], dim=1)) if trace.c else h

        y, final = self._stack(x, state, lengths, run)
        return y, final, trace

    def _stack(self, x: torch.Tensor, state: State | None, lengths: torch.Tensor | None, run
               ) -> tuple[torch.Tensor, State]:
        """Layers and directions, as both generic paths share them: ``run(layer, direction, seq, s)`` returns
        the state after each step of ``seq`` (B, T, D_l), in processing order, (B, T, H) or a pair of such."""
        batch, steps = x.shape[:2]
        state = self.initial_state(batch, x) if state is None else state
        full = (lengths if lengths is not None else torch.full((batch,), steps)).to(x.device)
        rows, order = torch.arange(batch, device=x.device)[:, None], reversal(full, steps)
        inp, finals = x, []
        self._memo = {}
        try:
            for layer in range(self.layers):
                outs = []
                for direction in range(self.directions):
                    k = layer * self.directions + direction
                    seq = inp[rows, order] if direction else inp
                    s = tuple(p[k] for p in state) if isinstance(state, tuple) else state[k]
                    states = run(layer, direction, seq, s)
                    pairs = states if isinstance(states, tuple) else (states,)
                    # each sequence's state after its own length, not after its padding
                    ends = [p[:, -1] if lengths is None else p[rows[:, 0], full - 1] for p in pairs]
                    finals.append(tuple(ends) if isinstance(states, tuple) else ends[0])
                    outs.append(pairs[0][rows, order] if direction else pairs[0])  # back to input positions
                inp = torch.cat(outs, dim=-1)
                if layer < self.layers - 1 and self.dropout > 0:
                    inp = nn.functional.dropout(inp, self.dropout, self.training)
        finally:
            self._memo = None
        if isinstance(state, tuple):
            final = tuple(torch.stack([f[i] for f in finals]) for i in range(2))
        else:
            final = torch.stack(finals)
        return inp, final

    def _run(self, layer: int, direction: int, seq: torch.Tensor, s: State, trace: Trace) -> State:
        """One layer in one direction over ``seq`` (B, T, D_l) from state ``s``; appends its steps to
        ``trace`` and returns the state after the last step."""
        x_proj = self.project(layer, seq, direction)
        hs, cs = [], []
        # unbind, not x_proj[:, t]: each indexed slice's backward writes a full (B, T, G) zero tensor, which
        # makes the backward quadratic in T (70x slower from T = 100 to 1000); unbind's backward is one stack
        for x_t in x_proj.unbind(1):
            s = self.cell(layer, x_t, s, direction)
            hs.append(s[0] if isinstance(s, tuple) else s)
            if isinstance(s, tuple):
                cs.append(s[1])
        trace.h.append(hs)
        if cs:
            trace.c.append(cs)
        return s

    def lr_scales(self) -> dict[nn.Parameter, float]:
        """Parameters that train at a multiple of the run's learning rate (the system gives each scale its own
        optimizer group); none by default."""
        return {}

    # ---- introspection --------------------------------------------------------------------------------
    def recurrent_blocks(self) -> dict[str, torch.Tensor]:
        """Each layer's W_hh split into gate blocks, as views of the parameters (what ``init_recurrent`` writes
        through): keys ``l{layer}`` or ``l{layer}.{gate}`` (``l{layer}r``... for a reverse direction). A block
        is (H, H), or (H,) for a diagonal recurrence."""
        out = {}
        for layer, direction in self.layers_and_directions():
            w_hh = self.layer_params(layer, direction)[1]
            blocks = w_hh.chunk(len(self.gate_names), dim=0)
            name = entry_name(layer, direction)
            for gate, block in zip(self.gate_names, blocks, strict=True):
                out[f"{name}.{gate}" if gate else name] = block
        return out

    def recurrent_weights(self) -> dict[str, torch.Tensor]:
        """What each block multiplies h_{t-1} by, keyed as ``recurrent_blocks``: a matrix, or the vector u of
        a diagonal recurrence, real or complex (the spectra read |u| and |eigenvalues|). The blocks themselves
        by default; a cell whose recurrence is computed from them (a bounded u) returns what it computes."""
        return self.recurrent_blocks()

    def init_recurrent(self, how: str, scale: float = 1.0) -> None:
        """Re-initialise every W_hh block: ``default`` (torch), ``orthogonal`` or ``identity`` (times scale).
        A diagonal block u gets the diagonal of such a matrix: u_i = scale, or |u_i| = scale with a random sign
        (a random phase if complex), the diagonal orthogonal (unitary) matrices."""
        if how == "default":
            return
        if how not in ("identity", "orthogonal"):
            raise ValueError(f"unknown recurrent_init {how!r}; valid: {', '.join(RECURRENT_INITS)}")
        with torch.no_grad():
            for block in self.recurrent_blocks().values():
                if block.dim() == 1:
                    unit = torch.randn_like(block) if how == "orthogonal" else torch.ones_like(block)
                    block.copy_(scale * unit / unit.abs())
                elif how == "identity":
                    block.copy_(scale * torch.eye(self.hidden_size))
                else:
                    nn.init.orthogonal_(block, gain=scale)
