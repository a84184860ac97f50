"""Encoder-decoder models: attention masks padding, teacher forcing equals a hand-written loop, packing equals
running each sequence alone, beam search (width 1 = greedy, exact when the beam holds every prefix), decoding
stops at END and at max_len, every core family pairs with every other, the image encoders, one-line errors."""

import itertools
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

import architectures
from architectures.attention import ATTENTION, build_attention
from architectures.captioning import Captioner
from architectures.decoder import Carry, Memory
from architectures.decoding import beam, greedy
from architectures.seq2seq import Encoder, Seq2Seq
from architectures.vision import IMAGE_ENCODERS, build_image_encoder

ARCHS = architectures.names()
KINDS = ATTENTION.names()
PAD, START, END = 0, 1, 2


def config(name: str, hidden: int = 5, layers: int = 1):
    return replace(architectures.entry(name).default_config(), hidden_size=hidden, layers=layers)


def tiny(encoder="lstm", decoder="gru", attention="additive", input_feed=False, tgt_vocab=6, **kw) -> Seq2Seq:
    torch.manual_seed(0)
    model = Seq2Seq(7, tgt_vocab, encoder, decoder, config(encoder, 5, 2), config(decoder, 4, 2), embed_size=3,
                    attention=attention, attention_size=3, input_feed=input_feed, **kw)
    return model.double()


def batch(b=3, s=6, t=5, vocab=6, lengths=(6, 2, 4)):
    """Padded sources whose padding holds real tokens (it must be ignored, not merely embedded as zero)."""
    g = torch.Generator().manual_seed(1)
    src = torch.randint(3, 7, (b, s), generator=g)
    tgt = torch.randint(3, vocab, (b, t + 1), generator=g)
    return src, torch.tensor(lengths), tgt[:, :-1], tgt[:, 1:]


# ---- attention -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", KINDS)
def test_attention_weights_sum_to_one_and_are_zero_on_padding(kind):
    torch.manual_seed(0)
    att = build_attention(kind, query_size=4, value_size=3, size=5).double()
    values = torch.randn(3, 6, 3, dtype=torch.double)
    mask = torch.arange(6) < torch.tensor([6, 2, 1])[:, None]
    for query in (torch.randn(3, 4, dtype=torch.double), torch.randn(3, 7, 4, dtype=torch.double)):
        context, weights = att(query, values, mask)
        assert context.shape == (*query.shape[:-1], att.context_size)
        if kind == "none":
            assert weights is None and att.context_size == 0
            continue
        assert weights.shape == (*query.shape[:-1], 6)
        torch.testing.assert_close(weights.sum(-1), torch.ones(query.shape[:-1], dtype=torch.double))
        padding = ~mask if query.dim() == 2 else ~mask[:, None].expand_as(weights)
        assert (weights[padding] == 0).all() and (weights[~padding] > 0).all()


@pytest.mark.parametrize("kind", KINDS)
def test_seq2seq_attention_maps_are_target_by_source_and_skip_padding(kind):
    src, lengths, tgt_in, _ = batch()
    out = tiny(attention=kind)(src, lengths, tgt_in)
    assert out.logits.shape == (3, 5, 6)
    if kind == "none":
        assert out.weights is None
        return
    assert out.weights.shape == (3, 5, 6)
    torch.testing.assert_close(out.weights.sum(-1), torch.ones(3, 5, dtype=torch.double))
    assert (out.weights[~out.memory.mask[:, None].expand_as(out.weights)] == 0).all()


# ---- teacher forcing: fast path == reference path == a hand-written loop ---------------------------------
def hand_scores(att, kind: str, h, keys):
    """Scores written out from the papers' equations, one source position at a time."""
    if kind == "additive":  # v^T tanh(W_q h + W_k k_s)
        return torch.stack([att.v.weight[0] @ torch.tanh(att.query.weight @ h + att.key.weight @ k) for k in keys])
    return torch.stack([h @ att.bilinear.weight @ k for k in keys])  # h^T W_a k_s


