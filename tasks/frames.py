"""Per-frame video classification that needs memory: which digit is behind the occluder?

Each video shows one of scikit-learn's 8x8 handwritten digits moving on a ``canvas`` x ``canvas`` black frame
(one pixel per frame in one of the 8 compass directions, bouncing off the edges). Over the first ``visible``
frames the digit is in view; with ``change`` (the default) a second digit of another class replaces the first,
at the same place, on a frame drawn uniformly from 1 .. visible - 1. Then, for the last ``occlusion`` = k frames,
an opaque block covers the digit's 8x8 square exactly while it keeps moving: the block's pixels are uniform
noise over the digits' own 17 grey levels, redrawn every frame. Every frame's label is the class of the digit
last seen (the one under the block, on hidden frames); ``hidden`` marks the occluded frames.

    batch = {"frames": (B, T, 1, canvas, canvas) float in [0, 1], "label": (B, T) long, "hidden": (B, T) bool}
    T = visible + occlusion (16 by default); the video ends hidden, so its last frame needs the longest memory.

Why it measures memory: a hidden frame is a function of the digit's path and the noise alone (both drawn from
their own generator, before and apart from the digits), so it says nothing about the class, and a per-frame
model with no recurrence is at chance there. Reading the label needs the class held for up to k steps, and
updated when the digit changes (remembering the first frame is wrong on every hidden frame). k is the
dependency length. The metric ``acc_hidden`` is accuracy over hidden frames; ``acc`` is over all frames.
Baseline: the best memoryless prediction on a hidden frame is the most frequent class, so ``baseline`` is the
majority class's share of the test split's hidden frames (classes are drawn uniformly: about 0.1 to 0.12).

Data: generated from ``data_seed`` with torch, vectorised and cached (the default sizes take well under a
second). Splits never share a digit image: each class's images are shuffled (``data_seed``) and cut into a
validation pool (20 %), a test pool (20 %) and a training pool (the rest); a video draws its digits from its
split's pool, class first (uniform), then an image of that class. Frames are stored as uint8 sixteenths and
read as floats. There is no online loader: the data are generated; the real-world counterpart would be a video
data set, and none is wired. ``probe_batch`` is the inherited first n validation videos (all of length T).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, replace

import torch
import torchmetrics

from options import opt

from .base import TaskConfig, generator, register
from .composed import ComposedTask, DictDataset, Scored, Splits, accuracy

CLASSES, SIDE, LEVELS = 10, 8, 17      # digits, their 8x8 size, and their grey levels 0..16
POOL_SHARE = 0.2                       # of each class's images, for the validation and for the test pool
MAX_BYTES = 2 * 2**30                  # stored frames (one byte a pixel) over all three splits
DIRECTIONS = torch.tensor([[-1, -1], [-1, 0], [-1, 1], [0, -1], [0, 1], [1, -1], [1, 0], [1, 1]])


@dataclass(frozen=True)
class FramesConfig(TaskConfig):
    n_train: int = opt(4000, "training videos", ge=1, le=1_000_000)
    n_val: int = opt(500, "validation videos", ge=1, le=100_000)
    n_test: int = opt(1000, "test videos", ge=1, le=100_000)
    visible: int = opt(4, "frames with the digit in view, at the start of each video", ge=1, le=256)
    occlusion: int = opt(12, "frames with the digit hidden, at the end (the dependency length k)", ge=1, le=4096)
    canvas: int = opt(16, "frame height and width in pixels (the digit is 8x8)", ge=8, le=64)
    change: bool = opt(True, "a digit of another class replaces the first on a random visible frame")


@functools.lru_cache(maxsize=1)
def _digits() -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's 1,797 digits as uint8 (N, 8, 8) in 0..16, and their classes (N,)."""
    from sklearn.datasets import load_digits

    d = load_digits()
    return torch.tensor(d.images, dtype=torch.uint8), torch.tensor(d.target, dtype=torch.long)


def pools(seed: int) -> dict[str, torch.Tensor]:
    """Disjoint image indices per split, every class cut 20 / 20 / 60 % into val / test / train."""
    _, target = _digits()
    order = torch.randperm(len(target), generator=torch.Generator().manual_seed(seed))
    out = {"val": [], "test": [], "train": []}
    for c in range(CLASSES):
        mine = order[target[order] == c]
        cut = round(POOL_SHARE * len(mine))
        out["val"].append(mine[:cut])
        out["test"].append(mine[cut: 2 * cut])
        out["train"].append(mine[2 * cut:])
    return {split: torch.cat(parts) for split, parts in out.items()}


