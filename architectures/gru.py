"""GRU core (Cho et al. 2014), torch's gate order r, z, n.

    r = sigma(W_ir x + b_ir + W_hr h + b_hr),  z = sigma(W_iz x + b_iz + W_hz h + b_hz)
    n = tanh(W_in x + b_in + r * (W_hn h + b_hn))
    h_t = (1 - z) * n + z * h_{t-1}     # z near 1 copies the state forward: a gated additive path
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .base import RecurrentCore
from .config import CoreConfig
from .registry import register


@dataclass(frozen=True)
class GRUConfig(CoreConfig):
    pass


class GRU(RecurrentCore):
    version = "1"
    fused_cls = nn.GRU
    gate_names = ("r", "z", "n")

    def _activations(self, layer: int, x_proj: torch.Tensor, h: torch.Tensor, direction: int):
        _, w_hh, _, b_hh = self.layer_params(layer, direction)
        x_r, x_z, x_n = x_proj.chunk(3, dim=-1)
        h_r, h_z, h_n = (h @ w_hh.T + b_hh).chunk(3, dim=-1)
        r, z = torch.sigmoid(x_r + h_r), torch.sigmoid(x_z + h_z)
        return r, z, torch.tanh(x_n + r * h_n)

    def cell(self, layer: int, x_proj: torch.Tensor, h: torch.Tensor, direction: int = 0) -> torch.Tensor:
        _, z, n = self._activations(layer, x_proj, h, direction)
        return (1 - z) * n + z * h

    def gates(self, layer: int, x_proj: torch.Tensor, h: torch.Tensor,
              direction: int = 0) -> dict[str, torch.Tensor]:
        r, z, _ = self._activations(layer, x_proj, h, direction)
        return {"r": r, "z": z}


register("gru", GRU, GRUConfig)
