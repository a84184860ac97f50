"""Diagnostics against analytic cases, and the promise that probing does not change training."""

import csv
import math

import pytest
import torch
from conftest import small

import architectures
import tasks
from architectures.elman import ElmanRNN
from bench.diag import flow, health, spectra
from bench.diag.verdict import spikes, verdict
from bench.run.config import resolve
from bench.run.train import train
from bench.store import open_metrics


def linear_rnn(w_hh: torch.Tensor, input_size: int = 2) -> ElmanRNN:
    """An Elman core with the identity nonlinearity: h_t = W_ih x_t + b + W_hh h_{t-1}."""
    core = ElmanRNN(input_size, hidden_size=w_hh.shape[0]).double()
    core.phi = lambda z: z
    with torch.no_grad():
        core.rnn.weight_hh_l0.copy_(w_hh)
    return core


def adding_probe(T: int, n: int = 16):
    task = tasks.get("adding")(tasks.get("adding").Config(seq_len=T, n_val=n))
    x, y = task.splits.val[:n]
    return task, x.double(), y.double()


def run_profile(core, T: int):
    task, x, y = adding_probe(T)
    head = torch.nn.Linear(core.hidden_size, 1).double()
    return flow.profile(core, head, task, x, y)


@pytest.mark.parametrize("a", [0.5, 0.9, 1.2])
def test_linear_rnn_profile_is_a_power_of_a(a):
    T = 12
    profile, _ = run_profile(linear_rnn(a * torch.eye(5, dtype=torch.double)), T)
    norms = torch.tensor(profile.norms[0], dtype=torch.double)
    expected = torch.tensor([a ** (T - 1 - t) for t in range(T)], dtype=torch.double)
    torch.testing.assert_close(norms / norms[-1], expected)
    assert profile.ratio() == pytest.approx((T - 1) * math.log10(a))


def test_fall10_of_a_geometric_decay():
    profile, _ = run_profile(linear_rnn(0.5 * torch.eye(4, dtype=torch.double)), 20)
    assert profile.fall10() == pytest.approx(1 / math.log10(2), rel=1e-6)


def test_orthogonal_recurrence_gives_a_flat_profile():
    torch.manual_seed(0)
    q, _ = torch.linalg.qr(torch.randn(6, 6, dtype=torch.double))
    profile, _ = run_profile(linear_rnn(q), 25)
    assert max(profile.norms[0]) == pytest.approx(min(profile.norms[0]), rel=1e-9)
    assert profile.ratio() == pytest.approx(0.0, abs=1e-9) and profile.fall10() is None


@pytest.mark.parametrize("a, expected", [(0.97, "vanishing"), (1.0, "healthy"), (1.03, "exploding")])
def test_verdict_flips_as_a_crosses_one(a, expected):
    profile, _ = run_profile(linear_rnn(a * torch.eye(3, dtype=torch.double)), 200)
    assert verdict(profile.ratio()) == expected


def test_verdict_rule_edges():
    assert verdict(-2.01) == "vanishing" and verdict(-1.99) == "healthy"
    assert verdict(2.01) == "exploding" and verdict(1.99) == "healthy"
    assert verdict(float("nan")) is None and verdict(None) is None


def test_spikes_count_steps_over_1000x_the_median_and_stay_out_of_the_flow_verdict():
    norms = [1.0] * 99 + [1001.0]
    assert spikes(norms) == 1 and spikes([1.0] * 99 + [999.0]) == 0
    assert spikes([1.0, 1.0, 1.0, 2000.0, 5000.0, float("inf")]) == 2  # the non-finite step is divergence
    assert spikes([]) == 0 and spikes([0.0, 0.0, 5.0]) == 0


def test_jacobian_of_a_linear_rnn_is_a():
    core = linear_rnn(0.8 * torch.eye(5, dtype=torch.double))
    _, trace = run_profile(core, 10)
    assert spectra.jacobian_norms(core, trace)["l0"] == pytest.approx(0.8)


@pytest.mark.parametrize("name", architectures.names())
def test_jacobian_norm_matches_torch_func_jacrev(name):
    from architectures import build

    core = build(name, 2, replace_hidden(name, 6)).double()
    task, x, y = adding_probe(5)
    _, trace = flow.profile(core, torch.nn.Linear(6, 1).double(), task, x, y)
    got = spectra.jacobian_norms(core, trace, samples=3, steps=5)["l0"]
    norms = []
    for t in range(5):  # every step of every sampled sequence, one at a time, with torch.func
        prev = trace.state_before(0, t)
        for b in range(3):
            xp = core.project(0, x[b, t])  # x_t W_ih^T (+ b_ih, for a core that has one)
            if isinstance(prev, tuple):
                def f(s, xp=xp):
                    h, c = core.cell(0, xp, (s[:6], s[6:]))
                    return torch.cat([h, c])
                s0 = torch.cat([prev[0][b], prev[1][b]]).detach()
            else:
                def f(s, xp=xp):
                    return core.cell(0, xp, s)
                s0 = prev[b].detach()
            norms.append(torch.linalg.matrix_norm(torch.func.jacrev(f)(s0), ord=2))
    assert got == pytest.approx(float(torch.stack(norms).detach().mean()), rel=1e-9)


