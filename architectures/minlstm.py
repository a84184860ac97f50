"""minLSTM core (Feng et al. 2024, "Were RNNs All We Needed?"): an LSTM whose gates read x_t only, with no
output gate and no separate cell state, so a layer runs as a parallel scan over time.

    f_t = sigma(x_t W_f^T + b_f),  i_t = sigma(x_t W_i^T + b_i)          # no h_{t-1} in either gate
    f'_t, i'_t = f_t / (f_t + i_t), i_t / (f_t + i_t)                     # normalised: f' + i' = 1
    h~_t = g(x_t W_h^T + b_h)                                             # g as in minGRU (architectures/mingru.py)
    h_t = f'_t * h_{t-1} + i'_t * h~_t

The normalisation makes the scale of h independent of time, as the paper argues. In log space (the paper's
version): with d_t = softplus(-k_f) - softplus(-k_i), log f' = -softplus(d_t) and log i' = -softplus(-d_t).
The initial state enters the scan linearly (architectures/scan.py), so a non-zero h_0 gives on the fast path
what ``cell`` gives. As for minGRU there is no W_hh (``gate_names = ()``); the diagnostics read the per-step
decay f'_t (``decay``) and the saturation of the gates f' and i'. W_ih holds [W_f; W_i; W_h] (3H, D), b_ih likewise, drawn as torch's nn.Linear draws them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.nn.functional import softplus

from options import opt

from .base import RecurrentCore
from .config import CoreConfig
from .mingru import g, linear_init, log_g
from .registry import register
from .scan import log_scan


@dataclass(frozen=True)
class MinLSTMConfig(CoreConfig):
    recurrent_init: str = opt("default", "no weight multiplies h_{t-1} (the gate f'_t does), so there is none "
                                         "to initialise", choices=("default",))


class MinLSTM(RecurrentCore):
    version = "1"  # CPU runs take the cell loop since scan_on_cpu, before any record of the family was made
    gate_names = ()  # no W_hh
    spectrum_kind = "decay"
    scan_on_cpu = False  # make bench-speed: the log-space scan trains at 0.59-0.76x the cell loop on one CPU thread

    def layer_shapes(self, input_size: int) -> dict[str, tuple[int, ...]]:
        return {"weight_ih": (3 * self.hidden_size, input_size), "bias_ih": (3 * self.hidden_size,)}

    def reset_parameters(self) -> None:
        linear_init(self)

    @staticmethod
    def _split(x_proj: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """d_t = log(i_t / f_t), and the candidate's pre-activation."""
        k_f, k_i, v = x_proj.chunk(3, dim=-1)
        return softplus(-k_f) - softplus(-k_i), v

    def cell(self, layer: int, x_proj: torch.Tensor, h: torch.Tensor, direction: int = 0) -> torch.Tensor:
        d, v = self._split(x_proj)
        return torch.sigmoid(-d) * h + torch.sigmoid(d) * g(v)

    def scan(self, layer: int, x_proj: torch.Tensor, h: torch.Tensor, direction: int = 0) -> torch.Tensor:
        d, v = self._split(x_proj)
        return log_scan(-softplus(d), -softplus(-d) + log_g(v), h)

    def gates(self, layer: int, x_proj: torch.Tensor, h: torch.Tensor, direction: int = 0):
        d, _ = self._split(x_proj)
        return {"f": torch.sigmoid(-d), "i": torch.sigmoid(d)}

    def decay(self, layer: int, x_proj: torch.Tensor, direction: int = 0) -> torch.Tensor:
        return torch.sigmoid(-self._split(x_proj)[0])  # f'_t

    def recurrent_blocks(self) -> dict[str, torch.Tensor]:
        return {}


register("minlstm", MinLSTM, MinLSTMConfig)
