"""Image encoders: images (B, C, H, W) -> a summary vector (B, D) and a feature grid (B, N, D) with a learned
position code, the memory an attentional decoder reads (Xu et al. 2015, "Show, Attend and Tell").

    encoder = build_image_encoder("cnn", image_size=32, channels=3, out_size=128)
    summary, grid = encoder(images)          # (B, 128), (B, 16, 128): a 4 x 4 grid

``cnn`` is a small CNN trained from scratch here. ``resnet18`` / ``resnet34`` / ``resnet50`` are torchvision
backbones cut before their pooling (the last feature map is the grid), random by default. With ``pretrained``
their ImageNet weights are read from the torch cache (``torch.hub.get_dir()/checkpoints``) and never downloaded;
a missing file is one line naming where it was looked for. Pretrained weights expect 3 channels normalised with
ImageNet's mean and std: normalising is the data side's job.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlparse

import torch
from torch import nn

from options.registry import Registry

IMAGE_ENCODERS = Registry("image encoder")
RESNETS = (18, 34, 50)
PRETRAINED_CHANNELS = 3  # ImageNet is RGB: a pretrained backbone's first convolution reads three channels


class ImageEncoder(nn.Module):
    """A backbone (B, C, H, W) -> (B, F, h, w); per grid cell a linear map to ``out_size`` plus a learned position
    code. Attention weighs cells by content alone, so without the code a flattened grid would not say where a
    cell is; the summary is the mean over cells, taken before the code (which is the same for every image)."""

    def __init__(self, backbone: nn.Module, image_size: int | tuple[int, int], channels: int, out_size: int,
                 grid: bool = True):
        super().__init__()
        self.backbone = backbone
        features, self.grid_shape = _probe(backbone, image_size, channels)  # (rows, columns) of cells
        cells = self.grid_shape[0] * self.grid_shape[1]
        self.project = nn.Linear(features, out_size)
        # 0.02: the scale of learned position embeddings in BERT and GPT-2. A model that reads only the summary
        # (grid=False: VQA, per-frame tagging) has no use for it, so it has none: no parameter without a gradient.
        self.position = nn.Parameter(0.02 * torch.randn(cells, out_size)) if grid else None
        self.out_size = out_size

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """images (B, C, H, W) -> summary (B, D), grid (B, N, D)."""
        features = self.project(self.backbone(images).flatten(2).transpose(1, 2))
        if self.position is None:
            return features.mean(dim=1), features
        if features.shape[1] != self.position.shape[0]:
            raise ValueError(f"these images give a {features.shape[1]}-cell grid; the encoder was built for "
                             f"{self.position.shape[0]} cells (check image_size)")
        return features.mean(dim=1), features + self.position


def _probe(backbone: nn.Module, image_size: int | tuple[int, int], channels: int) -> tuple[int, tuple[int, int]]:
    """(features F, grid (h, w)) of the backbone's output for one blank image of this size."""
    size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    was_training = backbone.training
    backbone.eval()  # batch norm in training mode refuses one image with a 1 x 1 map
    with torch.no_grad():
        out = backbone(torch.zeros(1, channels, *size, dtype=next(backbone.parameters()).dtype))
    backbone.train(was_training)
    return out.shape[1], (out.shape[2], out.shape[3])


@IMAGE_ENCODERS.register("cnn")
def small_cnn(channels: int, pretrained: bool = False, width: int = 32, stages: int = 3) -> nn.Module:
    """``stages`` blocks of two 3x3 convolutions, the second of stride 2, each with a ReLU; width doubles per
    stage, so a 32 x 32 image gives a (4 * width) x 4 x 4 map."""
    if pretrained:
        raise ValueError("image encoder 'cnn' is trained from scratch; pretrained weights exist for: "
                         + ", ".join(f"resnet{d}" for d in RESNETS))
    layers, c_in = [], channels
    for stage in range(stages):
        c_out = width * 2**stage
        layers += [nn.Conv2d(c_in, c_out, 3, padding=1), nn.ReLU(),
                   nn.Conv2d(c_out, c_out, 3, stride=2, padding=1), nn.ReLU()]
        c_in = c_out
    return nn.Sequential(*layers)


