"""Any cell, with or without a torch kernel: fast path == reference path for every registered family, the
generic path == torch's kernels for the families that have one, and spectra of diagonal and complex recurrences
against analytic cases.

Every registered architecture is covered by name from the registry; a new family needs no edit here.
"""

from dataclasses import replace

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

import architectures
from architectures.base import RecurrentCore
from bench.diag import health, spectra

ARCHS = architectures.names()
FUSED = [n for n in ARCHS if architectures.entry(n).core.fused_cls is not None]
SHAPES = [(1, False), (2, False), (1, True), (2, True)]  # (layers, bidirectional)
B, T, D, H = 4, 7, 3, 5
LENGTHS = torch.tensor([7, 3, 5, 1])  # unsorted, with a full-length and a one-step sequence


def make(name: str, layers: int, bidirectional: bool, **opts) -> RecurrentCore:
    e = architectures.entry(name)
    cfg = replace(e.default_config(), hidden_size=H, layers=layers, bidirectional=bidirectional, **opts)
    return architectures.build(name, D, cfg).double()


def parts(state) -> list[torch.Tensor]:
    return list(state) if isinstance(state, tuple) else [state]


def random_state(core: RecurrentCore) -> list[torch.Tensor]:
    """A non-zero initial state, as leaves, so the gradient reaching it is compared too."""
    like = torch.empty(B, T, D, dtype=torch.double)
    return [p.normal_().requires_grad_(True) for p in parts(core.initial_state(B, like))]


def as_state(core: RecurrentCore, leaves: list[torch.Tensor]):
    return tuple(leaves) if core.has_cell_state else leaves[0]


def run_fast(core: RecurrentCore, x: torch.Tensor, state, lengths: torch.Tensor | None):
    """core(x, state), through packing when there are lengths (what seq2seq.Encoder does)."""
    if lengths is None:
        return core(x, state)
    packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
    y, final = core(packed, state)
    return pad_packed_sequence(y, batch_first=True, total_length=x.shape[1])[0], final


def compare(run_a, run_b, core_a: RecurrentCore, core_b: RecurrentCore, lengths: torch.Tensor | None):
    """Two ways of running the same weights agree on outputs (at real positions), final states, and the
    gradients of one loss of both with respect to the input, the initial state and every parameter."""
    torch.manual_seed(1)
    x = torch.randn(B, T, D, dtype=torch.double, requires_grad=True)
    s0 = random_state(core_a)
    mask = torch.ones(B, T, 1, dtype=torch.double) if lengths is None else \
        (torch.arange(T) < lengths[:, None]).double()[..., None]
    outs = []
    for run, core in ((run_a, core_a), (run_b, core_b)):
        y, final = run(core, x, as_state(core, s0), lengths)
        g = torch.Generator().manual_seed(2)
        loss = (y * mask * torch.randn(y.shape, generator=g, dtype=torch.double)).sum()
        loss = loss + sum((p * torch.randn(p.shape, generator=g, dtype=torch.double)).sum() for p in parts(final))
        grads = torch.autograd.grad(loss, [x, *s0, *core.parameters()])
        outs.append((y * mask, parts(final), grads))
    (y_a, f_a, g_a), (y_b, f_b, g_b) = outs
    torch.testing.assert_close(y_a, y_b)
    for a, b in zip(f_a, f_b, strict=True):
        torch.testing.assert_close(a, b)
    for a, b in zip(g_a, g_b, strict=True):
        torch.testing.assert_close(a, b)


def reference(core, x, state, lengths):
    y, final, _ = core.forward_reference(x, state, lengths)
    return y, final


@pytest.mark.parametrize("packed", [False, True], ids=["full", "lengths"])
@pytest.mark.parametrize(("layers", "bidirectional"), SHAPES, ids=lambda v: str(v))
@pytest.mark.parametrize("name", ARCHS)
def test_fast_path_equals_reference(name, layers, bidirectional, packed):
    """Outputs, final states and gradients, float64, from a non-zero initial state; with lengths the fast path
    reads a packed batch and the reference path the padded one with its lengths."""
    torch.manual_seed(0)
    core = make(name, layers, bidirectional)
    compare(run_fast, reference, core, core, LENGTHS if packed else None)


def generic_twin(core_cls: type[RecurrentCore]) -> type[RecurrentCore]:
    """The same family with its kernel taken away: its cell run by the base class's generic path."""
    return type(f"Generic{core_cls.__name__}", (core_cls,), {"fused_cls": None})


