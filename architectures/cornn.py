"""coRNN core (Rusch & Mishra 2021, "Coupled Oscillatory Recurrent Neural Network (coRNN): An Accurate and
(Gradient) Stable Architecture for Learning Long Time Dependencies"): a network of damped, driven, coupled
oscillators y'' = tanh(W y + W_z y' + V x + b) - gamma y - epsilon y', discretised by the paper's IMEX scheme:

    z_t = z_{t-1} + dt * (tanh(x_t W_ih^T + b_ih + y_{t-1} W_hh^T + z_{t-1} W_hz^T) - gamma y_{t-1} - epsilon z_{t-1})
    y_t = y_{t-1} + dt * z_t                     # the position y is the output, the velocity z the second state

The paper bounds the hidden states and the gradients' growth (no explosion) and shows the gradient decays at
most polynomially in dt (its Propositions 3.1-3.3). The state is torch's (h, c) pair with h = y and c = z, so
the trace, final state and encoder hand-over carry both; the generic path runs ``cell`` step by step.

Settings from the authors' code (github.com/tk-rusch/coRNN): one nn.Linear reads [x, z, y], so every tensor
is drawn U(-k, k), k = 1 / sqrt(D + 2H); sequential MNIST: H = 256, dt = 0.042, gamma = 2.7, epsilon = 4.7
(Adam, lr 0.0021); permuted: dt = 0.076, gamma = 0.4, epsilon = 8.0 (lr 0.0054). The defaults are the
sequential-MNIST ones.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from options import opt

from .base import RecurrentCore, suffix
from .config import CoreConfig
from .registry import register


@dataclass(frozen=True)
class CoRNNConfig(CoreConfig):
    dt: float = opt(0.042, "time step of the discretised oscillators (Rusch & Mishra 2021: 0.042 on sMNIST)",
                    gt=0, le=1)
    gamma: float = opt(2.7, "the restoring force on y (stiffness)", ge=0)
    epsilon: float = opt(4.7, "the damping on z = y'", ge=0)


class CoRNN(RecurrentCore):
    version = "1"
    gate_names = ("",)  # W_hh: the coupling through y; W_hz (through z) is a second tensor
    has_cell_state = True  # (y, z)

    def __init__(self, input_size: int, dt: float = 0.042, gamma: float = 2.7, epsilon: float = 4.7, **core):
        self.dt, self.gamma, self.epsilon = dt, gamma, epsilon
        super().__init__(input_size, **core)

    def layer_shapes(self, input_size: int) -> dict[str, tuple[int, ...]]:
        h = self.hidden_size
        return {"weight_ih": (h, input_size), "weight_hh": (h, h), "bias_ih": (h,), "weight_hz": (h, h)}

    def reset_parameters(self) -> None:
        with torch.no_grad():
            for layer, direction in self.layers_and_directions():
                w_ih = self.layer_params(layer, direction)[0]
                bound = 1 / math.sqrt(w_ih.shape[1] + 2 * self.hidden_size)
                for name in ("weight_ih", "weight_hh", "bias_ih", "weight_hz"):
                    getattr(self.rnn, f"{name}_{suffix(layer, direction)}").uniform_(-bound, bound)
        self.init_recurrent(self.recurrent_init, self.init_scale)

    def cell(self, layer: int, x_proj: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor],
             direction: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
        y, z = state
        w_hh = self.layer_params(layer, direction)[1]
        w_hz = getattr(self.rnn, f"weight_hz_{suffix(layer, direction)}")
        force = torch.tanh(x_proj + y @ w_hh.T + z @ w_hz.T)
        z = z + self.dt * (force - self.gamma * y - self.epsilon * z)
        return y + self.dt * z, z


register("cornn", CoRNN, CoRNNConfig)