def motion(n: int, frames: int, canvas: int, g: torch.Generator) -> torch.Tensor:
    """Top-left corners (n, frames, 2) of a square moving one pixel a frame, reflected at the edges."""
    span = canvas - SIDE
    start = torch.randint(0, span + 1, (n, 2), generator=g)
    velocity = DIRECTIONS[torch.randint(0, len(DIRECTIONS), (n,), generator=g)]
    if span == 0:
        return torch.zeros(n, frames, 2, dtype=torch.long)
    q = (start[:, None] + velocity[:, None] * torch.arange(frames)[None, :, None]) % (2 * span)
    return span - (span - q).abs()


def render(patches: torch.Tensor, corners: torch.Tensor, canvas: int) -> torch.Tensor:
    """8x8 patches (N, T, 8, 8) pasted on black frames at corners (N, T, 2) -> (N, T, canvas, canvas)."""
    n, t = patches.shape[:2]
    frames = torch.zeros(n, t, canvas, canvas, dtype=patches.dtype)
    offsets = torch.arange(SIDE)
    rows = (corners[..., 0, None] + offsets)[..., :, None]
    cols = (corners[..., 1, None] + offsets)[..., None, :]
    frames[torch.arange(n)[:, None, None, None], torch.arange(t)[None, :, None, None], rows, cols] = patches
    return frames


