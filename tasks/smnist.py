"""Sequential and permuted MNIST (Le, Jaitly & Hinton 2015): 28x28 digits, one pixel per step (784 steps).

Data come through ``torchvision.datasets.MNIST``: an existing copy under ``root`` is read as is (the IDX files
in ``<root>/MNIST/raw``); without one, and with ``download`` on, torchvision downloads it once. Offline with no
copy the run fails with one line saying where the files go. The last ``n_val`` training images are the
validation split; ``n_train`` (0 = all) trims the training set for CPU budgets. Published numbers to compare
with are in shared/ANCHORS.md (IRNN 97.0 / 82.0 %, tanh RNN 35 / 35 % on sequential / permuted).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from options import opt

from .base import register
from .pixels import PixelConfig, PixelTask

FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


@dataclass(frozen=True)
class MNISTConfig(PixelConfig):
    root: str = opt(os.path.join("~", ".cache", "rnnbench", "data"), "folder holding (or receiving) MNIST/raw")
    download: bool = opt(True, "download MNIST when no local copy exists (needs the network)")
    n_val: int = opt(5000, "training images held out for validation", ge=1)
    n_train: int = opt(0, "training images to use after the hold-out (0: all)", ge=0)


@register
class SequentialMNIST(PixelTask):
    name = "smnist"
    version = "1"
    variant = "torchvision MNIST, one pixel per step"
    Config = MNISTConfig
    side = 28

    @classmethod
    def train_size(cls, config) -> int | None:
        return config.n_train or None  # else all of MNIST's 60,000 less n_val

    @classmethod
    def check(cls, config) -> str | None:
        root = os.path.expanduser(config.root)
        raw = os.path.join(root, "MNIST", "raw")
        missing = [f for f in FILES if not os.path.exists(os.path.join(raw, f))]
        if missing and not config.download:
            return f"MNIST not found under {raw} (missing {missing[0]}) and task.download is false"
        return None

    def _load(self, train: bool):
        from torchvision.datasets import MNIST

        root = os.path.expanduser(self.config.root)
        try:
            return MNIST(root, train=train, download=False)
        except RuntimeError:
            if not self.config.download:
                raise RuntimeError(f"MNIST not found under {root}/MNIST/raw and task.download is false") from None
        try:
            return MNIST(root, train=train, download=True)
        except Exception as exc:  # offline: name where the files go instead of a stack of URL errors
            raise RuntimeError(f"MNIST not found under {root}/MNIST/raw and the download failed "
                               f"({type(exc).__name__}); put the four IDX files there") from None

    def images(self):
        c = self.config
        train, test = self._load(True), self._load(False)
        x, y = train.data.float() / 255.0, train.targets
        if not 0 < c.n_val < len(x):
            raise ValueError(f"smnist n_val must be in 1..{len(x) - 1}, got {c.n_val}")
        x_train, y_train = x[:-c.n_val], y[:-c.n_val]
        if c.n_train:
            x_train, y_train = x_train[:c.n_train], y_train[:c.n_train]
        return (x_train, y_train, x[-c.n_val:], y[-c.n_val:], test.data.float() / 255.0, test.targets)
