"""LSTM core (Hochreiter & Schmidhuber 1997, with forget gate: Gers et al. 2000), torch's gate order i, f, g, o.

    i, f, g, o = sigma, sigma, tanh, sigma of (x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh) split in 4
    c_t = f * c_{t-1} + i * g          # the additive cell path: no matrix multiply between c_{t-1} and c_t
    h_t = o * tanh(c_t)

``forget_bias`` sets the forget-gate bias at init (Gers et al. 2000; Jozefowicz et al. 2015 recommend 1).
torch adds two biases; the value goes in b_ih and b_hh's forget block starts at 0 so their sum is exact.
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
class LSTMConfig(CoreConfig):
    forget_bias: float | None = opt(1.0, "forget-gate bias at init; none keeps torch's uniform init")


class LSTM(RecurrentCore):
    version = "1"
    fused_cls = nn.LSTM
    gate_names = ("i", "f", "g", "o")
    has_cell_state = True

    def __init__(self, input_size: int, forget_bias: float | None = 1.0, **core):
        self.forget_bias = forget_bias
        super().__init__(input_size, **core)

    def reset_parameters(self) -> None:
        super().reset_parameters()
        if self.forget_bias is None:
            return
        h = self.hidden_size
        with torch.no_grad():
            for layer, direction in self.layers_and_directions():
                _, _, b_ih, b_hh = self.layer_params(layer, direction)
                b_ih[h:2 * h].fill_(self.forget_bias)
                b_hh[h:2 * h].zero_()

    def _activations(self, layer: int, x_proj: torch.Tensor, h: torch.Tensor, direction: int):
        _, w_hh, _, b_hh = self.layer_params(layer, direction)
        i, f, g, o = (x_proj + h @ w_hh.T + b_hh).chunk(4, dim=-1)
        return torch.sigmoid(i), torch.sigmoid(f), torch.tanh(g), torch.sigmoid(o)

    def cell(self, layer: int, x_proj: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor],
             direction: int = 0):
        i, f, g, o = self._activations(layer, x_proj, state[0], direction)
        c = f * state[1] + i * g
        return o * torch.tanh(c), c

    def gates(self, layer: int, x_proj: torch.Tensor, state, direction: int = 0) -> dict[str, torch.Tensor]:
        i, f, _, o = self._activations(layer, x_proj, state[0], direction)
        return {"i": i, "f": f, "o": o}


register("lstm", LSTM, LSTMConfig)
