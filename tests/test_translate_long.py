"""The long-source translate task: lists of numbers, 20-60 source words in equal bins, the same numbers in German
or French, splits that share no list, and exact match per length bin that the report's figure reads."""

from collections import Counter

import pytest
import torch
from conftest import small

from bench.reports import leaderboard
from bench.reports.figures import length_bins as recorded_bins
from bench.reports.tables import Tables
from bench.run.config import resolve
from bench.run.train import train
from bench.store import Store
from tasks.translate import number_tokens
from tasks.translate_long import LongTranslate, LongTranslateConfig, draw_lists, length_bins, list_tokens

SMALL = {"n_train": 320, "n_val": 60, "n_test": 100, "max_number": 9999}


def task(**cfg) -> LongTranslate:
    return LongTranslate(LongTranslateConfig(**cfg))


def sources(t: LongTranslate, split: str) -> list[tuple[str, ...]]:
    return [tuple(s) for s, _ in getattr(t.corpus, split)]


def test_bins_are_ten_words_wide_and_the_last_takes_the_rest():
    assert length_bins(20, 60) == [(20, 29), (30, 39), (40, 49), (50, 60)]
    assert length_bins(20, 29) == [(20, 29)] and length_bins(5, 12) == [(5, 12)] and length_bins(7, 7) == [(7, 7)]
    assert task(**SMALL).bin_names() == [f"exact_len{lo}_{lo + 9}" for lo in range(1, 60, 10)]


def test_every_bin_holds_an_equal_share_of_distinct_lists():
    t = task(**SMALL)
    every = [s for split in ("train", "val", "test") for s in sources(t, split)]
    assert [len(sources(t, s)) for s in ("train", "val", "test")] == [320, 60, 100]
    assert len(set(every)) == len(every)  # no list in two splits, nor twice in one
    assert min(map(len, every)) >= 1 and max(map(len, every)) <= 60
    per_bin = Counter(next(i for i, (lo, hi) in enumerate(t.length_bins()) if lo <= len(s) <= hi) for s in every)
    assert sorted(per_bin.values()) == [80] * 6
    long = [len(s) for s in sources(task(min_len=20, **SMALL), "train")]
    assert min(long) >= 20 and max(long) <= 60 and len(set(long)) > 30
    assert t.baseline == 0.0 and t.sizes()["max_len"] > max(len(r) for _, r in t.corpus.test)


def test_the_target_is_the_same_numbers_in_the_other_language():
    lists = draw_lists(50, 20, 60, 999999, seed=3)
    for numbers in lists:
        src, de, fr = (list_tokens(numbers, lang) for lang in ("en", "de", "fr"))
        assert src.count(",") == de.count(",") == fr.count(",") == len(numbers) - 1
        chunks = " ".join(de).split(" , ")
        assert chunks == [" ".join(number_tokens(n, "de")) for n in numbers]
    assert list_tokens([85, 7], "de") == ["fünf", "und", "achtzig", ",", "sieben"]
    assert len({len(str(n)) for numbers in lists for n in numbers}) == 6  # every digit count is drawn
    t = task(lang="fr", **SMALL)
    assert "vingt" in t.tgt_vocab.stoi and "," in t.src_vocab.stoi


def test_same_config_same_tensors_other_seed_other_tensors():
    a, b, c = (task(data_seed=seed, **SMALL).splits.test for seed in (1234, 1234, 7))
    assert all(torch.equal(a.tensors[k], b.tensors[k]) for k in a.tensors)
    assert not torch.equal(a.tensors["src"], c.tensors["src"])


def test_the_default_config_fills_every_length_bin_of_the_test_split():
    t = task()
    lengths = t.splits.test.tensors["src_len"]
    counts = [int(((lengths >= lo) & (lengths <= hi)).sum()) for lo, hi in t.length_bins()]
    assert len(counts) == 6 and min(counts) >= 250 and sum(counts) == 2000
    assert len(t.splits.train) == 10000 and LongTranslate.train_size(t.config) == 10000


def test_bad_lengths_are_one_line():
    assert LongTranslate.check(LongTranslateConfig()) is None
    assert LongTranslate.check(LongTranslateConfig(min_len=30, max_len=20)) == (
        "task.min_len (30) must be <= task.max_len (20)")
    with pytest.raises(ValueError, match=r"^cannot draw 5 distinct lists of 20-20 words from numbers in 0\.\.9$"):
        draw_lists(5, 20, 20, 9, seed=0)  # one-word numbers and commas: a list has an odd length


def test_a_run_records_exact_match_per_bin_and_the_length_figure_reads_it(tmp_path):
    rec = train(resolve(small("translate-long", "gru", **{"train.max_steps": 2, "train.val_every": 2})), tmp_path,
                wandb="disabled")
    assert rec["status"] == "ok"
    assert set(recorded_bins(rec)) == {(6, 15), (16, 25)}  # conftest's small lists: 6-25 words
    leaderboard.write_figures(Store(tmp_path), Tables.of([rec]))
    assert (tmp_path / "exact_by_length_translate-long.png").is_file()
