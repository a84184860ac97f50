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

Before any work, an ``--address`` must answer a TCP connect within ``CONNECT_TIMEOUT_S`` (``ray.init`` retries an
address nobody listens on for as long as one waits), and every trial must fit on one node: the machine's cores and
GPUs for a local runtime, the cluster's largest node otherwise (Tune keeps a trial that fits nowhere pending, with
no output). Each is one line, exit 2.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import socket
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
CONNECT_TIMEOUT_S = 3.0  # a live head answers a TCP connect in milliseconds, even across a data centre


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
        if not todo:
            return  # a dry run, or nothing left: no cluster to ask
        o = self.options
        if joining(o.address) is not None:
            check_address(joining(o.address))  # what it holds is asked once joined (``run``)
            return
        from .local import gpu_count

        gpus = gpu_count(o.gpus)
        check_fit(todo, o.threads, share(gpus, o.runs_per_gpu), [{"CPU": os.cpu_count() or 1, "GPU": gpus}],
                  "this machine")

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
        started_here = connect(o.address)
        _COLLECTOR = collector = Collector(store, progress.result)
        try:
            gpu = share(ray.cluster_resources().get("GPU", 0), o.runs_per_gpu)
            check_fit(todo, o.threads, gpu, nodes(), f"the cluster at {o.address}" if o.address else "this machine")
            covered = set()
            for experiment in restorable(store, todo):
                print(f"ray: restoring the interrupted experiment {experiment}", flush=True)
                tuner = tune.Tuner.restore(str(experiment), trainable=trainable, resume_errored=True)
                covered |= fit(tuner, experiment)
            left = [c for c in todo if c.run_id not in covered]
            if left:
                experiment = store.ray / experiment_name(left)
                shutil.rmtree(experiment, ignore_errors=True)  # a driver that died before Tune saved any state
                fit(new_tuner(left, experiment, wandb=o.wandb, threads=o.threads, gpu_share=gpu), experiment)
        finally:
            _COLLECTOR = None
            if started_here:
                ray.shutdown()
        return collector.records


# ---- Ray and Tune ----------------------------------------------------------------------------------------------
def connect(address: str | None) -> bool:
    """Start a local runtime (one CPU slot per core) or join ``address`` (else ``RAY_ADDRESS``, which ``ray.init``
    would join anyway), which must answer first; True if this call started Ray."""
    if ray.is_initialized():
        return False
    address = joining(address)
    if address is None:
        ray.init(num_cpus=os.cpu_count(), log_to_driver=False, include_dashboard=False, logging_level=logging.ERROR)
        return True
    check_address(address)
    # Something answered, but maybe not a Ray head: one attempt to reach its GCS (about 40 s, Ray's own timeouts),
    # not Ray's default of minutes of retries. Read by ``ray.init`` itself, so set only around it.
    ours = "RAY_gcs_server_port_wait_time_s" not in os.environ
    if ours:
        os.environ["RAY_gcs_server_port_wait_time_s"] = "1"
    try:
        ray.init(address=address, log_to_driver=False, include_dashboard=False, logging_level=logging.ERROR)
    except (ConnectionError, ValueError) as exc:  # ValueError: a ray:// address without ray[client]
        raise ConfigError(f"--address {address}: {(str(exc) or repr(exc)).splitlines()[0]}") from None
    finally:
        if ours:
            os.environ.pop("RAY_gcs_server_port_wait_time_s", None)
    return True


def joining(address: str | None) -> str | None:
    """The cluster ``ray.init`` will join: ``address``, else ``RAY_ADDRESS``; None starts a local runtime."""
    address = address or os.environ.get("RAY_ADDRESS") or None
    return None if address == "local" else address


def check_address(address: str, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """One ConfigError line unless something answers at ``address`` within ``timeout`` seconds. Checked where Ray
    will connect: ``ray.init`` turns a local host (127.0.0.1, localhost) into this machine's network address, and
    ``auto`` into the cluster ``ray start`` last started here."""
    from ray._private.services import canonicalize_bootstrap_address  # what ray.init calls on the address

    client = address.startswith("ray://")  # Ray Client connects to the address as given
    form = f"--address {address}: not HOST:PORT, ray://HOST:PORT or auto (e.g. --address head:6379)"
    try:
        target = address.removeprefix("ray://") if client else canonicalize_bootstrap_address(address)
    except ConnectionError as exc:  # `auto` with no cluster started here
        raise ConfigError(f"--address {address}: {str(exc).splitlines()[0]}") from None
    except ValueError:
        raise ConfigError(form) from None
    host, _, port = (target or "").rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(form)
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError:
        via = "" if target == address.removeprefix("ray://") else f" (Ray connects to it as {target})"
        raise ConfigError(f"--address {address}: no Ray cluster answers there within {timeout:g} s{via}; start one "
                          "(`ray start --head`) or leave --address out for a local runtime") from None


def check_fit(todo: list[RunConfig], threads: int, gpu: float, nodes: list[dict], where: str) -> None:
    """One ConfigError line unless every trial's CPUs and GPUs fit on one of ``nodes`` (Ray's resource dicts): Tune
    keeps a trial that fits on none pending for ever, with no output."""
    most = {kind: max((n.get(kind, 0) for n in nodes), default=0) for kind in ("CPU", "GPU")}
    for cfg in todo:
        need = demand(cfg.train.devices, cfg.train.accelerator, gpu, threads)
        if need["CPU"] > most["CPU"]:
            raise ConfigError(f"{cfg.name}: a trial needs {need['CPU']:g} CPUs (--threads {threads} x train.devices "
                              f"{cfg.train.devices}) but {where} has {most['CPU']:g} on one node; --threads x "
                              f"train.devices must be <= {most['CPU']:g}")
        if need["GPU"] > most["GPU"]:
            raise ConfigError(f"{cfg.name}: a trial needs {need['GPU']:g} GPUs (train.devices {cfg.train.devices}) "
                              f"but {where} has {most['GPU']:g} on one node; train.devices must be <= "
                              f"{most['GPU']:g}")


def nodes() -> list[dict]:
    """The resources (``CPU``, ``GPU``, ...) of each live node of the joined cluster."""
    return [n["Resources"] for n in ray.nodes() if n.get("Alive")]


def share(gpus: float, runs_per_gpu: int) -> float:
    """The GPU share of a one-device trial: 1/K of one (``--runs-per-gpu K``), or none without GPUs."""
    return 1.0 / runs_per_gpu if gpus > 0 else 0.0


def demand(devices: int, accelerator: str, gpu: float, threads: int) -> dict:
    """A trial's resources: ``threads`` CPUs per device, and a GPU share (whole GPUs for a DDP run) when there are
    GPUs."""
    gpus = 0 if gpu == 0 or accelerator == "cpu" else devices if devices > 1 else gpu
    return {"CPU": threads * devices, "GPU": gpus}


def resources(gpu: float, threads: int) -> Callable:
    """Per trial, as Tune asks it: what ``demand`` says for the trial's run."""
    def request(config: dict) -> tune.PlacementGroupFactory:
        run = config["run"]
        return tune.PlacementGroupFactory([demand(int(run.get("train.devices", 1)), run.get("train.accelerator"),
                                                  gpu, threads)])

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
