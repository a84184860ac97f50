"""The frames task: batches of the declared shapes, labels that follow the digits shown, hidden frames that carry
nothing about the class (exactly, and for a per-frame classifier), disjoint digit images per split, determinism,
the majority baseline, one-line config errors and scoring."""

from dataclasses import replace

import pytest
import torch

import tasks
from tasks import frames as F
from tasks.composed import Scored

SMALL = {"n_train": 64, "n_val": 16, "n_test": 32, "batch_size": 8}


def task(**cfg):
    cls = tasks.get("frames")
    return cls(cls.Config(**cfg))


def test_a_training_batch_has_the_declared_keys_shapes_and_sizes():
    t = task(**SMALL, visible=3, occlusion=5, canvas=12)
    batch = next(iter(t.train_dataloader()))
    assert set(batch) == {"frames", "label", "hidden"}
    assert batch["frames"].shape == (8, 8, 1, 12, 12) and batch["frames"].dtype == torch.float32
    assert batch["label"].shape == (8, 8) and batch["label"].dtype == torch.long
    assert batch["hidden"].dtype == torch.bool and (batch["hidden"] == (torch.arange(8) >= 3)).all()
    pixels = batch["frames"] * 16
    assert batch["frames"].min() >= 0 and batch["frames"].max() <= 1 and torch.equal(pixels, pixels.round())
    assert t.sizes() == {"frame_shape": (1, 12, 12), "classes": 10, "frames": 8}
    assert t.train_size(t.config) == len(t.splits.train) == 64
    one = t.splits.val[0]
    assert one["frames"].shape == (8, 1, 12, 12) and one["frames"].dtype == torch.float32
    probe = t.probe_batch(5)
    assert torch.equal(probe["frames"], t.splits.val[torch.arange(5)]["frames"])


def test_labels_and_pixels_follow_the_digits_drawn():
    cfg = F.FramesConfig(**SMALL, visible=4, occlusion=6)
    data = F.generate(cfg)["train"]
    images, target = F._digits()
    first, second, switch, corners = data["first"], data["second"], data["switch"], data["corners"]
    assert ((switch >= 1) & (switch <= 3)).all() and (target[first] != target[second]).all()
    for i in range(len(first)):
        for t in range(10):
            shown = first[i] if t < switch[i] else second[i]
            assert data["label"][i, t] == target[shown]  # hidden frames: the digit last seen
            r, c = corners[i, t].tolist()
            frame = data["frames"][i, t, 0]
            if t < 4:
                assert torch.equal(frame[r: r + 8, c: c + 8], images[shown])
            outside = frame.clone()
            outside[r: r + 8, c: c + 8] = 0
            assert not outside.any()  # a black canvas besides the digit or its occluder
    steps = (corners[:, 1:] - corners[:, :-1]).abs()
    assert (steps <= 1).all() and (steps.sum(-1) > 0).all()  # it moves, one pixel a frame


def test_hidden_frames_are_the_same_whatever_the_digits():
    cfg = F.FramesConfig(**SMALL)
    pool = F.pools(cfg.data_seed)["train"]
    a = F.draw(200, cfg, pool, torch.Generator().manual_seed(1), torch.Generator().manual_seed(2))
    b = F.draw(200, cfg, pool, torch.Generator().manual_seed(1), torch.Generator().manual_seed(3))
    hidden = a["hidden"]
    assert torch.equal(a["frames"][hidden], b["frames"][hidden])
    assert not torch.equal(a["frames"][~hidden], b["frames"][~hidden])
    assert (a["label"][:, -1] != b["label"][:, -1]).float().mean() > 0.8


