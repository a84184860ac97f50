"""Image captioning (one-to-many): an image in, a sentence out, decoded word by word by the "caption" model.

Sources (``task.source``):
- ``digits`` (default, offline): strips of 1..``max_digits`` scikit-learn 8x8 handwritten digits (the 1,797
  images that ship with scikit-learn, values 0..16 scaled to [0, 1]) set side by side, left-aligned, on a
  1 x 8 x (8 * max_digits) canvas (zeros after the last digit), captioned by their English words, e.g. "three
  one four". The digit *images* are held out between splits: a fixed shuffle (``data_seed``) cuts them into
  pools of 60 / 15 / 25 %, and each split composes its ``n_train`` / ``n_val`` / ``n_test`` strips only from
  its own pool, so a test strip never shows a digit drawing seen in training. Digits per strip are uniform in
  1..max_digits. The ten words are known in advance, so the vocabulary has no ``<unk>``.
- ``flickr8k`` (online): ``datasets.load_dataset(task.hf_path)`` (a hub id, or a local folder of data files),
  with an ``image`` column and ``caption_0``.. ``caption_4``. Its train / validation / test splits are used
  when present; otherwise the train rows are cut 80 / 10 / 10 % in order.
- ``coco`` (online, local files): ``torchvision.datasets.CocoCaptions(task.coco_root, task.coco_annotations)``,
  images in id order: the first 80 % train, the next 10 % validation, the last 10 % test.

Online captions are lower-cased and split into words (letters, digits, inner apostrophes), cut to ``max_len``
words; the vocabulary is the training words seen at least ``min_freq`` times, the rest read ``<unk>``. Images
are RGB resized to ``image_size`` squared, kept once as uint8 and gathered per batch as floats in [0, 1].
Training uses every (image, caption) pair; validation and test score each image once, against its *first*
caption only (BLEU with one reference per image; lower than the multi-reference BLEU papers quote).

Batches: ``image`` (B, C, H, W) float in [0, 1], ``tgt`` (B, T) long = START words END PAD, and, online,
``image_id`` (B,) (the row of the source split, or the COCO image id). Metric: corpus BLEU-4 of the decoded
captions (torchmetrics), beside exact match, token accuracy and ``monotone``: the share of captions of two or
more words whose teacher-forced attention centre (the attention-weighted column of the image grid) never moves
left as the words go on; a model without attention leaves it empty (nan). Baseline: the BLEU-4 of always
answering the most frequent training caption on the test split (0 for digits, whose most frequent caption is
one word and has no 4-grams).
"""

from __future__ import annotations

import functools
import os
import re
from collections import Counter
from dataclasses import dataclass

import torch
import torchmetrics

from options import opt

from .base import Splits, TaskConfig, generator, on_disk, register
from .composed import END, PAD, START, ComposedTask, DecoderScores, DictDataset, Scored, Vocab, pad

SOURCES = ("digits", "flickr8k", "coco")
WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
POOLS = (0.60, 0.75)    # cumulative shares of the digit images in the train and val pools; test: the rest
EVAL_SHARE = 0.10       # online sources without splits: val and test take this share each, train the rest
TOLERANCE = 1e-4        # a centre may step left by this many columns (float noise) and still count as monotone
WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")


@dataclass(frozen=True)
class CaptionConfig(TaskConfig):
    source: str = opt("digits", "where images and captions come from", choices=SOURCES)
    n_train: int = opt(6000, "digit strips for training (source digits)", ge=1, le=200_000)
    n_val: int = opt(500, "digit strips for validation (source digits)", ge=1, le=50_000)
    n_test: int = opt(1000, "digit strips for testing (source digits)", ge=1, le=50_000)
    max_digits: int = opt(5, "most digits in one strip (source digits)", ge=1, le=8)
    hf_path: str = opt("jxie/flickr8k", "datasets.load_dataset path: hub id or local folder (source flickr8k)")
    coco_root: str = opt("", "folder of the COCO images (source coco)")
    coco_annotations: str = opt("", "COCO captions json, e.g. captions_train2017.json (source coco)")
    image_size: int = opt(64, "side of the square RGB images (online sources)", ge=8, le=512)
    max_len: int = opt(20, "most words kept of a caption (online sources)", ge=1, le=200)
    min_freq: int = opt(3, "training count a word needs to enter the vocabulary (online sources)", ge=1)