@pytest.mark.parametrize("packed", [False, True], ids=["full", "lengths"])
@pytest.mark.parametrize(("layers", "bidirectional"), SHAPES, ids=lambda v: str(v))
@pytest.mark.parametrize("name", FUSED)
def test_generic_path_equals_the_torch_kernel(name, layers, bidirectional, packed):
    """The generic path's stacking, directions, packing and final states, checked against torch's kernel:
    the twin has the kernel's parameter names, draws the same init from the same seed, and computes the same."""
    e = architectures.entry(name)
    cfg = replace(e.default_config(), hidden_size=H, layers=layers, bidirectional=bidirectional)
    torch.manual_seed(0)
    fused = e.core(D, **vars(cfg)).double()
    torch.manual_seed(0)
    generic = generic_twin(e.core)(D, **vars(cfg)).double()
    assert generic.fused_cls is None and list(generic.state_dict()) == list(fused.state_dict())
    for a, b in zip(generic.state_dict().values(), fused.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    compare(run_fast, run_fast, fused, generic, LENGTHS if packed else None)


@pytest.mark.parametrize("name", ARCHS)
def test_dropout_acts_between_layers_in_training_only(name):
    torch.manual_seed(0)
    core = make(name, 2, False, dropout=0.5)
    x = torch.randn(B, T, D, dtype=torch.double)
    y_eval, _ = core.eval()(x)
    y_ref, _, _ = core.forward_reference(x)
    torch.testing.assert_close(y_eval, y_ref)
    y_train, _ = core.train()(x)
    assert not torch.allclose(y_train, y_eval)
    single = make(name, 1, False, dropout=0.5).train()
    torch.testing.assert_close(single(x)[0], single.eval()(x)[0])  # nothing to drop between one layer


@pytest.mark.parametrize("name", ARCHS)
def test_parameters_are_named_by_layer(name):
    """``*_l<k>`` names, on either path, are what the per-layer gradient norms group by."""
    core = make(name, 2, False)
    for pname, _ in core.named_parameters():
        assert pname.startswith("rnn.") and pname.rsplit("_l", 1)[-1] in ("0", "1"), pname


# ---- a diagonal recurrence on the generic path, and the spectra of vectors and complex blocks ----------------
class Diagonal(RecurrentCore):
    """h_t = x_t W_ih^T + b_ih + u * h_{t-1}: linear, so its recurrent Jacobian is exactly diag(u)."""

    gate_names = ("",)

    def layer_shapes(self, input_size: int) -> dict[str, tuple[int, ...]]:
        return {"weight_ih": (self.hidden_size, input_size), "weight_hh": (self.hidden_size,),
                "bias_ih": (self.hidden_size,)}

    def cell(self, layer, x_proj, h, direction=0):
        return x_proj + self.layer_params(layer, direction)[1] * h


def diagonal(u: torch.Tensor, layers: int = 1, bidirectional: bool = False) -> Diagonal:
    core = Diagonal(D, hidden_size=len(u), layers=layers, bidirectional=bidirectional).double()
    with torch.no_grad():
        for block in core.recurrent_blocks().values():
            block.copy_(u)
    return core


def test_a_diagonal_cell_runs_every_way_a_core_is_called():
    torch.manual_seed(0)
    core = diagonal(torch.tensor([0.5, -0.9, 1.1, 0.2, 0.0], dtype=torch.double), 2, True)
    assert [n for n, _ in core.named_parameters()][:3] == ["rnn.weight_ih_l0", "rnn.weight_hh_l0", "rnn.bias_ih_l0"]
    assert core.layer_params(0)[3] is None and core.recurrent_blocks()["l1r"].shape == (H,)
    for lengths in (None, LENGTHS):
        compare(run_fast, reference, core, core, lengths)


def test_diagonal_spectra_and_jacobian_are_the_largest_magnitude():
    u = torch.tensor([0.5, -1.25, 1.0, 0.25, 0.0], dtype=torch.double)
    core = diagonal(u, bidirectional=True)
    assert spectra.weight_spectra(core) == {k: {"sigma_max": 1.25, "radius": 1.25} for k in ("l0", "l0r")}
    _, _, trace = core.forward_reference(torch.randn(3, 6, D, dtype=torch.double))
    jac = spectra.jacobian_norms(core, trace)
    assert set(jac) == {"l0", "l0r"} and all(v == pytest.approx(1.25, rel=1e-12) for v in jac.values())
    units = health.unit_health(core, trace)
    assert set(units["saturation"]) == {"l0", "l0r"} and units["gates"] == {}


@pytest.mark.parametrize(("w", "sigma_max", "radius"), [
    (torch.tensor([3 + 4j, 0.6j, -1]), 5.0, 5.0),                  # complex diagonal: |u_i|
    (torch.tensor([[0, 2j], [0, 0]]), 2.0, 0.0),                   # nilpotent: sigma 2, every eigenvalue 0
    (torch.tensor([[1 + 1j, 0], [0, 0.5]]), 2 ** 0.5, 2 ** 0.5),   # normal: sigma_max = radius = |1 + i|
    (torch.tensor([[0.0, 2.0], [0.5, 0.0]]), 2.0, 1.0),            # real, non-normal: eigenvalues +-1
])
def test_spectrum_of_matrices_vectors_and_complex_blocks(w, sigma_max, radius):
    s = spectra.spectrum(w)
    assert s["sigma_max"] == pytest.approx(sigma_max, abs=1e-12) and s["radius"] == pytest.approx(radius, abs=1e-12)


def test_a_complex_unitary_block_has_unit_spectra():
    torch.manual_seed(0)
    q, _ = torch.linalg.qr(torch.randn(6, 6, dtype=torch.complex128))
    s = spectra.spectrum(q.to(torch.complex64))  # read in complex128, not cut to its real part
    assert s["sigma_max"] == pytest.approx(1.0, abs=1e-6) and s["radius"] == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize("how", ["identity", "orthogonal"])
def test_recurrent_init_of_a_diagonal_block_is_the_diagonal_of_such_a_matrix(how):
    torch.manual_seed(0)
    core = Diagonal(D, hidden_size=64, layers=2, recurrent_init=how, init_scale=0.9)
    for u in core.recurrent_blocks().values():
        torch.testing.assert_close(u.abs(), torch.full((64,), 0.9))
        assert (u > 0).all() if how == "identity" else (u < 0).any() and (u > 0).any()
