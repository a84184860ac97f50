"""The adding problem (Hochreiter & Schmidhuber 1997; Le, Jaitly & Hinton 2015). Many-to-one regression.

Input (B, T, 2): channel 0 holds values U[0, 1), channel 1 a 0/1 marker. Variant: one marker in each half of
the sequence (the uRNN authors' code, amarshah/complex_RNN adding_problem.py). Target: the sum of the two
marked values; loss and metric MSE. Predicting the constant 1 scores Var(U1 + U2) = 1/6; "solved" means MSE
below 1 % of that variance, 1/600 (Skip RNN, ICLR 2018, Table 1).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torchmetrics
from torch.nn import functional as F
from torch.utils.data import TensorDataset

from options import opt

from .base import ManyToOneConfig, Splits, Task, generator, register


@dataclass(frozen=True)
class AddingConfig(ManyToOneConfig):
    seq_len: int = opt(100, "sequence length T", ge=2)
    n_train: int = opt(20000, "training sequences", ge=1)
    n_val: int = opt(1000, "validation sequences", ge=1)
    n_test: int = opt(2000, "test sequences", ge=1)


def make_adding(n: int, seq_len: int, g: torch.Generator) -> TensorDataset:
    values = torch.rand(n, seq_len, generator=g)
    half = seq_len // 2
    first = torch.randint(0, half, (n,), generator=g)
    second = torch.randint(half, seq_len, (n,), generator=g)
    marks = torch.zeros(n, seq_len)
    rows = torch.arange(n)
    marks[rows, first] = 1.0
    marks[rows, second] = 1.0
    return TensorDataset(torch.stack([values, marks], dim=-1), (values * marks).sum(1, keepdim=True))


@register
class Adding(Task):
    name = "adding"
    version = "1"
    shape = "many-to-one"
    variant = "one marker per half (uRNN code)"
    metric_name = "mse"
    metric_mode = "min"
    Config = AddingConfig

    @classmethod
    def train_size(cls, config) -> int:
        return config.n_train

    input_size = 2
    output_size = 1

    @property
    def seq_len(self) -> int:
        return self.config.seq_len

    @property
    def baseline(self) -> float:
        return 1 / 6

    @property
    def solved_threshold(self) -> float:
        return 1 / 600

    def loss(self, pred, target):
        return F.mse_loss(pred, target)

    def make_metric(self):
        return torchmetrics.MeanSquaredError()

    def make_splits(self) -> Splits:
        c = self.config
        if c.seq_len < 2:
            raise ValueError("adding needs seq_len >= 2 (one marker per half)")
        return Splits(*(make_adding(n, c.seq_len, generator(c.data_seed, s))
                        for s, n in (("train", c.n_train), ("val", c.n_val), ("test", c.n_test))))