@IMAGE_ENCODERS.register("cnn-small")
def smaller_cnn(channels: int, pretrained: bool = False) -> nn.Module:
    """``cnn`` with two stages of width 16 and 32: about 7x fewer multiply-adds, for many small images per
    example (every frame of a video); a 16 x 16 frame gives a 32 x 4 x 4 map."""
    return small_cnn(channels, pretrained, width=16, stages=2)


def _resnet(depth: int) -> Callable[[int, bool], nn.Module]:
    def make(channels: int, pretrained: bool = False) -> nn.Module:
        name = f"resnet{depth}"
        if pretrained and channels != PRETRAINED_CHANNELS:
            raise ValueError(f"pretrained {name} reads {PRETRAINED_CHANNELS} channels, got {channels}")
        from torchvision import models  # deferred: torchvision takes seconds to import and only these need it

        net = getattr(models, name)(weights=None)
        if pretrained:
            net.load_state_dict(cached_weights(models.get_model_weights(name).DEFAULT.url))
        elif channels != 3:
            net.conv1 = nn.Conv2d(channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
        return nn.Sequential(*list(net.children())[:-2])  # without avgpool and fc: the grid is the output

    return make


for _depth in RESNETS:
    IMAGE_ENCODERS.register(f"resnet{_depth}")(_resnet(_depth))


def weights_problem(name: str, pretrained: bool, channels: int | None = None) -> str | None:
    """One line when ``name`` with ``pretrained`` cannot be built here (no weights exist for it, the images have
    ``channels`` channels where the weights read RGB, or the weights are not in the torch cache or damaged),
    before any work; None when it can."""
    if not pretrained:
        return None
    depth = name.removeprefix("resnet")
    if not depth.isdigit() or int(depth) not in RESNETS:
        return f"image encoder {name!r} is trained from scratch; pretrained weights exist for: " + ", ".join(
            f"resnet{d}" for d in RESNETS)
    # No adapter here (repeating a grey channel, or summing the first layer's weights over RGB): ImageNet
    # features on other images would be a choice a benchmark should not make silently.
    if channels is not None and channels != PRETRAINED_CHANNELS:
        return (f"pretrained {name} reads {PRETRAINED_CHANNELS}-channel (RGB) images, but this task's images have "
                f"{channels}; leave pretrained off (a random {name} reads {channels}) or use RGB images")
    from torchvision import models

    path = _cache_path(models.get_model_weights(name).DEFAULT.url)
    if not path.is_file():
        return (f"pretrained {name} weights are not in the torch cache: {path} (fetch them once where there is a "
                f"network, or leave pretrained off)")
    try:  # a damaged file would otherwise fail once the run has started
        torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a damaged file raises anything: RuntimeError, EOFError, UnpicklingError, ...
        return f"pretrained {name} weights in the torch cache are damaged: {path} ({type(exc).__name__}); delete it"
    return None


def _cache_path(url: str) -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(url).path).name


def cached_weights(url: str) -> dict[str, torch.Tensor]:
    """The state dict torchvision would download from ``url``, read from the torch cache only."""
    path = _cache_path(url)
    if not path.is_file():
        raise FileNotFoundError(f"pretrained weights are not in the torch cache: {path} (fetch them once where "
                                "there is a network, or leave pretrained off)")
    return torch.load(path, map_location="cpu", weights_only=True)


def build_image_encoder(name: str, image_size: int | tuple[int, int], channels: int = 3, out_size: int = 128,
                        pretrained: bool = False, grid: bool = True) -> ImageEncoder:
    """The image encoder ``name`` for images of ``image_size`` (int: square) with ``channels`` channels; with
    ``grid=False`` for models that read the summary vector only (no position code)."""
    backbone = IMAGE_ENCODERS.get(name)(channels, pretrained)
    return ImageEncoder(backbone, image_size, channels, out_size, grid)