class ImagePairs(DictDataset):
    """Captions that share an image store it once: ``row`` indexes ``pixels`` (N, C, H, W) uint8, and each
    example or batch gathers its images as ``image``, floats in [0, 1]."""

    def __init__(self, pixels: torch.Tensor, trim=(), **tensors: torch.Tensor):
        super().__init__(trim, **tensors)
        self.pixels = pixels

    def __getitem__(self, index):
        if isinstance(index, int):
            return self._gather({k: t[index] for k, t in self.tensors.items()})
        return self.batch(index)

    def batch(self, index) -> dict[str, torch.Tensor]:
        return self._gather(super().batch(index))

    def _gather(self, out: dict) -> dict:
        out["image"] = self.pixels[out.pop("row")].float() / 255
        return out


# ---- digits ----------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def _digits() -> tuple[torch.Tensor, torch.Tensor]:
    from sklearn.datasets import load_digits

    d = load_digits()
    return torch.tensor(d.images, dtype=torch.float32) / 16.0, torch.tensor(d.target)


def digit_pools(seed: int) -> dict[str, torch.Tensor]:
    """Indices of the scikit-learn digit images each split may draw from: disjoint, fixed by ``seed``."""
    n = len(_digits()[0])
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    a, b = int(POOLS[0] * n), int(POOLS[1] * n)
    return {"train": order[:a], "val": order[a:b], "test": order[b:]}


def _strips(pool: torch.Tensor, n: int, max_digits: int, g: torch.Generator, vocab: Vocab) -> DictDataset:
    images, labels = _digits()
    k = torch.randint(1, max_digits + 1, (n,), generator=g)
    pick = pool[torch.randint(len(pool), (n, max_digits), generator=g)]
    used = torch.arange(max_digits) < k[:, None]                        # (n, m): slot holds a digit
    canvas = (images[pick] * used[..., None, None]).permute(0, 2, 1, 3).reshape(n, 1, 8, 8 * max_digits)
    word_id = torch.tensor(vocab.ids(WORDS))
    tgt = torch.full((n, max_digits + 2), PAD, dtype=torch.long)
    tgt[:, 0] = START
    tgt[:, 1:-1] = torch.where(used, word_id[labels[pick]], PAD)
    tgt.scatter_(1, (k + 1)[:, None], END)
    return DictDataset(trim=("tgt",), image=canvas, tgt=tgt)


@functools.lru_cache(maxsize=4)
def digit_strips(seed: int, n_train: int, n_val: int, n_test: int, max_digits: int) -> tuple[Splits, Vocab]:
    vocab, pools = Vocab(WORDS), digit_pools(seed)
    parts = {split: _strips(pools[split], n, max_digits, generator(seed, split), vocab)
             for split, n in (("train", n_train), ("val", n_val), ("test", n_test))}
    return Splits(parts["train"], parts["val"], parts["test"]), vocab


# ---- flickr8k and coco -----------------------------------------------------------------------------------
def words(caption: str, max_len: int) -> list[str]:
    return WORD.findall(caption.lower())[:max_len]


def _pixels(image, size: int) -> torch.Tensor:
    """A PIL image as (3, size, size) uint8."""
    import numpy as np
    from PIL import Image

    rgb = image.convert("RGB").resize((size, size), Image.BILINEAR)
    return torch.from_numpy(np.array(rgb)).permute(2, 0, 1)


def _carve(rows: list) -> dict[str, list]:
    """Rows in order cut into train / val / test (EVAL_SHARE each for val and test, at least one row)."""
    k = max(1, round(EVAL_SHARE * len(rows)))
    if len(rows) < 2 * k + 1:
        raise ValueError(f"caption data need at least 3 images to split, got {len(rows)}")
    return {"train": rows[: -2 * k], "val": rows[-2 * k: -k], "test": rows[-k:]}


