"""LRU core (Orvieto et al. 2023, "Resurrecting Recurrent Neural Networks for Long Sequences"): a diagonal
complex linear recurrence whose eigenvalues are parametrised directly.

    lambda = exp(-exp(nu) + i exp(theta))            # |lambda| = exp(-exp(nu)) < 1 for any nu: stable
    h_t = lambda * h_{t-1} + gamma * (B x_t)           # h complex, one mode per eigenvalue
    output [Re h_t; Im h_t]                            # the paper's readout Re(C h_t) is linear in it

gamma = exp(gamma_log), initialised to sqrt(1 - |lambda|^2), keeps the state's scale independent of |lambda|.
The layer is linear in h, so it runs as a parallel (associative) scan over time (architectures/scan.py); the
step-by-step ``cell`` is the reference.

What is included. The core is the paper's recurrent layer, and its state is what it outputs, as for every core
here (the gradient-flow profile reads dL/dh_t through the recurrence, which an output y_t that no later step
reads would hide). The paper's readout y = Re(C h) + D x is then the next reader's linear map: the task's
head, or the next layer's W_ih, with ``nonlinearity`` (GELU, as in the paper's block) applied to a layer's
input from the layer below. Left out: D's skip from the layer's input, normalisation, the GLU MLP and the
residual connection of the paper's block.

Modes. A layer of width H has m = ceil(H/2) modes: floor(H/2) complex ones, and for odd H one real mode
(theta = 0), so the state [Re h (m); Im h (floor(H/2))] is (B, H) in torch's layout. Tensors per layer and
direction: W_ih = [B_re (m); B_im (H - m)] (H, D_in), b_ih (H,) (a constant input, zero at init: the paper has
no bias), W_hh = [nu (m); theta (H - m)] (H,) and gamma_log (m,).

Init (the paper's Appendix A): the ring init, |lambda| uniform on the ring r_min <= |lambda| <= r_max by area,
phases uniform on [0, max_phase]: nu = log(-log(u1 (r_max^2 - r_min^2) + r_min^2) / 2), theta =
log(max_phase u2), u1, u2 ~ U(0, 1); B_re, B_im ~ N(0, 1 / (2 D_in)). Its code's defaults are r_min = 0,
r_max = 1, max_phase = 6.28; long-range tasks want |lambda| near 1 (r_min near 1) and small phases.
``recurrent_weights`` gives each layer's complex lambda, so the spectra read |lambda|.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from options import opt

from .base import RecurrentCore, entry_name, suffix
from .config import CoreConfig
from .registry import register
from .scan import linear_scan


@dataclass(frozen=True)
class LRUConfig(CoreConfig):
    recurrent_init: str = opt("default", "the eigenvalues are set by the ring init (r_min, r_max, max_phase)",
                              choices=("default",))
    r_min: float = opt(0.0, "smallest |lambda| of the ring init (Orvieto et al. 2023)", ge=0, lt=1)
    r_max: float = opt(1.0, "largest |lambda| of the ring init", gt=0, le=1)
    max_phase: float = opt(6.28, "eigenvalue phases drawn from [0, max_phase]", gt=0, le=6.2832)
    nonlinearity: str = opt("gelu", "phi applied to a layer's input from the layer below", choices=("gelu", "none"))


class LRU(RecurrentCore):
    version = "1"
    gate_names = ("",)  # one block per layer: W_hh = [nu; theta], the eigenvalues' parameters
    spectrum_kind = "diagonal"

    def __init__(self, input_size: int, r_min: float = 0.0, r_max: float = 1.0, max_phase: float = 6.28,
                 nonlinearity: str = "gelu", **core):
        if not 0 <= r_min <= r_max <= 1:
            raise ValueError(f"LRU needs 0 <= r_min <= r_max <= 1, got r_min={r_min}, r_max={r_max}")
        if nonlinearity not in ("gelu", "none"):
            raise ValueError(f"unknown nonlinearity {nonlinearity!r}; valid: gelu, none")
        self.r_min, self.r_max, self.max_phase = r_min, r_max, max_phase
        self.phi = nn.functional.gelu if nonlinearity == "gelu" else None
        super().__init__(input_size, **core)

    @property
    def modes(self) -> int:
        return (self.hidden_size + 1) // 2

    def layer_shapes(self, input_size: int) -> dict[str, tuple[int, ...]]:
        h = self.hidden_size
        return {"weight_ih": (h, input_size), "weight_hh": (h,), "bias_ih": (h,), "gamma_log": (self.modes,)}

    def reset_parameters(self) -> None:
        m, h = self.modes, self.hidden_size
        with torch.no_grad():
            for layer, direction in self.layers_and_directions():
                w_ih, w_hh, b_ih, _ = self.layer_params(layer, direction)
                u1, u2 = torch.rand(m), torch.rand(h - m)
                w_hh[:m] = torch.log(-0.5 * torch.log(u1 * (self.r_max ** 2 - self.r_min ** 2) + self.r_min ** 2))
                w_hh[m:] = torch.log(self.max_phase * u2)
                gamma = torch.sqrt(1 - torch.exp(-2 * torch.exp(w_hh[:m])))
                getattr(self.rnn, f"gamma_log_{suffix(layer, direction)}").copy_(gamma.log())
                w_ih.normal_(0, 1 / math.sqrt(2 * w_ih.shape[1]))
                b_ih.zero_()

    def project(self, layer: int, x: torch.Tensor, direction: int = 0) -> torch.Tensor:
        """B x_t + b, with phi on the input of every layer above the first (the paper's block nonlinearity)."""
        return super().project(layer, x if layer == 0 or self.phi is None else self.phi(x), direction)

    def _pad(self, t: torch.Tensor) -> torch.Tensor:
        """(..., H - m) imaginary parts -> (..., m): an odd H's last mode is real."""
        return t if 2 * self.modes == self.hidden_size else nn.functional.pad(t, (0, 1))

    def eigenvalues(self, layer: int, direction: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Re lambda, Im lambda and gamma of one layer, each (m,)."""
        def make():
            w_hh = self.layer_params(layer, direction)[1]
            modulus, phase = torch.exp(-torch.exp(w_hh[:self.modes])), self._pad(torch.exp(w_hh[self.modes:]))
            gamma = torch.exp(getattr(self.rnn, f"gamma_log_{suffix(layer, direction)}"))
            return modulus * torch.cos(phase), modulus * torch.sin(phase), gamma
        return self.once_per_run(("lambda", layer, direction), make)

    def _split(self, layer: int, x_proj: torch.Tensor, h: torch.Tensor, direction: int):
        m = self.modes
        lam_re, lam_im, gamma = self.eigenvalues(layer, direction)
        b_re, b_im = gamma * x_proj[..., :m], gamma * self._pad(x_proj[..., m:])
        return lam_re, lam_im, b_re, b_im, h[..., :m], self._pad(h[..., m:])

    def _join(self, re: torch.Tensor, im: torch.Tensor) -> torch.Tensor:
        return torch.cat([re, im[..., :self.hidden_size - self.modes]], dim=-1)

    def cell(self, layer: int, x_proj: torch.Tensor, h: torch.Tensor, direction: int = 0) -> torch.Tensor:
        lam_re, lam_im, b_re, b_im, re, im = self._split(layer, x_proj, h, direction)
        return self._join(lam_re * re - lam_im * im + b_re, lam_re * im + lam_im * re + b_im)

    def scan(self, layer: int, x_proj: torch.Tensor, h: torch.Tensor, direction: int = 0) -> torch.Tensor:
        lam_re, lam_im, b_re, b_im, re, im = self._split(layer, x_proj, h, direction)
        b = torch.complex(b_re, b_im)
        out = linear_scan(torch.complex(lam_re, lam_im).expand_as(b), b, torch.complex(re, im))
        return self._join(out.real, out.imag)

    def recurrent_weights(self) -> dict[str, torch.Tensor]:
        """Each layer's eigenvalues lambda, complex (m,): what the state's modes are multiplied by each step."""
        return {entry_name(layer, d): torch.complex(*self.eigenvalues(layer, d)[:2])
                for layer, d in self.layers_and_directions()}


register("lru", LRU, LRUConfig)
