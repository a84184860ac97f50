"""The caption task: digit strips that match their words, digit images held out between splits, deterministic
data, the most-frequent-caption baseline, one-line config errors, the flickr8k and COCO loaders on tiny local
fixtures, and scoring (BLEU, exact, token accuracy, the monotone attention share) on hand-made outputs."""

import json
import math

import pytest
import torch

from options import ConfigError, check
from tasks.caption import WORDS, Caption, CaptionConfig, _digits, digit_pools, digit_strips, monotone
from tasks.composed import END, PAD, START, Scored

SMALL = {"n_train": 64, "n_val": 16, "n_test": 32, "batch_size": 8}


def task(**cfg) -> Caption:
    return Caption(CaptionConfig(**{**SMALL, **cfg}))


def blocks(image: torch.Tensor) -> list[torch.Tensor]:
    """The 8x8 digit slots of a (1, 8, 8m) strip, left to right."""
    return list(image[0].split(8, dim=1))


def key(block: torch.Tensor) -> bytes:
    return block.contiguous().numpy().tobytes()


def test_a_digit_batch_has_the_caption_layout_and_each_word_names_its_digit():
    t = task()
    batch = next(iter(t.train_dataloader()))
    assert set(batch) == {"image", "tgt"}
    image, tgt = batch["image"], batch["tgt"]
    assert image.shape == (8, 1, 8, 40) and image.dtype == torch.float32 and tgt.dtype == torch.long
    assert 0 <= image.min() and image.max() <= 1 and (tgt[:, 0] == START).all()
    images, labels = _digits()
    label_of = {key(x): int(y) for x, y in zip(images, labels, strict=True)}
    for row in range(8):
        caption = t.decode_text(tgt[row]).split()
        n = len(caption)
        assert 1 <= n <= 5 and tgt[row, n + 1] == END and (tgt[row, n + 2:] == PAD).all()
        slots = blocks(image[row])
        assert [WORDS[label_of[key(b)]] for b in slots[:n]] == caption
        assert all((b == 0).all() for b in slots[n:])  # left-aligned, zeros after the last digit
    assert t.sizes() == {"tgt_vocab": 13, "max_len": 7, "image_shape": (1, 8, 40)}
    assert t.train_size(t.config) == 64 and len(t.splits.val) == 16 and len(t.splits.test) == 32


def test_digit_images_are_held_out_between_splits():
    pools = digit_pools(1234)
    sets = {s: set(p.tolist()) for s, p in pools.items()}
    assert sum(map(len, sets.values())) == 1797 and set.union(*sets.values()) == set(range(1797))
    assert (len(sets["train"]), len(sets["val"]), len(sets["test"])) == (1078, 269, 450)
    images = _digits()[0]
    pool_keys = {s: {key(images[i]) for i in p} for s, p in sets.items()}
    splits, _ = digit_strips(1234, 200, 200, 200, 5)
    for split in ("train", "val", "test"):
        data = getattr(splits, split).tensors
        for image, tgt in zip(data["image"], data["tgt"], strict=True):
            n = int(((tgt != PAD) & (tgt != START) & (tgt != END)).sum())
            for b in blocks(image)[:n]:
                k = key(b)
                assert k in pool_keys[split] and all(k not in v for s, v in pool_keys.items() if s != split)


def test_same_config_same_strips_other_seed_other_strips():
    a = digit_strips.__wrapped__(1234, 64, 16, 32, 5)[0]
    b = digit_strips.__wrapped__(1234, 64, 16, 32, 5)[0]
    c = digit_strips.__wrapped__(7, 64, 16, 32, 5)[0]
    for split in ("train", "val", "test"):
        for k in ("image", "tgt"):
            assert torch.equal(getattr(a, split).tensors[k], getattr(b, split).tensors[k])
    assert not torch.equal(a.train.tensors["image"], c.train.tensors["image"])
    assert not torch.equal(a.train.tensors["tgt"][:16], a.val.tensors["tgt"])


def test_default_digit_baseline_is_zero_bleu_of_a_one_word_caption():
    t = Caption()
    assert (len(t.splits.train), len(t.splits.val), len(t.splits.test)) == (6000, 500, 1000)
    # The most frequent caption is one word (one-digit strips are a fifth of the data): it has no 4-grams.
    assert t.baseline == 0.0 and t.describe_example(t.splits.test[:3], 0)["source"].startswith("<image: strip")


