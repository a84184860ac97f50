"""Several optimizer updates per Lightning batch (bench/run/groups.py) change nothing a run computes: the same
records and byte-identical metrics CSVs as one update per Lightning batch, across the task's epoch ends, under
truncated BPTT with a carried state, with dropout, on dict batches, and when a run diverges inside a group."""

import json

import pytest
import torch
from conftest import small

import bench.run.train as train_module
from bench.run.config import resolve
from bench.run.groups import MAX_GROUP, Group, UpdateGroups, group_size
from bench.run.system import build

# wall and CPU times differ between any two runs; everything else a record says must not
VARIABLE = {"wall_time_s", "cpu_time_s"}


def _run(cfg, tmp_path, group: int, monkeypatch) -> tuple[dict, bytes]:
    monkeypatch.setattr(train_module, "group_of", lambda cfg: group)
    out = tmp_path / f"group{group}"
    rec = train_module.train(cfg, out, wandb="disabled")
    return rec, (out / "runs" / rec["metrics_file"]).read_bytes()


@pytest.mark.parametrize("task, arch, extra", [
    # 16 batches an epoch: groups of 10 straddle its ends; dropout draws from the RNG the shuffles draw from
    ("adding", "lstm", {"arch.layers": 2, "arch.dropout": 0.25, "train.max_steps": 40, "train.val_every": 20,
                        "train.diag_every": 10}),
    # two updates a batch, the state carried from batch to batch and reset at each of the task's epochs
    ("charlm", "gru", {"train.max_steps": 200, "train.val_every": 100, "train.diag_every": 20}),
    ("translate", "gru", {"train.max_steps": 12, "train.val_every": 6, "train.diag_every": 6}),
    # diverges at step 3, inside its first group (of 4)
    ("adding", "vanilla", {"optim.name": "sgd", "optim.lr": 1e6, "optim.clip": 0, "train.max_steps": 40,
                           "train.val_every": 20}),
], ids=["adding-dropout", "charlm-tbptt", "translate", "diverges"])
def test_groups_of_updates_train_exactly_as_one_update_a_batch(task, arch, extra, tmp_path, monkeypatch):
    cfg = resolve(small(task, arch, **extra))
    k = train_module.group_of(cfg)
    assert k > 1
    grouped, grouped_csv = _run(cfg, tmp_path, k, monkeypatch)
    single, single_csv = _run(cfg, tmp_path, 1, monkeypatch)
    assert grouped["status"] == single["status"] == ("diverged" if "optim.lr" in extra else "ok")
    assert grouped_csv == single_csv
    # JSON, not ==: a diverged run's probes hold NaNs, which never equal themselves
    same = {k: v for k, v in grouped.items() if k not in VARIABLE | {"checkpoint"}}
    assert json.dumps(same, sort_keys=True) == json.dumps(
        {k: v for k, v in single.items() if k not in VARIABLE | {"checkpoint"}}, sort_keys=True)


@pytest.mark.parametrize("val_every, max_steps, diag_every, per_batch, k", [
    (250, 1000, 100, 1, 25),  # the default suite: cadences 250 and 100
    (500, 4500, 450, 2, 25),  # charlm: 50 updates, 2 a batch
    (15, 30, 3, 1, 3),
    (100, 30, None, 1, 30),  # validation at max_steps, no probes
    (100, 64, None, 1, 32),  # never more than MAX_GROUP
    (100, 30, 7, 1, 1),  # cadences with nothing in common
    (250, 1000, 100, 3, 1),  # updates a batch that do not divide them
])
def test_a_group_divides_both_cadences_in_updates(val_every, max_steps, diag_every, per_batch, k):
    assert group_size(val_every, max_steps, diag_every, per_batch) == k <= MAX_GROUP


def test_multi_device_and_ddp_runs_keep_one_update_a_batch():
    base = small("adding", "lstm", **{"train.max_steps": 40, "train.val_every": 20})
    assert train_module.group_of(resolve(base)) > 1
    assert train_module.group_of(resolve({**base, "train.strategy": "ddp_spawn"})) == 1


def test_groups_pull_batches_lazily_across_the_loaders_epochs():
    made, epochs, pulled = [], [], []

    class Loader:
        def __iter__(self):
            for i in range(3):
                pulled.append(i)
                yield i

    groups = UpdateGroups(lambda: made.append(1) or Loader(), k=2, batches=7,
                          on_epoch=lambda: epochs.append(len(pulled)))
    assert len(groups) == 4
    seen = []
    for group in groups:
        # nothing is pulled before the group trains
        assert isinstance(group, Group) and len(pulled) == sum(map(len, seen))
        seen.append(list(group))
    assert seen == [[0, 1], [2, 0], [1, 2], [0]]
    assert made == [1] and epochs == [0, 3, 6]  # one DataLoader; each epoch announced before its first batch

    empty = UpdateGroups(lambda: [], k=2, batches=2, on_epoch=lambda: None)
    with pytest.raises(RuntimeError, match="yields no batch"):
        list(next(iter(empty)))


def test_a_groups_batches_reach_the_systems_device_one_at_a_time(monkeypatch):
    task, system = build(resolve(small("adding", "lstm")))
    task.setup("fit")
    moved, trained = [], []
    monkeypatch.setattr(system, "transfer_batch_to_device", lambda b, d, i: moved.append(d) or ("on", d, b))
    monkeypatch.setattr(system, "_train_on", lambda b: trained.append(b) or len(trained) < 2)
    system._device = torch.device("meta")
    groups = UpdateGroups(task.train_dataloader, k=3, batches=3, on_epoch=lambda: None)
    system.training_step(next(iter(groups)), 0)
    # moved to the system's device, one at a time; the second reports a stop, so the third is never pulled
    assert moved == [torch.device("meta")] * 2 and [b[:2] for b in trained] == [("on", torch.device("meta"))] * 2

