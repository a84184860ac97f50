"""The composed models of ``ComposedTask``s (tasks/composed.py): their ``model.*`` options, how each is built from
the architecture registry, and what one batch costs (loss), scores (``Scored``) and shows the diagnostics.

    kind = KINDS[task.model]                       # KINDS.names(): one per @kind("...") below
    net = kind.build(task, cfg.arch_name, cfg.arch, cfg.model)
    loss, scored = kind.forward(net, batch)        # teacher forcing for decoders
    tokens = kind.decode(net, batch, cfg.model, max_len)   # greedy (model.beam = 1) or beam; None if no decoder

The recurrent family (``arch.*``) serves every recurrent part of a model: encoder and decoder alike, so a row
of the leaderboard is one family. Options that only some kinds have live in that kind's dataclass, so a run
id carries only what its model reads. Nothing here branches on a task or architecture name.

Which loss the diagnostics differentiate (``probe``), per core. An encoder (or a question reader) gets the
batch's whole task loss, so its profile is ||dL/dh^enc_s|| of the decoder's loss at every source position s:
the lecture's argument for attention is that it shortens every one of those paths. A core that writes one
output per step (a decoder, the frame tagger's core) gets the loss of its last output step only, the rule of
the many-to-many sequence tasks (bench/diag/flow.py): the whole loss would also reach every step directly and
hide how much of the late error travels back through the recurrence; for a decoder that step is END, and for
the frame tagger the last hidden frame, which must be remembered across the whole occlusion.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from architectures.attention import ATTENTION
from architectures.base import RecurrentCore, Trace
from architectures.captioning import Captioner
from architectures.composed import FUSIONS, FrameTagger, QuestionAnswerer, SequenceClassifier
from architectures.seq2seq import Seq2Seq
from architectures.vision import IMAGE_ENCODERS, weights_problem
from options import MAX_BEAM, opt
from options.registry import Registry
from tasks.composed import END, PAD, START, Scored


@dataclass(frozen=True)
class Seq2SeqOptions:
    attention: str = opt("additive", "attention over the encoder states (none: the final state only)",
                         choices=tuple(ATTENTION.names()))
    embed_size: int = opt(32, "token embedding width of the encoder and the decoder", ge=1)
    input_feed: bool = opt(False, "feed the last attentional state back into the decoder (Luong sec. 3.3)")
    beam: int = opt(1, "beam width at evaluation (1: greedy decoding)", ge=1, le=MAX_BEAM)
    # Added after records existed: shown only when true, so older run ids stay as they were.
    refeed_context: bool = opt(False, "re-feed the encoder's final state to every decoder step and to the output "
                                      "layer (Cho et al. 2014; the strong baseline without attention)",
                               omit_default=True)


@dataclass(frozen=True)
class CaptionOptions:
    attention: str = opt("additive", "attention over the image grid (none: the summary vector only)",
                         choices=tuple(ATTENTION.names()))
    embed_size: int = opt(32, "word embedding width", ge=1)
    beam: int = opt(1, "beam width at evaluation (1: greedy decoding)", ge=1, le=MAX_BEAM)
    image_encoder: str = opt("cnn", "image encoder (torchvision resnets are random unless pretrained)",
                             choices=tuple(IMAGE_ENCODERS.names()))
    pretrained: bool = opt(False, "ImageNet weights for a resnet, read from the torch cache (never downloaded)")
    feature_size: int = opt(64, "width of the image summary and of every grid cell", ge=1)


@dataclass(frozen=True)
class VQAOptions:
    embed_size: int = opt(32, "word embedding width", ge=1)
    image: bool = opt(True, "read the image (false: the question-only model, which shows what the image adds)")
    fuse: str = opt("product", "how question and image vectors combine", choices=FUSIONS)
    image_encoder: str = opt("cnn-small", "image encoder", choices=tuple(IMAGE_ENCODERS.names()))
    pretrained: bool = opt(False, "ImageNet weights for a resnet, read from the torch cache (never downloaded)")
    feature_size: int = opt(64, "width of the fused question and image vectors", ge=1)


@dataclass(frozen=True)
class ClassifyOptions:
    embed_size: int = opt(64, "word embedding width", ge=1)


@dataclass(frozen=True)
class FramesOptions:
    recurrent: bool = opt(True, "a recurrent core over the frames (false: each frame classified alone, the "
                                "memoryless control)")
    image_encoder: str = opt("cnn-small", "per-frame image encoder", choices=tuple(IMAGE_ENCODERS.names()))
    feature_size: int = opt(64, "width of each frame's summary vector", ge=1)


class Probe(NamedTuple):
    """Every recurrent core of the model by role, in the record's order, with its trace and the loss its
    profile differentiates (see the module docstring)."""

    cores: dict[str, tuple[RecurrentCore, Trace, torch.Tensor]]


def _ce(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits.flatten(0, -2), target.flatten(), ignore_index=PAD)


KINDS = Registry("model")  # a task's ``model`` names one of these


def kind(name: str):
    """Class decorator: register ``name`` as one instance of the class (a kind holds no state)."""
    def add(cls: type[Kind]) -> type[Kind]:
        KINDS.add(name, cls())
        return cls
    return add


class Kind:
    """How one composed model is built and run; subclasses fill in the four methods."""

    Options: type
    # Its recurrent core reads a whole sequence before it answers (an encoder), so ``arch.bidirectional``
    # applies; a decoder generates left to right and is never bidirectional.
    encodes = True

    def build(self, task, arch_name: str, arch_config, options) -> nn.Module:
        raise NotImplementedError

    def forward(self, net: nn.Module, batch: dict, reference: bool = False) -> tuple[torch.Tensor, Scored, dict]:
        """(loss, what the task scores, {role: (core, trace)} when ``reference``)."""
        raise NotImplementedError

    def decode(self, net: nn.Module, batch: dict, options, max_len: int) -> torch.Tensor | None:
        return None

    def probe(self, net: nn.Module, batch: dict) -> Probe:
        loss, _, cores = self.forward(net, batch, reference=True)
        return Probe({role: (core, trace, loss) for role, (core, trace) in cores.items()})


class _Decoding(Kind):
    """Shared by the two decoder kinds: teacher forcing on tgt[:, :-1] against tgt[:, 1:]."""

    def decode(self, net, batch, options, max_len):
        if options.beam == 1:
            return net.greedy(*self._source(batch), max_len=max_len, start=START, end=END).tokens
        return net.beam(*self._source(batch), max_len=max_len, start=START, end=END, width=options.beam).tokens

    def probe(self, net, batch):
        """The encoder's profile from the whole batch; the decoder's from the probe rows whose targets share the
        most common length, so every row's last step (END) is the same step t and position t means the same in
        every row (with mixed lengths the last positions would hear from the longest targets alone)."""
        loss, _, cores = self.forward(net, batch, reference=True)
        lengths = (batch["tgt"] != PAD).sum(dim=1)
        rows = (lengths == torch.mode(lengths).values).nonzero().flatten()
        same = {key: value[rows] for key, value in batch.items()}
        same["tgt"] = same["tgt"][:, : int(lengths[rows[0]])]
        _, scored, decoding = self.forward(net, same, reference=True)
        last = F.cross_entropy(scored.logits[:, -1], same["tgt"][:, -1])
        probed = {role: (core, trace, loss) for role, (core, trace) in cores.items() if role != "decoder"}
        return Probe({**probed, "decoder": (*decoding["decoder"], last)})

    def _source(self, batch) -> tuple:
        raise NotImplementedError


@kind("seq2seq")
class Seq2SeqKind(_Decoding):
    Options = Seq2SeqOptions

    def build(self, task, arch_name, arch_config, options):
        s = task.sizes()
        # arch.bidirectional is the encoder's (Bahdanau et al. 2015): the decoder reads left to right
        decoder_config = replace(arch_config, bidirectional=False)
        return Seq2Seq(s["src_vocab"], s["tgt_vocab"], arch_name, arch_name, arch_config, decoder_config,
                       options.embed_size, options.attention, input_feed=options.input_feed, pad=PAD,
                       refeed_context=options.refeed_context)

    def forward(self, net, batch, reference=False):
        tgt = batch["tgt"]
        out = net(batch["src"], batch["src_len"], tgt[:, :-1], reference=reference)
        cores = {"encoder": (net.encoder.core, out.encoder_trace), "decoder": (net.decoder.core, out.decoder_trace)}
        return _ce(out.logits, tgt[:, 1:]), Scored(out.logits, out.weights), cores if reference else {}

    def _source(self, batch):
        return batch["src"], batch["src_len"]


@kind("caption")
class CaptionKind(_Decoding):
    Options = CaptionOptions
    encodes = False  # the image encoder is a CNN: the one recurrent core is the decoder

    def build(self, task, arch_name, arch_config, options):
        s = task.sizes()
        c, h, w = s["image_shape"]
        return Captioner(s["tgt_vocab"], (h, w), c, options.image_encoder, options.feature_size,
                         options.pretrained, arch_name, arch_config, options.embed_size, options.attention, pad=PAD)

    def forward(self, net, batch, reference=False):
        tgt = batch["tgt"]
        out = net(batch["image"], tgt[:, :-1], reference=reference)
        scored = Scored(out.logits, out.weights, grid=tuple(net.encoder.grid_shape))
        return _ce(out.logits, tgt[:, 1:]), scored, {"decoder": (net.decoder.core, out.decoder_trace)}

    def _source(self, batch):
        return (batch["image"],)


@kind("vqa")
class VQAKind(Kind):
    Options = VQAOptions

    def build(self, task, arch_name, arch_config, options):
        s = task.sizes()
        return QuestionAnswerer(s["vocab"], s["classes"], s["image_shape"], arch_name, arch_config,
                                options.embed_size, options.image_encoder, options.feature_size,
                                options.pretrained, options.fuse, options.image)

    def forward(self, net, batch, reference=False):
        logits, trace = net(batch["image"], batch["question"], batch["question_len"], reference)
        return F.cross_entropy(logits, batch["answer"]), Scored(logits), {"question": (net.encoder.core, trace)}


@kind("classify")
class ClassifyKind(Kind):
    Options = ClassifyOptions

    def build(self, task, arch_name, arch_config, options):
        s = task.sizes()
        return SequenceClassifier(s["vocab"], s["classes"], arch_name, arch_config, options.embed_size)

    def forward(self, net, batch, reference=False):
        logits, trace = net(batch["src"], batch["src_len"], reference)
        return F.cross_entropy(logits, batch["label"]), Scored(logits), {"encoder": (net.encoder.core, trace)}


@kind("frames")
class FramesKind(Kind):
    Options = FramesOptions

    def build(self, task, arch_name, arch_config, options):
        s = task.sizes()
        return FrameTagger(s["frame_shape"], s["classes"], arch_name, arch_config, options.image_encoder,
                           options.feature_size, recurrent=options.recurrent)

    def forward(self, net, batch, reference=False):
        logits, trace = net(batch["frames"], reference)
        loss = F.cross_entropy(logits.flatten(0, 1), batch["label"].flatten())
        return loss, Scored(logits), ({"core": (net.core, trace)} if net.core is not None else {})

    def probe(self, net, batch):
        logits, trace = net(batch["frames"], reference=True)
        loss = F.cross_entropy(logits[:, -1], batch["label"][:, -1])  # the last frame: see the module docstring
        return Probe({"core": (net.core, trace, loss)} if net.core is not None else {})


def check(options, channels: int | None = None) -> str | None:
    """A problem with a model's options that only shows when it is built (pretrained weights not cached, or not
    for images of the task's ``channels``)."""
    if getattr(options, "pretrained", False) and getattr(options, "image", True):  # question-only: no encoder
        problem = weights_problem(options.image_encoder, True, channels)
        return problem and f"model.pretrained: {problem}"
    return None


def options_for(task_cls) -> type | None:
    """The ``model.*`` dataclass of a task, or None for a sequence task (core + linear head)."""
    model = getattr(task_cls, "model", None)
    return KINDS[model].Options if model else None