def test_check_names_the_field_and_ranges_are_declared(tmp_path):
    assert Caption.check(CaptionConfig()) is None
    assert Caption.check(CaptionConfig(source="coco")) == "task.coco_root is empty; task.source coco needs the COCO folder"
    assert Caption.check(CaptionConfig(source="coco", coco_root=str(tmp_path))) == (
        "task.coco_annotations is empty; task.source coco needs the COCO file")
    assert Caption.check(CaptionConfig(source="coco", coco_root="/no/such", coco_annotations="a.json")) == (
        "task.coco_root '/no/such' is not a folder")
    assert Caption.check(CaptionConfig(source="coco", coco_root=str(tmp_path), coco_annotations="/no/a.json")) == (
        "task.coco_annotations '/no/a.json' is not a file")
    assert "task.hf_path '/no/flickr' does not exist" in Caption.check(CaptionConfig(source="flickr8k",
                                                                                     hf_path="/no/flickr"))
    assert Caption.check(CaptionConfig(source="flickr8k")) is None  # a hub id: read when the run starts
    with pytest.raises(ConfigError, match=r"task.max_digits must be >= 1 and <= 8, got 9"):
        check(CaptionConfig(max_digits=9), "task")
    with pytest.raises(ConfigError, match=r"unknown task.source 'mscoco'; valid: digits, flickr8k, coco"):
        check(CaptionConfig(source="mscoco"), "task")


# ---- online loaders on local fixtures ----------------------------------------------------------------------
def pictures(n: int):
    from PIL import Image

    g = torch.Generator().manual_seed(0)
    return [Image.fromarray(torch.randint(0, 256, (10, 14, 3), generator=g, dtype=torch.uint8).numpy())
            for _ in range(n)]


def write_flickr(folder, splits=("train", "validation", "test")):
    """A tiny flickr8k in the hub's layout: parquet files with an image column and caption_0 .. caption_4."""
    import datasets

    features = datasets.Features({"image": datasets.Image(), **{f"caption_{k}": datasets.Value("string")
                                                                for k in range(5)}})
    captions = ["A dog runs on the grass.", "a dog runs on the grass", "A dog runs on the grass!",
                "The cat sleeps.", "A red ball."]
    (folder / "data").mkdir(parents=True)
    for split in splits:
        rows = {"image": pictures(4), **{f"caption_{k}": [captions[(k + i) % 5] for i in range(4)] for k in range(5)}}
        datasets.Dataset.from_dict(rows, features=features).to_parquet(str(folder / "data" / f"{split}.parquet"))
    return folder


def test_flickr8k_reads_a_local_parquet_folder_through_load_dataset(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))
    path = str(write_flickr(tmp_path / "flickr"))
    t = Caption(CaptionConfig(source="flickr8k", hf_path=path, image_size=16, max_len=4, min_freq=5, batch_size=4))
    assert Caption.check(t.config) is None and Caption.train_size(t.config) is None
    train, val = t.splits.train, t.splits.val
    assert (len(train), len(val), len(t.splits.test)) == (20, 4, 4)  # every pair to train, one per image after
    batch = next(iter(t.train_dataloader()))
    assert set(batch) == {"image", "tgt", "image_id"} and batch["image"].shape == (4, 3, 16, 16)
    assert 0 <= batch["image"].min() and batch["image"].max() <= 1 and batch["image"].dtype == torch.float32
    # Captions cut to 4 words; "a dog runs on" is seen 12 times in training, "the cat sleeps" only 4 (< 5).
    assert t.vocab.itos == ["<pad>", "<s>", "</s>", "<unk>", "a", "dog", "on", "runs"]
    assert [t.decode_text(val[i]["tgt"]) for i in range(4)] == ["a dog runs on"] * 3 + ["<unk> <unk> <unk>"]
    assert val[2]["image_id"] == 2 and t.describe_example(val[:4], 3) == {"source": "<image 3>",
                                                                           "reference": "<unk> <unk> <unk>"}
    assert t.sizes() == {"tgt_vocab": 8, "max_len": 6, "image_shape": (3, 16, 16)}
    # Always "a dog runs on": 3 of 4 n-grams match at every order n, and it is longer than the references.
    assert t.baseline == pytest.approx(0.75)


def test_flickr8k_without_eval_splits_carves_them_from_train(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))
    path = str(write_flickr(tmp_path / "flickr", splits=("train",)))
    t = Caption(CaptionConfig(source="flickr8k", hf_path=path, image_size=8, min_freq=1))
    assert (len(t.splits.train), len(t.splits.val), len(t.splits.test)) == (10, 1, 1)
    assert t.splits.val.tensors["image_id"].tolist() == [2] and t.splits.test.tensors["image_id"].tolist() == [3]


