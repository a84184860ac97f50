"""Sequential and permuted digits: scikit-learn's 8x8 handwritten digits read one pixel per step (64 steps).

The offline, CPU-sized stand-in for pixel MNIST: the 1,797 images ship inside scikit-learn, so nothing is
downloaded. A fixed shuffle (``data_seed``) splits them into train / ``n_val`` / ``n_test``. Pixel values are
0..16 and are scaled to [0, 1]. ``--task.permute true`` gives the permuted variant.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch

from options import opt

from .base import register
from .pixels import PixelConfig, PixelTask

IMAGES = 1797  # in scikit-learn's digits


@dataclass(frozen=True)
class DigitsConfig(PixelConfig):
    n_val: int = opt(300, "images held out for validation", ge=1)
    n_test: int = opt(300, "images held out for testing", ge=1)


@functools.lru_cache(maxsize=1)
def _digits() -> tuple[torch.Tensor, torch.Tensor]:
    from sklearn.datasets import load_digits

    d = load_digits()
    return torch.tensor(d.images, dtype=torch.float32) / 16.0, torch.tensor(d.target)


@register
class SequentialDigits(PixelTask):
    name = "sdigits"
    version = "1"
    variant = "scikit-learn 8x8 digits, one pixel per step"
    Config = DigitsConfig
    side = 8

    @classmethod
    def check(cls, config) -> str | None:
        if config.n_val + config.n_test >= IMAGES:
            return (f"task.n_val + task.n_test must be < {IMAGES} (the images scikit-learn ships), "
                    f"got {config.n_val} + {config.n_test}")
        return None

    @classmethod
    def train_size(cls, config) -> int:
        return IMAGES - config.n_val - config.n_test

    def images(self):
        x, y = _digits()
        c = self.config
        if c.n_val < 1 or c.n_test < 1 or c.n_val + c.n_test >= len(x):
            raise ValueError(f"sdigits needs n_val, n_test >= 1 and n_val + n_test < {len(x)}")
        order = torch.randperm(len(x), generator=torch.Generator().manual_seed(c.data_seed))
        x, y = x[order], y[order]
        val, test = slice(0, c.n_val), slice(c.n_val, c.n_val + c.n_test)
        train = slice(c.n_val + c.n_test, None)
        return x[train], y[train], x[val], y[val], x[test], y[test]
