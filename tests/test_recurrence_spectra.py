"""Each family's recurrence read by its declared kind (bench/diag/spectra.py), against computations made here
by hand: the LRU's |lambda| from its parameters, IndRNN's clamped |u|, the drift of exact orthogonal matrices,
a decay core's magnitudes from torch.func Jacobians, saturated gates; the verdict rule of every kind; and every
registered architecture, read from the registry, giving entries of the kind it declares.
"""

import csv
import math
from dataclasses import replace

import pytest
import torch
from conftest import small

import architectures
import tasks
from architectures.base import SPECTRUM_KINDS, RecurrentCore
from architectures.registry import Entry, problem
from bench.diag import flow, health, spectra
from bench.diag.verdict import spectral_bound, spectrum_verdict
from bench.run.config import resolve
from bench.run.train import train
from bench.store import open_metrics

ARCHS = architectures.names()
KIND = {n: architectures.entry(n).core.spectrum_kind for n in ARCHS}
B, T, D, H = 3, 9, 2, 6


def make(name: str, layers: int = 1, bidirectional: bool = False, **opts) -> RecurrentCore:
    cfg = replace(architectures.entry(name).default_config(), hidden_size=H, layers=layers,
                  bidirectional=bidirectional, **opts)
    return architectures.build(name, D, cfg).double()


def read(core: RecurrentCore, steps: int = T) -> dict[str, dict]:
    torch.manual_seed(1)
    _, _, trace = core.forward_reference(torch.randn(B, steps, D, dtype=torch.double))
    return spectra.recurrence_spectra(core, trace)


@pytest.mark.parametrize("name", ARCHS)
def test_every_architecture_gives_entries_of_its_declared_kind(name):
    torch.manual_seed(0)
    core = make(name, layers=2, bidirectional=True)
    kind = core.spectrum_kind
    assert kind in SPECTRUM_KINDS
    got = read(core)
    # a decay core has no weights to read: one entry per layer and direction, from the probe
    expected = ["l0", "l0r", "l1", "l1r"] if kind == "decay" else list(core.recurrent_weights())
    assert list(got) == expected and got
    for entry in got.values():
        assert entry["kind"] == kind
        numbers = [v for k, v in entry.items() if k not in ("kind", "verdict", "bound")]
        assert all(math.isfinite(v) and v >= 0 for v in numbers)
        assert entry["radius"] <= entry["sigma_max"] + 1e-9
        allowed = {"matrix": {None}, "orthogonal": {"healthy", "drifted"}}.get(
            kind, {"healthy", "vanishing", "exploding"})
        assert entry["verdict"] in allowed


def test_lru_magnitudes_are_exp_of_minus_exp_nu():
    torch.manual_seed(0)
    core = make("lru", r_min=0.9, r_max=0.99)
    nu = core.rnn.weight_hh_l0[:core.modes].detach()
    by_hand = torch.exp(-torch.exp(nu))  # |lambda| = exp(-exp(nu)), the paper's parametrisation
    entry = read(core)["l0"]
    assert entry["radius"] == pytest.approx(float(by_hand.max()), rel=1e-12)
    assert entry["min_abs"] == pytest.approx(float(by_hand.min()), rel=1e-12)
    assert entry["median_abs"] == pytest.approx(float(by_hand.median()), rel=1e-12)
    assert 0.9 <= entry["min_abs"] <= entry["radius"] <= 0.99  # the ring init's bounds
    assert entry["bound"] == pytest.approx((T - 1) * math.log10(float(by_hand.max())))


def test_lru_bound_is_above_the_measured_flow_ratio():
    """One linear diagonal layer read at its last step: dL/dh_t goes back through diag(lambda)^H only, so
    the flow ratio cannot exceed (T - 1) log10 max |lambda|."""
    torch.manual_seed(0)
    task = tasks.get("adding")(tasks.get("adding").Config(seq_len=40, n_val=16))
    x, y = task.splits.val[:16]
    core = architectures.build("lru", 2, replace(architectures.entry("lru").default_config(), hidden_size=8,
                                                 r_min=0.5, r_max=0.9)).double()
    profile, trace = flow.profile(core, torch.nn.Linear(8, 1).double(), task, x.double(), y.double())
    entry = spectra.recurrence_spectra(core, trace)["l0"]
    assert profile.ratio() <= entry["bound"] + 1e-9 and entry["verdict"] == "vanishing"  # 39 log10 0.9 < -1.7