def hand_written_loss(model: Seq2Seq, kind: str, src, lengths, tgt_in, tgt_out):
    """Each sequence alone, unpadded, through the cores' step-by-step paths and the equations of decoder.py."""
    enc, dec, total = model.encoder, model.decoder, 0
    for b, n in enumerate(lengths.tolist()):
        keys, final, _ = enc.core.forward_reference(enc.embed(src[b:b + 1, :n]))
        keys = keys[0]
        parts = final if isinstance(final, tuple) else (final,)
        summary = torch.cat([p[:, 0].reshape(-1) for p in parts])
        s0 = torch.tanh(dec.bridge.weight @ summary + dec.bridge.bias).view(-1, dec.core.layers, 1,
                                                                             dec.core.hidden_size)
        state = (s0[0], s0[1]) if dec.core.has_cell_state else s0[0]
        feed = torch.zeros(dec.core.hidden_size, dtype=torch.double)
        for t in range(tgt_in.shape[1]):
            e = dec.embed.weight[tgt_in[b, t]]
            x = torch.cat([e, feed]) if dec.input_feed else e
            x = torch.cat([x, summary]) if dec.refeed_context else x  # z: the summary, re-fed (Cho et al.)
            h, state, _ = dec.core.forward_reference(x.view(1, 1, -1), state)
            h = h[0, 0]
            context = (torch.softmax(hand_scores(dec.attention, kind, h, keys), 0) @ keys
                       if kind != "none" else h[:0])
            read = torch.cat([context, h, e, summary]) if dec.refeed_context else torch.cat([context, h])
            feed = torch.tanh(dec.combine.weight @ read + dec.combine.bias)
            total = total - torch.log_softmax(dec.out.weight @ feed + dec.out.bias, 0)[tgt_out[b, t]]
    return total


@pytest.mark.parametrize("refeed", [False, True])
@pytest.mark.parametrize("input_feed", [False, True])
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("pair", [("lstm", "gru"), ("gru", "lstm")])
def test_teacher_forced_loss_equals_a_hand_written_loop(pair, kind, input_feed, refeed):
    model = tiny(*pair, attention=kind, input_feed=input_feed, refeed_context=refeed)
    src, lengths, tgt_in, tgt_out = batch()
    out = model(src, lengths, tgt_in)
    loss = F.cross_entropy(out.logits.flatten(0, 1), tgt_out.flatten(), reduction="sum")
    hand = hand_written_loss(model, kind, src, lengths, tgt_in, tgt_out)
    torch.testing.assert_close(loss, hand)
    params = list(model.parameters())
    for g, g_hand in zip(torch.autograd.grad(loss, params), torch.autograd.grad(hand, params), strict=True):
        torch.testing.assert_close(g, g_hand)


@pytest.mark.parametrize(("input_feed", "refeed"), [(False, False), (True, False), (False, True)])
def test_reference_path_equals_the_fast_path_and_exposes_every_encoder_state(input_feed, refeed):
    model = tiny("gru", "lstm", input_feed=input_feed, refeed_context=refeed)
    src, lengths, tgt_in, tgt_out = batch()
    fast, ref = model(src, lengths, tgt_in), model(src, lengths, tgt_in, reference=True)
    torch.testing.assert_close(fast.logits, ref.logits)
    torch.testing.assert_close(fast.weights, ref.weights)
    loss_fast, loss_ref = (F.cross_entropy(o.logits.flatten(0, 1), tgt_out.flatten()) for o in (fast, ref))
    params = list(model.parameters())
    grads_ref = torch.autograd.grad(loss_ref, params, retain_graph=True)
    for g, g_ref in zip(torch.autograd.grad(loss_fast, params), grads_ref, strict=True):
        torch.testing.assert_close(g, g_ref)
    assert fast.encoder_trace is None and (ref.decoder_trace is None) == input_feed
    # dL/dh^enc_s per source position: the diagnostic the trace exists for
    grads = torch.autograd.grad(loss_ref, ref.encoder_trace.h[-1])
    norms = torch.stack([g.norm(dim=-1) for g in grads], dim=1)
    assert norms.shape == (3, 6)
    assert (norms[~ref.memory.mask] == 0).all() and (norms[ref.memory.mask] > 0).all()