def replace_hidden(name, hidden):
    from dataclasses import replace

    import architectures

    return replace(architectures.entry(name).default_config(), hidden_size=hidden)


def test_spectral_norms_match_the_matrix_2_norm():
    torch.manual_seed(0)
    jac = torch.randn(16, 40, 40, dtype=torch.double)
    torch.testing.assert_close(spectra.spectral_norms(jac), torch.linalg.matrix_norm(jac, ord=2), rtol=1e-9, atol=0)


@pytest.mark.parametrize("name", architectures.names())
def test_sigma_max_is_the_matrix_2_norm(name):
    from architectures import build

    core = build(name, 3)
    for block, s in spectra.weight_spectra(core).items():
        w = core.recurrent_weights()[block].detach()
        w = w.to(torch.complex128 if w.is_complex() else torch.float64)  # an LRU's lambda is complex
        w = w if w.dim() == 2 else torch.diag(w)  # a diagonal recurrence is given by its diagonal
        assert s["sigma_max"] == pytest.approx(float(torch.linalg.matrix_norm(w, 2)), rel=1e-9)
        assert s["radius"] <= s["sigma_max"] + 1e-9


def test_unit_health_sees_dead_and_saturated_units():
    from architectures import build

    task, x, y = adding_probe(8)
    irnn = build("irnn", 2).double()
    with torch.no_grad():
        irnn.rnn.bias_ih_l0.fill_(-100.0)  # every pre-activation negative: every ReLU unit dead
    _, _, trace = irnn.forward_reference(x)
    assert health.unit_health(irnn, trace)["dead_units"]["l0"] == 1.0
    tanh = build("vanilla", 2).double()
    with torch.no_grad():
        tanh.rnn.bias_ih_l0.fill_(100.0)
    _, _, trace = tanh.forward_reference(x)
    h = health.unit_health(tanh, trace)
    assert h["saturation"]["l0"] == 1.0 and h["gates"] == {}
    _, _, trace = build("lstm", 2).double().forward_reference(x)
    assert set(health.unit_health(build("lstm", 2).double(), trace)["gates"]) == {"l0.i", "l0.f", "l0.o"}


def _losses(rec, out):
    with open_metrics(out / "runs" / rec["metrics_file"]) as f:
        return [r["train/loss"] for r in csv.DictReader(f) if r["train/loss"]]


@pytest.mark.parametrize("arch", ["vanilla", "lstm"])
def test_probing_leaves_the_training_trajectory_unchanged(arch, tmp_path):
    base = small("adding", arch, **{"train.max_steps": 8, "train.val_every": 4, "arch.dropout": 0.5,
                                    "arch.layers": 2})
    on = train(resolve({**base, "train.diag_every": 2}), tmp_path / "on", wandb="disabled")
    off = train(resolve({**base, "train.diag": False}), tmp_path / "off", wandb="disabled")
    assert _losses(on, tmp_path / "on") == _losses(off, tmp_path / "off")
    assert on["metric"]["test"] == off["metric"]["test"]
    d = on["diagnostics"]
    assert d["profiles"]["steps"] == [0, 2, 4, 6, 8] and len(d["profiles"]["flow"][0]) == 2
    assert d["verdict"] in ("vanishing", "healthy", "exploding") and off["diagnostics"] is None
    with open_metrics(tmp_path / "on" / "runs" / on["metrics_file"]) as f:
        header = next(csv.reader(f))
    assert {"diag/flow_ratio/l0", "diag/jacobian/l1", "diag/saturation/l0", "diag/clipped_fraction"} <= set(header)


def test_a_diverged_run_is_its_own_status_not_a_flow_verdict(tmp_path):
    cfg = resolve(small("adding", "vanilla", **{"optim.name": "sgd", "optim.lr": 1e6, "optim.clip": 0}))
    rec = train(cfg, tmp_path, wandb="disabled")
    assert rec["status"] == "diverged" and rec["diagnostics"]["events"]["nonfinite_gradients"] == 1
    assert rec["diagnostics"]["verdict"] in (None, "vanishing", "healthy", "exploding")
