"""The Ray Tune executor: a sweep's runs as Tune trials, on a local Ray runtime or an existing cluster.

    rnnbench sweep sweeps/default.yaml --executor ray [--address HOST:6379] [--runs-per-gpu 4] [--threads 1]

Each run is one trial of a function trainable that trains it through ``run_locked`` (base.py), so the records,
per-step CSVs and W&B mirror are those of the local executor, written to the same absolute ``out`` folder. A
trial asks for ``threads`` CPUs (and sets as many torch threads) and, when the cluster has GPUs, 1/K of one
(``--runs-per-gpu K``; Ray sets ``CUDA_VISIBLE_DEVICES``). A trial that crashes (a killed process, a lost node)
is retried ``MAX_FAILURES`` times; a run that *records* ``failed`` is data and is not retried.

The Tune experiment lives in ``<out>/ray/<name>``. If the driver dies, the next call restores it
(``Tuner.restore(..., resume_errored=True)``) instead of planning its runs again; a trial whose record already
landed skips training, so together with the sweep's run-id resume nothing is lost or run twice. An
experiment whose trials all finished is deleted: the records are the results.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import ray
from ray import tune

from options import ConfigError

from ...run.config import RunConfig, flatten, resolve
from ...store import Store
from ..progress import Progress
from .base import Executor, register, run_locked

MAX_FAILURES = 2  # retries of a crashed trial, per trial


def overrides(cfg: RunConfig) -> dict:
    """The dotted overrides ``bench.config.resolve`` turns back into ``cfg``."""
    return flatten(cfg.to_dict())


def trainable(config: dict) -> None:
    """One trial: train one run into ``config["out"]`` and report its record to the driver."""
    import torch

    torch.set_num_threads(config["threads"])
    cfg, store = resolve(config["run"]), Store(config["out"])
    done = store.record_path(cfg.name, cfg.run_id)
    # A restored trial whose record this experiment wrote before the driver died. An older record is one the
    # sweep chose to rerun (--retry-failed).
    if done.exists() and done.stat().st_mtime >= config["since"]:
        tune.report({"skipped": True})
        return
    rec = run_locked(cfg, store, config["wandb"], retry_failed=True)  # the driver decided it must run
    if rec["status"] == "skipped":
        tune.report({"skipped": True})
        return
    # The whole record goes back too: on a cluster without a shared filesystem the driver writes it.
    test = rec["metric"]["test"]
    tune.report({"skipped": False, "status": rec["status"], "metric": float("nan") if test is None else test,
                 "record": json.dumps(rec)})


@register
class Ray(Executor):
    name = "ray"
    help = "Ray Tune trials, on a local Ray runtime or the cluster at --address"
    accepts_address = True

    @property
    def trains_here(self) -> bool:
        return self.options.address is None  # a cluster's workers have their own memory and GPUs

    def check(self, todo: list[RunConfig]) -> None:
        for cfg in todo:
            if cfg.train.devices > 1 and cfg.train.strategy != "ddp_spawn":
                raise ConfigError(f"{cfg.name}: train.strategy={cfg.train.strategy} re-launches the command line, "
                                  "which a Ray worker does not have; use train.strategy=ddp_spawn with --executor ray")

    def run(self, todo: list[RunConfig], store: Store, progress: Progress) -> list[dict]:
        """Run ``todo`` as Tune trials; return the records of the runs trained here, in the order they finished."""
        if not todo:
            return []  # no Ray runtime to start: an experiment left behind only holds runs recorded since
        o = self.options
        store = Store(store.root.resolve())  # trials run in other working directories, maybe on other machines
        # Tune's per-trial CSV/JSON/TensorBoard loggers would duplicate the records; the trials keep the driver's
        # working directory, so relative paths (task.root, a text corpus, .cache/wandb) mean what they mean here.
        os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")
        os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # the new console output prints tables even at verbose=0
        os.environ.setdefault("RAY_CHDIR_TO_TRIAL_DIR", "0")
        global _COLLECTOR
        _COLLECTOR = collector = Collector(store, progress.result)
        started_here = connect(o.address)
        try:
            covered = set()
            for experiment in restorable(store, todo):
                print(f"ray: restoring the interrupted experiment {experiment}", flush=True)
                tuner = tune.Tuner.restore(str(experiment), trainable=trainable, resume_errored=True)
                covered |= fit(tuner, experiment)
            left = [c for c in todo if c.run_id not in covered]
            if left:
                experiment = store.ray / experiment_name(left)
                shutil.rmtree(experiment, ignore_errors=True)  # a driver that died before Tune saved any state
                fit(new_tuner(left, experiment, wandb=o.wandb, threads=o.threads,
                              gpu_share=gpu_share(o.runs_per_gpu)), experiment)
        finally:
            _COLLECTOR = None
            if started_here:
                ray.shutdown()
        return collector.records


# ---- Ray and Tune ----------------------------------------------------------------------------------------------
def connect(address: str | None) -> bool:
    """Start a local runtime (one CPU slot per core) or join ``address``; True if this call started Ray."""
    if ray.is_initialized():
        return False
    ray.init(address=address, num_cpus=None if address else os.cpu_count(), log_to_driver=False,
             include_dashboard=False, logging_level=logging.ERROR)
    return True


def gpu_share(runs_per_gpu: int) -> float:
    return 1.0 / runs_per_gpu if ray.cluster_resources().get("GPU", 0) > 0 else 0.0


def resources(gpu: float, threads: int) -> Callable:
    """Per trial: ``threads`` CPUs per device, and a GPU share (whole GPUs for a DDP run) when there are GPUs."""
    def request(config: dict) -> tune.PlacementGroupFactory:
        devices = int(config["run"].get("train.devices", 1))
        gpus = 0 if gpu == 0 or config["run"].get("train.accelerator") == "cpu" else devices if devices > 1 else gpu
        return tune.PlacementGroupFactory([{"CPU": threads * devices, "GPU": gpus}])

    return request


def experiment_name(todo: list[RunConfig]) -> str:
    ids = sorted(c.run_id for c in todo)
    return "sweep-" + hashlib.sha1(" ".join(ids).encode()).hexdigest()[:10]


def new_tuner(todo: list[RunConfig], experiment: Path, *, wandb: str, threads: int, gpu_share: float) -> tune.Tuner:
    runs_file = experiment.with_name(f"{experiment.name}.runs.json")  # what restorable() checks
    Store(experiment.parent.parent).write_json(runs_file, sorted(c.run_id for c in todo))
    space = {"run": tune.grid_search([overrides(c) for c in todo]), "out": str(experiment.parent.parent),
             "wandb": wandb, "threads": threads, "since": time.time()}
    return tune.Tuner(
        tune.with_resources(trainable, resources(gpu_share, threads)), param_space=space,
        tune_config=tune.TuneConfig(reuse_actors=True),  # one torch/Lightning import per worker, not per run
        run_config=tune.RunConfig(
            name=experiment.name, storage_path=str(experiment.parent), verbose=0, callbacks=[Reporter()],
            failure_config=tune.FailureConfig(max_failures=MAX_FAILURES),
        ),
    )


def restorable(store: Store, todo: list[RunConfig]) -> list[Path]:
    """Experiments a dead driver left under ``<out>/ray`` whose unrecorded runs are all still wanted."""
    wanted = {c.run_id for c in todo} | set(store.statuses()[0])
    found = []
    for ids_file in sorted(store.ray.glob("sweep-*.runs.json")):
        experiment = ids_file.with_name(ids_file.name.removesuffix(".runs.json"))
        if tune.Tuner.can_restore(experiment) and set(json.loads(ids_file.read_text())) <= wanted:
            found.append(experiment)
    return found


def fit(tuner: tune.Tuner, experiment: Path) -> set[str]:
    """Run the experiment; delete it if every trial finished. The run ids it covered, crashed ones included."""
    grid = tuner.fit()
    crashed = [r for r in grid if r.error is not None]
    if crashed:
        print(f"ray: {len(crashed)} trial(s) crashed {MAX_FAILURES + 1} times; run the sweep again to retry "
              f"them (experiment kept in {experiment})", flush=True)
    else:
        shutil.rmtree(experiment, ignore_errors=True)
        experiment.with_name(f"{experiment.name}.runs.json").unlink(missing_ok=True)
    return {resolve(r.config["run"]).run_id for r in grid}


class Collector:
    """On the driver: each finished trial's record, written if the driver's filesystem lacks it or holds an
    older one (a cluster without shared storage), then handed to ``on_result``."""

    def __init__(self, store: Store, on_result: Callable[[dict], None]):
        self.store, self.on_result, self.records = store, on_result, []

    def take(self, result: dict) -> None:
        if result.get("skipped") or "record" not in result:
            return
        rec = json.loads(result["record"])
        path = self.store.record_path(rec["name"], rec["id"])
        if not path.exists() or json.loads(path.read_text()) != rec:
            self.store.write_record(rec)
        self.records.append(rec)
        self.on_result(rec)


_COLLECTOR: Collector | None = None  # the running call's; one executor call per driver process at a time


class Reporter(tune.Callback):
    """Tune pickles its callbacks into the experiment and a restore brings them back, so this one holds no
    state (``on_result`` may not pickle) and hands each result to the running call's collector."""

    def on_trial_result(self, iteration, trials, trial, result, **info):
        if _COLLECTOR is not None:
            _COLLECTOR.take(result)