def test_the_refed_context_reaches_every_step_and_the_output_layer():
    """Cho et al. 2014: z (the encoder's summary, B x F) is read at every step beside the previous token, and by
    the output layer; the first state is still the bridge's, and the output keeps its shape."""
    src, lengths, tgt_in, _ = batch()
    plain, refed = tiny(attention="none"), tiny(attention="none", refeed_context=True)
    width = refed.encoder.summary_size
    assert refed.decoder.combine.in_features == plain.decoder.combine.in_features + 3 + width  # + E y_{t-1}, z
    out = refed(src, lengths, tgt_in)
    assert out.logits.shape == plain(src, lengths, tgt_in).logits.shape == (3, 5, 6) and out.weights is None
    memory, summary, _ = refed.encode(src, lengths)
    carry = refed.decoder.initial(summary)
    assert carry.context is summary and plain.decoder.initial(summary).context is None
    moved = carry._replace(context=summary + 1)  # same state and feed, another context: another next token
    first, second = (refed.decoder.step(tgt_in[:, 0], c, memory)[0] for c in (carry, moved))
    assert not torch.allclose(first, second)
    F.cross_entropy(out.logits.flatten(0, 1), batch()[3].flatten()).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in refed.parameters())


@pytest.mark.parametrize("name", ARCHS)
def test_packed_encoding_equals_each_sequence_alone(name):
    torch.manual_seed(0)
    enc = Encoder(7, name, config(name, 5, 2), embed_size=4).double()
    src, lengths, _, _ = batch()
    values, mask, state = enc(src, lengths)
    ref_values, _, ref_state, _ = enc.forward_reference(src, lengths)
    parts = lambda s: s if isinstance(s, tuple) else (s,)  # noqa: E731
    for b, n in enumerate(lengths.tolist()):
        alone, alone_state = enc.core(enc.embed(src[b:b + 1, :n]))
        torch.testing.assert_close(values[b, :n], alone[0])
        assert (values[b, n:] == 0).all() and mask[b].sum() == n
        for p, p_alone in zip(parts(state), parts(alone_state), strict=True):
            torch.testing.assert_close(p[:, b], p_alone[:, 0])
    torch.testing.assert_close(values, ref_values)
    for p, p_ref in zip(parts(state), parts(ref_state), strict=True):
        torch.testing.assert_close(p, p_ref)


@pytest.mark.parametrize(("encoder", "decoder"), list(itertools.product(ARCHS, ARCHS)))
def test_every_family_pairs_with_every_family(encoder, decoder):
    """Different widths and depths on each side, LSTM (h, c) against single-tensor states: the bridge maps them."""
    torch.manual_seed(0)
    model = Seq2Seq(7, 6, encoder, decoder, config(encoder, 6, 2), config(decoder, 5, 1), embed_size=3)
    src, lengths, tgt_in, tgt_out = batch()
    out = model(src, lengths, tgt_in)
    F.cross_entropy(out.logits.flatten(0, 1), tgt_out.flatten()).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


# ---- decoding ----------------------------------------------------------------------------------------------
class Scripted:
    """A stand-in decoder: row r says token 3 for r steps, then END. Its row id rides in the state and its step
    count in the feed, so a beam's reordering keeps them; ``calls`` counts steps."""

    pad, vocab = PAD, 5

    def __init__(self):
        self.calls = 0

    def initial(self, summary):
        return Carry(summary[None].clone(), torch.zeros_like(summary))

    def step(self, token, carry, memory):
        self.calls += 1
        ended = carry.feed[:, 0] >= carry.state[0, :, 0]
        logits = 10 * F.one_hot(torch.where(ended, END, 3), self.vocab).double()
        return logits, Carry(carry.state, carry.feed + 1), None


@pytest.mark.parametrize("search", ["greedy", "beam"])
def test_decoding_stops_at_end_and_never_runs_past_max_len(search):
    run = {"greedy": greedy, "beam": lambda *a: beam(*a, width=3)}[search]
    for rows, max_len, steps in (([0, 2, 5, 1], 4, 4), ([0, 2, 1], 10, 3)):
        decoder, summary = Scripted(), torch.tensor(rows, dtype=torch.double)[:, None]
        memory = Memory(torch.zeros(len(rows), 1, 1), torch.ones(len(rows), 1, dtype=torch.bool))
        tokens, lengths = run(decoder, memory, summary, max_len, START, END)
        assert tokens.shape == (len(rows), steps) and decoder.calls == steps
        for r, row, n in zip(rows, tokens.tolist(), lengths.tolist(), strict=True):
            said = [3] * min(r, max_len) + ([END] if r < max_len else [])
            assert n == len(said) and row == said + [PAD] * (steps - n)


