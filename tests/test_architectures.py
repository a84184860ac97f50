"""Cores: fused kernel == step-by-step reference (outputs and gradients), init options, introspection."""

from dataclasses import replace

import pytest
import torch

import architectures
from architectures.registry import register

ARCHS = architectures.names()


def make(name: str, layers: int, input_size: int = 3, hidden: int = 6, **opts):
    e = architectures.entry(name)
    core = architectures.build(name, input_size, replace(e.default_config(), layers=layers, hidden_size=hidden, **opts))
    return core.double()


def _state_list(state):
    return list(state) if isinstance(state, tuple) else [state]


@pytest.mark.parametrize(("layers", "bidirectional"), [(1, False), (3, False), (1, True), (2, True)])
@pytest.mark.parametrize("name", ARCHS)
def test_fused_equals_reference(name, layers, bidirectional):
    torch.manual_seed(0)
    core = make(name, layers, bidirectional=bidirectional)
    x = torch.randn(4, 9, 3, dtype=torch.double, requires_grad=True)
    init = core.initial_state(4, x)
    init = tuple(s.normal_() for s in init) if isinstance(init, tuple) else init.normal_()

    y, state = core(x, init)
    y_ref, state_ref, trace = core.forward_reference(x, init)
    torch.testing.assert_close(y, y_ref)
    for a, b in zip(_state_list(state), _state_list(state_ref), strict=True):
        torch.testing.assert_close(a, b)

    weights = torch.randn_like(y)
    grads = torch.autograd.grad((y * weights).sum(), [x, *core.parameters()])
    grads_ref = torch.autograd.grad((y_ref * weights).sum(), [x, *core.parameters()])
    for g, g_ref in zip(grads, grads_ref, strict=True):
        torch.testing.assert_close(g, g_ref)
    directions = 2 if bidirectional else 1
    assert y.shape == (4, 9, 6 * directions) and core.output_size == 6 * directions
    assert len(trace.h) == layers * directions and len(trace.h[0]) == 9
    assert all(h.shape == (4, 6) for h in trace.h[-1])


@pytest.mark.parametrize("name", ARCHS)
def test_a_reverse_trace_entry_runs_in_its_own_processing_order(name):
    """Entry k = layer * 2 + direction; a reverse entry read its layer's input flipped in time, and its state
    after t steps is the reverse half of the output at position T - 1 - t."""
    torch.manual_seed(0)
    core = make(name, 2, bidirectional=True)
    x = torch.randn(2, 5, 3, dtype=torch.double)
    y, _, trace = core.forward_reference(x)
    assert [trace.name(k) for k in range(4)] == ["l0", "l0r", "l1", "l1r"] and trace.where(3) == (1, 1)
    torch.testing.assert_close(trace.inputs[1], x.flip(1))
    torch.testing.assert_close(trace.inputs[3], trace.inputs[2].flip(1))
    for t in range(5):
        torch.testing.assert_close(trace.h[2][t], y[:, t, :6])
        torch.testing.assert_close(trace.h[3][t], y[:, 4 - t, 6:])


@pytest.mark.parametrize("name", ARCHS)
def test_trace_states_are_graph_nodes(name):
    core = make(name, 2)
    x = torch.randn(2, 5, 3, dtype=torch.double)
    y, _, trace = core.forward_reference(x)
    grads = torch.autograd.grad(y[:, -1].sum(), trace.h[0])
    assert len(grads) == 5 and all(g is not None for g in grads)
    assert grads[0].abs().sum() > 0  # the first step's state reaches the last output


@pytest.mark.parametrize("name", ARCHS)
def test_recurrent_blocks_are_views_of_the_parameters(name):
    core = make(name, 2)
    blocks = core.recurrent_blocks()
    gates = len(core.gate_names)
    assert len(blocks) == 2 * gates and set(blocks) == set(core.recurrent_weights())
    if not gates:  # no weight multiplies h_{t-1} (minGRU's 1 - z_t reads x_t only): no block to view
        assert core.layer_params(0)[1] is None
        return
    assert all(b.shape in ((6, 6), (6,)) for b in blocks.values())  # (6,): a diagonal recurrence's u
    first = next(iter(blocks.values()))
    with torch.no_grad():
        first.fill_(0.5)
    assert (core.rnn.weight_hh_l0[:6] == 0.5).all()


@pytest.mark.parametrize("bidirectional", [False, True])
def test_irnn_is_identity_with_zero_bias(bidirectional):
    core = make("irnn", 2, init_scale=0.9, bidirectional=bidirectional)
    for layer, direction in core.layers_and_directions():
        w_ih, w_hh, b_ih, b_hh = core.layer_params(layer, direction)
        torch.testing.assert_close(w_hh, 0.9 * torch.eye(6, dtype=torch.double))
        assert not b_ih.any() and not b_hh.any()
    assert core.phi is torch.relu and len(core.layers_and_directions()) == (4 if bidirectional else 2)


@pytest.mark.parametrize("bidirectional", [False, True])
def test_lstm_forget_bias_sums_to_the_option(bidirectional):
    core = make("lstm", 1, forget_bias=2.5, bidirectional=bidirectional)
    for direction in range(core.directions):
        _, _, b_ih, b_hh = core.layer_params(0, direction)
        torch.testing.assert_close(b_ih[6:12] + b_hh[6:12], torch.full((6,), 2.5, dtype=torch.double))


@pytest.mark.parametrize("bidirectional", [False, True])
@pytest.mark.parametrize("init", ["orthogonal", "identity"])
def test_recurrent_init_options(init, bidirectional):
    core = make("gru", 1, recurrent_init=init, bidirectional=bidirectional)
    blocks = core.recurrent_weights()
    assert len(blocks) == 3 * core.directions and ("l0r.z" in blocks) == bidirectional
    if bidirectional:  # views of the reverse direction's own W_hh, so the init reaches it
        assert blocks["l0r.z"].data_ptr() == core.rnn.weight_hh_l0_reverse[6:12].data_ptr()
    for block in blocks.values():
        torch.testing.assert_close(block @ block.T, torch.eye(6, dtype=torch.double), atol=1e-6, rtol=0)


def test_registry_refuses_duplicates_and_lists_names_on_typo():
    with pytest.raises(ValueError, match="already registered"):
        register("lstm", architectures.entry("lstm").core, architectures.entry("lstm").config)
    with pytest.raises(KeyError, match=f"^unknown architecture 'lstmm'; valid: {', '.join(ARCHS)}$"):
        architectures.entry("lstmm")


# Pinned parameter counts of the default cores the committed results were trained with, for 2 inputs (adding)
# and 1 input (mnist1d): a change here is a change to every published number, so it must be deliberate. A new
# family needs no pin here; its records carry their parameter counts.
PINNED = {"vanilla": (16896, 16768), "irnn": (16896, 16768), "lstm": (67584, 67072), "gru": (50688, 50304)}


@pytest.mark.parametrize("name", sorted(PINNED))
def test_pinned_parameter_counts(name):
    counts = tuple(sum(p.numel() for p in architectures.build(name, d).parameters()) for d in (2, 1))
    assert counts == PINNED[name]
