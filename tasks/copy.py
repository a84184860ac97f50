"""Copying memory (Arjovsky, Shah & Bengio 2016, the authors' memory_problem.py). Many-to-many.

Input, one-hot over 10 tokens: ``copy_len`` symbols drawn from {1..8}, then ``delay - 1`` blanks (0), one
delimiter (9), then ``copy_len`` blanks; length delay + 2 * copy_len. Target: blanks everywhere except the last
``copy_len`` steps, which must reproduce the symbols. Loss and metric: cross-entropy averaged over every step.
A memoryless model that outputs blanks and then the uniform distribution over symbols scores
copy_len * ln(8) / (delay + 2 * copy_len) (0.0204 for delay 1000, copy_len 10).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torchmetrics
from torch.nn import functional as F
from torch.utils.data import TensorDataset

from options import opt

from .base import Splits, Task, TaskConfig, generator, register

ALPHABET = 8  # symbols 1..8; 0 is blank, 9 the delimiter
TOKENS = ALPHABET + 2


@dataclass(frozen=True)
class CopyConfig(TaskConfig):
    delay: int = opt(100, "T: steps between the last symbol and the end of the delimiter", ge=1)
    copy_len: int = opt(10, "symbols to remember (the paper's 10)", ge=1)
    n_train: int = opt(20000, "training sequences", ge=1)
    n_val: int = opt(1000, "validation sequences", ge=1)
    n_test: int = opt(2000, "test sequences", ge=1)


def make_copy(n: int, delay: int, copy_len: int, g: torch.Generator) -> TensorDataset:
    symbols = torch.randint(1, ALPHABET + 1, (n, copy_len), generator=g)
    length = delay + 2 * copy_len
    x = torch.zeros(n, length, dtype=torch.long)
    x[:, :copy_len] = symbols
    x[:, delay + copy_len - 1] = TOKENS - 1
    y = torch.zeros(n, length, dtype=torch.long)
    y[:, -copy_len:] = symbols
    return TensorDataset(F.one_hot(x, TOKENS).float(), y)


@register
class Copy(Task):
    name = "copy"
    version = "1"
    shape = "many-to-many"
    variant = "Arjovsky et al. 2016: delay-1 blanks, one delimiter"
    metric_name = "ce"
    metric_mode = "min"
    Config = CopyConfig

    @classmethod
    def train_size(cls, config) -> int:
        return config.n_train

    input_size = TOKENS
    output_size = ALPHABET + 1  # blank + symbols; the delimiter is never a target

    @property
    def seq_len(self) -> int:
        return self.config.delay + 2 * self.config.copy_len

    @property
    def baseline(self) -> float:
        return self.config.copy_len * math.log(ALPHABET) / self.seq_len

    def loss(self, pred, target):
        return F.cross_entropy(pred.reshape(-1, pred.shape[-1]), target.reshape(-1))

    def make_metric(self):
        return torchmetrics.MeanMetric()

    def metric_update(self, metric, pred, target):
        metric.update(self.loss(pred, target), weight=target.numel())

    def make_splits(self) -> Splits:
        c = self.config
        if c.delay < 1 or c.copy_len < 1:
            raise ValueError("copy needs delay >= 1 and copy_len >= 1")
        return Splits(*(make_copy(n, c.delay, c.copy_len, generator(c.data_seed, s))
                        for s, n in (("train", c.n_train), ("val", c.n_val), ("test", c.n_test))))