def sharpened(model: Seq2Seq, scale: float, end_bias: float) -> Seq2Seq:
    """A tiny random model's next-token choice hardly depends on its input; larger weights make it depend, and a
    bias on END moves where sequences end."""
    with torch.no_grad():
        for p in model.parameters():
            p *= scale
        model.decoder.out.bias[END] += end_bias
    return model.eval()


def test_beam_of_width_one_is_greedy():
    src, lengths, _, _ = batch(b=8, lengths=(6, 2, 4, 1, 5, 3, 6, 6))
    seen = set()
    for kind, feeds, end_bias in itertools.product(KINDS, [(False, False), (True, False), (False, True)],
                                                   [-1.0, 0.0, 1.0]):
        model = sharpened(tiny(attention=kind, input_feed=feeds[0], refeed_context=feeds[1]), 3, end_bias)
        g, b = model.greedy(src, lengths, 8, START, END), model.beam(src, lengths, 8, START, END, width=1)
        assert torch.equal(g.tokens, b.tokens) and torch.equal(g.lengths, b.lengths), (kind, feeds, end_bias)
        assert g.tokens.shape[1] <= 8
        seen |= set(g.lengths.tolist())
    assert {1, 8} < seen  # sequences ended at the first step, in between, and never


@pytest.mark.parametrize(("refeed", "end_bias"), [(False, -0.5), (True, 0.5)])
def test_beam_is_exact_when_it_holds_every_prefix(refeed, end_bias):
    """vocab 4, max_len 3, width 16 = 4 ** 2: the beam keeps every prefix, so it must find the best sequence."""
    model = sharpened(tiny(tgt_vocab=4, refeed_context=refeed), 3, end_bias)
    src, lengths, _, _ = batch(b=8, lengths=(6, 2, 4, 1, 5, 3, 6, 6))
    found, greedy_found = model.beam(src, lengths, 3, START, END, width=16), model.greedy(src, lengths, 3, START, END)
    hyps = {tuple(seq[:seq.index(END) + 1]) if END in seq else seq
            for seq in itertools.product(range(4), repeat=3)}
    bests = []
    for b, n in enumerate(lengths.tolist()):
        def log_prob(hyp, b=b, n=n):
            logits = model(src[b:b + 1, :n], lengths[b:b + 1], torch.tensor([[START, *hyp[:-1]]])).logits
            return logits[0].log_softmax(-1)[range(len(hyp)), list(hyp)].sum().item()
        bests.append(max(hyps, key=log_prob))
        assert found.lengths[b] == len(bests[-1]) and tuple(found.tokens[b, :len(bests[-1])].tolist()) == bests[-1]
    # the case is not trivial: the best ends early for some sources and not for others, and greedy misses it
    assert len({len(best) for best in bests}) > 1 and 3 in {len(best) for best in bests}
    assert any(tuple(greedy_found.tokens[b, :len(best)].tolist()) != best for b, best in enumerate(bests))


# ---- images ------------------------------------------------------------------------------------------------
def test_small_cnn_gives_a_summary_and_a_grid_with_a_learned_position_code():
    torch.manual_seed(0)
    enc = build_image_encoder("cnn", image_size=16, channels=1, out_size=8)
    summary, grid = enc(torch.randn(2, 1, 16, 16))
    assert summary.shape == (2, 8) and grid.shape == (2, 4, 8)  # 16 / 2**3 = a 2 x 2 grid
    assert isinstance(enc.position, torch.nn.Parameter) and enc.position.shape == (4, 8)
    assert any(p is enc.position for p in enc.parameters())
    grid.sum().backward()
    assert enc.position.grad is not None and enc.position.grad.abs().sum() > 0


