"""The Ray Tune executor on a local 2-CPU runtime, and the W&B executor's offline refusal and config reading.

    .venv/bin/pytest tests/test_executors.py [-m slow]       # -m slow: the restore test

Ray's trials train in worker processes on one torch thread each, so their records must equal, bit for bit, the
same configs trained here on one thread. The restore test crashes a trial after training (its ``runs`` folder
is a file), then checks that the next call restores the kept experiment and finishes it.
"""

import json
import os
import re
import socket
from pathlib import Path

import pytest
import ray
import torch
import yaml
from conftest import SMALL_ADDING

from bench import cli
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


def free_port() -> int:
    """A port nobody listens on: taken, then given back."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_ray_address_nobody_listens_on_is_one_line_before_any_work(tmp_path, capsys):
    spec, out = tmp_path / "tiny.yaml", tmp_path / "out"
    spec.write_text(SPEC)
    address = f"127.0.0.1:{free_port()}"
    with pytest.raises(SystemExit) as exc:
        cli.main(["sweep", str(spec), "--executor", "ray", "--address", address, "--out", str(out),
                  "--wandb", "disabled"])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and err.count("\n") == 1, err
    # ray.init would dial this machine's network address instead of 127.0.0.1, and retry it for ever
    assert f"--address {address}: no Ray cluster answers there within 3 s (Ray connects to it as " in err
    assert not list(out.rglob("*.json"))  # no record, no summary, no Tune experiment


@pytest.mark.parametrize("address, message", [
    ("head", "not HOST:PORT, ray://HOST:PORT or auto"),
    ("head:port", "not HOST:PORT, ray://HOST:PORT or auto"),
    ("ray://127.0.0.1:{port}", "no Ray cluster answers there within 3 s; start one"),  # Ray Client: as given
])
def test_bad_ray_addresses(address, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        executor_ray.check_address(address.format(port=free_port()))


def test_ray_init_gets_one_attempt_and_its_failure_is_one_line(monkeypatch):
    """Something answers but is no Ray head: ``ray.init`` tries it once (Ray's own GCS timeouts), then one line."""
    seen = {}

    def init(**kwargs):
        seen["wait"] = os.environ.get("RAY_gcs_server_port_wait_time_s")
        raise ConnectionError("Failed to connect to Ray cluster at 10.0.0.1:6379\nmore")

    monkeypatch.delenv("RAY_gcs_server_port_wait_time_s", raising=False)
    monkeypatch.setattr(executor_ray, "check_address", lambda address: None)
    monkeypatch.setattr(ray, "init", init)
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    with pytest.raises(ConfigError, match="^--address head:6379: Failed to connect to Ray cluster at 10.0.0.1:6379$"):
        executor_ray.connect("head:6379")
    assert seen["wait"] == "1" and "RAY_gcs_server_port_wait_time_s" not in os.environ


def test_a_trial_needing_more_cores_or_gpus_than_the_machine_has_is_refused(todo):
    cores = os.cpu_count()
    ask = executor_ray.Ray(base.Options(spec=None, threads=cores + 1, gpus=0))
    with pytest.raises(ConfigError, match=re.escape(f"a trial needs {cores + 1} CPUs (--threads {cores + 1} x "
                                                    f"train.devices 1) but this machine has {cores} on one node")):
        ask.check(todo)
    executor_ray.Ray(base.Options(spec=None, threads=cores, gpus=0)).check(todo)  # all the cores is fine
    ddp = resolve({**executor_ray.overrides(todo[0]), "train.devices": 2, "train.strategy": "ddp_spawn"})
    with pytest.raises(ConfigError, match=re.escape("needs 2 GPUs (train.devices 2) but this machine has 1")):
        executor_ray.Ray(base.Options(spec=None, gpus=1)).check([ddp])


def test_a_trial_must_fit_on_one_node_of_a_cluster(todo):
    """Tune places a trial on one node: two nodes of 2 CPUs do not run a 3-CPU trial."""
    nodes = [{"CPU": 2.0}, {"CPU": 4.0, "GPU": 1.0}]
    executor_ray.check_fit(todo, 4, 0.5, nodes, "the cluster")
    with pytest.raises(ConfigError, match=re.escape("needs 6 CPUs (--threads 3 x train.devices 2) but the cluster "
                                                    "has 4 on one node")):
        ddp = resolve({**executor_ray.overrides(todo[0]), "train.devices": 2, "train.strategy": "ddp_spawn"})
        executor_ray.check_fit([ddp], 3, 0.5, nodes, "the cluster")


def test_the_joined_runtime_is_asked_before_any_trial(local_ray, todo, tmp_path):
    """The runtime already started here has 2 CPUs, whatever this machine has: a 3-thread trial is refused."""
    out = tmp_path / "out"
    executor = executor_ray.Ray(base.Options(spec=out / "unused.yaml", wandb="disabled", threads=3))
    with pytest.raises(ConfigError, match=re.escape("a trial needs 3 CPUs (--threads 3 x train.devices 1) but "
                                                    "this machine has 2 on one node")):
        executor.run(todo, Store(out), Seen())
    assert ray.is_initialized() and not (out / "runs").exists() and not (out / "ray").exists()


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
