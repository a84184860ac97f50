"""The families with a parallel path of their own (``scan``: minGRU, minLSTM, LRU): the scan == the cell step by
step, in float64, on sequences long enough for several doubling rounds (T = 37, not a power of 2), from a
non-zero initial state of both signs, 2 layers, bidirectional, padded with lengths; and the scan helpers
against a loop, for real and complex coefficients. The families whose W_hh is a matrix exponential (expRNN,
``spectrum_kind = "orthogonal"``): their gradient through ``torch.linalg.matrix_exp`` against finite
differences, and expRNN's init against the rotations it must give.

Families are read from the registry: any core that overrides ``RecurrentCore.scan`` is covered.
"""

import math
from dataclasses import replace

import pytest
import torch

import architectures
from architectures.base import RecurrentCore
from architectures.scan import linear_scan, log_scan

SCANNED = [n for n in architectures.names() if architectures.entry(n).core.scan is not RecurrentCore.scan]
ORTHOGONAL = [n for n in architectures.names() if architectures.entry(n).core.spectrum_kind == "orthogonal"]
B, T, D, H = 3, 37, 4, 6
LENGTHS = torch.tensor([37, 20, 1])


@pytest.fixture(autouse=True)
def scan_everywhere(monkeypatch):
    """The fast path runs every family's scan here, on a CPU too, so that the scan is what these tests prove."""
    for name in SCANNED:
        monkeypatch.setattr(architectures.entry(name).core, "scan_on_cpu", True)


def make(name: str, layers: int, bidirectional: bool) -> RecurrentCore:
    e = architectures.entry(name)
    cfg = replace(e.default_config(), hidden_size=H, layers=layers, bidirectional=bidirectional)
    return architectures.build(name, D, cfg).double()


def parts(state) -> list[torch.Tensor]:
    return list(state) if isinstance(state, tuple) else [state]


def run_both(core: RecurrentCore, lengths: torch.Tensor | None):
    """Outputs (at real positions), final states and the gradients of one loss w.r.t. the input, the initial
    state and every parameter, from the fast path and from the reference path."""
    torch.manual_seed(1)
    x = torch.randn(B, T, D, dtype=torch.double, requires_grad=True)
    s0 = [(3 * p.normal_()).requires_grad_(True) for p in parts(core.initial_state(B, x))]  # |h_0| up to ~9
    state = tuple(s0) if core.has_cell_state else s0[0]
    mask = torch.ones(B, T, 1, dtype=torch.double) if lengths is None else \
        (torch.arange(T) < lengths[:, None]).double()[..., None]
    out = []
    for y, final in (core._generic(x, state, lengths), core.forward_reference(x, state, lengths)[:2]):
        g = torch.Generator().manual_seed(2)
        loss = (y * mask * torch.randn(y.shape, generator=g, dtype=torch.double)).sum()
        loss = loss + sum((p * torch.randn(p.shape, generator=g, dtype=torch.double)).sum() for p in parts(final))
        out.append((y * mask, parts(final), torch.autograd.grad(loss, [x, *s0, *core.parameters()])))
    return out


@pytest.mark.parametrize("lengths", [None, LENGTHS], ids=["full", "lengths"])
@pytest.mark.parametrize(("layers", "bidirectional"), [(1, False), (2, False), (2, True)], ids=str)
@pytest.mark.parametrize("name", SCANNED)
def test_scan_equals_the_cell_step_by_step(name, layers, bidirectional, lengths):
    torch.manual_seed(0)
    (y, f, g), (y_ref, f_ref, g_ref) = run_both(make(name, layers, bidirectional), lengths)
    torch.testing.assert_close(y, y_ref)
    for a, b in zip(f + list(g), f_ref + list(g_ref), strict=True):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("name", SCANNED)
def test_the_fast_path_never_steps(name, monkeypatch):
    """core(x) is the scan: it must not fall back on the cell."""
    core = make(name, 2, True)
    monkeypatch.setattr(type(core), "cell", lambda *a, **k: pytest.fail("the fast path called cell"))
    y, _ = core(torch.randn(B, T, D, dtype=torch.double))
    assert y.shape == (B, T, 2 * H)


@pytest.mark.parametrize("name", SCANNED)
def test_a_cpu_run_takes_the_scan_only_where_the_family_says_it_pays_there(name, monkeypatch):
    core = make(name, 1, False)
    x = torch.randn(B, T, D, dtype=torch.double)
    monkeypatch.setattr(type(core), "scan_on_cpu", False)
    stepped = []
    cell = type(core).cell
    monkeypatch.setattr(type(core), "cell", lambda *a, **k: stepped.append(1) or cell(*a, **k))
    monkeypatch.setattr(type(core), "scan", lambda *a, **k: pytest.fail("a CPU run called scan"))
    assert not core.scans(x) and core(x)[0].shape == (B, T, H) and len(stepped) == T
    # on any other device (a GPU) the scan runs whatever the flag says: checked on "meta", the device is all it reads
    assert core.scans(x.to("meta"))