@pytest.mark.parametrize("input_feed", [False, True])
def test_captioner_decodes_over_the_image_grid(input_feed):
    torch.manual_seed(0)
    model = Captioner(9, image_size=16, channels=1, feature_size=8, decoder="gru", decoder_config=config("gru", 6),
                      embed_size=4, input_feed=input_feed)
    images, tgt = torch.randn(2, 1, 16, 16), torch.randint(3, 9, (2, 5))
    out = model(images, tgt[:, :-1])
    assert out.logits.shape == (2, 4, 9) and out.weights.shape == (2, 4, 4)
    F.cross_entropy(out.logits.flatten(0, 1), tgt[:, 1:].flatten()).backward()
    assert all(p.grad is not None for p in model.parameters())
    g, b = model.eval().greedy(images, 6, START, END), model.beam(images, 6, START, END, width=1)
    assert torch.equal(g.tokens, b.tokens) and g.tokens.shape[1] <= 6


def test_resnet_backbone_is_random_by_default_and_reads_pretrained_weights_from_the_cache(tmp_path, monkeypatch):
    from torchvision import models

    enc = build_image_encoder("resnet18", image_size=64, out_size=8)
    assert enc(torch.randn(1, 3, 64, 64))[1].shape == (1, 4, 8)  # 64 / 32: a 2 x 2 grid of 512 features
    gray = build_image_encoder("resnet18", image_size=32, channels=1, out_size=8)  # a 1-channel first layer
    assert gray(torch.randn(2, 1, 32, 32))[1].shape == (2, 1, 8)
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    with pytest.raises(FileNotFoundError, match=r"^pretrained weights are not in the torch cache: .*resnet18") as e:
        build_image_encoder("resnet18", image_size=64, pretrained=True)
    assert "\n" not in str(e.value)
    saved = models.resnet18(weights=None).state_dict()
    (tmp_path / "checkpoints").mkdir()
    torch.save(saved, tmp_path / "checkpoints" / models.ResNet18_Weights.DEFAULT.url.rsplit("/", 1)[-1])
    loaded = build_image_encoder("resnet18", image_size=64, pretrained=True)
    torch.testing.assert_close(loaded.backbone[0].weight, saved["conv1.weight"])


# ---- one-line errors, registries, pinned size ----------------------------------------------------------
@pytest.mark.parametrize(("make", "error", "message"), [
    (lambda: build_image_encoder("resnet19", 32), ValueError,
     f"unknown image encoder 'resnet19'; valid: {', '.join(IMAGE_ENCODERS.names())}"),
    (lambda: build_image_encoder("cnn", 32, pretrained=True), ValueError, "image encoder 'cnn' is trained from"),
    (lambda: Seq2Seq(5, 5, attention="bahdanau"), ValueError,
     f"unknown attention 'bahdanau'; valid: {', '.join(KINDS)}"),
    (lambda: tiny().beam(*batch()[:2], 5, START, END, width=0), ValueError, "beam width must be >= 1, got 0"),
    (lambda: tiny().greedy(*batch()[:2], 0, START, END), ValueError, "max_len must be >= 1, got 0"),
    (lambda: tiny()(batch()[0], torch.tensor([6, 0, 7]), batch()[2]), ValueError, "source lengths must be"),
    (lambda: ATTENTION.register("additive")(object), ValueError, "attention 'additive' is already registered"),
    (lambda: IMAGE_ENCODERS.register("cnn")(object), ValueError, "image encoder 'cnn' is already registered"),
])
def test_user_errors_are_one_line(make, error, message):
    with pytest.raises(error) as e:
        make()
    assert str(e.value).startswith(message) and "\n" not in str(e.value)


def test_plug_in_kinds_stay_out_of_the_core_registry():
    assert "none" in KINDS  # the baseline every attention kind is compared with
    assert not set(ARCHS) & (set(KINDS) | set(IMAGE_ENCODERS.names()))


# The default Seq2Seq (LSTM -> LSTM, H 128, embeddings 64, additive attention) for 32-token vocabularies:
# a change here changes every published seq2seq number, so it must be deliberate.
def test_pinned_parameter_count_of_the_default_seq2seq():
    assert sum(p.numel() for p in Seq2Seq(32, 32).parameters()) == 338464
