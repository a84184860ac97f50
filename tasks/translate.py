"""Translation (seq2seq): English number words to German or French, dates to ISO, or Multi30k German to English.

Pairs (``task.pair``):
- ``numbers-de`` / ``numbers-fr`` (offline default): ``num2words(n, lang="en")`` -> ``num2words(n, lang=...)``
  for distinct n in 0..``max_number``. English and French are split at spaces and hyphens (commas dropped,
  "and" kept); German compounds are cut into number morphemes by greedy longest match ("fünfundachtzig" ->
  fünf und achtzig), so word order crosses: "eighty five" -> "fünf und achtzig". The digit count of n is drawn
  as evenly as the counts allow (1-digit numbers run out first), so long sources are common.
- ``dates``: a date in 1950-01-01..2049-12-31 written by babel's ``format_date`` in one of five locales and
  four formats -> its ISO form, both one token per character. Two-digit years are unambiguous in that range;
  es_ES short ("7/3/85") is left out because it reads like en_US short for the other date.
- ``multi30k`` (online): ``datasets.load_dataset(task.hf_path)`` with splits train/validation/test and columns
  de, en; German -> English, lowercased, words and punctuation as tokens, at most ``max_len`` of each, the
  splits used whole; vocabularies from the train split (words seen twice or more, the rest ``<unk>``). The
  anchor: bentrevett's pytorch-seq2seq notebooks, test BLEU 13.8 / 20.6 / 28.3 (no attention / context
  vector / attention).

Generated pairs are drawn from ``data_seed``; every number or date is in exactly one split, and the vocabularies
are closed (built from all generated text). Metric: exact match of the decoded output (plus token accuracy,
BLEU, and exact match per bin of source length). Baseline: exact match of always answering the most frequent
training target, on the test split (0 for generated pairs, whose splits share no target).
"""

from __future__ import annotations

import datetime
import functools
import math
import os
import re
from collections import Counter
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torchmetrics

from options import opt

from .base import Splits, TaskConfig, on_disk, register
from .composed import ComposedTask, DecoderScores, DictDataset, Scored, Vocab, pad

PAIRS = ("numbers-de", "numbers-fr", "dates", "multi30k")
FIRST_DAY, DAYS = datetime.date(1950, 1, 1), 36525  # through 2049-12-31
LOCALES, DATE_FORMATS = ("en_US", "en_GB", "de_DE", "fr_FR", "es_ES"), ("short", "medium", "long", "full")
DATE_STYLES = tuple((loc, f) for loc in LOCALES for f in DATE_FORMATS if (loc, f) != ("es_ES", "short"))
# German number words as num2words writes them for 0..999999: every one segments completely by greedy longest
# match over these (checked for all million; tests check a sample). Teens stay whole, like English's.
GERMAN_MORPHEMES = tuple(sorted((
    "null", "ein", "eins", "zwei", "drei", "vier", "fünf", "sechs", "sieben", "acht", "neun",
    "zehn", "elf", "zwölf", "dreizehn", "vierzehn", "fünfzehn", "sechzehn", "siebzehn", "achtzehn", "neunzehn",
    "zwanzig", "dreißig", "vierzig", "fünfzig", "sechzig", "siebzig", "achtzig", "neunzig",
    "und", "hundert", "tausend"), key=len, reverse=True))
SLACK = 5  # decoding steps allowed beyond the longest target and its END
BINS = {"numbers": ((1, 2), (3, 4), (5, 6), (7, 8), (9, None)),   # source words
        "dates": ((1, 8), (9, 12), (13, 18), (19, 24), (25, None)),  # source characters
        "multi30k": ((1, 10), (11, 20), (21, 30), (31, None))}      # source tokens


