"""expRNN core (Lezcano-Casado & Martinez-Rubio 2019, "Cheap Orthogonal Constraints in Neural Networks: A Simple
Parametrization of the Orthogonal and Unitary Group"): W_hh is the matrix exponential of a skew-symmetric
matrix, so it is orthogonal at every step of training, with every singular value exactly 1.

    S = triu(A, 1) - triu(A, 1)^T                # A: (H, H), unconstrained; S skew-symmetric
    W_hh = expm(S)                               # orthogonal (special orthogonal: det 1)
    h_t = modReLU(x_t W_ih^T + h_{t-1} W_hh^T)
    modReLU(z) = sign(z) * relu(|z| + b)         # b: (H,), one learnt threshold per unit

``weight_hh`` is A (the recurrent block, what the optimizer moves); ``recurrent_weights`` gives W_hh, computed
once per run (``once_per_run``) by ``torch.linalg.matrix_exp``, whose autograd gives the gradient with respect
to A. A plain parameter, not torch's ``parametrizations.orthogonal``, keeps the tensors named as every core
names them (``rnn.weight_hh_l0``). The generic path runs ``cell`` step by step: modReLU makes the recurrence
nonlinear in h, so there is no scan.

Settings from the authors' code (github.com/Lezcano/expRNN): S block-diagonal with 2x2 blocks [[0, s], [-s, 0]],
``cayley``: s = -sqrt((1 - cos u) / (1 + cos u)), u ~ U(0, pi/2) (their MNIST runs), or ``henaff``:
s ~ U(-pi, pi) (their copying runs); the input map has no bias (``bias=False``) and is Kaiming-normal for ReLU,
W_ih ~ N(0, 2 / D); modReLU's b ~ U(-0.01, 0.01). Their code multiplies h B with B = expm(S), which turns each
2x2 block the other way than h W_hh^T does here: a relabelling of each pair of units, same distribution.
Their MNIST runs: H = 170, 360 or 512, RMSprop, A at a tenth of the others' learning rate (7e-4 and 7e-5 at
H = 170): two RMSprop optimizers in their code, here one with A in its own group (``lr_scales``,
``orth_lr_scale``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from options import opt

from .base import RecurrentCore, entry_name, suffix
from .config import CoreConfig
from .registry import register

INITS = ("cayley", "henaff")


@dataclass(frozen=True)
class ExpRNNConfig(CoreConfig):
    recurrent_init: str = opt("default", "W_hh = expm(S) is set by skew_init", choices=("default",))
    skew_init: str = opt("cayley", "the skew-symmetric S at init (Lezcano-Casado & Martinez-Rubio 2019: cayley "
                                   "for MNIST, henaff for copying)", choices=INITS)
    # Added before any expRNN record existed: it defaults to the authors' setting, and the run ids stay.
    orth_lr_scale: float = opt(0.1, "A's learning rate as a multiple of optim.lr (Lezcano-Casado & Martinez-Rubio "
                                    "2019: a tenth)", gt=0, omit_default=True)


class ExpRNN(RecurrentCore):
    version = "1"
    gate_names = ("",)
    spectrum_kind = "orthogonal"

    def __init__(self, input_size: int, skew_init: str = "cayley", orth_lr_scale: float = 0.1, **core):
        if skew_init not in INITS:
            raise ValueError(f"unknown skew_init {skew_init!r}; valid: {', '.join(INITS)}")
        self.skew_init, self.orth_lr_scale = skew_init, orth_lr_scale
        super().__init__(input_size, **core)

    def layer_shapes(self, input_size: int) -> dict[str, tuple[int, ...]]:
        h = self.hidden_size
        return {"weight_ih": (h, input_size), "weight_hh": (h, h), "bias_mod": (h,)}

    def reset_parameters(self) -> None:
        h = self.hidden_size
        with torch.no_grad():
            for layer, direction in self.layers_and_directions():
                w_ih, a, _, _ = self.layer_params(layer, direction)
                w_ih.normal_(0, math.sqrt(2 / w_ih.shape[1]))
                getattr(self.rnn, f"bias_mod_{suffix(layer, direction)}").uniform_(-0.01, 0.01)
                if self.skew_init == "henaff":
                    s = torch.empty(h // 2).uniform_(-math.pi, math.pi)
                else:
                    u = torch.empty(h // 2).uniform_(0, math.pi / 2)
                    s = -torch.sqrt((1 - torch.cos(u)) / (1 + torch.cos(u)))
                upper = torch.zeros(max(h - 1, 0))
                upper[::2] = s
                a.copy_(torch.diag(upper, 1))  # A's strict upper triangle is S's

    def lr_scales(self) -> dict[torch.nn.Parameter, float]:
        """A, every layer's and direction's: the authors step it with its own optimizer at a tenth of the lr."""
        return {self.layer_params(layer, d)[1]: self.orth_lr_scale for layer, d in self.layers_and_directions()}

    def recurrence(self, layer: int, direction: int = 0) -> torch.Tensor:
        """W_hh = expm(S), once per run."""
        def make():
            upper = self.layer_params(layer, direction)[1].triu(1)
            return torch.linalg.matrix_exp(upper - upper.T)
        return self.once_per_run(("w_hh", layer, direction), make)

    def cell(self, layer: int, x_proj: torch.Tensor, h: torch.Tensor, direction: int = 0) -> torch.Tensor:
        z = x_proj + h @ self.recurrence(layer, direction).T
        b = getattr(self.rnn, f"bias_mod_{suffix(layer, direction)}")
        return torch.sign(z) * torch.relu(z.abs() + b)

    def recurrent_weights(self) -> dict[str, torch.Tensor]:
        return {entry_name(layer, d): self.recurrence(layer, d) for layer, d in self.layers_and_directions()}


register("exprnn", ExpRNN, ExpRNNConfig)