def test_coco_reads_cococaptions_and_splits_images_in_id_order(tmp_path):
    root = tmp_path / "images"
    root.mkdir()
    images, annotations = [], []
    for image_id, picture in zip((30, 10, 20), pictures(3), strict=True):
        picture.save(root / f"{image_id}.png")
        images.append({"id": image_id, "file_name": f"{image_id}.png", "width": 14, "height": 10})
        for k in range(2):
            annotations.append({"id": 100 * image_id + k, "image_id": image_id, "caption": f"Photo {image_id} v{k}"})
    ann = tmp_path / "captions.json"
    ann.write_text(json.dumps({"info": {}, "licenses": [], "images": images, "annotations": annotations}))
    cfg = CaptionConfig(source="coco", coco_root=str(root), coco_annotations=str(ann), image_size=12, min_freq=1)
    assert Caption.check(cfg) is None
    t = Caption(cfg)
    ids = {s: getattr(t.splits, s).tensors["image_id"].tolist() for s in ("train", "val", "test")}
    assert ids == {"train": [10, 10], "val": [20], "test": [30]}
    assert [t.decode_text(r) for r in t.splits.train.tensors["tgt"]] == ["photo 10 v0", "photo 10 v1"]
    assert t.decode_text(t.splits.test[0]["tgt"]) == "photo <unk> v0"  # the vocabulary is the training words
    assert t.splits.test[0]["image"].shape == (3, 12, 12)


# ---- scoring -------------------------------------------------------------------------------------------------
def scores(t: Caption, scored: Scored, batch: dict) -> dict[str, float]:
    metrics = {t.metric_name: t.make_metric(), **t.make_extra_metrics()}
    t.score(metrics, scored, batch)
    return {k: float(m.compute()) if m.update_count else math.nan for k, m in metrics.items()}


def one_hot_attention(columns: list[list[int]], grid=(2, 5)) -> torch.Tensor:
    """(B, T, rows * cols) weights: half on each row, at the given column per step."""
    rows, cols = grid
    w = torch.zeros(len(columns), len(columns[0]), rows * cols)
    for b, steps in enumerate(columns):
        for s, c in enumerate(steps):
            w[b, s, [r * cols + c for r in range(rows)]] = 1 / rows
    return w


def test_perfect_captions_score_one_and_wrong_ones_lower():
    t = task()
    batch = t.splits.test[:32]
    tgt = batch["tgt"]
    perfect = scores(t, Scored(logits=torch.zeros(1), tokens=tgt[:, 1:]), batch)
    assert perfect["bleu"] == pytest.approx(1.0) and perfect["exact"] == 1.0 and perfect["token_acc"] == 1.0
    assert math.isnan(perfect["monotone"])  # no attention: nothing to measure
    wrong = tgt[:, 1:].clone()
    zero, one = t.vocab.stoi["zero"], t.vocab.stoi["one"]
    wrong[:, 0] = torch.where(wrong[:, 0] == zero, one, zero)  # every first word wrong
    worse = scores(t, Scored(logits=torch.zeros(1), tokens=wrong), batch)
    assert worse["bleu"] < 1.0 and worse["exact"] < 1.0 and worse["token_acc"] < 1.0


def test_monotone_counts_captions_whose_attention_centre_never_moves_left():
    w = lambda *ids: [START, *ids, END]  # noqa: E731
    tgt = torch.tensor([w(5, 6, 7), w(5, 6, 7), w(5) + [PAD, PAD], w(5, 6) + [PAD]])
    # step t predicts tgt[:, t + 1]: rows 0/1 have three words then END, row 2 one word, row 3 two words
    weights = one_hot_attention([[0, 2, 2, 0], [0, 3, 1, 4], [4, 0, 0, 0], [1, 1, 0, 0]])
    assert monotone(weights, tgt, (2, 5)).tolist() == [1.0, 0.0, 1.0]  # END step and padding ignored
    t = task()
    result = scores(t, Scored(logits=torch.zeros(1), weights=weights, grid=(2, 5)), {"tgt": tgt})
    assert result["monotone"] == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="Scored.grid"):
        t.score(t.make_extra_metrics(), Scored(logits=torch.zeros(1), weights=weights), {"tgt": tgt})
    with pytest.raises(ValueError, match="grid 3x5 has 15"):
        monotone(weights, tgt, (3, 5))