@dataclass(frozen=True)
class TranslateConfig(TaskConfig):
    pair: str = opt("numbers-de", "what to translate: English number words to German or French words, dates "
                                  "to ISO, or Multi30k German to English (online)", choices=PAIRS)
    n_train: int = opt(8000, "generated training pairs (multi30k: its whole train split)", ge=1)
    n_val: int = opt(1000, "generated validation pairs", ge=1)
    n_test: int = opt(2000, "generated test pairs", ge=1)
    max_number: int = opt(999999, "numbers pairs: numbers are drawn from 0..max_number", ge=1, le=999999)
    hf_path: str = opt("bentrevett/multi30k", "multi30k: Hugging Face dataset id or local folder of data files")
    max_len: int = opt(50, "multi30k: keep at most this many tokens of each source and target sentence", ge=1)


class Corpus(NamedTuple):
    train: tuple  # of (source tokens, target tokens)
    val: tuple
    test: tuple
    src_vocab: Vocab
    tgt_vocab: Vocab
    sep: str      # joins tokens back into text: "" for characters, " " for words


# ---- numbers -------------------------------------------------------------------------------------------------
@functools.cache  # at most 2,000 entries a language: n < 1000 and multiples of 1000
def _cardinal(n: int, lang: str) -> str:
    from num2words import num2words

    return num2words(n, lang=lang)


def number_words(n: int, lang: str) -> str:
    """``num2words(n, lang=lang)`` for n < 10**6, assembled from the words for n // 1000 * 1000 and n % 1000:
    num2words costs 0.1-0.4 ms a call, too slow for 10,000 pairs. Equal for all of 0..999999 in en, de and fr
    (checked once; tests check a sample)."""
    high, low = divmod(n, 1000)
    if high == 0 or low == 0:
        return _cardinal(n, lang)
    joint = (", " if low >= 100 else " and ") if lang == "en" else {"de": "", "fr": " "}[lang]
    return _cardinal(high * 1000, lang) + joint + _cardinal(low, lang)


# A regex alternation tries its branches in order, so over the morphemes longest first it is greedy longest match.
MORPHEME = re.compile("|".join(GERMAN_MORPHEMES))


def segment_german(word: str) -> list[str]:
    out, i = [], 0
    while i < len(word):
        piece = MORPHEME.match(word, i)
        if piece is None:
            raise ValueError(f"{word!r} does not segment into number morphemes at {word[i:]!r}")
        out.append(piece.group())
        i = piece.end()
    return out


def number_tokens(n: int, lang: str) -> list[str]:
    words = [w for w in re.split(r"[ \-]+", number_words(n, lang).replace(",", "")) if w]
    return [m for w in words for m in segment_german(w)] if lang == "de" else words


