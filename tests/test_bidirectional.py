"""Bidirectional cores and the many-to-one readouts: run ids and labels, what is refused, each direction's
final state, packed encoders, the diagnostics end to end, and the MNIST-1D paper's GRU (5,134 parameters)."""

from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F
from conftest import small

import architectures
from architectures.composed import SequenceClassifier
from architectures.decoder import Decoder
from architectures.seq2seq import Encoder, Seq2Seq
from bench.diag import health, spectra
from bench.run.config import resolve
from bench.run.system import build
from bench.run.train import train
from options import ConfigError

ARCHS = architectures.names()
PAPER_GRU = {"task.name": "mnist1d", "arch.name": "gru", "arch.hidden_size": 6, "arch.bidirectional": True,
             "task.readout": "flatten"}


def config(name: str, hidden: int = 5, layers: int = 2, bidirectional: bool = True):
    return replace(architectures.entry(name).default_config(), hidden_size=hidden, layers=layers,
                   bidirectional=bidirectional)


def batch():
    """Three padded sources (lengths 6, 2, 4) whose padding holds real tokens, and targets of 5 steps."""
    g = torch.Generator().manual_seed(1)
    src, tgt = torch.randint(3, 7, (3, 6), generator=g), torch.randint(3, 6, (3, 6), generator=g)
    return src, torch.tensor([6, 2, 4]), tgt[:, :-1], tgt[:, 1:]


# ---- configuration ---------------------------------------------------------------------------------------
def test_defaults_leave_run_ids_alone_and_the_label_shows_the_directions():
    base = resolve(small("mnist1d", "gru"))
    same = resolve(small("mnist1d", "gru", **{"arch.bidirectional": False, "task.readout": "last"}))
    assert same.run_id == base.run_id and "bidirectional" not in same.to_dict()["arch"]
    assert "readout" not in same.to_dict()["task"]
    bi = resolve(small("mnist1d", "gru", **{"arch.bidirectional": True}))
    deep = resolve(small("mnist1d", "gru", **{"arch.bidirectional": True, "arch.layers": 2}))
    assert bi.run_id != base.run_id and bi.to_dict()["arch"]["bidirectional"] is True
    assert (bi.arch_label, deep.arch_label, bi.name) == ("gru-bi", "gru-2l-bi", "mnist1d__gru-bi__s0")


@pytest.mark.parametrize(("overrides", "message"), [
    (small("charlm", "gru", **{"arch.bidirectional": True}),
     "arch.bidirectional: task charlm carries the state .*; valid: false"),
    (small("caption", "gru", **{"arch.bidirectional": True}),
     "arch.bidirectional: the caption model's only recurrent core is its decoder.*; valid: false"),
    (small("mnist1d", "gru", **{"task.readout": "all"}), "unknown task.readout 'all'; valid: last, flatten"),
    (small("copy", "gru", **{"task.readout": "flatten"}), "unknown option task.readout"),
    # variable-length tasks (composed models) have no readout option
    (small("sentiment", "gru", **{"task.readout": "flatten"}), "unknown option task.readout"),
])
def test_what_cannot_work_is_one_line_before_any_work(overrides, message):
    with pytest.raises(ConfigError, match=message) as err:
        resolve(overrides)
    assert "\n" not in str(err.value)


def test_a_decoder_core_is_never_bidirectional():
    with pytest.raises(ValueError, match="decoder generates left to right"):
        Decoder(6, 5, 10, "gru", config("gru"))
    _, system = build(resolve(small("translate", "gru", **{"arch.bidirectional": True})))
    assert system.model.encoder.core.directions == 2 and system.model.decoder.core.directions == 1


# ---- readout ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ARCHS)
def test_last_readout_is_each_directions_final_state(name):
    task, system = build(resolve(small("mnist1d", name, **{"arch.bidirectional": True})))
    x = torch.randn(3, task.seq_len, 1)
    y, state = system.core(x)
    h = state[0] if isinstance(state, tuple) else state  # (2, B, H): forward's final state, then reverse's
    torch.testing.assert_close(task.readout(y, 2), torch.cat([h[0], h[1]], dim=-1))
    assert system.head.in_features == 16


def test_flatten_readout_reads_every_step():
    task, system = build(resolve(small("adding", "lstm", **{"task.readout": "flatten"})))
    y, _ = system.core(torch.randn(2, task.seq_len, 2))
    assert system.head.in_features == 8 * task.seq_len
    torch.testing.assert_close(task.readout(y), y.reshape(2, -1))
    (g,) = torch.autograd.grad(system.head(task.readout(y)).sum(), y)
    assert (g.abs().sum(dim=(0, 2)) > 0).all()  # the head reads every step's output directly