def test_indrnn_reads_u_as_the_step_clamps_it():
    core = make("indrnn", recurrent_max=1.5)
    with torch.no_grad():
        core.rnn.weight_hh_l0.copy_(torch.tensor([0.2, -3.0, 0.5, 1.0, -0.1, 0.7], dtype=torch.double))
    entry = read(core, steps=100)["l0"]
    assert (entry["radius"], entry["min_abs"]) == (1.5, 0.1)  # |-3| clamped to the bound
    assert entry["verdict"] == "exploding"  # 99 log10 1.5 = 17.4


def test_drift_of_orthogonal_and_scaled_matrices():
    torch.manual_seed(0)
    q, _ = torch.linalg.qr(torch.randn(7, 7, dtype=torch.double))
    assert spectra.drift(q) < 1e-13
    u, _ = torch.linalg.qr(torch.randn(5, 5, dtype=torch.complex128))
    assert spectra.drift(u) < 1e-13  # unitary: W^H W = I
    assert spectra.drift(1.1 * q) == pytest.approx(0.21 * math.sqrt(7), rel=1e-12)  # ||0.21 I||_F


@pytest.mark.parametrize("name", [n for n in ARCHS if KIND[n] == "orthogonal"])
def test_an_orthogonal_family_stays_orthogonal_while_it_trains(name):
    torch.manual_seed(0)
    core = architectures.build(name, D, replace(architectures.entry(name).default_config(), hidden_size=16))
    opt = torch.optim.Adam(core.parameters(), lr=0.1)
    for _ in range(5):  # large steps: A moves far from its init
        opt.zero_grad()
        core(torch.randn(B, T, D))[0].pow(2).mean().backward()
        opt.step()
    entry = read(core.double())["l0"]
    assert entry["drift"] < 1e-12 and entry["verdict"] == "healthy"
    assert entry["sigma_max"] == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("name", [n for n in ARCHS if KIND[n] == "decay"])
def test_decay_magnitudes_are_geometric_means_of_the_jacobians_diagonal(name):
    """The recurrent Jacobian of a decay core is diag(a_t): its diagonal, from torch.func at every step, gives
    each unit's geometric mean, which the entry's magnitudes must match."""
    torch.manual_seed(0)
    core = make(name)
    torch.manual_seed(1)
    x = torch.randn(B, T, D, dtype=torch.double)
    _, _, trace = core.forward_reference(x)
    x_proj = core.project(0, x)
    logs = []
    for b in range(B):
        for t in range(T):
            jac = torch.func.jacrev(lambda s, b=b, t=t: core.cell(0, x_proj[b, t], s))(trace.state_before(0, t)[b])
            torch.testing.assert_close(jac, torch.diag(torch.diagonal(jac)))  # diagonal, as the kind says
            logs.append(torch.diagonal(jac).log())
    by_hand = torch.stack(logs).mean(dim=0).exp().detach()
    entry = spectra.recurrence_spectra(core, trace)["l0"]
    assert entry["radius"] == pytest.approx(float(by_hand.max()), rel=1e-9)
    assert entry["min_abs"] == pytest.approx(float(by_hand.min()), rel=1e-9)


def test_gate_saturation_counts_values_within_eps_of_0_or_1():
    assert health.gate_saturation(torch.tensor([0.0, 0.05, 0.95, 1.0])) == 1.0
    assert health.gate_saturation(torch.tensor([0.5, 0.11, 0.89, 0.3])) == 0.0
    assert health.gate_saturation(torch.tensor([0.01, 0.5, 0.999, 0.6])) == 0.5


