"""Character-level language modelling (many-to-many): predict the next character at every step.

Corpora (``task.corpus``):
- ``pydoc`` (default, offline): the Python reference manual's help topics that ship with every CPython
  (``pydoc_data.topics``, 79 topics, about 465,000 characters, 103 distinct). It is real technical English
  with code, not generated text, and it exists on any machine that runs the suite.
- ``hf:<dataset>``: any Hugging Face dataset with a text column (``task.hf_field``), loaded through
  ``datasets.load_dataset`` and cached by it, e.g. ``hf:karpathy/tiny_shakespeare`` when online, or a local
  folder of text files.
- any other value: a path to a local UTF-8 text file.

The text is split contiguously into train / val / test (``val_frac``, ``test_frac``). Each split is read as
``batch_size`` parallel streams, the classic char-rnn layout: the split is cut into that many contiguous
pieces, and batch i holds characters [i·seq_len, (i+1)·seq_len) of every piece, so consecutive batches
continue each other and the system carries the hidden state from one batch to the next (reset each epoch).
Training is truncated backpropagation through time: every batch is split into chunks of ``tbptt`` steps, one
optimizer step per chunk, the state carried across chunks and detached between them (bench/run/system.py).
``tbptt 0`` backpropagates through the whole window instead (full BPTT; the state is still carried, and
detached at window boundaries). Evaluation streams the val/test text through the same carried state, so
every character is scored with all the context before it in its stream.

Inputs are indices, one-hot encoded per batch (``inputs``), so a corpus costs bytes, not floats. Metric: bits
per character (cross-entropy / ln 2), with perplexity per character (torchmetrics) beside it. Baseline: a
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
from torch.utils.data import DataLoader, Dataset
from torchmetrics.text import Perplexity

from options import opt

from .base import Splits, Task, TaskConfig, on_disk, register


@dataclass(frozen=True)
class CharLMConfig(TaskConfig):
    batch_size: int = opt(32, "parallel streams per batch", ge=1)
    corpus: str = opt("pydoc", "pydoc (offline default), hf:<dataset>, or a path to a text file")
    hf_field: str = opt("text", "text column of an hf: corpus")
    seq_len: int = opt(100, "characters per stream per batch (the window the state is carried across)", ge=1)
    tbptt: int = opt(50, "truncated BPTT: one optimizer step per chunk of this many characters (0: full BPTT "
                         "through each window); must divide seq_len", ge=0, divides="seq_len")
    max_chars: int = opt(0, "use only the first this many characters (0: all)", ge=0)
    val_frac: float = opt(0.05, "fraction of the text (after train) held out for validation", gt=0, lt=1)
    test_frac: float = opt(0.05, "fraction of the text (at the end) held out for testing", gt=0, lt=1)


def load_text(corpus: str, hf_field: str = "text") -> str:
    if corpus == "pydoc" or corpus.startswith("hf:"):
        return _named_text(corpus, hf_field)
    with open(os.path.expanduser(corpus), encoding="utf-8") as f:  # read again: an edited file is a new run
        return f.read()


@functools.lru_cache(maxsize=4)
def _named_text(corpus: str, hf_field: str) -> str:
    if corpus == "pydoc":
        from pydoc_data.topics import topics

        return "\n\n".join(topics[k] for k in sorted(topics))
    if corpus.startswith("hf:"):
        import datasets

        ds = datasets.load_dataset(corpus[3:], split="train")
        return "\n".join(ds[hf_field])


@register
class CharLM(Task):
    name = "charlm"
    version = "2"
    id_base_version = "2"  # its committed records were made at version 2, before versions joined run ids
    shape = "many-to-many"
    variant = "next character, contiguous splits, streams with carried state"
    carries_state = True
    is_text = True
    metric_name = "bpc"
    metric_mode = "min"
    Config = CharLMConfig

    @classmethod
    def check(cls, config) -> str | None:
        c = config
        if c.corpus != "pydoc" and not c.corpus.startswith("hf:") and not os.path.isfile(os.path.expanduser(c.corpus)):
            return f"task.corpus {c.corpus!r} is not a file; valid: pydoc, hf:<dataset>, or a path to a text file"
        if c.val_frac + c.test_frac >= 1:
            return f"task.val_frac + task.test_frac must be < 1, got {c.val_frac} + {c.test_frac}"
        if c.corpus.startswith("hf:"):
            return None  # loading it may download: read when the run starts
        return cls._check_text(c)

    @classmethod
    def data_files(cls, config) -> dict[str, str]:
        corpus = config.corpus
        return {} if corpus == "pydoc" else on_disk(corpus=corpus.removeprefix("hf:"))

    @classmethod
    def _check_text(cls, c) -> str | None:
        """The corpus as the run reads it (cached): UTF-8 text with one window per stream in every split.
        Found here, a bad corpus is one line before any work, not a traceback from inside the Trainer."""
        try:
            n = len(load_text(c.corpus, c.hf_field))
        except UnicodeDecodeError as exc:
            return f"task.corpus {c.corpus}: not UTF-8 text ({exc.reason}); a corpus is a UTF-8 text file"
        except OSError as exc:
            return f"task.corpus {c.corpus}: cannot be read ({exc.strerror or exc})"
        if n == 0:
            return f"task.corpus {c.corpus}: empty file"
        n = min(n, c.max_chars or n)
        n_test, n_val = int(n * c.test_frac), int(n * c.val_frac)
        B, T = c.batch_size, c.seq_len
        # Training reads windows of seq_len per stream; evaluation needs one character per stream at least.
        if n - n_test - n_val < B * T + 1 or min(n_val, n_test) < B + 1:
            return (f"task.corpus {c.corpus}: {n} characters{' (task.max_chars)' if n == c.max_chars else ''} are "
                    f"too few for task.batch_size {B} streams: train / val / test hold {n - n_test - n_val} / "
                    f"{n_val} / {n_test} and need {B * T + 1} (task.seq_len {T} per stream) / {B + 1} / {B + 1}")
        return None

    @classmethod
    def truncation_for(cls, config) -> int | None:
        return config.tbptt or None

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

    def make_extra_metrics(self):
        return {"ppl": Perplexity()}

    def metric_update(self, metric, pred, target):
        metric.update(self.loss(pred, target) / math.log(2), weight=target.numel())

    def make_splits(self) -> Splits:
        index = {ch: i for i, ch in enumerate(self.vocab)}
        ids = torch.tensor([index[ch] for ch in self.text], dtype=torch.long)
        train_end, val_end = self._bounds()
        parts = [ids[lo:hi] for lo, hi in ((0, train_end), (train_end, val_end), (val_end, len(ids)))]
        B, T = self.config.batch_size, self.config.seq_len
        # Evaluation may read shorter windows (its score does not depend on them: the state is carried).
        return Splits(Streams(parts[0], B, T), *(Streams(p, B, min(T, (len(p) - 1) // B)) for p in parts[1:]))

    def train_dataloader(self) -> DataLoader:
        # In order, never shuffled: batch i + 1 continues batch i in every stream (the carried state needs it).
        return DataLoader(self.splits.train, batch_size=None)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.splits.val, batch_size=None)

    def test_dataloader(self) -> DataLoader:
        return DataLoader(self.splits.test, batch_size=None)

    def probe_batch(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        # Probes span what one backward pass spans: a truncation chunk (the whole window under full BPTT).
        return self.splits.val.windows(n, self.config.tbptt or self.config.seq_len)


class Streams(Dataset):
    """A split as ``streams`` contiguous pieces read ``window`` characters at a time: item i is the pair
    (x, y) of (streams, window) index tensors, y being x shifted by one character. The last window may be
    shorter, so evaluation scores every character but the ``len % streams`` left over."""

    def __init__(self, ids: torch.Tensor, streams: int, window: int):
        per = (len(ids) - 1) // streams
        if per < window:
            raise ValueError(f"charlm: a split of {len(ids)} characters gives {streams} streams of {per} "
                             f"characters, shorter than one window of {window}")
        self.x = ids[: streams * per].view(streams, per)
        self.y = ids[1 : streams * per + 1].view(streams, per)
        self.window = window

    def __len__(self) -> int:
        return math.ceil(self.x.shape[1] / self.window)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        if not 0 <= i < len(self):
            raise IndexError(i)
        cols = slice(i * self.window, (i + 1) * self.window)
        return self.x[:, cols], self.y[:, cols]

    def windows(self, n: int, length: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The first ``n`` windows of ``length`` characters, as independent sequences (B=n) from a zero state."""
        length = min(length, self.x.shape[1])
        full = self.x.shape[1] // length
        x = self.x[:, : full * length].reshape(-1, length)
        y = self.y[:, : full * length].reshape(-1, length)
        return x[:n], y[:n]
