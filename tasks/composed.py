"""Tasks whose model is more than one recurrent core and a linear head: the encoder-decoder half of the notes.

A ``ComposedTask`` names the composed model the system builds for it (``model``: "seq2seq", "caption", "vqa",
"classify" or "frames"; bench/run/models.py builds them from the architecture registry, so every family serves
as encoder and as decoder, and declares each model's ``model.*`` options, e.g. ``model.attention``). The task owns its data, its vocabularies, its metrics and how they are
scored; the system owns the model, the loss and decoding.

Batches are dicts of tensors, and each model kind reads fixed keys:

    seq2seq   src (B, S) long, src_len (B,), tgt (B, T) long = START y_1 .. y_n END PAD ..
    caption   image (B, C, H, W) float, tgt (B, T)
    vqa       image (B, C, H, W), question (B, Q) long, question_len (B,), answer (B,)
    classify  src (B, S) long, src_len (B,), label (B,)
    frames    frames (B, T, C, H, W) float, label (B, T)

Token id 0 is padding, 1 START and 2 END in every vocabulary (``Vocab``). Sequences are right-padded; a batch is
cut to its longest sequence when it is drawn (``DictDataset``). ``score`` receives what the system computed for
a batch (``Scored``: teacher-forced logits and attention, and at evaluation the decoded tokens).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import ClassVar

import torch
import torchmetrics
from torch.utils.data import DataLoader, Dataset

from .base import Splits, Task, TaskConfig

PAD, START, END = 0, 1, 2
SPECIALS = ("<pad>", "<s>", "</s>")
MODELS = ("seq2seq", "caption", "vqa", "classify", "frames")
LENGTH_KEYS = ("src_len", "question_len")  # batch keys holding each source's length


class Vocab:
    """Tokens <-> ids, with PAD/START/END first. Built from the training split so held-out words can be unknown
    (they map to ``<unk>`` when ``unk`` is set, and are refused otherwise)."""

    def __init__(self, tokens: Iterable[str], unk: bool = False):
        words = list(SPECIALS) + (["<unk>"] if unk else [])
        self.itos = words + sorted(set(tokens) - set(words))
        self.stoi = {w: i for i, w in enumerate(self.itos)}
        self.unk = self.stoi.get("<unk>")

    def __len__(self) -> int:
        return len(self.itos)

    def ids(self, tokens: Sequence[str], ends: bool = False) -> list[int]:
        """Token ids; with ``ends``, framed by START and END (a decoder's target)."""
        if self.unk is None:
            missing = [t for t in tokens if t not in self.stoi]
            if missing:
                raise KeyError(f"token {missing[0]!r} is not in the vocabulary")
        body = [self.stoi.get(t, self.unk) for t in tokens]
        return [START, *body, END] if ends else body

    def tokens(self, ids: Iterable[int]) -> list[str]:
        """Tokens up to the first END (START and PAD dropped)."""
        out = []
        for i in ids:
            i = int(i)
            if i == END:
                break
            if i not in (PAD, START):
                out.append(self.itos[i])
        return out


def pad(rows: Sequence[Sequence[int]], width: int | None = None) -> torch.Tensor:
    """Right-pad id lists with PAD into a (N, width) long tensor (width: the longest row)."""
    width = width or max(len(r) for r in rows)
    return torch.tensor([list(r) + [PAD] * (width - len(r)) for r in rows], dtype=torch.long)


def local_path_problem(path: str, field: str = "task.hf_path") -> str | None:
    """One line for a ``datasets`` path that is clearly local (starts with /, . or ~, or has more than one /)
    and missing; a Hub name (``owner/name``) passes, to be fetched when the run starts."""
    local = path.startswith(("/", ".", "~")) or path.count("/") > 1
    if local and not Path(path).expanduser().exists():
        return f"{field} {path!r} does not exist; give a local folder of data files or a Hub name"
    return None


class DictDataset(Dataset):
    """Equal-length tensors under names; ``ds[i]`` is one example, ``ds[a:b]`` or ``ds[index_tensor]`` a batch
    dict. Batches are cut to their longest sequence: every key in ``trim`` loses the trailing columns that are
    PAD in every row."""

    def __init__(self, trim: Sequence[str] = (), **tensors: torch.Tensor):
        sizes = {len(t) for t in tensors.values()}
        if len(sizes) != 1:
            raise ValueError(f"tensors of different lengths: { {k: len(t) for k, t in tensors.items()} }")
        self.tensors, self.trim = tensors, tuple(trim)

    def __len__(self) -> int:
        return len(next(iter(self.tensors.values())))

    def __getitem__(self, index) -> dict[str, torch.Tensor]:
        if isinstance(index, int):
            return {k: t[index] for k, t in self.tensors.items()}
        return self.batch(index)

    def __getitems__(self, indices: list[int]) -> dict[str, torch.Tensor]:  # DataLoader's batched fetch
        return self.batch(torch.tensor(indices))

    def batch(self, index) -> dict[str, torch.Tensor]:
        out = {k: t[index] for k, t in self.tensors.items()}
        for key in self.trim:
            used = (out[key] != PAD).any(dim=0).nonzero()
            out[key] = out[key][:, : int(used.max()) + 1 if len(used) else 1]
        return out


def _as_batch(batch):
    return batch  # DictDataset.__getitems__ already returns the batch


@dataclass
class Scored:
    """What the system computed for one batch, for ``ComposedTask.score``."""

    logits: torch.Tensor                 # teacher-forced (B, T, V) for decoders; (B, C) or (B, T, C) otherwise
    weights: torch.Tensor | None = None  # teacher-forced attention (B, T, S or N) or None
    tokens: torch.Tensor | None = None   # decoded (B, T'), PAD after END; decoders at evaluation only
    grid: tuple[int, int] | None = None  # (rows, columns) of an image grid attended over, cells row-major


class ComposedTask(Task):
    """Subclasses set ``model``, implement ``make_splits`` (``Splits`` of ``DictDataset``),
    ``sizes`` and ``score``, and declare ``metric_name``/``metric_mode``/``baseline`` as every task does."""

    model: ClassVar[str]
    declares = ("name", "version", "shape", "metric_name", "metric_mode", "model", "baseline", "make_metric",
                "make_splits", "sizes", "score")

    def sizes(self) -> dict:
        """What the model builder needs: ``src_vocab``/``tgt_vocab``/``max_len`` (seq2seq), ``tgt_vocab``,
        ``max_len``, ``image_shape`` (caption), ``vocab``, ``classes``, ``image_shape`` (vqa), ``vocab``,
        ``classes`` (classify), ``frame_shape``, ``classes`` (frames)."""
        raise NotImplementedError

    def score(self, metrics: dict[str, torchmetrics.Metric], scored: Scored, batch: dict) -> None:
        """Update ``metrics`` (the main one under ``metric_name``, then ``make_extra_metrics``'s) for a batch."""
        raise NotImplementedError

    def describe(self) -> dict:
        return {"name": self.name, "version": self.version, "shape": self.shape, "variant": self.variant,
                "metric": self.metric_name, "mode": self.metric_mode, "baseline": self.baseline,
                "solved_threshold": self.solved_threshold, "model": self.model, "sizes": self.sizes()}

    # The sequence contract's per-tensor hooks do not apply: the system reads dict batches.
    def inputs(self, x):
        raise TypeError(f"{self.name} is a composed task: its batches are dicts, read by bench/run/models.py")

    def probe_batch(self, n: int) -> dict[str, torch.Tensor]:
        """A fixed batch of ``n`` validation examples for the diagnostics. Where sources vary in length (a
        ``src_len`` or ``question_len`` key) they share one: the longest length that ``n`` examples have (else
        the most common), so source position s means the same in every row and the last position hears from
        every row, not from the longest sources alone."""
        val = self.splits.val
        key = next((k for k in LENGTH_KEYS if k in val.tensors), None)
        if key is None:
            return val[torch.arange(min(n, len(val)))]
        lengths = val.tensors[key]
        counts = torch.bincount(lengths)
        enough = (counts >= n).nonzero().flatten()
        length = int(enough.max()) if len(enough) else int(counts.argmax())
        return val[(lengths == length).nonzero().flatten()[:n]]

    def describe_example(self, batch: dict, i: int) -> dict:
        """Row ``i`` of a batch as readable text (source, reference) for samples and attention maps."""
        return {}

    def compare(self, reference: str, output: str) -> str:
        """What ``rnnbench decode`` prints after an output: = when it is the reference, else ≠."""
        return "=" if output == reference else "≠"

    def label_text(self, index: int) -> str:
        """The name of class ``index`` (an answer, a sentiment, a digit)."""
        return str(int(index))

    def prediction_text(self, logits: torch.Tensor) -> str:
        """One example's predicted class, or per-frame classes, as text: logits (C,) or (T, C)."""
        return " ".join(self.label_text(i) for i in logits.argmax(-1).reshape(-1).tolist())

    def _loader(self, dataset: Dataset, batch_size: int, shuffle: bool) -> DataLoader:
        return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, drop_last=shuffle,
                          collate_fn=_as_batch)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.splits.train, self.config.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.splits.val, 500, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.splits.test, 500, shuffle=False)