def _flickr_rows(hf_path: str, size: int) -> dict[str, list]:
    import datasets

    ds = datasets.load_dataset(os.path.expanduser(hf_path))
    cols = sorted((c for c in ds["train"].column_names if c.startswith("caption_")), key=lambda c: int(c[8:]))
    rows = {name: [(_pixels(r["image"], size), [r[c] for c in cols], i) for i, r in enumerate(ds[name])]
            for name in ("train", "validation", "test") if name in ds}
    if "validation" in rows and "test" in rows:
        return {"train": rows["train"], "val": rows["validation"], "test": rows["test"]}
    return _carve(rows["train"])


def _coco_rows(root: str, annotations: str, size: int) -> dict[str, list]:
    from torchvision.datasets import CocoCaptions

    ds = CocoCaptions(os.path.expanduser(root), os.path.expanduser(annotations))  # ids in sorted order
    return _carve([(_pixels(image, size), caps, ds.ids[i]) for i, (image, caps) in enumerate(ds) if caps])


def _pairs(rows: list, vocab: Vocab, max_len: int, every: bool) -> ImagePairs:
    row, ids, tgt = [], [], []
    for j, (_, captions, image_id) in enumerate(rows):
        for caption in captions if every else captions[:1]:
            row.append(j), ids.append(image_id), tgt.append(vocab.ids(words(caption, max_len), ends=True))
    return ImagePairs(torch.stack([p for p, _, _ in rows]), trim=("tgt",), row=torch.tensor(row),
                      image_id=torch.tensor(ids), tgt=pad(tgt))


@functools.lru_cache(maxsize=2)
def online(source: str, hf_path: str, coco_root: str, coco_annotations: str, image_size: int, max_len: int,
           min_freq: int) -> tuple[Splits, Vocab]:
    rows = (_coco_rows(coco_root, coco_annotations, image_size) if source == "coco"
            else _flickr_rows(hf_path, image_size))
    counts = Counter(w for _, captions, _ in rows["train"] for c in captions for w in words(c, max_len))
    vocab = Vocab([w for w, n in counts.items() if n >= min_freq], unk=True)
    return Splits(*(_pairs(rows[s], vocab, max_len, every=s == "train") for s in ("train", "val", "test"))), vocab


