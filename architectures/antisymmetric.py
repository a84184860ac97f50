"""Antisymmetric RNN core (Chang, Chen, Haber & Chi 2019, "AntisymmetricRNN: A Dynamical System View on
Recurrent Neural Networks"): the forward-Euler discretisation of h' = tanh((W - W^T - gamma I) h + V x + b).

    h_t = h_{t-1} + eps * tanh(x_t W_ih^T + b_ih + h_{t-1} (W_hh - W_hh^T - gamma I)^T)

W_hh - W_hh^T is antisymmetric, so its eigenvalues are imaginary: the ODE neither blows up nor dies out, and
the diffusion gamma > 0 moves them into the left half plane just enough for the Euler steps to be stable
(the paper's stability condition). The identity path h_{t-1} -> h_t keeps the Jacobian near I for small eps.
``recurrent_weights`` gives the effective matrix W_hh - W_hh^T - gamma I; the generic path runs ``cell``.

Init (the paper's Appendix C): W_ih ~ N(0, 1/D), W_hh ~ N(0, sigma_w^2 / H) with sigma_w from {0, 1, 2, 4, 8,
16}, biases 0; eps chosen from {0.01, 0.1, 1} and gamma from a small grid. The gated variant (a sigmoid gate on
the update) is not included.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from options import opt

from .base import RecurrentCore, entry_name
from .config import CoreConfig
from .registry import register


@dataclass(frozen=True)
class AntisymmetricConfig(CoreConfig):
    recurrent_init: str = opt("default", "W_hh ~ N(0, sigma_w^2 / H), see sigma_w", choices=("default",))
    eps: float = opt(0.01, "Euler step size (Chang et al. 2019 search 0.01, 0.1, 1)", gt=0, le=1)
    gamma: float = opt(0.01, "diffusion: subtracted from the diagonal for stable Euler steps", ge=0)
    sigma_w: float = opt(1.0, "W_hh init std times sqrt(H) (Chang et al. 2019 search 0 to 16)", ge=0)


class AntisymmetricRNN(RecurrentCore):
    version = "1"
    gate_names = ("",)

    def __init__(self, input_size: int, eps: float = 0.01, gamma: float = 0.01, sigma_w: float = 1.0, **core):
        self.eps, self.gamma, self.sigma_w = eps, gamma, sigma_w
        super().__init__(input_size, **core)

    def layer_shapes(self, input_size: int) -> dict[str, tuple[int, ...]]:
        h = self.hidden_size
        return {"weight_ih": (h, input_size), "weight_hh": (h, h), "bias_ih": (h,)}

    def reset_parameters(self) -> None:
        with torch.no_grad():
            for layer, direction in self.layers_and_directions():
                w_ih, w_hh, b_ih, _ = self.layer_params(layer, direction)
                w_ih.normal_(0, 1 / math.sqrt(w_ih.shape[1]))
                w_hh.normal_(0, self.sigma_w / math.sqrt(self.hidden_size))
                b_ih.zero_()

    def recurrence(self, layer: int, direction: int = 0) -> torch.Tensor:
        """W_hh - W_hh^T - gamma I."""
        w = self.layer_params(layer, direction)[1]
        return w - w.T - self.gamma * torch.eye(self.hidden_size, dtype=w.dtype, device=w.device)

    def cell(self, layer: int, x_proj: torch.Tensor, h: torch.Tensor, direction: int = 0) -> torch.Tensor:
        m = self.once_per_run(("m", layer, direction), lambda: self.recurrence(layer, direction))
        return h + self.eps * torch.tanh(x_proj + h @ m.T)

    def recurrent_weights(self) -> dict[str, torch.Tensor]:
        return {entry_name(layer, d): self.recurrence(layer, d) for layer, d in self.layers_and_directions()}


register("antisymmetric", AntisymmetricRNN, AntisymmetricConfig)
