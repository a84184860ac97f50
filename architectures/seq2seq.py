"""Sequence to sequence: a recurrent encoder over the source and ``Decoder`` over the target (Sutskever, Vinyals &
Le 2014; with attention, Bahdanau et al. 2015 and Luong et al. 2015).

    model = Seq2Seq(src_vocab=40, tgt_vocab=40, encoder="gru", decoder="lstm", attention="multiplicative")
    model = Seq2Seq(40, 40, "gru", "gru", attention="none", refeed_context=True)   # Cho et al. 2014
    out = model(src, src_lengths, tgt_in)      # src (B, S) padded, src_lengths (B,), tgt_in (B, T) -> out.logits (B, T, V)
    loss = F.cross_entropy(out.logits.flatten(0, 1), tgt_out.flatten(), ignore_index=model.pad)
    tokens, lengths = model.beam(src, src_lengths, max_len=30, start=1, end=2, width=4)

Encoder and decoder are cores of the registry, chosen by name, so every family (vanilla, irnn, lstm, gru, and
stacks) serves as either with no name switch. The fast path packs the padded source (``pack_padded_sequence``)
through the core's fused kernel, so every sequence ends at its own length; ``reference=True`` runs the cores'
step-by-step paths instead and returns their traces, in which every encoder state h^enc_s is a graph node.

``refeed_context`` re-feeds the encoder's summary (its final states) to every decoder step and to the output layer
(Cho et al. 2014; see decoder.py): the strong baseline without attention.

A bidirectional encoder (Bahdanau et al. 2015) gives memory vectors of both directions (2H wide) and a summary
of both directions' final states; the decoder always reads left to right (a bidirectional one is refused).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from .base import State, Trace
from .decoder import Decoder, Memory, Output, flatten_state, state_width
from .decoding import Decoded, beam, check_limits, greedy
from .registry import build, entry


class Encoded(NamedTuple):
    memory: Memory           # top-layer states (B, S, H * directions), zero at padding, with mask and keys
    summary: torch.Tensor    # (B, F): every layer's final state, flattened; what ``Decoder.initial`` reads
    trace: Trace | None      # the core's trace on the reference path


def padding_mask(lengths: torch.Tensor, steps: int) -> torch.Tensor:
    """lengths (B,) -> mask (B, steps), True on real positions; one line if a length is outside [1, steps]."""
    if lengths.dim() != 1 or lengths.numel() == 0 or lengths.min() < 1 or lengths.max() > steps:
        raise ValueError(f"source lengths must be a (B,) tensor of values in [1, {steps}], got {lengths.tolist()}")
    return torch.arange(steps, device=lengths.device) < lengths[:, None]


class Encoder(nn.Module):
    """Token embedding and a recurrent core over a padded source (B, S) of ``lengths`` (B,)."""

    def __init__(self, vocab_size: int, core: str = "lstm", core_config=None, embed_size: int = 64, pad: int = 0):
        super().__init__()
        config = core_config if core_config is not None else entry(core).default_config()
        self.embed = nn.Embedding(vocab_size, embed_size, padding_idx=pad)
        self.core = build(core, embed_size, config)
        self.output_size, self.summary_size = self.core.output_size, state_width(self.core)

    def forward(self, src: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, State]:
        """Fused path -> states (B, S, H), zero at padding; mask (B, S); final state at each sequence's length."""
        mask = padding_mask(lengths.to(src.device), src.shape[1])
        packed = pack_padded_sequence(self.embed(src), lengths.cpu(), batch_first=True, enforce_sorted=False)
        # the fused path is the torch module itself, which reads a PackedSequence: no state runs past its length
        out, state = self.core(packed)
        values, _ = pad_packed_sequence(out, batch_first=True, total_length=src.shape[1])
        return values, mask, state

    def forward_reference(self, src: torch.Tensor, lengths: torch.Tensor):
        """Step-by-step path -> as ``forward``, plus the trace. States past a sequence's length are computed but
        never read: the memory masks them and the final state is taken at the length, so they get no gradient;
        a reverse direction starts at each sequence's length, as packing makes the fused path do."""
        mask = padding_mask(lengths.to(src.device), src.shape[1])
        y, state, trace = self.core.forward_reference(self.embed(src), lengths=lengths.to(src.device))
        return y.masked_fill(~mask[..., None], 0), mask, state, trace


class Seq2Seq(nn.Module):
    """Encoder-decoder over token sequences; ``encoder``/``decoder`` are core registry names, ``*_config`` their
    config dataclasses (default: the registry preset), ``attention`` an attention kind (see attention.py)."""

    def __init__(self, src_vocab: int, tgt_vocab: int, encoder: str = "lstm", decoder: str = "lstm",
                 encoder_config=None, decoder_config=None, embed_size: int = 64, attention: str = "additive",
                 attention_size: int | None = None, input_feed: bool = False, pad: int = 0,
                 refeed_context: bool = False):
        super().__init__()
        self.pad = pad
        self.encoder = Encoder(src_vocab, encoder, encoder_config, embed_size, pad)
        self.decoder = Decoder(tgt_vocab, self.encoder.output_size, self.encoder.summary_size, decoder,
                               decoder_config, embed_size, attention, attention_size, input_feed, pad,
                               refeed_context=refeed_context)

    def forward(self, src: torch.Tensor, src_lengths: torch.Tensor, tgt_in: torch.Tensor,
                reference: bool = False) -> Output:
        """Teacher forcing: src (B, S), src_lengths (B,), tgt_in (B, T) -> Output (logits (B, T, V), weights
        (B, T, S) or None; with ``reference`` the encoder's and decoder's traces)."""
        encoded = self.encode(src, src_lengths, reference)
        carry = self.decoder.initial(encoded.summary)
        logits, weights, decoder_trace = self.decoder(tgt_in, encoded.memory, carry, reference)
        return Output(logits, weights, encoded.memory, encoded.trace, decoder_trace)

    def encode(self, src: torch.Tensor, src_lengths: torch.Tensor, reference: bool = False) -> Encoded:
        if reference:
            values, mask, state, trace = self.encoder.forward_reference(src, src_lengths)
        else:
            (values, mask, state), trace = self.encoder(src, src_lengths), None
        return Encoded(self.decoder.memory(values, mask), flatten_state(state), trace)

    @torch.no_grad()
    def greedy(self, src: torch.Tensor, src_lengths: torch.Tensor, max_len: int, start: int, end: int) -> Decoded:
        """Greedy decoding -> tokens (B, T <= max_len), lengths (B,); see decoding.py."""
        check_limits(max_len)
        memory, summary, _ = self.encode(src, src_lengths)
        return greedy(self.decoder, memory, summary, max_len, start, end)

    @torch.no_grad()
    def beam(self, src: torch.Tensor, src_lengths: torch.Tensor, max_len: int, start: int, end: int,
             width: int, length_penalty: float = 0.0) -> Decoded:
        """Beam-search decoding -> tokens (B, T <= max_len), lengths (B,); see decoding.py."""
        check_limits(max_len, width)
        memory, summary, _ = self.encode(src, src_lengths)
        return beam(self.decoder, memory, summary, max_len, start, end, width, length_penalty)