# ---- scoring ---------------------------------------------------------------------------------------------
def attention_centres(weights: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """(B, T, N) attention over a row-major (rows, columns) grid -> (B, T) attention-weighted column."""
    rows, cols = grid
    if weights.shape[-1] != rows * cols:
        raise ValueError(f"attention over {weights.shape[-1]} cells, but the grid {rows}x{cols} has {rows * cols}")
    return weights @ torch.arange(cols, dtype=weights.dtype, device=weights.device).repeat(rows)


def monotone(weights: torch.Tensor, tgt: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """1.0 / 0.0 per caption of two or more words: does the attention centre never move left over its words?
    ``weights[:, t]`` is the teacher-forced attention that predicts ``tgt[:, t + 1]``; the END step is left out."""
    word = ((tgt[:, 1:] != END) & (tgt[:, 1:] != PAD))[:, : weights.shape[1]]
    steps = attention_centres(weights, grid).diff(dim=1) >= -TOLERANCE
    ok = (steps | ~(word[:, 1:] & word[:, :-1])).all(dim=1)
    return ok[word.sum(dim=1) >= 2].float()


@register
class Caption(ComposedTask):
    name = "caption"
    version = "1"
    shape = "one-to-many"
    variant = "digit strips captioned in English words; flickr8k or COCO online"
    metric_name = "bleu"
    metric_mode = "max"
    model = "caption"
    Config = CaptionConfig

    @classmethod
    def check(cls, config) -> str | None:
        c = config
        if c.source == "coco":
            for field, exists, what in (("coco_root", os.path.isdir, "folder"),
                                        ("coco_annotations", os.path.isfile, "file")):
                value = getattr(c, field)
                if not value:
                    return f"task.{field} is empty; task.source coco needs the COCO {what}"
                if not exists(os.path.expanduser(value)):
                    return f"task.{field} {value!r} is not a {what}"
        local = c.hf_path.startswith(("/", ".", "~"))  # a hub id (owner/name) may download: read at run start
        if c.source == "flickr8k" and local and not os.path.exists(os.path.expanduser(c.hf_path)):
            return f"task.hf_path {c.hf_path!r} does not exist; valid: a hub id (jxie/flickr8k) or a local folder"
        return None

    @classmethod
    def data_files(cls, config) -> dict[str, str]:
        # COCO's image folder (18 GB) is not hashed: its annotations name the images a run reads.
        if config.source == "coco":
            return on_disk(coco_annotations=config.coco_annotations)
        return on_disk(hf_path=config.hf_path) if config.source == "flickr8k" else {}

    @classmethod
    def train_size(cls, config) -> int | None:
        return config.n_train if config.source == "digits" else None

    @classmethod
    def image_channels(cls, config) -> int:
        return 1 if config.source == "digits" else 3  # grey digit strips; online photos are converted to RGB

    @functools.cached_property
    def _data(self) -> tuple[Splits, Vocab]:
        c = self.config
        if c.source == "digits":
            return digit_strips(c.data_seed, c.n_train, c.n_val, c.n_test, c.max_digits)
        return online(c.source, c.hf_path, c.coco_root, c.coco_annotations, c.image_size, c.max_len, c.min_freq)

    def make_splits(self) -> Splits:
        return self._data[0]

    @property
    def vocab(self) -> Vocab:
        return self._data[1]

    def sizes(self) -> dict:
        s = self.splits
        longest = max(d.tensors["tgt"].shape[1] for d in (s.train, s.val, s.test))  # START words END
        return {"tgt_vocab": len(self.vocab), "max_len": longest, "image_shape": tuple(s.train[0]["image"].shape)}

    @functools.cached_property
    def baseline(self) -> float:
        """BLEU-4 on the test split of always answering the most frequent training caption."""
        train, test = self.splits.train.tensors["tgt"], self.splits.test.tensors["tgt"]
        common = " ".join(Counter(tuple(self.vocab.tokens(r)) for r in train.tolist()).most_common(1)[0][0])
        refs = [[self.decode_text(r)] for r in test.tolist()]
        return float(torchmetrics.functional.text.bleu_score([common] * len(refs), refs, n_gram=4))

    def make_metric(self) -> torchmetrics.Metric:
        return torchmetrics.text.BLEUScore(n_gram=4)

    def make_extra_metrics(self) -> dict[str, torchmetrics.Metric]:
        return {"exact": torchmetrics.MeanMetric(), "token_acc": torchmetrics.MeanMetric(),
                "monotone": torchmetrics.MeanMetric()}

    def score(self, metrics: dict[str, torchmetrics.Metric], scored: Scored, batch: dict) -> None:
        tgt = batch["tgt"]
        if scored.tokens is not None:
            DecoderScores.update(metrics, *DecoderScores.per_example(scored.tokens, tgt, self.vocab))
        if scored.weights is not None and "monotone" in metrics:
            grid = getattr(scored, "grid", None)
            if grid is None:
                raise ValueError("caption scoring needs Scored.grid (rows, columns) with attention weights")
            share = monotone(scored.weights, tgt, grid)
            if len(share):
                metrics["monotone"].update(share)

    def decode_text(self, ids) -> str:
        return " ".join(self.vocab.tokens(ids.tolist() if torch.is_tensor(ids) else ids))

    def describe_example(self, batch: dict, i: int) -> dict:
        reference = self.decode_text(batch["tgt"][i])
        if self.config.source == "digits":
            n = len(reference.split())
            source = f"<image: strip of {n} digit{'s' if n != 1 else ''}>"
        else:
            source = f"<image {int(batch['image_id'][i])}>"
        return {"source": source, "reference": reference}
