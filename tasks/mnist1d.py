"""MNIST-1D (Greydanus & Kobak, arXiv 2011.14439): 10-class classification of length-40 1-D signals.

Many-to-one; one scalar per step. The data come from ``mnist1d.data.make_dataset(get_dataset_args())``, which
generates the published 4000 train / 1000 test split without a download (``get_dataset()`` downloads first,
so it is never called). The generator reseeds NumPy's global RNG; we save and restore that state so importing
this task cannot change anything else's random numbers. The last ``n_val`` training sequences are the
validation split. Chance accuracy is 10 %.

The paper's GRU (Table 1: bidirectional, 6 hidden units, every step's outputs flattened into one linear layer;
5,134 parameters) is ``--arch gru --arch.hidden_size 6 --arch.bidirectional true --task.readout flatten``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import TensorDataset

from options import SEED_MAX, opt

from .base import Classification, ManyToOneConfig, Splits, register


@dataclass(frozen=True)
class MNIST1DConfig(ManyToOneConfig):
    data_seed: int = opt(42, "mnist1d generator seed (42 reproduces the published data set)", ge=0, le=SEED_MAX)
    n_val: int = opt(500, "training sequences held out for validation", ge=1, le=3999)


@functools.lru_cache(maxsize=2)
def generate(seed: int) -> dict[str, np.ndarray]:
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    args.seed = seed
    saved = np.random.get_state()
    try:
        return make_dataset(args)
    finally:
        np.random.set_state(saved)


@register
class MNIST1D(Classification):
    name = "mnist1d"
    version = "1"
    variant = "mnist1d make_dataset defaults, 3500/500/1000"
    Config = MNIST1DConfig

    input_size = 1
    seq_len = 40

    @classmethod
    def train_size(cls, config) -> int:
        return 4000 - config.n_val  # make_dataset's published training set

    def make_splits(self) -> Splits:
        data = generate(self.config.data_seed)
        x = torch.tensor(data["x"], dtype=torch.float32).unsqueeze(-1)
        y = torch.tensor(data["y"], dtype=torch.long)
        n_val = self.config.n_val
        if not 0 < n_val < len(x):
            raise ValueError(f"mnist1d n_val must be in 1..{len(x) - 1}, got {n_val}")
        x_test = torch.tensor(data["x_test"], dtype=torch.float32).unsqueeze(-1)
        return Splits(TensorDataset(x[:-n_val], y[:-n_val]), TensorDataset(x[-n_val:], y[-n_val:]),
                      TensorDataset(x_test, torch.tensor(data["y_test"], dtype=torch.long)))
