"""IndRNN core (Li et al. 2018, "Independently Recurrent Neural Network (IndRNN): Building A Longer and Deeper
RNN"): each unit reads only its own previous state, through one recurrent weight u_i.

    h_t = phi(x_t W_ih^T + b + u * h_{t-1})    # u: (H,), a Hadamard product; phi = ReLU (or tanh)

Unit i's gradient through k steps is u_i^k times the ReLU's 0/1 factors, so bounding |u_i| <= gamma^(1/T)
bounds that growth by gamma over a sequence of T steps: ``recurrent_max`` is that bound (the authors' code uses
gamma = 2, i.e. 2 ** (1 / T)). The bound is applied in each step, u clamped to [-recurrent_max, recurrent_max]
as the TensorFlow IndRNN cell does it: a weight past the bound gets no gradient, and the spectra report the
clamped u. No torch kernel computes this; the base class's generic path runs ``cell`` as the layer.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from options import opt

from .base import RecurrentCore, entry_name
from .config import CoreConfig
from .registry import register


@dataclass(frozen=True)
class IndRNNConfig(CoreConfig):
    recurrent_max: float | None = opt(None, "bound on |u_i| in every step, e.g. 2 ** (1 / T) for T steps (Li et al. "
                                            "2018); none leaves u unbounded", ge=1)
    nonlinearity: str = opt("relu", "the nonlinearity phi", choices=("relu", "tanh"))


class IndRNN(RecurrentCore):
    version = "1"
    gate_names = ("",)  # one recurrent block per layer: the vector u
    spectrum_kind = "diagonal"

    def __init__(self, input_size: int, recurrent_max: float | None = None, nonlinearity: str = "relu", **core):
        if nonlinearity not in ("relu", "tanh"):
            raise ValueError(f"unknown nonlinearity {nonlinearity!r}; valid: relu, tanh")
        self.recurrent_max = recurrent_max
        self.phi = torch.relu if nonlinearity == "relu" else torch.tanh
        super().__init__(input_size, **core)

    def layer_shapes(self, input_size: int) -> dict[str, tuple[int, ...]]:
        h = self.hidden_size
        return {"weight_ih": (h, input_size), "weight_hh": (h,), "bias_ih": (h,)}

    def reset_parameters(self) -> None:
        """The authors' init (github.com/Sunnydreamrain/IndRNN_pytorch): u ~ U(0, m), and in the last layer
        u ~ U(1/m, m) so that the layer the readout sees starts near memory 1; m = recurrent_max, or 1 when u
        is unbounded (the last layer then starts at u = 1, the limit of their init for long sequences).
        Biases 0; W_ih torch's U(-1/sqrt(H), 1/sqrt(H)). ``recurrent_init`` then overrides u."""
        self.rnn.reset_parameters()
        m = self.recurrent_max or 1.0
        with torch.no_grad():
            for layer, direction in self.layers_and_directions():
                _, u, b, _ = self.layer_params(layer, direction)
                u.uniform_(1 / m if layer == self.layers - 1 else 0.0, m)
                b.zero_()
        self.init_recurrent(self.recurrent_init, self.init_scale)

    def recurrence(self, layer: int, direction: int = 0) -> torch.Tensor:
        """u as the step uses it: clamped to the bound, if there is one."""
        u = self.layer_params(layer, direction)[1]
        return u if self.recurrent_max is None else u.clamp(-self.recurrent_max, self.recurrent_max)

    def cell(self, layer: int, x_proj: torch.Tensor, h: torch.Tensor, direction: int = 0) -> torch.Tensor:
        return self.phi(x_proj + self.recurrence(layer, direction) * h)

    def recurrent_weights(self) -> dict[str, torch.Tensor]:
        return {entry_name(layer, d): self.recurrence(layer, d) for layer, d in self.layers_and_directions()}


register("indrnn", IndRNN, IndRNNConfig)
