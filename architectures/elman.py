"""Elman RNN cores: ``vanilla`` (tanh) and ``irnn`` (ReLU with identity W_hh).

    h_t = phi(x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh),   phi = tanh or ReLU

IRNN: Le, Jaitly & Hinton 2015, "A Simple Way to Initialize Recurrent Networks of Rectified Linear Units":
W_hh = identity (optionally scaled), recurrent and input biases zero, ReLU.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from options import opt

from .base import RecurrentCore
from .config import CoreConfig
from .registry import register


@dataclass(frozen=True)
class ElmanConfig(CoreConfig):
    nonlinearity: str = opt("tanh", "the nonlinearity phi", choices=("tanh", "relu"))
    zero_bias: bool = opt(False, "start both biases at zero (IRNN)")


class ElmanRNN(RecurrentCore):
    version = "1"
    gate_names = ("",)  # one block: W_hh is not split into gates
    fused_cls = nn.RNN

    def __init__(self, input_size: int, nonlinearity: str = "tanh", zero_bias: bool = False, **core):
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"unknown nonlinearity {nonlinearity!r}; valid: relu, tanh")
        self.zero_bias = zero_bias
        self.phi = torch.tanh if nonlinearity == "tanh" else torch.relu
        super().__init__(input_size, nonlinearity=nonlinearity, **core)

    def reset_parameters(self) -> None:
        super().reset_parameters()
        if self.zero_bias:
            with torch.no_grad():
                for layer, direction in self.layers_and_directions():
                    for b in self.layer_params(layer, direction)[2:]:
                        b.zero_()

    def cell(self, layer: int, x_proj: torch.Tensor, h: torch.Tensor, direction: int = 0) -> torch.Tensor:
        _, w_hh, _, b_hh = self.layer_params(layer, direction)
        return self.phi(x_proj + h @ w_hh.T + b_hh)


register("vanilla", ElmanRNN, ElmanConfig)
register("irnn", ElmanRNN, ElmanConfig, nonlinearity="relu", recurrent_init="identity", zero_bias=True)
