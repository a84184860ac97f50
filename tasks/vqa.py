"""Visual question answering: an image and a question in words -> one answer out of a fixed set of classes.

Model kind "vqa" (tasks/composed.py): batches hold ``image`` (B, 3, S, S) floats in [0, 1], ``question``
(B, Q) word ids, ``question_len`` (B,) and ``answer`` (B,) class ids. Accuracy is the metric.

Sources (``source``):

- ``easy-vqa`` (default, offline): the ``easy-vqa`` package (pip easy-vqa==1.0, MIT; it ships 4,000 train and
  1,000 test 64x64 PNG images of one coloured shape, 38,575 / 9,673 templated questions and 13 answers).
  Validation is the questions of ``n_val_images`` TRAIN images held out by a fixed shuffle (``data_seed``), so
  no image is seen in training and validation; test is the package's test split. Classes are its 13 answers.
  Decoding the 5,000 PNGs takes about a second and is cached per process. ``max_questions`` keeps the first
  questions of each split (and decodes only their images), for quick checks.
- ``vqav2``: VQA v2 (Goyal et al. 2017) through ``datasets.load_dataset(hf_path)``; the default
  ``lmms-lab/VQAv2`` is the standard parquet copy (columns ``image``, ``image_id``, ``question``,
  ``multiple_choice_answer``, ``answers``). Only its ``validation`` split (214,354 questions on 40,504 COCO
  images) has public answers, so the labelled split ``hf_split`` is divided by image with the same fixed
  shuffle: ``n_val_images`` for validation, ``n_test_images`` for test, the rest for training. The ``answers``
  most frequent training answers are the classes; questions with any other answer are dropped from every split
  (accuracy is over questions answerable by the classes). ``max_questions`` caps the rows read. Images are
  squashed to ``image_size`` squared. ``hf_path`` may be a local folder of data files, read the same way.

Questions are lowercased words (punctuation dropped); the vocabulary comes from the training questions, and
words first seen in validation or test map to ``<unk>``. The baseline is the share of test questions whose
answer is the most frequent training answer (``majority``): 36.4 % on easy-vqa's default split, where "no"
narrowly outnumbers "yes" in training ("yes" would score 37.3 %). Measured here (shared/ANCHORS.md): question
only about 67 %, image + question about 85 % after 120 s of training.
"""

from __future__ import annotations

import functools
import importlib.util
import io
import os
import re
from collections import Counter
from dataclasses import dataclass

import torch

from options import opt

from .base import Splits, TaskConfig, on_disk, register
from .composed import ChoiceTask, DictDataset, Vocab, local_path_problem, pad

WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")


@dataclass(frozen=True)
class VQAConfig(TaskConfig):
    source: str = opt("easy-vqa", "where the questions come from", choices=("easy-vqa", "vqav2"))
    n_val_images: int = opt(500, "training images whose questions are held out for validation", ge=1)
    n_test_images: int = opt(2000, "vqav2 only: images of hf_split held out for testing", ge=1)
    image_size: int = opt(64, "images are resized to image_size x image_size", ge=8)
    hf_path: str = opt("lmms-lab/VQAv2", "vqav2: datasets.load_dataset path (Hub name or local folder)")
    hf_split: str = opt("validation", "vqav2: the labelled split of hf_path that is divided by image")
    answers: int = opt(1000, "vqav2: the most frequent training answers kept as classes", ge=2)
    max_questions: int = opt(0, "read only the first max_questions questions of each source split (0: all)",
                             ge=0)


def words(question: str) -> list[str]:
    return WORD.findall(question.lower())


class VQADataset(DictDataset):
    """Questions with an index into a shared uint8 image tensor: an image is stored once, not per question."""

    def __init__(self, images: torch.Tensor, image_index: torch.Tensor, **tensors: torch.Tensor):
        super().__init__(trim=("question",), image_index=image_index, **tensors)
        self.images = images

    def __getitem__(self, index):
        out = super().__getitem__(index)
        if isinstance(index, int):
            out["image"] = self.images[out.pop("image_index")].float() / 255.0
        return out

    def batch(self, index) -> dict[str, torch.Tensor]:
        out = super().batch(index)
        return {"image": self.images[out.pop("image_index")].float() / 255.0, **out}


