"""The optimizer a run builds (``System.configure_optimizers``): SGD's momentum, the multistep schedule, and the
parameter groups of cores that train a subset of their parameters at a scaled learning rate (expRNN's A).

    WANDB_MODE=disabled python -m pytest -q tests/test_optim.py
"""

import copy

import pytest
import torch
from conftest import small

import architectures
from architectures import RecurrentCore
from bench import cli
from bench.run.config import resolve
from bench.run.system import build
from bench.run.train import train

ADDING = ["run", "--task", "adding", "--arch", "gru", "--wandb", "disabled"]
MULTISTEP = [*ADDING, "--optim.schedule", "multistep"]


def optimizer_of(system) -> torch.optim.Optimizer:
    built = system.configure_optimizers()
    return built["optimizer"] if isinstance(built, dict) else built


@pytest.mark.parametrize("argv, message", [
    (MULTISTEP, "optim.schedule multistep needs optim.milestones, e.g. 100,200"),
    ([*MULTISTEP, "--optim.milestones", "30,x"],
     "optim.milestones: cannot read '30,x' as optimizer steps; valid: positive whole numbers separated by commas"),
    ([*MULTISTEP, "--optim.milestones", "0,30"], "optim.milestones: cannot read '0,30' as optimizer steps"),
    ([*MULTISTEP, "--optim.milestones", "60,30"],
     "optim.milestones must be increasing steps with no spaces, got '60,30'; valid: '30,60'"),
    ([*MULTISTEP, "--optim.milestones", "30, 60"], "valid: '30,60'"),
    ([*MULTISTEP, "--optim.milestones", "30,5000"],
     "optim.milestones: step 5000 is past train.max_steps (1000); valid: steps <= 1000"),
    ([*ADDING, "--optim.milestones", "30"], "optim.milestones is read only by the multistep schedule"),
    ([*ADDING, "--optim.momentum", "0.9"],
     "optim.momentum is SGD's, got optim.name adam; valid: optim.name sgd, or optim.momentum 0"),
    ([*ADDING, "--optim.name", "sgd", "--optim.momentum", "1"], "optim.momentum must be >= 0 and < 1, got 1.0"),
    ([*ADDING, "--optim.momentum", "-0.5"], "optim.momentum must be >= 0 and < 1, got -0.5"),
    (["run", "--task", "adding", "--arch", "exprnn", "--arch.orth_lr_scale", "0"],
     "arch.orth_lr_scale must be > 0, got 0.0"),
])
def test_bad_optim_values_are_one_line_and_exit_2(capsys, tmp_path, argv, message):
    with pytest.raises(SystemExit) as exc:
        cli.main([*argv, "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and err.count("\n") == 1 and err.startswith("rnnbench: error: "), err
    assert message in err
    assert not (tmp_path / "out").exists()


def test_the_new_options_at_their_defaults_leave_run_ids_as_they_were():
    for arch in architectures.names():
        base = resolve(small("adding", arch), check_machine=False)
        spelled = resolve(small("adding", arch, **{"optim.momentum": 0.0, "optim.milestones": ""}),
                          check_machine=False)
        assert spelled.run_id == base.run_id, arch
        assert not {"momentum", "milestones"} & set(base.to_dict()["optim"]), arch
    exp = resolve(small("adding", "exprnn"), check_machine=False)
    assert resolve(small("adding", "exprnn", **{"arch.orth_lr_scale": 0.1}), check_machine=False).run_id == exp.run_id
    assert resolve(small("adding", "exprnn", **{"arch.orth_lr_scale": 1.0}), check_machine=False).run_id != exp.run_id


def test_sgd_momentum_reaches_torchs_optimizer():
    optimizer = optimizer_of(build(resolve(small("adding", "gru", **{"optim.name": "sgd", "optim.momentum": 0.9})))[1])
    assert isinstance(optimizer, torch.optim.SGD)
    assert [g["momentum"] for g in optimizer.param_groups] == [0.9]
    plain = optimizer_of(build(resolve(small("adding", "gru", **{"optim.name": "sgd"})))[1])
    assert [g["momentum"] for g in plain.param_groups] == [0.0]


def test_multistep_multiplies_every_groups_lr_by_gamma_at_each_milestone():
    cfg = resolve(small("adding", "exprnn", **{
        "optim.schedule": "multistep", "optim.milestones": "2,5", "optim.gamma": 0.5, "optim.lr": 0.01}))
    built = build(cfg)[1].configure_optimizers()
    optimizer, schedule = built["optimizer"], built["lr_scheduler"]["scheduler"]
    assert isinstance(schedule, torch.optim.lr_scheduler.MultiStepLR) and built["lr_scheduler"]["interval"] == "step"
    seen = []
    for _ in range(7):  # the lr each optimizer step uses, then the step the Trainer takes after it
        seen.append([g["lr"] for g in optimizer.param_groups])
        optimizer.step()
        schedule.step()
    factors = [1, 1, 0.5, 0.5, 0.5, 0.25, 0.25]
    for lrs, factor in zip(seen, factors, strict=True):
        torch.testing.assert_close(lrs, [0.01 * factor, 0.001 * factor])  # expRNN's A keeps its tenth


def test_a_trained_run_ends_at_the_last_milestones_lr(tmp_path):
    cfg = resolve(small("adding", "gru", **{"optim.schedule": "multistep", "optim.milestones": "1,3",
                                            "optim.gamma": 0.5, "train.max_steps": 4, "train.val_every": 4}))
    rec = train(cfg, tmp_path, wandb="disabled")
    last = torch.load(tmp_path / rec["checkpoint_last"], weights_only=True)
    assert last["optimizer_states"][0]["param_groups"][0]["lr"] == pytest.approx(0.25 * cfg.optim.lr, abs=1e-12)


def test_every_declared_scale_gets_its_own_group_and_every_parameter_one_group():
    declaring = []
    for arch in architectures.names():
        system = build(resolve(small("adding", arch)))[1]
        scales = {id(p): s for m in system.modules() if isinstance(m, RecurrentCore)
                  for p, s in m.lr_scales().items()}
        groups = optimizer_of(system).param_groups
        in_groups = [id(p) for g in groups for p in g["params"]]
        assert sorted(in_groups) == sorted(id(p) for p in system.parameters()), arch  # each exactly once
        for g in groups:
            for p in g["params"]:
                assert g["lr"] == pytest.approx(system.optim.lr * scales.get(id(p), 1.0)), arch
        declaring += [arch] if scales else []
        if not scales:
            assert len(groups) == 1, arch  # as before the option existed: one group, the module's order
    assert "exprnn" in declaring


def test_exprnns_skew_parameter_trains_at_a_tenth_by_default_in_every_layer_and_direction():
    cfg = resolve(small("adding", "exprnn", **{"arch.layers": 2, "arch.bidirectional": True, "optim.lr": 0.003}))
    system = build(cfg)[1]
    groups = optimizer_of(system).param_groups
    skew = {name for name, _ in system.core.rnn.named_parameters() if name.startswith("weight_hh")}
    assert len(skew) == 4 and len(groups) == 2
    named = {id(p): n for n, p in system.core.rnn.named_parameters()}
    assert {named[id(p)] for p in groups[1]["params"]} == skew
    assert groups[1]["lr"] == pytest.approx(0.0003) and groups[0]["lr"] == 0.003


def test_one_rmsprop_with_two_groups_is_the_authors_two_rmsprops():
    """expRNN's authors (github.com/Lezcano/expRNN, 2_mnist.py) step one RMSprop over A at lr_orth and one over
    the rest at lr; RMSprop's state is per parameter, so one optimizer with two groups updates identically."""
    torch.manual_seed(0)
    cfg = resolve(small("adding", "exprnn", **{"optim.name": "rmsprop", "optim.lr": 0.01}))
    task, ours = build(cfg)
    theirs, start = copy.deepcopy(ours), copy.deepcopy(ours)
    task.setup("fit")
    x, y = next(iter(task.train_dataloader()))
    one = optimizer_of(ours)
    skew = [p for p in theirs.parameters() if any(p is q for q in theirs.core.lr_scales())]
    rest = [p for p in theirs.parameters() if not any(p is q for q in skew)]
    two = [torch.optim.RMSprop(rest, lr=0.01), torch.optim.RMSprop(skew, lr=0.001)]
    for _ in range(3):
        for system, optimizers in ((ours, [one]), (theirs, two)):
            loss = task.loss(system(x)[0], y)
            for o in optimizers:
                o.zero_grad()
            loss.backward()
            for o in optimizers:
                o.step()
    for a, b in zip(ours.parameters(), theirs.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert not torch.equal(ours.core.rnn.weight_hh_l0, start.core.rnn.weight_hh_l0)  # A did train