# ---- encoders --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ARCHS)
def test_packed_bidirectional_encoding_equals_each_sequence_alone_and_the_reference(name):
    torch.manual_seed(0)
    enc = Encoder(7, name, config(name), embed_size=4).double()
    src, lengths, _, _ = batch()
    values, _, state = enc(src, lengths)
    ref_values, _, ref_state, trace = enc.forward_reference(src, lengths)
    parts = (lambda s: s if isinstance(s, tuple) else (s,))  # noqa: E731
    assert values.shape == (3, 6, 10) and enc.output_size == 10 and len(trace.h) == 4
    for b, n in enumerate(lengths.tolist()):
        alone, alone_state = enc.core(enc.embed(src[b:b + 1, :n]))
        torch.testing.assert_close(values[b, :n], alone[0])
        for p, p_alone in zip(parts(state), parts(alone_state), strict=True):
            torch.testing.assert_close(p[:, b], p_alone[:, 0])
    torch.testing.assert_close(values, ref_values)
    for p, p_ref in zip(parts(state), parts(ref_state), strict=True):
        torch.testing.assert_close(p, p_ref)


def test_seq2seq_with_a_bidirectional_encoder_reference_equals_fast_path():
    torch.manual_seed(0)
    decoder = config("lstm", 4, 2, bidirectional=False)
    model = Seq2Seq(7, 6, "gru", "lstm", config("gru"), decoder, embed_size=3, attention_size=3).double()
    src, lengths, tgt_in, tgt_out = batch()
    fast, ref = model(src, lengths, tgt_in), model(src, lengths, tgt_in, reference=True)
    torch.testing.assert_close(fast.logits, ref.logits)
    loss_fast, loss_ref = (F.cross_entropy(o.logits.flatten(0, 1), tgt_out.flatten()) for o in (fast, ref))
    params = list(model.parameters())
    grads, grads_ref = torch.autograd.grad(loss_fast, params), torch.autograd.grad(loss_ref, params)
    for g, g_ref in zip(grads, grads_ref, strict=True):
        torch.testing.assert_close(g, g_ref)
    assert fast.memory.values.shape[-1] == 10  # attention reads both directions


def test_classifier_reads_both_directions_final_states():
    torch.manual_seed(0)
    net = SequenceClassifier(30, 2, "lstm", config("lstm", 4, 1)).double().eval()
    src, lengths = torch.randint(3, 30, (3, 7)), torch.tensor([7, 4, 2])
    fast, _ = net(src, lengths)
    ref, _ = net(src, lengths, reference=True)
    torch.testing.assert_close(fast, ref)
    alone = [net(src[b:b + 1, :n], lengths[b:b + 1])[0] for b, n in enumerate(lengths.tolist())]
    torch.testing.assert_close(fast, torch.cat(alone))


# ---- diagnostics -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("readout", ["last", "flatten"])
@pytest.mark.parametrize("name", ARCHS)
def test_diagnostics_of_a_bidirectional_core(name, readout):
    torch.manual_seed(0)
    task, system = build(resolve(small("mnist1d", name, **{"arch.bidirectional": True, "arch.layers": 2,
                                                           "task.readout": readout})))
    x, target = system.probe_batch(8)
    (_, core, profile, trace), = system.probe((x, target))
    assert profile.names == ["l0", "l0r", "l1", "l1r"] and len(profile.norms[1]) == task.seq_len
    assert all(n > 0 for entry in profile.norms for n in entry)
    jac = spectra.jacobian_norms(core, trace)
    units = health.unit_health(core, trace)
    assert set(jac) == set(units["saturation"]) == set(profile.names)
    blocks = {k.split(".")[0] for k in spectra.weight_spectra(core)}
    assert blocks == (set(profile.names) if core.gate_names else set())  # () : no W_hh (minGRU)
    assert {k.split(".")[0] for k in spectra.recurrence_spectra(core, trace)} == set(profile.names)
    # a reverse entry replays through its own cell and weights, as the Jacobians and gate means do
    replay = core.cell(0, core.project(0, trace.inputs[1][:, 3], 1), trace.state_before(1, 3), 1)
    torch.testing.assert_close(replay[0] if isinstance(replay, tuple) else replay, trace.h[1][3])


# ---- the MNIST-1D paper's GRU --------------------------------------------------------------------------
def test_the_mnist1d_papers_gru_has_5134_parameters():
    """Greydanus & Kobak 2020, Table 1: a bidirectional GRU of 6 units whose outputs at all 40 steps feed one
    linear layer: 2 x (3 x 6 x (1 + 6) + 2 x 18) = 324 recurrent + 480 x 10 + 10 = 4,810 in the head."""
    cfg = resolve(PAPER_GRU)
    _, system = build(cfg)
    assert sum(p.numel() for p in system.parameters()) == 5134  # what train.py records as ``params``
    assert system.head.in_features == 40 * 12


def test_a_short_run_of_the_papers_gru_writes_its_record(tmp_path):
    cfg = resolve({**PAPER_GRU, "task.batch_size": 16, "train.max_steps": 30, "train.val_every": 30})
    rec = train(cfg, tmp_path, wandb="disabled")
    assert rec["status"] == "ok" and rec["arch_label"] == "gru-bi" and rec["params"] == 5134
    assert rec["diagnostics"]["verdict"] in ("healthy", "vanishing", "exploding")
    assert {"l0", "l0r"} == set(rec["diagnostics"]["final"]["jacobian"])
    assert (tmp_path / "runs" / f"{cfg.name}__{cfg.run_id}.json").exists()
    assert 0.0 <= rec["metric"]["test"] <= 1.0