def test_a_forced_forget_gate_is_fully_saturated():
    lstm = make("lstm")
    with torch.no_grad():
        lstm.rnn.bias_ih_l0[H:2 * H] = 100.0  # the f block (torch's i, f, g, o order): f = 1 everywhere
    _, _, trace = lstm.forward_reference(torch.randn(B, T, D, dtype=torch.double))
    sat = health.unit_health(lstm, trace)["gate_saturation"]
    assert sat["l0.f"] == 1.0 and set(sat) == {"l0.i", "l0.f", "l0.o"}


def test_a_mingru_that_always_overwrites_has_a_saturated_gate_and_vanishes():
    core = make("mingru")
    with torch.no_grad():
        core.rnn.bias_ih_l0[:H] = 100.0  # z = 1: h_t = h~_t, nothing carried, decay 1 - z = 0
    _, _, trace = core.forward_reference(torch.randn(B, T, D, dtype=torch.double))
    assert health.unit_health(core, trace)["gate_saturation"] == {"l0.z": 1.0}
    assert spectra.recurrence_spectra(core, trace)["l0"]["verdict"] == "vanishing"


@pytest.mark.parametrize(("entry", "steps", "expected"), [
    ({"kind": "diagonal", "radius": 0.99}, 200, "healthy"),      # 199 log10 0.99 = -0.87
    ({"kind": "diagonal", "radius": 0.97}, 200, "vanishing"),    # -2.63
    ({"kind": "diagonal", "radius": 1.03}, 200, "exploding"),    # +2.55
    ({"kind": "diagonal", "radius": 0.0}, 200, "vanishing"),
    ({"kind": "decay", "radius": 0.999}, 1000, "healthy"),       # -0.43
    ({"kind": "decay", "radius": 0.5}, 10, "vanishing"),         # -2.71
    ({"kind": "orthogonal", "drift": 1e-6}, 1000, "healthy"),
    ({"kind": "orthogonal", "drift": 0.01}, 1000, "drifted"),
    ({"kind": "matrix", "radius": 5.0, "sigma_max": 9.0}, 1000, None),
])
def test_spectrum_verdict_of_each_kind(entry, steps, expected):
    assert spectrum_verdict(entry, steps) == expected


def test_spectral_bound_is_the_flow_ratio_of_a_constant_factor():
    assert spectral_bound(0.5, 11) == pytest.approx(-10 * math.log10(2))
    assert spectral_bound(1.0, 500) == 0.0 and spectral_bound(0.0, 5) == -math.inf


def test_the_registry_refuses_a_kind_the_diagnostics_cannot_read():
    base = architectures.entry("vanilla")
    odd = type("Odd", (base.core,), {"spectrum_kind": "banded"})
    assert "spectrum_kind 'banded'; valid: " + ", ".join(SPECTRUM_KINDS) in problem(Entry("odd", odd, base.config, {}))
    no_decay = type("NoDecay", (base.core,), {"spectrum_kind": "decay"})
    assert problem(Entry("x", no_decay, base.config, {})) == "does not declare decay"


@pytest.mark.parametrize("kind", sorted(set(KIND.values())))
def test_a_run_records_and_logs_its_kinds_measures(kind, tmp_path):
    name = next(n for n in ARCHS if KIND[n] == kind)  # the first registered family of the kind
    rec = train(resolve(small("adding", name, **{"train.max_steps": 4, "train.val_every": 2})), tmp_path,
                wandb="disabled")
    final = rec["diagnostics"]["final"]
    assert final["spectra"] and all(e["kind"] == kind for e in final["spectra"].values())
    with open_metrics(tmp_path / "runs" / rec["metrics_file"]) as f:
        header = set(next(csv.reader(f)))
    extra = {"matrix": set(), "diagonal": {"min_abs", "bound"}, "decay": {"min_abs", "bound"},
             "orthogonal": {"drift"}}[kind]
    block = next(iter(final["spectra"]))
    assert {f"diag/{m}/{block}" for m in ("sigma_max", "radius", *extra)} <= header
    gates = final["health"]["gates"]
    assert set(final["health"]["gate_saturation"]) == set(gates)
    assert {f"diag/gate_saturation/{g}" for g in gates} <= header
