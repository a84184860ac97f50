"""Lipschitz RNN core (Erichson, Azencot, Queiruga, Hodgkinson & Mahoney 2021, "Lipschitz Recurrent Neural
Networks"): a linear part A h plus a tanh part, both with matrices whose symmetric and antisymmetric parts are
weighed by beta and whose spectrum is shifted by -gamma, discretised by forward Euler.

    A = (1 - beta) (M_A + M_A^T) + beta (M_A - M_A^T) - gamma I
    W = (1 - beta) (M_W + M_W^T) + beta (M_W - M_W^T) - gamma I
    h_t = h_{t-1} + eps * (h_{t-1} A^T + tanh(x_t W_ih^T + b_ih + h_{t-1} W^T))

beta near 1 makes A and W nearly antisymmetric (eigenvalues near the imaginary axis), gamma > 0 moves them to
the left; the paper bounds the continuous system's Lipschitz constant through A's and W's symmetric parts.
``weight_hh`` is M_W (the tanh part's matrix, the recurrent block), ``weight_ha`` M_A; ``recurrent_weights``
gives the step's linear Jacobian I + eps A (what h_{t-1} is multiplied by outside the tanh); the generic path
runs ``cell`` step by step.

Settings from the authors' code and README (github.com/erichson/LipschitzRNN): M_A, M_W ~ N(0, (init_std /
H)^2), W_ih Xavier-normal, b_ih 0, one beta and gamma for A and W; ordered pixel MNIST: H = 128, eps = 0.01,
beta = 0.65, gamma = 0.001, init_std = 32 (SGD, lr 0.1 with decay); permuted: beta = 0.8. The defaults are the
ordered-MNIST ones.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from options import opt

from .base import RecurrentCore, entry_name, suffix
from .config import CoreConfig
from .registry import register


@dataclass(frozen=True)
class LipschitzConfig(CoreConfig):
    recurrent_init: str = opt("default", "M_A, M_W ~ N(0, (init_std / H)^2), see init_std", choices=("default",))
    eps: float = opt(0.01, "Euler step size (Erichson et al. 2021: 0.01 on pixel MNIST)", gt=0, le=1)
    beta: float = opt(0.65, "weight of the antisymmetric part of A and W (0.65 ordered, 0.8 permuted MNIST)",
                      ge=0, le=1)
    gamma: float = opt(0.001, "shift of A's and W's diagonal, -gamma I", ge=0)
    init_std: float = opt(32.0, "M_A, M_W init std times H", gt=0)


class LipschitzRNN(RecurrentCore):
    version = "1"
    gate_names = ("",)

    def __init__(self, input_size: int, eps: float = 0.01, beta: float = 0.65, gamma: float = 0.001,
                 init_std: float = 32.0, **core):
        self.eps, self.beta, self.gamma, self.init_std = eps, beta, gamma, init_std
        super().__init__(input_size, **core)

    def layer_shapes(self, input_size: int) -> dict[str, tuple[int, ...]]:
        h = self.hidden_size
        return {"weight_ih": (h, input_size), "weight_hh": (h, h), "bias_ih": (h,), "weight_ha": (h, h)}

    def reset_parameters(self) -> None:
        with torch.no_grad():
            for layer, direction in self.layers_and_directions():
                w_ih, m_w, b_ih, _ = self.layer_params(layer, direction)
                nn.init.xavier_normal_(w_ih)
                b_ih.zero_()
                m_w.normal_(0, self.init_std / self.hidden_size)
                getattr(self.rnn, f"weight_ha_{suffix(layer, direction)}").normal_(0, self.init_std / self.hidden_size)

    def _mix(self, m: torch.Tensor) -> torch.Tensor:
        eye = torch.eye(self.hidden_size, dtype=m.dtype, device=m.device)
        return (1 - self.beta) * (m + m.T) + self.beta * (m - m.T) - self.gamma * eye

    def matrices(self, layer: int, direction: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        """(A, W) of one layer, once per run."""
        def make():
            m_a = getattr(self.rnn, f"weight_ha_{suffix(layer, direction)}")
            return self._mix(m_a), self._mix(self.layer_params(layer, direction)[1])
        return self.once_per_run(("aw", layer, direction), make)

    def cell(self, layer: int, x_proj: torch.Tensor, h: torch.Tensor, direction: int = 0) -> torch.Tensor:
        a, w = self.matrices(layer, direction)
        return h + self.eps * (h @ a.T + torch.tanh(x_proj + h @ w.T))

    def recurrent_weights(self) -> dict[str, torch.Tensor]:
        out = {}
        for layer, d in self.layers_and_directions():
            a = self.matrices(layer, d)[0]
            out[entry_name(layer, d)] = torch.eye(self.hidden_size, dtype=a.dtype, device=a.device) + self.eps * a
        return out


register("lipschitz", LipschitzRNN, LipschitzConfig)