def draw_numbers(max_number: int, count: int, g: torch.Generator) -> torch.Tensor:
    """``count`` distinct numbers in 0..max_number in random order; each digit count gets an equal share, or all
    its numbers where it has fewer (the rest go to the larger ones)."""
    digits = len(str(max_number))
    lows = [0] + [10 ** d for d in range(1, digits)]
    caps = [min(10 ** (d + 1) - 1, max_number) - lows[d] + 1 for d in range(digits)]
    quota, left = [0] * digits, count
    for k, d in enumerate(sorted(range(digits), key=caps.__getitem__)):
        quota[d] = min(caps[d], -(-left // (digits - k)))
        left -= quota[d]
    if left:
        raise ValueError(f"{count} distinct numbers do not fit in 0..{max_number}")
    pool = torch.cat([lows[d] + torch.randperm(caps[d], generator=g)[: quota[d]] for d in range(digits)])
    return pool[torch.randperm(count, generator=g)]


# ---- dates and multi30k --------------------------------------------------------------------------------------
def date_pairs(count: int, g: torch.Generator) -> list[tuple[list[str], list[str]]]:
    from babel import Locale
    from babel.dates import format_date

    locales = {loc: Locale.parse(loc) for loc in LOCALES}
    days = torch.randperm(DAYS, generator=g)[:count].tolist()
    styles = torch.randint(len(DATE_STYLES), (count,), generator=g).tolist()
    out = []
    for day, style in zip(days, styles, strict=True):
        date, (loc, fmt) = FIRST_DAY + datetime.timedelta(days=day), DATE_STYLES[style]
        out.append((list(format_date(date, fmt, locale=locales[loc])), list(date.isoformat())))
    return out


def words(text: str) -> list[str]:
    return re.findall(r"\w+|[^\w\s]", text.lower())


@functools.lru_cache(maxsize=2)
def multi30k(hf_path: str, max_len: int) -> Corpus:
    import datasets

    ds = datasets.load_dataset(os.path.expanduser(hf_path))
    splits = []
    for name in ("train", "validation", "test"):
        pairs = ((words(de)[:max_len], words(en)[:max_len]) for de, en in zip(ds[name]["de"], ds[name]["en"],
                                                                              strict=True))
        splits.append(tuple((s, t) for s, t in pairs if s and t))  # an empty side has nothing to read or say
    frequent = [Counter(t for pair in splits[0] for t in pair[side]) for side in (0, 1)]
    src, tgt = (Vocab((t for t, c in f.items() if c >= 2), unk=True) for f in frequent)
    return Corpus(*splits, src, tgt, " ")


@functools.lru_cache(maxsize=4)
def generated(pair: str, max_number: int, sizes: tuple[int, int, int], seed: int) -> Corpus:
    g = torch.Generator().manual_seed(seed)
    if pair == "dates":
        pairs, sep = date_pairs(sum(sizes), g), ""
    else:
        lang, numbers = pair.removeprefix("numbers-"), draw_numbers(max_number, sum(sizes), g).tolist()
        pairs, sep = [(number_tokens(n, "en"), number_tokens(n, lang)) for n in numbers], " "
    a, b = sizes[0], sizes[0] + sizes[1]
    src, tgt = Vocab(t for s, _ in pairs for t in s), Vocab(t for _, r in pairs for t in r)
    return Corpus(tuple(pairs[:a]), tuple(pairs[a:b]), tuple(pairs[b:]), src, tgt, sep)


def encode(pairs: tuple, src_vocab: Vocab, tgt_vocab: Vocab) -> DictDataset:
    src = [src_vocab.ids(s) for s, _ in pairs]
    return DictDataset(trim=("src", "tgt"), src=pad(src), src_len=torch.tensor([len(s) for s in src]),
                       tgt=pad([tgt_vocab.ids(t, ends=True) for _, t in pairs]))


@register
class Translate(ComposedTask):
    name = "translate"
    version = "1"
    shape = "seq2seq"
    model = "seq2seq"
    variant = "number words en -> de/fr, dates -> ISO, or Multi30k de -> en; exact match of the decoded output"
    metric_name = "exact"
    metric_mode = "max"
    Config = TranslateConfig

    @classmethod
    def data_files(cls, config) -> dict[str, str]:
        return on_disk(hf_path=config.hf_path) if config.pair == "multi30k" else {}

    @classmethod
    def check(cls, config) -> str | None:
        c = config
        if c.pair == "multi30k":
            path = os.path.expanduser(c.hf_path)
            if (c.hf_path.startswith(("/", ".", "~")) or os.path.isabs(path)) and not os.path.exists(path):
                return (f"task.hf_path {c.hf_path!r} does not exist; give a local folder of data files or a "
                        f"Hugging Face dataset id such as bentrevett/multi30k")
            return None
        total = c.n_train + c.n_val + c.n_test
        limit, what = ((DAYS, "dates in 1950-01-01..2049-12-31") if c.pair == "dates" else
                       (c.max_number + 1, f"numbers in 0..{c.max_number} (task.max_number)"))
        if total > limit:
            return f"task.n_train + task.n_val + task.n_test = {total} exceeds the {limit} distinct {what}"
        return None

    @classmethod
    def train_size(cls, config) -> int | None:
        return None if config.pair == "multi30k" else config.n_train

    @property
    def corpus(self) -> Corpus:
        c = self.config
        if c.pair == "multi30k":
            return multi30k(c.hf_path, c.max_len)
        return generated(c.pair, c.max_number, (c.n_train, c.n_val, c.n_test), c.data_seed)

    @property
    def src_vocab(self) -> Vocab:
        return self.corpus.src_vocab

    @property
    def tgt_vocab(self) -> Vocab:
        return self.corpus.tgt_vocab

    def sizes(self) -> dict:
        longest = max(len(t) for part in self.corpus[:3] for _, t in part)
        return {"src_vocab": len(self.src_vocab), "tgt_vocab": len(self.tgt_vocab), "max_len": longest + 1 + SLACK}

    @property
    def baseline(self) -> float:
        corpus = self.corpus
        top = Counter(tuple(t) for _, t in corpus.train).most_common(1)[0][0]
        return sum(tuple(t) == top for _, t in corpus.test) / len(corpus.test)

    def make_splits(self) -> Splits:
        corpus = self.corpus
        return Splits(*(encode(part, corpus.src_vocab, corpus.tgt_vocab) for part in corpus[:3]))

    # ---- scoring -------------------------------------------------------------------------------------------
    def length_bins(self) -> list[tuple[int, int | None]]:
        """(lowest, highest) source length of each bin, inclusive; highest None: no upper end."""
        kind = self.config.pair.split("-")[0]
        bins = BINS[kind]
        if kind == "multi30k":  # sources are cut at max_len, so later bins would stay empty
            bins = [(lo, hi) for lo, hi in bins if lo <= self.config.max_len]
        return list(bins)

    def bin_names(self) -> list[str]:
        return [f"exact_len{lo}_{'up' if hi is None else hi}" for lo, hi in self.length_bins()]

    def make_metric(self) -> torchmetrics.Metric:
        return torchmetrics.MeanMetric()

    def make_extra_metrics(self) -> dict[str, torchmetrics.Metric]:
        extra = {k: m for k, m in DecoderScores.metrics().items() if k != self.metric_name}
        return extra | {name: torchmetrics.MeanMetric() for name in self.bin_names()}

    def score(self, metrics: dict[str, torchmetrics.Metric], scored: Scored, batch: dict) -> None:
        # Decoded tokens at evaluation; in training, the teacher-forced guesses (they predict tgt[:, 1:]).
        tokens = scored.tokens if scored.tokens is not None else scored.logits.argmax(-1)
        outs, refs, exact, tok = DecoderScores.per_example(tokens, batch["tgt"], self.tgt_vocab)
        DecoderScores.update(metrics, outs, refs, exact, tok)
        lengths = batch["src_len"].cpu()
        for (lo, hi), name in zip(self.length_bins(), self.bin_names(), strict=True):
            rows = (lengths >= lo) & (lengths <= (math.inf if hi is None else hi))
            if name in metrics and rows.any():
                metrics[name].update(exact[rows])

    # ---- reading -------------------------------------------------------------------------------------------
    def probe_batch(self, n: int) -> dict[str, torch.Tensor]:
        """The first ``n`` validation examples of the most common source length (fewer if it has fewer)."""
        lengths = self.splits.val.tensors["src_len"]
        common = Counter(lengths.tolist()).most_common(1)[0][0]
        return self.splits.val[(lengths == common).nonzero().squeeze(1)[:n]]

    def decode_text(self, ids) -> str:
        """Target ids (a decoded output or a reference) up to END as text."""
        return self.corpus.sep.join(self.tgt_vocab.tokens(ids))

    def describe_example(self, batch: dict, i: int) -> dict:
        source = self.src_vocab.tokens(batch["src"][i, : int(batch["src_len"][i])].tolist())
        return {"source": self.corpus.sep.join(source), "reference": self.decode_text(batch["tgt"][i].tolist())}