def _decode(image, size: int):
    """(3, size, size) uint8 from a PIL image."""
    import numpy as np

    image = image if image.mode == "RGB" else image.convert("RGB")
    if image.size != (size, size):
        image = image.resize((size, size))
    return torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1)


@functools.lru_cache(maxsize=4)
def easy_images(split: str, size: int, count: int) -> torch.Tensor:
    """easy-vqa's ``split`` images 0 .. count - 1 as (count, 3, size, size) uint8, row i = image id i."""
    import easy_vqa
    from PIL import Image

    paths = easy_vqa.get_train_image_paths() if split == "train" else easy_vqa.get_test_image_paths()
    out = []
    for i in range(count):
        with Image.open(paths[i]) as image:
            out.append(_decode(image, size))
    return torch.stack(out)


@functools.lru_cache(maxsize=1)
def _train_image_ids() -> tuple:
    """easy-vqa's train questions' image ids, read once a process: check and train_size ask for them for every
    planned run, and reading the questions' JSON takes a quarter of a second."""
    import easy_vqa

    return tuple(easy_vqa.get_train_questions()[2])


def hold_out(image_ids: list, counts: tuple[int, ...], seed: int) -> list[int]:
    """Per question: 0 (train) or k (the k-th held-out group), whole images at a time, by a fixed shuffle."""
    unique = sorted(set(image_ids))
    order = torch.randperm(len(unique), generator=torch.Generator().manual_seed(seed)).tolist()
    group, start = {}, 0
    for k, n in enumerate(counts, start=1):
        group.update({unique[j]: k for j in order[start:start + n]})
        start += n
    return [group.get(i, 0) for i in image_ids]


def _easy(c: VQAConfig):
    """(rows per split as (question, answer, image row), images per split, class names) from easy-vqa."""
    import easy_vqa

    cap = c.max_questions or None  # the question files are sorted by image id: a cap keeps the first images
    train = list(zip(*easy_vqa.get_train_questions(), strict=True))[:cap]
    test = list(zip(*easy_vqa.get_test_questions(), strict=True))[:cap]
    group = hold_out([r[2] for r in train], (c.n_val_images,), c.data_seed)
    parts = {"train": [r for r, g in zip(train, group, strict=True) if g == 0],
             "val": [r for r, g in zip(train, group, strict=True) if g == 1], "test": test}
    images = easy_images("train", c.image_size, max(r[2] for r in train) + 1)
    images = {"train": images, "val": images,
              "test": easy_images("test", c.image_size, max(r[2] for r in test) + 1)}
    return parts, images, easy_vqa.get_answers()


def _answer(row: dict) -> str:
    if row.get("multiple_choice_answer") is not None:
        return row["multiple_choice_answer"]
    said = [a["answer"] if isinstance(a, dict) else a for a in row["answers"]]
    return Counter(said).most_common(1)[0][0]


def _vqav2(c: VQAConfig):
    """The same triple from a VQA v2 copy read by ``datasets``: each image decoded once, by image id."""
    import datasets
    from PIL import Image

    ds = datasets.load_dataset(os.path.expanduser(c.hf_path), split=c.hf_split)
    if c.max_questions:
        ds = ds.select(range(min(c.max_questions, len(ds))))
    ids = list(ds["image_id"]) if "image_id" in ds.column_names else list(range(len(ds)))
    first = {}
    for row, i in enumerate(ids):
        first.setdefault(i, row)
    pixels = ds.cast_column("image", datasets.Image(decode=False)).select(list(first.values()))
    images = []
    for start in range(0, len(pixels), 1000):
        for item in pixels[start:start + 1000]["image"]:
            source = io.BytesIO(item["bytes"]) if item.get("bytes") else item["path"]
            with Image.open(source) as image:
                images.append(_decode(image, c.image_size))
    position = {i: k for k, i in enumerate(first)}
    text = ds.select_columns([k for k in ("multiple_choice_answer", "answers") if k in ds.column_names])
    rows = [(q, _answer(a), position[i]) for q, a, i in zip(ds["question"], text, ids, strict=True)]
    group = hold_out(ids, (c.n_val_images, c.n_test_images), c.data_seed)
    parts = {name: [r for r, g in zip(rows, group, strict=True) if g == k]
             for k, name in enumerate(("train", "val", "test"))}
    counts = Counter(a for _, a, _ in parts["train"])
    classes = [a for a, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[: c.answers]]
    images = torch.stack(images)
    return parts, dict.fromkeys(parts, images), classes