def pick(pool: torch.Tensor, classes: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """One image index from ``pool`` per entry of ``classes``, uniform within the class."""
    _, target = _digits()
    ordered = pool[torch.argsort(target[pool], stable=True)]
    counts = torch.bincount(target[pool], minlength=CLASSES)
    starts = torch.cumsum(counts, 0) - counts
    within = (torch.rand(len(classes), generator=g) * counts[classes]).long()
    return ordered[starts[classes] + within]


def draw(n: int, config: FramesConfig, pool: torch.Tensor, scene: torch.Generator,
         content: torch.Generator) -> dict[str, torch.Tensor]:
    """``n`` videos. ``scene`` draws the paths, the change frames and the occluder's noise; ``content`` draws the
    digits, so hidden frames depend on ``scene`` alone. Returns the batch keys plus ``first``/``second``
    (image indices), ``switch`` (first frame of the second digit; ``visible`` when none) and ``corners``."""
    visible, frames = config.visible, config.visible + config.occlusion
    corners = motion(n, frames, config.canvas, scene)
    switch = (torch.randint(1, visible, (n,), generator=scene) if config.change
              else torch.full((n,), visible))
    noise = torch.randint(0, LEVELS, (n, config.occlusion, SIDE, SIDE), generator=scene, dtype=torch.uint8)
    first_class = torch.randint(0, CLASSES, (n,), generator=content)
    first = pick(pool, first_class, content)
    second_class = (first_class + torch.randint(1, CLASSES, (n,), generator=content)) % CLASSES
    second = pick(pool, second_class, content) if config.change else first
    t = torch.arange(frames)[None, :]
    shown = torch.where(t[:, :visible] < switch[:, None], first[:, None], second[:, None])
    patches = torch.cat([_digits()[0][shown], noise], dim=1)
    _, target = _digits()
    return {"frames": render(patches, corners, config.canvas).unsqueeze(2),
            "label": torch.where(t < switch[:, None], target[first][:, None], target[second][:, None]),
            "hidden": (t >= visible).expand(n, frames).clone(),
            "first": first, "second": second, "switch": switch, "corners": corners}


def generate(config: FramesConfig) -> dict[str, dict[str, torch.Tensor]]:
    """All three splits (cached; the batch size does not change the data)."""
    return _generate(replace(config, batch_size=1))


@functools.lru_cache(maxsize=2)
def _generate(config: FramesConfig) -> dict[str, dict[str, torch.Tensor]]:
    # content generators are seeded from their scene generator's first draw
    out, images = {}, pools(config.data_seed)
    for split, n in (("train", config.n_train), ("val", config.n_val), ("test", config.n_test)):
        scene = generator(config.data_seed, split)
        content = torch.Generator().manual_seed(int(torch.randint(2**62, (1,), generator=scene)))
        out[split] = draw(n, config, images[split], scene, content)
    return out


class Videos(DictDataset):
    """Frames stored as uint8 sixteenths (the digits' own grey levels), read as floats in [0, 1]."""

    def __getitem__(self, index):
        out = super().__getitem__(index)
        if isinstance(index, int):
            out["frames"] = out["frames"].float() / (LEVELS - 1)
        return out

    def batch(self, index) -> dict[str, torch.Tensor]:
        out = super().batch(index)
        out["frames"] = out["frames"].float() / (LEVELS - 1)
        return out


@register
class Frames(ComposedTask):
    name = "frames"
    version = "1"
    shape = "many-to-many"
    variant = "moving scikit-learn 8x8 digits; label the digit behind the occluder"
    metric_name = "acc_hidden"
    metric_mode = "max"
    model = "frames"
    Config = FramesConfig

    @classmethod
    def check(cls, config) -> str | None:
        if config.change and config.visible < 2:
            return f"task.change needs task.visible >= 2 (a frame for each digit), got {config.visible}"
        frames = config.visible + config.occlusion
        size = (config.n_train + config.n_val + config.n_test) * frames * config.canvas**2
        if size > MAX_BYTES:
            return (f"task frames would store {size / 2**30:.1f} GiB of frames ({frames} frames of "
                    f"{config.canvas}x{config.canvas}); the limit is {MAX_BYTES // 2**30} GiB: lower "
                    "task.n_train, task.occlusion or task.canvas")
        return None

    @classmethod
    def train_size(cls, config) -> int:
        return config.n_train

    @classmethod
    def image_channels(cls, config) -> int:
        return 1

    # The sequence contract's sizes (read by the generic task contract test and the memory estimate): one
    # frame's pixels in, a class per frame out, T steps.
    @property
    def input_size(self) -> int:
        return self.config.canvas**2

    @property
    def output_size(self) -> int:
        return CLASSES

    @property
    def seq_len(self) -> int:
        return self.config.visible + self.config.occlusion

    @property
    def baseline(self) -> float:
        """The majority class's share of the test split's hidden frames: the best guess without memory."""
        test = self.splits.test.tensors
        labels = test["label"][test["hidden"]]
        return torch.bincount(labels, minlength=CLASSES).max().item() / len(labels)

    def sizes(self) -> dict:
        side = self.config.canvas
        return {"frame_shape": (1, side, side), "classes": CLASSES, "frames": self.seq_len}

    def make_metric(self) -> torchmetrics.Metric:
        return accuracy(CLASSES)

    def make_extra_metrics(self) -> dict[str, torchmetrics.Metric]:
        return {"acc": accuracy(CLASSES)}

    def score(self, metrics: dict[str, torchmetrics.Metric], scored: Scored, batch: dict) -> None:
        logits, label, hidden = scored.logits, batch["label"], batch["hidden"]
        metrics[self.metric_name].update(logits[hidden], label[hidden])
        metrics["acc"].update(logits.flatten(0, 1), label.flatten())

    def make_splits(self) -> Splits:
        problem = self.check(self.config)
        if problem:
            raise ValueError(problem)
        data = generate(self.config)
        return Splits(*(Videos(**{k: data[s][k] for k in ("frames", "label", "hidden")})
                        for s in ("train", "val", "test")))

    def describe_example(self, batch: dict, i: int) -> dict:
        label, hidden = batch["label"][i], batch["hidden"][i]
        seen = label[~hidden].tolist()
        digits = [d for j, d in enumerate(seen) if j == 0 or d != seen[j - 1]]
        source = f"digit {' then '.join(map(str, digits))}, hidden for {int(hidden.sum())} frames"
        return {"source": source, "reference": " ".join(map(str, label.tolist()))}  # a label per frame, as output

    def compare(self, reference: str, output: str) -> str:
        """Frame by frame: how many of the video's frames the output labels as the reference does."""
        ref, out = reference.split(), output.split()
        same = sum(r == o for r, o in zip(ref, out, strict=False))
        return f"{'=' if ref == out else '≠'} {same}/{len(ref)} frames"
