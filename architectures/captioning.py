"""Image captioning: an image encoder (vision.py) and the same ``Decoder`` as Seq2Seq, with the image's feature
grid as the attention memory and its summary as the source of the first state (Vinyals et al. 2015, "Show and
Tell"; with attention, Xu et al. 2015, "Show, Attend and Tell").

    model = Captioner(vocab_size=1000, image_size=32, image_encoder="cnn", decoder="gru")
    out = model(images, tgt_in)      # images (B, C, H, W), tgt_in (B, T) -> logits (B, T, V), weights (B, T, N)
    tokens, lengths = model.greedy(images, max_len=16, start=1, end=2)
"""

from __future__ import annotations

import torch
from torch import nn

from .decoder import Decoder, Memory, Output
from .decoding import Decoded, beam, check_limits, greedy
from .vision import build_image_encoder


class Captioner(nn.Module):
    """Caption decoder over an image encoder; ``image_encoder`` is a name of vision.py's registry,
    ``decoder`` a core registry name, ``feature_size`` the width D of the summary and of every grid cell."""

    def __init__(self, vocab_size: int, image_size: int | tuple[int, int] = 32, channels: int = 3,
                 image_encoder: str = "cnn", feature_size: int = 128, pretrained: bool = False,
                 decoder: str = "lstm", decoder_config=None, embed_size: int = 64, attention: str = "additive",
                 attention_size: int | None = None, input_feed: bool = False, pad: int = 0):
        super().__init__()
        self.pad = pad
        self.encoder = build_image_encoder(image_encoder, image_size, channels, feature_size, pretrained)
        self.decoder = Decoder(vocab_size, feature_size, feature_size, decoder, decoder_config, embed_size,
                               attention, attention_size, input_feed, pad)

    def forward(self, images: torch.Tensor, tgt_in: torch.Tensor, reference: bool = False) -> Output:
        """Teacher forcing: images (B, C, H, W), tgt_in (B, T) -> Output (logits (B, T, V), weights (B, T, N))."""
        memory, summary = self.encode(images)
        logits, weights, trace = self.decoder(tgt_in, memory, self.decoder.initial(summary), reference)
        return Output(logits, weights, memory, None, trace)

    def encode(self, images: torch.Tensor) -> tuple[Memory, torch.Tensor]:
        summary, grid = self.encoder(images)
        every_cell = torch.ones(grid.shape[:2], dtype=torch.bool, device=grid.device)
        return self.decoder.memory(grid, every_cell), summary

    @torch.no_grad()
    def greedy(self, images: torch.Tensor, max_len: int, start: int, end: int) -> Decoded:
        check_limits(max_len)
        memory, summary = self.encode(images)
        return greedy(self.decoder, memory, summary, max_len, start, end)

    @torch.no_grad()
    def beam(self, images: torch.Tensor, max_len: int, start: int, end: int, width: int,
             length_penalty: float = 0.0) -> Decoded:
        check_limits(max_len, width)
        memory, summary = self.encode(images)
        return beam(self.decoder, memory, summary, max_len, start, end, width, length_penalty)
