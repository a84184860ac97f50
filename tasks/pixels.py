"""Images read one pixel per step (Le, Jaitly & Hinton 2015): the shared machinery of ``smnist`` and ``sdigits``.

Many-to-one classification over 10 classes. An image becomes a sequence of H*W grey values in [0, 1], row by
row; ``permute`` applies one fixed random permutation of the pixel positions (seeded by ``perm_seed``), which
spreads each stroke over the whole sequence and makes the dependencies long. Chance accuracy is 10 %.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.utils.data import TensorDataset

from options import SEED_MAX, opt

from .base import Classification, ManyToOneConfig, Splits


@dataclass(frozen=True)
class PixelConfig(ManyToOneConfig):
    permute: bool = opt(False, "feed the pixels in one fixed random order (permuted variant)")
    perm_seed: int = opt(0, "seed of that fixed permutation", ge=0, le=SEED_MAX)


class PixelTask(Classification):
    """Subclasses set ``side`` (image height = width), ``name``, ``version`` and implement ``images``."""

    Config = PixelConfig
    side: int
    input_size = 1

    @property
    def seq_len(self) -> int:
        return self.side * self.side

    def images(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(x_train, y_train, x_val, y_val, x_test, y_test); x as (N, side, side) floats in [0, 1]."""
        raise NotImplementedError

    def permutation(self) -> torch.Tensor:
        return torch.randperm(self.seq_len, generator=torch.Generator().manual_seed(self.config.perm_seed))

    def make_splits(self) -> Splits:
        parts = self.images()
        order = self.permutation() if self.config.permute else None
        out = []
        for x, y in zip(parts[::2], parts[1::2], strict=True):
            seq = x.reshape(len(x), self.seq_len)
            seq = seq[:, order] if order is not None else seq
            out.append(TensorDataset(seq.unsqueeze(-1).contiguous(), y.long()))
        return Splits(*out)
