"""Character-level language modelling (many-to-many): predict the next character at every step.

Corpora (``task.corpus``):
- ``pydoc`` (default, offline): the Python reference manual's help topics that ship with every CPython
  (``pydoc_data.topics``, 79 topics, about 465,000 characters, 103 distinct). It is real technical English
  with code, not generated text, and it exists on any machine that runs the suite.
- ``hf:<dataset>``: any Hugging Face dataset with a text column (``task.hf_field``), loaded through
  ``datasets.load_dataset`` and cached by it, e.g. ``hf:karpathy/tiny_shakespeare`` when online, or a local
  folder of text files.
- any other value: a path to a local UTF-8 text file.

The text is split contiguously into train / val / test (``val_frac``, ``test_frac``), then into
non-overlapping windows of ``seq_len`` characters; targets are the inputs shifted by one. Inputs are indices,
one-hot encoded per batch (``inputs``), so a corpus costs bytes, not floats. Each window is trained with full
backpropagation through its ``seq_len`` steps. Metric: bits per character (cross-entropy / ln 2). Baseline: a
memoryless unigram model's bits per character on the test split, with train-split frequencies.
"""

from __future__ import annotations

import functools
import math
import os
from collections import Counter
from dataclasses import dataclass

import torch
import torchmetrics
from torch.nn import functional as F
from torch.utils.data import TensorDataset

from architectures.config import opt

from .base import Splits, Task, TaskConfig, register


@dataclass(frozen=True)
class CharLMConfig(TaskConfig):
    batch_size: int = opt(32, "training batch size (windows)")
    corpus: str = opt("pydoc", "pydoc (offline default), hf:<dataset>, or a path to a text file")
    hf_field: str = opt("text", "text column of an hf: corpus")
    seq_len: int = opt(100, "characters per window (full BPTT through each window)")
    max_chars: int = opt(0, "use only the first this many characters (0: all)")
    val_frac: float = opt(0.05, "fraction of the text (after train) held out for validation")
    test_frac: float = opt(0.05, "fraction of the text (at the end) held out for testing")


@functools.lru_cache(maxsize=4)
def load_text(corpus: str, hf_field: str = "text") -> str:
    if corpus == "pydoc":
        from pydoc_data.topics import topics

        return "\n\n".join(topics[k] for k in sorted(topics))
    if corpus.startswith("hf:"):
        import datasets

        ds = datasets.load_dataset(corpus[3:], split="train")
        return "\n".join(ds[hf_field])
    with open(os.path.expanduser(corpus), encoding="utf-8") as f:
        return f.read()


@register
class CharLM(Task):
    name = "charlm"
    version = "1"
    shape = "many-to-many"
    variant = "next character, contiguous splits, non-overlapping windows"
    metric_name = "bpc"
    metric_mode = "min"
    Config = CharLMConfig

    @classmethod
    def check(cls, config) -> str | None:
        c = config
        if c.corpus != "pydoc" and not c.corpus.startswith("hf:") and not os.path.isfile(os.path.expanduser(c.corpus)):
            return f"task.corpus {c.corpus!r} is not a file; valid: pydoc, hf:<dataset>, or a path to a text file"
        if c.seq_len < 1 or not (0 < c.val_frac < 1 and 0 < c.test_frac < 1 and c.val_frac + c.test_frac < 1):
            return "charlm needs seq_len >= 1 and 0 < val_frac, test_frac with val_frac + test_frac < 1"
        return None

    @functools.cached_property
    def text(self) -> str:
        text = load_text(self.config.corpus, self.config.hf_field)
        return text[: self.config.max_chars] if self.config.max_chars else text

    @functools.cached_property
    def vocab(self) -> list[str]:
        return sorted(set(self.text))

    @property
    def input_size(self) -> int:
        return len(self.vocab)

    @property
    def output_size(self) -> int:
        return len(self.vocab)

    @property
    def seq_len(self) -> int:
        return self.config.seq_len

    def _bounds(self) -> tuple[int, int]:
        n = len(self.text)
        n_test, n_val = int(n * self.config.test_frac), int(n * self.config.val_frac)
        return n - n_test - n_val, n - n_test

    @functools.cached_property
    def baseline(self) -> float:
        train_end, val_end = self._bounds()
        counts = Counter(self.text[:train_end])
        total, v = sum(counts.values()), len(self.vocab)
        test = self.text[val_end:]
        bits = -sum(math.log2((counts[ch] + 1) / (total + v)) for ch in test)
        return bits / max(1, len(test))

    def inputs(self, x: torch.Tensor) -> torch.Tensor:
        return F.one_hot(x, len(self.vocab)).float()

    def loss(self, pred, target):
        return F.cross_entropy(pred.reshape(-1, pred.shape[-1]), target.reshape(-1))

    def make_metric(self):
        return torchmetrics.MeanMetric()

    def metric_update(self, metric, pred, target):
        metric.update(self.loss(pred, target) / math.log(2), weight=target.numel())

    def make_splits(self) -> Splits:
        index = {ch: i for i, ch in enumerate(self.vocab)}
        ids = torch.tensor([index[ch] for ch in self.text], dtype=torch.long)
        train_end, val_end = self._bounds()
        parts = []
        for lo, hi in ((0, train_end), (train_end, val_end), (val_end, len(ids))):
            chunk = ids[lo:hi]
            T = self.config.seq_len
            n = (len(chunk) - 1) // T
            if n < 1:
                raise ValueError(f"charlm: a split of {len(chunk)} characters holds no window of {T}")
            parts.append(TensorDataset(chunk[: n * T].view(n, T), chunk[1 : n * T + 1].view(n, T)))
        return Splits(*parts)