def _questions(rows: list, vocab: Vocab) -> tuple[torch.Tensor, torch.Tensor]:
    """(question ids (N, Q), lengths (N,)); each distinct question is tokenized and padded once."""
    distinct = {q: k for k, q in enumerate(dict.fromkeys(q for q, _, _ in rows))}
    ids = [vocab.ids(words(q)) or [vocab.unk] for q in distinct]
    index = torch.tensor([distinct[q] for q, _, _ in rows])
    return pad(ids)[index], torch.tensor([len(i) for i in ids])[index]


@functools.lru_cache(maxsize=2)
def build(config: VQAConfig) -> tuple[Splits, Vocab, list[str]]:
    """(Splits, question vocabulary, class names); cached per data-defining config (batch_size excluded)."""
    parts, images, classes = (_easy if config.source == "easy-vqa" else _vqav2)(config)
    label = {a: k for k, a in enumerate(classes)}
    vocab = Vocab((w for q in {q for q, _, _ in parts["train"]} for w in words(q)), unk=True)
    out = []
    for name in ("train", "val", "test"):
        rows = [r for r in parts[name] if r[1] in label]
        if not rows:
            raise ValueError(f"vqa: no {name} questions with an answer among the classes")
        question, length = _questions(rows, vocab)
        out.append(VQADataset(images[name], torch.tensor([r[2] for r in rows]), question=question,
                              question_len=length, answer=torch.tensor([label[r[1]] for r in rows])))
    return Splits(*out), vocab, classes


@register
class VQA(ChoiceTask):
    name = "vqa"
    version = "1"
    variant = "easy-vqa shapes and colours, 13 answers"
    shape = "many-to-one"
    model = "vqa"
    label_key = "answer"
    Config = VQAConfig

    @classmethod
    def data_files(cls, config) -> dict[str, str]:
        return on_disk(hf_path=config.hf_path) if config.source == "vqav2" else {}

    @classmethod
    def check(cls, config) -> str | None:
        c = config
        if c.source == "easy-vqa":
            if importlib.util.find_spec("easy_vqa") is None:
                return "task.source easy-vqa needs the easy-vqa package: pip install easy-vqa==1.0"
            images = len(set(_train_image_ids()[: c.max_questions or None]))
            if c.n_val_images >= images:
                return (f"task.n_val_images must be < {images}, the easy-vqa train images read "
                        f"(task.max_questions {c.max_questions}), got {c.n_val_images}")
            return None
        if importlib.util.find_spec("datasets") is None:
            return "task.source vqav2 needs the datasets package: pip install datasets"
        return local_path_problem(c.hf_path)

    @classmethod
    def image_channels(cls, config) -> int:
        return 3

    @classmethod
    def train_size(cls, config) -> int | None:
        if config.source != "easy-vqa" or cls.check(config):
            return None
        ids = list(_train_image_ids()[: config.max_questions or None])
        return hold_out(ids, (config.n_val_images,), config.data_seed).count(0)

    build_data = staticmethod(build)

    def sizes(self) -> dict:
        s = self.config.image_size
        return {"vocab": len(self.vocab), "classes": len(self.class_names), "image_shape": (3, s, s)}

    def describe_example(self, batch: dict, i: int) -> dict:
        n = int(batch["question_len"][i])
        question = " ".join(self.vocab.tokens(batch["question"][i, :n].tolist()))
        return {"source": question + "?", "reference": self.class_names[int(batch["answer"][i])]}
