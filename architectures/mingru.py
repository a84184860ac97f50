"""minGRU core (Feng et al. 2024, "Were RNNs All We Needed?"): a GRU whose gate and candidate read x_t only,
so h_t is linear in h_{t-1} given the inputs and a layer runs as a parallel scan over time.

    z_t = sigma(x_t W_z^T + b_z)                     # the update gate: no h_{t-1} in it
    h~_t = g(x_t W_h^T + b_h),  g(v) = v + 0.5 (v >= 0), sigma(v) (v < 0)    # the paper's log-space version
    h_t = (1 - z_t) * h_{t-1} + z_t * h~_t

Nothing multiplies h_{t-1} but 1 - z_t, so the family has no W_hh (``gate_names = ()``, no recurrent blocks)
and no reset gate. The diagnostics read the recurrence as its per-step decay 1 - z_t (``decay``, the kind
"decay": the recurrent Jacobian is exactly diag(1 - z_t)) and the gate's saturation (z near 0: copy, near 1:
overwrite).
g keeps h~_t > 0, so the scan runs in log space: log(1 - z_t) = -softplus(k_t), log z_t = -softplus(-k_t).
The initial state enters the scan linearly (architectures/scan.py), never through g or a log, so a non-zero
h_0 gives on the fast path exactly what ``cell`` gives step by step. W_ih holds [W_z; W_h] (2H, D), b_ih
[b_z; b_h]; both drawn as torch's nn.Linear draws them, U(-1/sqrt(D), 1/sqrt(D)), as the paper's listings use
nn.Linear. Deeper models in the paper add a residual, normalisation and an MLP around each layer; this core is
the recurrent layer alone, stacked plainly like every other family.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch.nn.functional import softplus

from options import opt

from .base import RecurrentCore
from .config import CoreConfig
from .registry import register
from .scan import log_scan


def g(v: torch.Tensor) -> torch.Tensor:
    """Feng et al.'s positive activation: v + 0.5 for v >= 0, sigma(v) below (continuous, with slope 1/4)."""
    return torch.where(v >= 0, v + 0.5, torch.sigmoid(v))


def log_g(v: torch.Tensor) -> torch.Tensor:
    return torch.where(v >= 0, torch.log(torch.relu(v) + 0.5), -softplus(-v))


def linear_init(core: RecurrentCore) -> None:
    """torch's nn.Linear init for every layer's W_ih and b_ih: U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    with torch.no_grad():
        for layer, direction in core.layers_and_directions():
            w_ih, _, b_ih, _ = core.layer_params(layer, direction)
            bound = 1 / math.sqrt(w_ih.shape[1])
            w_ih.uniform_(-bound, bound)
            b_ih.uniform_(-bound, bound)


@dataclass(frozen=True)
class MinGRUConfig(CoreConfig):
    recurrent_init: str = opt("default", "no weight multiplies h_{t-1} (1 - z_t does), so there is none to "
                                         "initialise", choices=("default",))


class MinGRU(RecurrentCore):
    version = "1"  # CPU runs take the cell loop since scan_on_cpu, before any record of the family was made
    gate_names = ()  # no W_hh
    spectrum_kind = "decay"
    scan_on_cpu = False  # make bench-speed: the log-space scan trains at 0.59-0.76x the cell loop on one CPU thread

    def layer_shapes(self, input_size: int) -> dict[str, tuple[int, ...]]:
        return {"weight_ih": (2 * self.hidden_size, input_size), "bias_ih": (2 * self.hidden_size,)}

    def reset_parameters(self) -> None:
        linear_init(self)

    def cell(self, layer: int, x_proj: torch.Tensor, h: torch.Tensor, direction: int = 0) -> torch.Tensor:
        k, v = x_proj.chunk(2, dim=-1)
        z = torch.sigmoid(k)
        return (1 - z) * h + z * g(v)

    def scan(self, layer: int, x_proj: torch.Tensor, h: torch.Tensor, direction: int = 0) -> torch.Tensor:
        k, v = x_proj.chunk(2, dim=-1)
        return log_scan(-softplus(k), -softplus(-k) + log_g(v), h)

    def gates(self, layer: int, x_proj: torch.Tensor, h: torch.Tensor, direction: int = 0):
        return {"z": torch.sigmoid(x_proj.chunk(2, dim=-1)[0])}

    def decay(self, layer: int, x_proj: torch.Tensor, direction: int = 0) -> torch.Tensor:
        return torch.sigmoid(-x_proj.chunk(2, dim=-1)[0])  # 1 - z_t

    def recurrent_blocks(self) -> dict[str, torch.Tensor]:
        return {}


register("mingru", MinGRU, MinGRUConfig)