def crops(d: dict, hidden: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """The 8x8 square at the digit's corner on every hidden (or visible) frame, as (N, 64) floats, and labels."""
    n, t = d["label"].shape
    rows = (d["corners"][..., 0, None] + torch.arange(8))[..., :, None]
    cols = (d["corners"][..., 1, None] + torch.arange(8))[..., None, :]
    square = d["frames"][:, :, 0][torch.arange(n)[:, None, None, None], torch.arange(t)[None, :, None, None],
                                  rows, cols]
    keep = d["hidden"] if hidden else ~d["hidden"]
    return square[keep].flatten(1).float(), d["label"][keep]


def test_a_per_frame_classifier_told_where_to_look_is_at_chance_on_hidden_frames():
    data = F.generate(F.FramesConfig())
    accuracy = {}
    for hidden in (False, True):
        x, y = crops(data["train"], hidden)
        means = torch.stack([x[y == c].mean(0) for c in range(10)])  # nearest class mean
        x, y = crops(data["test"], hidden)
        accuracy[hidden] = (torch.cdist(x, means).argmin(1) == y).float().mean().item()
    assert accuracy[False] > 0.8 and accuracy[True] < 0.13


def test_splits_draw_from_disjoint_pools_of_digit_images():
    cfg = F.FramesConfig(**SMALL)
    pools = F.pools(cfg.data_seed)
    _, target = F._digits()
    assert sum(len(p) for p in pools.values()) == len(target)
    assert len(torch.cat(list(pools.values())).unique()) == len(target)
    assert all(set(target[p].tolist()) == set(range(10)) for p in pools.values())
    data = F.generate(cfg)
    for split, pool in pools.items():
        used = torch.cat([data[split]["first"], data[split]["second"]])
        assert torch.isin(used, pool).all()


def test_same_config_same_videos_other_seed_other_videos():
    cfg = F.FramesConfig(**SMALL)
    a, b = F._generate.__wrapped__(cfg), F._generate.__wrapped__(replace(cfg, batch_size=2))
    c = F._generate.__wrapped__(replace(cfg, data_seed=7))
    for split in ("train", "val", "test"):
        assert all(torch.equal(a[split][k], b[split][k]) for k in a[split])
        assert not torch.equal(a[split]["frames"], c[split]["frames"])
    assert not torch.equal(a["train"]["frames"][:16], a["val"]["frames"])


def test_baseline_is_the_majority_share_of_hidden_test_frames_near_chance():
    t = task()
    labels = t.splits.test.tensors["label"][t.splits.test.tensors["hidden"]]
    shares = torch.bincount(labels, minlength=10) / len(labels)
    assert t.baseline == pytest.approx(shares.max().item()) and 0.1 <= t.baseline < 0.13
    assert (shares > 0.07).all()
    assert t.describe()["baseline"] == t.baseline and len(labels) == 1000 * 12


def test_without_change_one_digit_labels_the_whole_video():
    t = task(**SMALL, change=False, visible=1)
    label = t.splits.train.tensors["label"]
    assert (label == label[:, :1]).all()


@pytest.mark.parametrize("cfg, message", [
    ({"visible": 1}, r"task.change needs task.visible >= 2 \(a frame for each digit\), got 1"),
    ({"n_train": 1_000_000, "occlusion": 4096}, r"would store .* GiB of frames .*the limit is 2 GiB: lower"),
])
def test_bad_combinations_are_one_line(cfg, message):
    t = task(**cfg)
    assert "\n" not in F.Frames.check(t.config)
    with pytest.raises(ValueError, match=message):
        t.make_splits()


def test_score_perfect_memoryless_and_wrong():
    t = task(**SMALL, visible=4, occlusion=6)
    batch = t.splits.test[torch.arange(32)]
    perfect = torch.nn.functional.one_hot(batch["label"], 10).float()
    memoryless = perfect.clone()
    memoryless[batch["hidden"]] = torch.roll(memoryless[batch["hidden"]], 1, dims=-1)
    expected = {"perfect": (1.0, 1.0), "memoryless": (0.0, 0.4), "wrong": (0.0, 0.0)}
    for name, logits in (("perfect", perfect), ("memoryless", memoryless), ("wrong", perfect.roll(1, -1))):
        metrics = {t.metric_name: t.make_metric(), **t.make_extra_metrics()}
        t.score(metrics, Scored(logits), batch)
        got = (metrics["acc_hidden"].compute().item(), metrics["acc"].compute().item())
        assert got == pytest.approx(expected[name]), name
    assert t.metric_mode == "max" and set(t.make_extra_metrics()) == {"acc"}


def test_describe_example_names_the_digits_and_the_hidden_one():
    t = task(**SMALL, visible=4, occlusion=6)
    data = F.generate(t.config)["val"]
    batch = t.splits.val[torch.arange(4)]
    _, target = F._digits()
    for i in range(4):
        a, b = target[data["first"][i]].item(), target[data["second"][i]].item()
        assert t.describe_example(batch, i) == {"source": f"digit {a} then {b}, hidden for 6 frames",
                                                "reference": " ".join(map(str, batch["label"][i].tolist()))}
        assert t.describe_example(batch, i)["reference"].endswith(f" {b} {b} {b} {b} {b} {b}")  # hidden: the last


def test_compare_counts_the_frames_an_output_labels_as_the_reference_does():
    t = task(**SMALL)
    assert t.compare("3 3 5 5", "3 3 5 5") == "= 4/4 frames"
    assert t.compare("3 3 5 5", "3 1 5 1") == "≠ 2/4 frames"


def test_decode_compares_a_video_frame_by_frame(tmp_path, capsys):
    import json

    from conftest import small

    from bench import cli
    from bench.run.config import resolve
    from bench.run.train import train

    rec = train(resolve(small("frames", "gru", **{"train.max_steps": 4, "train.val_every": 4})), tmp_path,
                wandb="disabled")
    assert cli.main(["decode", rec["name"], "--out", str(tmp_path), "--n", "3"]) == 0
    rows = [json.loads(line) for line in
            (tmp_path / "decode" / f"{rec['name']}__{rec['id']}.decoded.jsonl").read_text().splitlines()]
    out = capsys.readouterr().out
    for row in rows:
        ref, output = row["reference"].split(), row["output"].split()
        assert len(ref) == len(output) == 16  # visible + occlusion frames, each labelled
        same = sum(r == o for r, o in zip(ref, output, strict=True))
        assert row["match"] == f"{'=' if same == 16 else '≠'} {same}/16 frames" and row["match"] in out
