"""Models that read a sequence (or a video, or an image and a question) with one recurrent core and decide per
sequence or per frame: the many-to-one and many-to-many shapes of the notes beyond a linear head on raw inputs.

    model = SequenceClassifier(vocab_size=5000, classes=2, core="gru")        # sentiment: words -> class
    logits, trace = model(src, src_lengths)                                    # (B, classes)
    model = QuestionAnswerer(vocab_size=30, classes=13, image_shape=(3, 64, 64), core="lstm", fuse="product")
    logits, trace = model(images, question, question_lengths)                  # VQA: (B, classes)
    model = FrameTagger(frame_shape=(1, 16, 16), classes=10, core="gru")
    logits, trace = model(frames)                                              # per-frame: (B, T, classes)

Each reads words through ``seq2seq.Encoder`` (packed over the fused kernel) or frames through an image encoder
(vision.py), so every family of the core registry fits. ``reference=True`` runs the core's step-by-step path
and returns its trace (every state a graph node) for the diagnostics; otherwise the trace is None.
"""

from __future__ import annotations

import torch
from torch import nn

from .base import Trace
from .registry import build, entry
from .seq2seq import Encoder
from .vision import build_image_encoder

FUSIONS = ("product", "concat")


def _top(state, directions: int) -> torch.Tensor:
    """The top layer's final hidden state (B, H * directions) of a core's state (L * directions, B, H) or the
    LSTM's (h, c): both directions' for a bidirectional core, forward first."""
    h = state[0] if isinstance(state, tuple) else state
    return torch.cat(list(h[-directions:]), dim=-1)


def _encode(encoder: Encoder, src: torch.Tensor, lengths: torch.Tensor, reference: bool):
    if reference:
        _, _, state, trace = encoder.forward_reference(src, lengths)
        return _top(state, encoder.core.directions), trace
    _, _, state = encoder(src, lengths)
    return _top(state, encoder.core.directions), None


class SequenceClassifier(nn.Module):
    """Many-to-one over tokens: embedding, a core over the packed sequence, a linear map of the final state."""

    def __init__(self, vocab_size: int, classes: int, core: str = "lstm", core_config=None, embed_size: int = 64):
        super().__init__()
        self.encoder = Encoder(vocab_size, core, core_config, embed_size)
        self.head = nn.Linear(self.encoder.output_size, classes)

    def forward(self, src: torch.Tensor, lengths: torch.Tensor, reference: bool = False
                ) -> tuple[torch.Tensor, Trace | None]:
        """src (B, S) padded, lengths (B,) -> logits (B, classes), the core's trace or None."""
        h, trace = _encode(self.encoder, src, lengths, reference)
        return self.head(h), trace


class QuestionAnswerer(nn.Module):
    """VQA (Antol et al. 2015, the "deeper LSTM Q + norm I" model in small): the question's final state and the
    image's summary vector, projected to one width, fused by elementwise product or concatenation, then an MLP
    over the answers. With ``use_image=False`` the image is never read: the question-only model of the same size
    of question path, which shows what the image adds."""

    def __init__(self, vocab_size: int, classes: int, image_shape: tuple[int, int, int], core: str = "lstm",
                 core_config=None, embed_size: int = 64, image_encoder: str = "cnn", feature_size: int = 64,
                 pretrained: bool = False, fuse: str = "product", use_image: bool = True):
        super().__init__()
        if fuse not in FUSIONS:
            raise ValueError(f"unknown fusion {fuse!r}; valid: {', '.join(FUSIONS)}")
        self.fuse, self.use_image = fuse, use_image
        self.encoder = Encoder(vocab_size, core, core_config, embed_size)
        self.question = nn.Linear(self.encoder.output_size, feature_size)
        if use_image:
            channels, height, width = image_shape
            self.image = build_image_encoder(image_encoder, (height, width), channels, feature_size, pretrained,
                                             grid=False)
            # The "norm I" of Antol et al.: a mean-pooled CNN summary of mostly-background images barely varies
            # between images at initialisation, and the question alone is a strong local optimum (about 2/3 on
            # easy-VQA); normalising the summary over the batch makes the image's differences visible from step 1.
            self.image_norm = nn.BatchNorm1d(feature_size)
        joint = 2 * feature_size if use_image and fuse == "concat" else feature_size
        self.head = nn.Sequential(nn.Linear(joint, feature_size), nn.ReLU(), nn.Linear(feature_size, classes))

    def forward(self, images: torch.Tensor, question: torch.Tensor, lengths: torch.Tensor,
                reference: bool = False) -> tuple[torch.Tensor, Trace | None]:
        """images (B, C, H, W), question (B, Q) padded, lengths (B,) -> logits (B, classes), trace or None."""
        h, trace = _encode(self.encoder, question, lengths, reference)
        q = torch.tanh(self.question(h))
        if not self.use_image:
            return self.head(q), trace
        v = torch.tanh(self.image_norm(self.image(images)[0]))
        joint = q * v if self.fuse == "product" else torch.cat([q, v], dim=-1)
        return self.head(joint), trace


class FrameTagger(nn.Module):
    """Many-to-many over frames: a per-frame image encoder's summary vector, a core over the frames, a linear
    map per frame. With ``recurrent=False`` the core is left out and each frame is classified alone: the
    memoryless control row."""

    def __init__(self, frame_shape: tuple[int, int, int], classes: int, core: str = "lstm", core_config=None,
                 image_encoder: str = "cnn", feature_size: int = 64, pretrained: bool = False,
                 recurrent: bool = True):
        super().__init__()
        channels, height, width = frame_shape
        self.frames = build_image_encoder(image_encoder, (height, width), channels, feature_size, pretrained,
                                          grid=False)
        self.core = build(core, feature_size, core_config or entry(core).default_config()) if recurrent else None
        self.head = nn.Linear(self.core.output_size if recurrent else feature_size, classes)

    def forward(self, frames: torch.Tensor, reference: bool = False) -> tuple[torch.Tensor, Trace | None]:
        """frames (B, T, C, H, W) -> logits (B, T, classes), the core's trace or None."""
        b, t = frames.shape[:2]
        x = self.frames(frames.flatten(0, 1))[0].view(b, t, -1)
        if self.core is None:
            return self.head(x), None
        if reference:
            y, _, trace = self.core.forward_reference(x)
            return self.head(y), trace
        y, _ = self.core(x)
        return self.head(y), None
