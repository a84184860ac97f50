"""Long-source translation: lists of numbers in English words -> the same list in German (or French) number words.

    rnnbench run --task translate-long --arch gru --model.attention none    # the fixed-size summary alone

A source is 1-60 words (``task.min_len``..``task.max_len``, commas included): numbers drawn with an equal
chance of each digit count (1..6), written by ``num2words`` and joined by commas until the list reaches a length
drawn uniformly in one bin of 10 source lengths (a list whose last number overshoots the bin is drawn again), so
every bin (1-10, 11-20, .., 51-60) holds an equal share of the data. The target is the same list in German
morphemes (word order crosses inside each number: "eighty five" -> "fünf und achtzig") or French words, cut and
joined as in ``translate`` (see translate.py).

Why: ``translate``'s sources are at most 12 words, short enough for a final-state summary to hold (Bahdanau et
al. 2015 saw the summary fail beyond about 20-30 words, fig. 2). Here a 60-word list holds ~10 numbers, over
100 bits, so exact match against source length (``test/exact_len<lo>_<hi>``, results/exact_by_length_<task>.png)
separates attention from its absence, and the bins up to 20 words show where a summary still holds the source
(``--task.min_len 20`` keeps the long sources only).

Lists are generated offline from ``data_seed``; the three splits share no list. Metric, scores and baseline are
translate's: exact match of the decoded output (the baseline is 0: no target repeats across splits).
"""

from __future__ import annotations

import functools
import random
from dataclasses import dataclass

from options import opt

from .base import TaskConfig, register
from .composed import Vocab
from .translate import Corpus, Translate, number_tokens

LANGS = ("de", "fr")
BIN_WIDTH = 10  # source words per bin of exact match against length
TRIES = 100     # drawn lists per kept list before the sizes are declared impossible


@dataclass(frozen=True)
class LongTranslateConfig(TaskConfig):
    lang: str = opt("de", "target language of the number words", choices=LANGS)
    n_train: int = opt(10000, "generated training lists", ge=1)
    n_val: int = opt(1000, "generated validation lists", ge=1)
    n_test: int = opt(2000, "generated test lists", ge=1)
    min_len: int = opt(1, "shortest source in words, commas included", ge=1)
    max_len: int = opt(60, "longest source in words, commas included", ge=1)
    max_number: int = opt(999999, "numbers are drawn from 0..max_number", ge=1, le=999999)


def length_bins(min_len: int, max_len: int) -> list[tuple[int, int]]:
    """Bins of ``BIN_WIDTH`` source lengths from ``min_len``; the last also takes what is left up to ``max_len``
    (1..60: 1-10, .., 51-60; 20..60: 20-29, 30-39, 40-49, 50-60)."""
    count = max(1, (max_len - min_len + 1) // BIN_WIDTH)
    return [(min_len + i * BIN_WIDTH, max_len if i == count - 1 else min_len + (i + 1) * BIN_WIDTH - 1)
            for i in range(count)]


# Half the numbers drawn have at most 3 digits (1,110 of them), and a list's English words are read twice (its
# length, then its source): the cache spares most of num2words' and the segmentation's work.
words_of = functools.lru_cache(maxsize=1 << 16)(number_tokens)


def draw_number(max_number: int, rng: random.Random) -> int:
    digits = rng.randint(1, len(str(max_number)))
    return rng.randint(0 if digits == 1 else 10 ** (digits - 1), min(10 ** digits - 1, max_number))


def number_list(length: int, max_number: int, rng: random.Random) -> tuple[list[int], int]:
    """Numbers whose English words, joined by commas, first reach ``length`` words; and their word count."""
    numbers, words = [], -1
    while words < length:
        numbers.append(draw_number(max_number, rng))
        words += 1 + len(words_of(numbers[-1], "en"))
    return numbers, words


def list_tokens(numbers: list[int], lang: str) -> list[str]:
    out = []
    for n in numbers:
        out += ([","] if out else []) + words_of(n, lang)
    return out


def draw_lists(count: int, min_len: int, max_len: int, max_number: int, seed: int) -> list[list[int]]:
    """``count`` distinct lists, an equal share (or one more) in each bin of source length, in random order: a
    length is drawn uniformly in the bin with the most left to fill, numbers are added until the list reaches
    it, and a list whose last number overshoots the bin is drawn again."""
    rng, bins = random.Random(seed), length_bins(min_len, max_len)
    quota = [count // len(bins) + (i < count % len(bins)) for i in range(len(bins))]
    kept, seen = [], set()
    for _ in range(TRIES * count):
        if len(kept) == count:
            break
        b = max(range(len(bins)), key=quota.__getitem__)  # the emptiest bin: the shares fill alike
        lo, hi = bins[b]
        numbers, words = number_list(rng.randint(lo, hi), max_number, rng)
        if words > hi or tuple(numbers) in seen:  # the last number overshot the bin
            continue
        quota[b] -= 1
        seen.add(tuple(numbers))
        kept.append(numbers)
    if len(kept) < count:
        raise ValueError(f"cannot draw {count} distinct lists of {min_len}-{max_len} words from numbers in "
                         f"0..{max_number}")
    rng.shuffle(kept)
    return kept


@functools.lru_cache(maxsize=4)
def generated_lists(lang: str, sizes: tuple[int, int, int], min_len: int, max_len: int, max_number: int,
                    seed: int) -> Corpus:
    lists = draw_lists(sum(sizes), min_len, max_len, max_number, seed)
    pairs = [(list_tokens(numbers, "en"), list_tokens(numbers, lang)) for numbers in lists]
    a, b = sizes[0], sizes[0] + sizes[1]
    src, tgt = Vocab(t for s, _ in pairs for t in s), Vocab(t for _, r in pairs for t in r)
    return Corpus(tuple(pairs[:a]), tuple(pairs[a:b]), tuple(pairs[b:]), src, tgt, " ")


@register
class LongTranslate(Translate):
    name = "translate-long"
    version = "1"
    variant = "lists of numbers, English words -> German/French words, 1-60 source words; exact match"
    Config = LongTranslateConfig

    @classmethod
    def data_files(cls, config) -> dict[str, str]:
        return {}  # generated, never read from disk

    @classmethod
    def check(cls, config) -> str | None:
        c = config
        if c.min_len > c.max_len:
            return f"task.min_len ({c.min_len}) must be <= task.max_len ({c.max_len})"
        return None

    @classmethod
    def train_size(cls, config) -> int | None:
        return config.n_train

    @property
    def corpus(self) -> Corpus:
        c = self.config
        return generated_lists(c.lang, (c.n_train, c.n_val, c.n_test), c.min_len, c.max_len, c.max_number,
                               c.data_seed)

    def length_bins(self) -> list[tuple[int, int | None]]:
        return list(length_bins(self.config.min_len, self.config.max_len))