def accuracy(classes: int) -> torchmetrics.Metric:
    return torchmetrics.classification.MulticlassAccuracy(num_classes=classes, average="micro")


class ChoiceTask(ComposedTask):
    """A composed task that picks one of its classes per example (an answer, a sentiment). Subclasses set
    ``label_key`` (the batch key of the class) and implement ``build_data(config)`` -> (splits, vocabulary,
    class names), which this class caches per config. Accuracy; the baseline is the share of test examples whose
    class is the most frequent training class (the answer a model without the input would always give)."""

    label_key: ClassVar[str]
    metric_name = "acc"
    metric_mode = "max"

    @staticmethod
    def build_data(config) -> tuple[Splits, Vocab, list[str]]:
        raise NotImplementedError

    def _built(self) -> tuple[Splits, Vocab, list[str]]:
        # the batch size never changes the data: one cached build serves every batch size
        return self.build_data(replace(self.config, batch_size=TaskConfig.batch_size))

    def make_splits(self) -> Splits:
        return self._built()[0]

    @property
    def vocab(self) -> Vocab:
        return self._built()[1]

    @property
    def class_names(self) -> list[str]:
        return self._built()[2]

    @property
    def majority(self) -> float:
        common = torch.bincount(self.splits.train.tensors[self.label_key]).argmax()
        return (self.splits.test.tensors[self.label_key] == common).float().mean().item()

    @property
    def baseline(self) -> float:
        return self.majority

    def make_metric(self):
        return accuracy(len(self.class_names))

    def score(self, metrics, scored: Scored, batch: dict) -> None:
        metrics[self.metric_name].update(scored.logits, batch[self.label_key])

    def label_text(self, index: int) -> str:
        return self.class_names[int(index)]


