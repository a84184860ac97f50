"""The Ray Tune executor on a local 2-CPU runtime, and the W&B executor's offline refusal and config reading.

    .venv/bin/pytest tests/test_executors.py [-m slow]       # -m slow: the restore test

Ray's trials train in worker processes on one torch thread each, so their records must equal, bit for bit, the
same configs trained here on one thread. The restore test crashes a trial after training (its ``runs`` folder
is a file), then checks that the next call restores the kept experiment and finishes it.
"""

import json
from pathlib import Path

import pytest
import ray
import torch
import yaml
from conftest import SMALL_ADDING

from bench.run.config import resolve
from bench.run.train import train
from bench.store import Store
from bench.sweeps.executors import base
from bench.sweeps.executors import ray as executor_ray
from bench.sweeps.executors import wandb as executor_wandb
from bench.sweeps.plan import plan
from options import ConfigError

# Four 4-step runs of the adding problem.
SPEC = SMALL_ADDING + "  arch.name: {values: [vanilla, gru]}\n  seed: {values: [0, 1]}\n"


@pytest.fixture(scope="module")
def todo(tmp_path_factory):
    spec = tmp_path_factory.mktemp("spec") / "tiny.yaml"
    spec.write_text(SPEC)
    return plan(spec)


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, log_to_driver=False, include_dashboard=False, logging_level="ERROR")
    yield
    ray.shutdown()


class Seen(list):
    """Stands in for the sweep's Progress: collects what an executor reports."""

    def result(self, rec: dict) -> dict:
        self.append(rec)
        return rec

    def tick(self) -> None:
        pass


def ray_run(todo, out, seen):
    executor = executor_ray.Ray(base.Options(spec=out / "unused.yaml", wandb="disabled"))
    return executor.run(todo, Store(out), seen)


def test_every_executor_file_is_registered_under_its_name():
    files = sorted(p.stem for p in Path(base.__file__).parent.glob("*.py") if p.stem not in ("__init__", "base"))
    assert base.names() == files and "local" in files
    for name in files:
        cls = base.get(name)
        assert cls.name == name and issubclass(cls, base.Executor) and cls.help


def test_an_unknown_executor_lists_the_valid_ones():
    with pytest.raises(ConfigError, match=f"^unknown executor 'slurm'; valid: {', '.join(base.names())}$"):
        base.get("slurm")


def test_ray_runs_every_run_once_and_matches_local_runs(local_ray, todo, tmp_path):
    seen = Seen()
    got = ray_run(todo, tmp_path / "ray-out", seen)
    assert sorted(r["id"] for r in got) == sorted(c.run_id for c in todo) == sorted(r["id"] for r in seen)
    on_disk = Store(tmp_path / "ray-out").records().records
    assert sorted(r["id"] for r in on_disk) == sorted(c.run_id for c in todo)
    assert not list((tmp_path / "ray-out" / "ray").glob("sweep-*"))  # a finished experiment is deleted
    torch.set_num_threads(1)
    for cfg in todo:
        mine = train(cfg, tmp_path / "local", wandb="disabled")
        theirs = next(r for r in on_disk if r["id"] == cfg.run_id)
        assert theirs["status"] == mine["status"] == "ok"
        assert theirs["provenance"]["torch_threads"] == 1
        assert theirs["metric"] == mine["metric"] and theirs["steps"] == mine["steps"] == 4
        assert theirs["diagnostics"]["profiles"] == mine["diagnostics"]["profiles"]
        assert (tmp_path / "ray-out" / "runs" / theirs["metrics_file"]).exists()


@pytest.mark.slow  # ~50 s on 2 shared cores: two Tune experiments, each starting fresh workers
def test_an_interrupted_experiment_is_restored(local_ray, todo, tmp_path, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    (out / "runs").write_text("")  # train() trains, then cannot write its record: the trial crashes
    monkeypatch.setattr(executor_ray, "MAX_FAILURES", 0)
    assert ray_run(todo[:2], out, Seen()) == []
    kept = list((out / "ray").glob("sweep-*.runs.json"))
    assert len(kept) == 1 and set(json.loads(kept[0].read_text())) == {c.run_id for c in todo[:2]}
    (out / "runs").unlink()
    seen = Seen()
    got = ray_run(todo[:2], out, seen)
    assert sorted(r["id"] for r in got) == sorted(c.run_id for c in todo[:2]) == sorted(r["id"] for r in seen)
    assert len(list((out / "runs").glob("*.json"))) == 2 and not list((out / "ray").glob("sweep-*"))


def test_ray_refuses_ddp_that_relaunches_the_command_line(todo):
    cfg = resolve({**executor_ray.overrides(todo[0]), "train.devices": 2, "train.strategy": "ddp"})
    with pytest.raises(ConfigError, match="use train.strategy=ddp_spawn with --executor ray"):
        executor_ray.Ray(base.Options(spec=None)).check([cfg])


def test_overrides_round_trip(todo):
    for cfg in todo:
        assert resolve(executor_ray.overrides(cfg)) == cfg


# ---- the W&B agent executor: no server here, so only what runs before one is needed ------------------------


@pytest.mark.parametrize("mode", ["offline", "disabled"])
def test_wandb_executor_needs_a_server(mode, todo, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", mode)
    spec = tmp_path / "s.yaml"
    spec.write_text(SPEC)
    with pytest.raises(ConfigError, match="^the wandb executor needs a W&B server; use --executor local or ray$"):
        executor_wandb.Wandb(base.Options(spec=spec, wandb="auto")).check(todo)
    assert not (tmp_path / "runs").exists()


def test_wandb_executor_needs_a_login(todo, tmp_path, monkeypatch):
    for var in ("WANDB_MODE", "WANDB_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc
    with pytest.raises(ConfigError, match="needs a W&B server"):
        executor_wandb.Wandb(base.Options(spec=tmp_path / "unused.yaml", wandb="online")).check(todo)


def test_wandb_agent_config_resolves_to_the_planned_run(todo):
    # What wandb.config holds in an agent's run: the sweep's dotted parameters, one value each.
    doc = yaml.safe_load(SPEC)
    for cfg in todo:
        params = {k: v["value"] if "value" in v else None for k, v in doc["parameters"].items()}
        params.update({"arch.name": cfg.arch_name, "seed": cfg.seed})
        assert executor_wandb.config_from(params) == cfg


def test_wandb_agent_config_keeps_only_swept_keys():
    # An agent's wandb.config may also hold W&B's own keys (e.g. _wandb) and our nested config from train().
    params = {"task.name": "adding", "arch.name": "gru", "seed": 3, "_wandb": {"x": 1},
              "task": {"name": "adding", "seq_len": 99}}
    assert executor_wandb.config_from(params) == resolve({"task.name": "adding", "arch.name": "gru", "seed": 3})