def loop(a, b, h):
    out = []
    for t in range(a.shape[1]):
        h = a[:, t] * h + b[:, t]
        out.append(h)
    return torch.stack(out, dim=1)


@pytest.mark.parametrize("dtype", [torch.float64, torch.complex128])
@pytest.mark.parametrize("steps", [1, 2, 5, 64])
def test_linear_scan_is_the_recurrence(steps, dtype):
    torch.manual_seed(0)
    a, b, h = torch.randn(2, steps, 3, dtype=dtype), torch.randn(2, steps, 3, dtype=dtype), torch.randn(2, 3, dtype=dtype)
    torch.testing.assert_close(linear_scan(a, b, h), loop(a, b, h))


def test_log_scan_is_the_recurrence_for_a_negative_initial_state():
    torch.manual_seed(0)
    a, b = torch.rand(2, 50, 3, dtype=torch.double), torch.rand(2, 50, 3, dtype=torch.double) + 0.1
    h = -5 * torch.rand(2, 3, dtype=torch.double)
    torch.testing.assert_close(log_scan(a.log(), b.log(), h), loop(a, b, h))


@pytest.mark.parametrize("name", ORTHOGONAL)
def test_the_gradient_through_the_matrix_exponential_is_the_finite_difference_one(name):
    """d loss / d A for every layer and direction's A (``weight_hh``), through W_hh = expm(S) and the cell
    step by step, from a non-zero initial state: torch.autograd.gradcheck in float64."""
    torch.manual_seed(0)
    core = make(name, 2, True)
    x, steps = torch.randn(B, 6, D, dtype=torch.double), 6
    h0 = 3 * torch.randn(4, B, H, dtype=torch.double)
    weights = torch.randn(B, steps, 2 * H, dtype=torch.double)
    names = [n for n, _ in core.named_parameters() if ".weight_hh_" in n]
    params = dict(core.named_parameters())

    def loss(*blocks):
        y, final = torch.func.functional_call(core, {**params, **dict(zip(names, blocks, strict=True))}, (x, h0))
        return (y * weights).sum() + final.sum()

    assert len(names) == 4
    assert torch.autograd.gradcheck(loss, [params[n].detach().clone().requires_grad_(True) for n in names])


@pytest.mark.parametrize("skew_init", ["cayley", "henaff"])
def test_exprnn_starts_as_rotations_of_pairs_of_units(skew_init):
    """S's 2x2 blocks [[0, s], [-s, 0]] exponentiate to [[cos s, sin s], [-sin s, cos s]]; an odd last unit
    keeps 1. The Cayley init's angles lie in (-1, 0] (s = -tan(u / 2), u < pi / 2), Henaff's in [-pi, pi]."""
    torch.manual_seed(0)
    h = 7
    e = architectures.entry("exprnn")
    core = architectures.build("exprnn", D, replace(e.default_config(), hidden_size=h, skew_init=skew_init)).double()
    s = torch.diagonal(core.rnn.weight_hh_l0.detach(), 1)[::2]  # the blocks' angles
    by_hand = torch.zeros(h, h, dtype=torch.double)
    for j, angle in enumerate(s):
        c, n = torch.cos(angle), torch.sin(angle)
        by_hand[2 * j:2 * j + 2, 2 * j:2 * j + 2] = torch.stack([torch.stack([c, n]), torch.stack([-n, c])])
    by_hand[-1, -1] = 1.0
    torch.testing.assert_close(core.recurrent_weights()["l0"].detach(), by_hand)
    low = -1.0 if skew_init == "cayley" else -math.pi
    high = 0.0 if skew_init == "cayley" else math.pi
    assert ((s >= low) & (s <= high)).all() and len(s) == h // 2


@pytest.mark.parametrize(("layers", "affine"), [(1, True), (2, False)])
def test_one_lru_layer_is_affine_in_its_input_and_two_are_not(layers, affine):
    """Why sweeps/tuned.yaml stacks the LRU: at one layer its outputs superpose, so no linear head on them can fit
    a product of inputs (adding's mask times value); the GELU between two layers breaks that."""
    torch.manual_seed(0)
    core = make("lru", layers, bidirectional=False)
    a, b, zero = torch.randn(B, T, D, dtype=torch.double), torch.randn(B, T, D, dtype=torch.double), \
        torch.zeros(B, T, D, dtype=torch.double)
    f = {name: core.forward_reference(x, None, None)[0] for name, x in (("a", a), ("b", b), ("zero", zero),
                                                                       ("sum", a + b))}
    assert torch.allclose(f["sum"] - f["zero"], (f["a"] - f["zero"]) + (f["b"] - f["zero"])) == affine