class DecoderScores:
    """Exact match, token accuracy and BLEU of decoded sequences against their references, for seq2seq and
    caption tasks. ``exact`` and ``token_acc`` are means of per-example values (torchmetrics ``MeanMetric``);
    BLEU is torchmetrics' ``BLEUScore`` over the word strings."""

    @staticmethod
    def metrics(bleu_n: int = 4) -> dict[str, torchmetrics.Metric]:
        return {"exact": torchmetrics.MeanMetric(), "token_acc": torchmetrics.MeanMetric(),
                f"bleu{bleu_n}" if bleu_n != 4 else "bleu": torchmetrics.text.BLEUScore(n_gram=bleu_n)}

    @staticmethod
    def per_example(tokens: torch.Tensor, tgt: torch.Tensor, vocab: Vocab) -> tuple[list, list, torch.Tensor,
                                                                                     torch.Tensor]:
        """(outputs, references as token lists, exact (B,) 0/1, token accuracy (B,))."""
        outs = [vocab.tokens(row) for row in tokens.tolist()]
        refs = [vocab.tokens(row) for row in tgt.tolist()]
        exact = torch.tensor([float(o == r) for o, r in zip(outs, refs, strict=True)])
        tok = torch.tensor([sum(a == b for a, b in zip(o, r, strict=False)) / max(len(r), 1)
                            for o, r in zip(outs, refs, strict=True)])
        return outs, refs, exact, tok

    @staticmethod
    def update(metrics: dict, outs: list, refs: list, exact: torch.Tensor, tok: torch.Tensor, sep: str = " "):
        for name, metric in metrics.items():
            if name == "exact":
                metric.update(exact.to(metric.device))
            elif name == "token_acc":
                metric.update(tok.to(metric.device))
            elif name.startswith("bleu"):
                metric.update([sep.join(o) for o in outs], [[sep.join(r)] for r in refs])


__all__ = ["END", "MODELS", "PAD", "START", "ChoiceTask", "ComposedTask", "DecoderScores", "DictDataset", "local_path_problem", "Scored", "Splits", "Vocab", "accuracy", "pad"]
