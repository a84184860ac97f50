"""The tuned protocol: every family searched with the same budget, its best retrained on fresh seeds, and a
family that falls short checked at a longer budget.

    rnnbench sweep sweeps/tuned.yaml --out results --workers 2        # stages 1, 2 and 3, resumable
    rnnbench sweep sweeps/tuned.yaml --dry-run                        # where each study stands

A tuned sweep file is a W&B sweep file whose documents say ``method: random`` or ``bayes``, ``metric: {name,
goal}`` and ``run_cap`` (the family's trials), optionally ``early_terminate: {type: hyperband, min_iter, eta}``,
plus rnnbench's ``confirm: {seeds: [...], witness: K}`` (``witness`` optional; dropped before a document goes to
W&B, like ``anchor``). Each document searches one family (its ``arch.name`` is a ``value``); its ``parameters``
may differ from the other families' (the LSTM's forget-gate bias). Documents with the same fixed ``task.*``
settings are one *comparison*, and must agree on what makes it fair: ``run_cap``, ``train.max_steps``,
``method``, ``metric``, ``early_terminate``, the confirm seeds and ``witness`` (checked before any work).

- **Stage 1, search.** One Optuna study per document, ``run_cap`` trials on the document's ``seed``. ``random``
  is Optuna's ``QMCSampler`` (scrambled Sobol points: random, but even over the range with few trials),
  ``bayes`` its ``TPESampler`` (random for its first ``run_cap // 2`` trials); both are seeded from the document,
  so a resumed study draws what an uninterrupted one would (in parallel, TPE sees whichever trials finished
  first).
  ``early_terminate: hyperband`` is Optuna's ``HyperbandPruner``: W&B's ``min_iter`` and ``eta`` are its
  ``min_resource`` and ``reduction_factor``, counted in validations as W&B counts metric logs. A pruned trial
  stops as early stopping does, and its record says so (``stopped``). A trial's value is its best validation
  metric; a diverged or failed trial counts against the family's trials and never wins.
- **Stage 2, confirm.** Each study's best trial is retrained on every confirm seed with the same budget and no
  pruning. The test is read at each run's best validation checkpoint, as for every run (bench/run/train.py).
- **Stage 3, witness** (with ``witness: K``). Before a table says a family fails, a longer budget checks it: a
  family whose confirm runs did not reach the task's goal (most seeds solved where the task has a threshold, else
  the whole 95 % interval past the baseline: TUNED.md's rule, ``bench.reports.tuned.reached``) is trained once
  more as soon as they are all in (before any further search), its chosen configuration on the first confirm
  seed for K times ``train.max_steps``. Its record says whether the failure is one of budget. ``witness`` is left
  out of the study's name and sampler seed, so adding it to a file keeps the searches done.

Each trial and each confirm run is an ordinary run: its record in ``<out>/runs`` is the truth, and its id
hashes its config, so a trial killed mid-run resumes from its ``last.ckpt``. The studies live in
``<out>/studies/<spec>.journal`` (Optuna's journal storage, safe across processes): a study whose driver was
killed finds its unfinished trials there and runs them again (each resumes its checkpoint). ``<out>/studies/
<spec>.json`` says what the leaderboard needs: per comparison and family, the trials, the chosen one, the
confirm runs, and fANOVA hyperparameter importances (Optuna's ``FanovaImportanceEvaluator``, as Greff et al.
2015 used fANOVA). Trials train in the local executor's pool of this machine's workers, or as Ray tasks with
``--executor ray`` (the out folder must then be on storage every node sees, as for Ray sweeps). A worker killed
under its run (the OOM killer, ``kill -9``) costs that run alone, as in the local executor: it is recorded
``failed``, naming the signal, the other workers carry on, and its trial stays RUNNING in the journal, as a killed
driver's does, so the next run of the sweep trains it again (its study confirms once it has).
"""

from __future__ import annotations

import hashlib
import json
import math
import warnings
from concurrent.futures import FIRST_COMPLETED, wait
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from options import ConfigError

from ..store import Store
from . import spec as specs
from .executors.base import Options, record_killed, run_locked

GOALS = {"minimize": "min", "maximize": "max"}
METHODS = ("random", "bayes")
EARLY_TERMINATE_KEYS = ("type", "min_iter", "max_iter", "s", "eta", "strict")
CONFIRM_KEYS = ("seeds", "witness")
MIN_CONFIRM_SEEDS = 5  # the protocol's "at least 5 fresh seeds"
FAIR_KEYS = ("run_cap", "method", "metric", "early_terminate")  # what every family of a comparison shares
CONFIRM = "confirm: {seeds: [1, 2, 3, 4, 5]} or {seeds: [1, 2, 3, 4, 5], witness: 3}"


@dataclass(frozen=True)
class Study:
    """One document of a tuned file: one family's search and its confirmation."""

    doc: int  # 1-based, in the file
    name: str  # the Optuna study's name: stable while the document is unchanged
    family: str  # the core's label (gru, lstm-2l, ...) and any model.* the document fixes
    comparison: str  # the fixed task settings, e.g. "task.name=adding, task.seq_len=100"
    fixed: dict  # parameters with one value (dotted)
    space: dict  # parameter -> its W&B spec, for the ones searched
    trials: int  # run_cap
    method: str
    metric: str  # e.g. val/mse
    goal: str  # min / max
    hyperband: dict | None  # {"min_resource", "reduction_factor"} or None
    max_resource: int  # validations in a full run
    val_every: int  # optimizer steps between validations
    confirm_seeds: tuple[int, ...]
    witness: int  # the longer budget, in multiples of train.max_steps (0: none)
    max_steps: int
    digest: str  # of the document: names the study and seeds its sampler

    def overrides(self, params: dict, seed: int | None = None) -> dict:
        out = {**self.fixed, **params}
        if seed is not None:
            out["seed"] = seed
        return out

    def witness_overrides(self, params: dict) -> dict:
        """The witness run: the chosen ``params`` on the first confirm seed, ``witness`` times the steps."""
        return {**self.overrides(params, self.confirm_seeds[0]), "train.max_steps": self.witness * self.max_steps}


def is_tuned(docs: list[dict]) -> bool:
    """Whether a sweep file is a tuned one (any document with ``confirm``); a file mixing both is refused."""
    tuned = [isinstance(d, dict) and "confirm" in d for d in docs]
    if any(tuned) and not all(tuned):
        first = tuned.index(not tuned[0]) + 1
        raise ConfigError(f"document {first}: a tuned file (documents with 'confirm') has only tuned documents; "
                          "put grid or random sweeps in another file")
    return any(tuned)


def studies(path: Path) -> list[Study]:
    """Every document of the tuned file ``path``, validated and each resolved once, before any work."""
    path = Path(path)
    docs = specs.load_documents(path)
    out = [_study(doc, f"{path} document {i + 1}", i + 1) for i, doc in enumerate(docs)]
    _check_fair(out, path)
    return out


def _study(doc: dict, where: str, number: int) -> Study:
    if not isinstance(doc, dict):
        raise ConfigError(f"{where}: a sweep document is a mapping")
    unknown = sorted(set(doc) - set(specs.WANDB_KEYS) - set(specs.RNNBENCH_KEYS))
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r}; valid: "
                          f"{', '.join(specs.WANDB_KEYS + specs.RNNBENCH_KEYS)}")
    params = doc.get("parameters")
    if not isinstance(params, dict) or not params:
        raise ConfigError(f"{where}: needs a non-empty 'parameters' mapping")
    method = doc.get("method")
    if method not in METHODS:
        raise ConfigError(f"{where}: a tuned document's method is one of {', '.join(METHODS)}, got {method!r}")
    cap = doc.get("run_cap")
    if not isinstance(cap, int) or isinstance(cap, bool) or not 2 <= cap <= specs.RUN_CAP_MAX:
        raise ConfigError(f"{where}: run_cap (the family's trials) must be a whole number >= 2 and <= "
                          f"{specs.RUN_CAP_MAX}, got {cap!r}")
    for key, spec in params.items():
        specs._check_param(spec, f"{where}: parameter {key!r}", "random")
        if "probabilities" in spec:
            raise ConfigError(f"{where}: parameter {key!r}: 'probabilities' has no Optuna sampler; drop it")
    fixed = {k: s["value"] for k, s in params.items() if _distribution(s) == "constant"}
    space = {k: s for k, s in params.items() if k not in fixed}
    for key in ("arch.name", "task.name", "seed"):
        if key not in fixed:
            raise ConfigError(f"{where}: a tuned document fixes {key!r} with 'value' (one family, one task, the "
                              "search's seed)")
    if "anchor" in doc:
        raise ConfigError(f"{where}: anchors belong to grid documents (sweeps/anchors.yaml), not tuned ones")
    confirm = doc.get("confirm")
    seeds = confirm.get("seeds") if isinstance(confirm, dict) else None
    if (not isinstance(confirm, dict) or set(confirm) - set(CONFIRM_KEYS) or not isinstance(seeds, list)
            or len(seeds) < MIN_CONFIRM_SEEDS or not all(isinstance(s, int) and s >= 0 for s in seeds)
            or len(set(seeds)) != len(seeds)):
        raise ConfigError(f"{where}: confirm needs 'seeds', a list of at least {MIN_CONFIRM_SEEDS} distinct whole "
                          f"numbers >= 0, and may add 'witness': {CONFIRM}")
    witness = confirm.get("witness", 0)
    if "witness" in confirm and (not isinstance(witness, int) or isinstance(witness, bool) or witness < 2):
        raise ConfigError(f"{where}: confirm's witness (the longer budget, in multiples of train.max_steps) must be "
                          f"a whole number >= 2, got {witness!r}: {CONFIRM}")
    if fixed["seed"] in seeds:
        raise ConfigError(f"{where}: confirm seeds must be fresh: seed {fixed['seed']} is the search's")
    # one resolution checks every fixed value and the task's metric (sampled values are checked as drawn)
    import tasks

    from ..run.config import resolve

    sample = {k: _some_value(s) for k, s in space.items()}
    cfg = resolve({**fixed, **sample}, check_machine=False)
    task_cls = tasks.get(cfg.task_name)
    metric = doc.get("metric")
    want = f"val/{task_cls.metric_name}"
    goal = {"min": "minimize", "max": "maximize"}[task_cls.metric_mode]
    if not isinstance(metric, dict) or metric.get("name") != want or metric.get("goal") != goal:
        raise ConfigError(f"{where}: metric must be {{name: {want}, goal: {goal}}} (the task's metric and direction, "
                          "which also pick the best checkpoint)")
    validations = cfg.train.max_steps // cfg.train.val_every
    hyperband = _hyperband(doc.get("early_terminate"), where, validations)
    comparison = ", ".join(f"{k}={fixed[k]}" for k in sorted(fixed) if k.startswith("task."))
    # witness is not part of the search: a file that adds it keeps its studies (names and sampler seeds)
    named = {**doc, "confirm": {k: v for k, v in confirm.items() if k != "witness"}}
    text = json.dumps(named, sort_keys=True, default=str)
    digest = hashlib.sha256(text.encode()).hexdigest()
    # the family: the core, and the composed model's options where the document fixes them (attention or not)
    family = " ".join([cfg.arch_label] + [f"{k.partition('.')[2]}={fixed[k]}" for k in sorted(fixed)
                                          if k.startswith("model.")])
    # named by its content, not its place: documents may be reordered or added without losing a study
    return Study(doc=number, name=f"{fixed['arch.name']}-{digest[:12]}", family=family,
                 comparison=comparison, fixed=fixed, space=space, trials=cap, method=method, metric=want,
                 goal=task_cls.metric_mode, hyperband=hyperband, max_resource=validations, val_every=cfg.train.val_every,
                 confirm_seeds=tuple(seeds), witness=witness, max_steps=cfg.train.max_steps, digest=digest)


def _distribution(spec: dict) -> str | None:
    return specs._distribution(spec)


def _some_value(spec: dict):
    dist = _distribution(spec)
    if dist == "categorical":
        return spec["values"][0]
    return int(spec["min"]) if dist == "int_uniform" else spec["min"]


def _hyperband(spec, where: str, validations: int) -> dict | None:
    """W&B's ``early_terminate`` as Optuna's HyperbandPruner arguments, in validations."""
    if spec is None:
        return None
    if not isinstance(spec, dict) or spec.get("type") != "hyperband":
        raise ConfigError(f"{where}: early_terminate must be {{type: hyperband, min_iter: N, eta: 3}}")
    unknown = sorted(set(spec) - set(EARLY_TERMINATE_KEYS))
    if unknown:
        raise ConfigError(f"{where}: early_terminate: unknown key {unknown[0]!r}; valid: "
                          f"{', '.join(EARLY_TERMINATE_KEYS)}")
    eta = spec.get("eta", 3)
    if not isinstance(eta, int) or eta < 2:
        raise ConfigError(f"{where}: early_terminate eta must be a whole number >= 2, got {eta!r}")
    if "min_iter" in spec:
        low = spec["min_iter"]
    elif "max_iter" in spec:  # W&B: brackets from max_iter down by eta, s times
        low = spec["max_iter"] // eta ** spec.get("s", 0) if isinstance(spec["max_iter"], int) else None
    else:
        raise ConfigError(f"{where}: early_terminate needs min_iter (or max_iter with s)")
    if not isinstance(low, int) or not 1 <= low < validations:
        raise ConfigError(f"{where}: early_terminate's first rung must be 1..{validations - 1} validations "
                          f"(train.max_steps // train.val_every = {validations}), got {low!r}")
    return {"min_resource": low, "reduction_factor": eta}


def _check_fair(found: list[Study], path: Path) -> None:
    """Families compared must have had the same chance: the same trials, steps, method, metric and pruner."""
    docs = specs.load_documents(path)
    by: dict[str, list[Study]] = {}
    for s in found:
        by.setdefault(s.comparison, []).append(s)
    for comparison, group in by.items():
        first = group[0]
        labels = [s.family for s in group]
        if len(set(labels)) != len(labels):
            dup = next(x for x in labels if labels.count(x) > 1)
            raise ConfigError(f"{path}: comparison {comparison}: family {dup!r} is searched by two documents")
        for s in group[1:]:
            for key in FAIR_KEYS:
                if docs[s.doc - 1].get(key) != docs[first.doc - 1].get(key):
                    raise ConfigError(f"{path} document {s.doc}: {key} differs from document {first.doc}'s; "
                                      f"every family of a comparison ({comparison}) gets the same")
            if s.max_resource != first.max_resource or s.fixed.get("train.max_steps") != \
                    first.fixed.get("train.max_steps"):
                raise ConfigError(f"{path} document {s.doc}: train.max_steps / val_every differ from document "
                                  f"{first.doc}'s; every family of a comparison gets the same budget")
            if s.confirm_seeds != first.confirm_seeds:
                raise ConfigError(f"{path} document {s.doc}: confirm seeds differ from document {first.doc}'s")
            if s.witness != first.witness:
                raise ConfigError(f"{path} document {s.doc}: confirm's witness differs from document {first.doc}'s; "
                                  f"every family of a comparison gets the same longer budget")


# ---- Optuna ---------------------------------------------------------------------------------------------------
def storage_path(store: Store, path: Path) -> Path:
    return store.root / "studies" / f"{Path(path).stem}.journal"


def summary_path(store: Store, path: Path) -> Path:
    return store.root / "studies" / f"{Path(path).stem}.json"


def _storage(journal: Path):
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    journal.parent.mkdir(parents=True, exist_ok=True)
    return JournalStorage(JournalFileBackend(str(journal)))


def _pruner(study: Study):
    import optuna

    if study.hyperband is None:
        return optuna.pruners.NopPruner()
    return optuna.pruners.HyperbandPruner(max_resource=study.max_resource, **study.hyperband)


def _sampler(study: Study, trial_number: int):
    """``random``: Optuna's QMCSampler, scrambled Sobol points: a random design that covers the range evenly with
    few trials (six independent draws often bunch in one corner), and finds its point from the study's count, so
    a resumed study draws what an uninterrupted one would. ``bayes``: its TPESampler, reseeded from the trial
    number (random for its first half of the trials).

    QMCSampler learns its search space from the first finished (complete or pruned) trial; until one exists it
    asks its independent sampler, which is therefore seeded from the trial number too. With one seed for every
    trial, a study whose first trial diverged drew that same point for every later trial (each then failed at
    once on the existing record), and the family's whole search was spent on one configuration."""
    import optuna

    def seeded(key) -> int:
        # hashed, not digest + n: Mersenne Twister's first draws from neighbouring seeds are close
        return int(hashlib.sha256(f"{study.digest}/{key}".encode()).hexdigest()[:8], 16)

    if study.method == "random":
        warnings.filterwarnings("ignore", message=".*balance properties of Sobol.*")
        warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
        # trial 0's independent seed is the Sobol seed, as before: studies drawn so far draw the same
        return optuna.samplers.QMCSampler(qmc_type="sobol", scramble=True, seed=seeded(0),
                                          independent_sampler=optuna.samplers.RandomSampler(seeded(trial_number)),
                                          warn_independent_sampling=False)
    seed = seeded(trial_number)
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=max(1, study.trials // 2))


def _distributions(study: Study) -> dict:
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    out = {}
    for key, spec in study.space.items():
        dist = _distribution(spec)
        if dist == "categorical":
            out[key] = CategoricalDistribution(spec["values"])
        elif dist == "int_uniform":
            out[key] = IntDistribution(int(spec["min"]), int(spec["max"]))
        elif dist == "q_uniform":
            out[key] = FloatDistribution(spec["min"], spec["max"], step=spec.get("q", 1))
        else:
            out[key] = FloatDistribution(spec["min"], spec["max"], log=dist == "log_uniform_values")
    return out


def open_study(study: Study, journal: Path, storage=None):
    """The study in ``journal``, created the first time it is asked for. ``storage``: one already open on the
    journal (``open_studies``): each new one replays the whole file.

    Loaded first, created only when missing: Optuna's ``create_study(load_if_exists=True)`` appends a create-study
    line to the journal on every call, a no-op that every later replay reads again (28,381 of the reference
    journal's 31,836 lines came from the summary reopening each study after every run)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = storage if storage is not None else _storage(journal)
    try:
        return optuna.load_study(study_name=study.name, storage=storage, pruner=_pruner(study))
    except KeyError:
        return optuna.create_study(study_name=study.name, storage=storage, load_if_exists=True,
                                   direction="minimize" if study.goal == "min" else "maximize", pruner=_pruner(study))


def open_studies(found: list[Study], journal: Path) -> dict:
    """Study name -> its Optuna study, every one on one storage: the journal is replayed once, not per study."""
    storage = _storage(journal)
    return {s.name: open_study(s, journal, storage) for s in found}


def pruning_callback(study: Study, journal: Path, trial_id: int):
    """A Lightning callback for the trial ``trial_id``: ``trial.report`` at each validation (its index is the
    resource Hyperband counts), then ``trainer.should_stop`` when ``trial.should_prune()``; the record's
    ``stopped`` reads ``stopping_reason_message`` as it does for EarlyStopping."""
    import lightning as L
    import optuna

    class _Pruning(L.Callback):
        stopping_reason_message = None

        def __init__(self):
            self.trial = optuna.trial.Trial(open_study(study, journal), trial_id)
            # a trial trained again after its worker or driver was killed validates at steps the journal holds
            # already: Optuna keeps the first value and warns for each, which says nothing here
            warnings.filterwarnings("ignore", message="The reported value is ignored because this `step")

        def on_validation_end(self, trainer, pl_module):
            value = trainer.callback_metrics.get(study.metric)
            if trainer.sanity_checking or value is None or not math.isfinite(float(value)):
                return
            index = max(1, round(trainer.global_step / study.val_every))  # validations so far
            self.trial.report(float(value), index)
            if self.trial.should_prune():
                trainer.should_stop = True
                self.stopping_reason_message = (f"pruned by Optuna's HyperbandPruner after validation {index} "
                                                f"({study.metric} = {float(value):.4g})")

    return _Pruning()


def train_trial(study: Study, journal: str, trial_id: int, overrides: dict, out: str, wandb: str,
                threads: int) -> dict:
    """One trial, in a worker: its run (resuming its checkpoint) with the pruning callback, through the executors'
    ``run_locked``; a run already recorded is ``skipped`` and the driver reads its record."""
    import torch

    from ..run.config import resolve

    torch.set_num_threads(threads)
    return run_locked(resolve(overrides, check_machine=False), Store(out), wandb,
                      callbacks=(pruning_callback(study, Path(journal), trial_id),))


# ---- the driver ------------------------------------------------------------------------------------------------
def run(path: Path, store: Store, options: Options, executor: str = "local") -> list[dict]:
    """Both stages of every study in ``path``, studies in file order (a study's confirm runs start as soon as its
    search ends); returns the records trained here."""
    found = studies(path)
    journal = storage_path(store, path)
    pool, workers = _pool(options, executor, found)
    print(f"tuned sweep {path}: {len(found)} studies in {len({s.comparison for s in found})} comparison(s); "
          f"{workers} worker(s); studies in {journal}", flush=True)
    cache: dict = {}
    try:
        # the summary is rewritten after every finished run, so the tables can follow a run that takes hours
        trained = Driver(found, journal, store, options, pool,
                         lambda: write_summary(path, found, journal, store, cache)).run()
    finally:
        pool.close()
        write_summary(path, found, journal, store, cache)
    print(f"tuned sweep finished: {len(trained)} runs trained; summary in {summary_path(store, path)}", flush=True)
    return trained


def _pool(options: Options, executor: str, found: list[Study]):
    """Where the trials train, with ``Pool``'s interface (bench/sweeps/executors/local.py: ``give``, ``ended``,
    ``free``, ``busy``, ``close``), and how many at once."""
    if executor == "ray":
        return _ray_tasks(options, found)
    if executor != "local":
        raise ConfigError(f"a tuned sweep runs with --executor local or ray, not {executor}")
    from .executors.local import pool, slot_plan

    slots = slot_plan(0, workers=options.workers, threads=options.threads)
    return pool(slots), len(slots)


def _ray_tasks(options: Options, found: list[Study]):
    """Ray tasks of ``threads`` CPUs each, on the runtime the ray executor joins, with its checks before any work."""
    import ray

    from ..run.config import resolve
    from .executors import ray as on_ray

    started = on_ray.connect(options.address)
    try:  # every study's trials ask the same CPUs: one drawn configuration of each stands for them
        some = [resolve(s.overrides({k: _some_value(v) for k, v in s.space.items()}), check_machine=False)
                for s in found]
        on_ray.check_fit(some, options.threads, 0.0, on_ray.nodes(),
                         f"the cluster at {options.address}" if options.address else "this machine")
    except ConfigError:
        if started:
            ray.shutdown()
        raise
    workers = options.workers or max(1, int(ray.cluster_resources().get("CPU", 1)) // options.threads)
    return RayTasks(ray.remote(num_cpus=options.threads)(_call), workers, started), workers


def _call(fn, *args):
    return fn(*args)


class RayTasks:
    """``Pool``'s interface over Ray tasks, ``workers`` at a time (Ray itself retries a task whose worker died)."""

    def __init__(self, remote, workers: int, shutdown: bool):
        self.remote, self.workers, self.shutdown, self.running = remote, workers, shutdown, {}

    @property
    def busy(self) -> int:
        return len(self.running)

    @property
    def free(self) -> int:
        return self.workers - self.busy

    def give(self, job, fn, *args) -> None:
        self.running[self.remote.remote(fn, *args).future()] = job

    def ended(self, timeout: float) -> list[tuple]:
        done, _ = wait(list(self.running), timeout=timeout, return_when=FIRST_COMPLETED)
        return [(self.running.pop(fut), fut.result()) for fut in done]

    def close(self) -> None:
        if self.shutdown:
            import ray

            ray.shutdown()


class Job(NamedTuple):
    """A run the driver hands out: a trial of ``study`` (its ``number``), or with no study a confirm or witness
    run (``stage``)."""

    call: tuple  # what the worker calls: (function, *arguments)
    overrides: dict
    study: Study | None = None
    number: int | None = None
    stage: str = "confirm"


class Driver:
    """Keeps the pool's workers training: first each study's unfinished trials (a killed driver's or worker's,
    which resume their checkpoints), then new trials and confirm runs, studies in file order."""

    def __init__(self, found: list[Study], journal: Path, store: Store, options: Options, pool, finished):
        from optuna.trial import TrialState

        self.found, self.journal, self.store, self.options, self.pool = found, journal, store, options, pool
        self.finished = finished  # called after each job's outcome is known
        self.opened = open_studies(found, journal)
        self.queue = [(s, t) for s in found
                      for t in self.opened[s.name].get_trials(deepcopy=False, states=(TrialState.RUNNING,))]
        self.confirming: set[str] = set()  # run ids queued or training
        self.decided: dict = {}  # witnesses(): what is known of a confirmed study stays known

    def run(self) -> list[dict]:
        trained = []
        while True:
            while self.pool.free:
                job = self._next()
                if job is None:
                    break
                self.pool.give(job, *job.call)
            if not self.pool.busy:
                return trained
            for job, result in self.pool.ended(timeout=5.0):
                result = self._outcome(job, result)
                if result is None:
                    continue
                if result["status"] != "skipped":
                    trained.append(result)
                self._report(job, result)
                self.finished()

    def _outcome(self, job: Job, result) -> dict | None:
        """The job's record; for a killed worker the record written now, naming the signal; None for a run left
        to another process."""
        from ..run.config import resolve
        from .executors.local import Killed

        if isinstance(result, Killed):
            result = record_killed(resolve(job.overrides, check_machine=False), self.store, result.signal,
                                   result.started)
        # a trial recorded before (a study replayed from its records) is told from its record
        if result["status"] == "skipped" and not (job.study and _record(self.store, job.overrides) is not None):
            print(f"  {result['name']}: {result['reason']}; left to it", flush=True)
            return None
        return result

    def _report(self, job: Job, result: dict) -> None:
        if result.get("killed"):
            # not told: the trial stays RUNNING, as a killed driver leaves it, and the next run trains it again
            print(f"  {result['name']} [{result['id']}]: worker killed by {result['killed']}; recorded failed, "
                  "trained again when the sweep runs again", flush=True)
        elif job.study is not None:
            _tell(self.opened[job.study.name], job.number, job.overrides, self.store)
            _progress(job.study, self.opened[job.study.name], job.number)
        else:
            print(f"  {job.stage} {result['name']}: {result['status']}, test {result['metric'].get('test')}",
                  flush=True)

    def _next(self) -> Job | None:
        """The next job, or None when nothing can start now."""
        from ..run.config import resolve

        if self.queue:
            s, frozen = self.queue.pop(0)
            return self._trial(s, frozen)
        # a family's shortfall is checked as soon as its confirm runs are in, before further searching
        for overrides in witnesses(self.found, self.opened, self.store, self.decided).values():
            run_id = resolve(overrides, check_machine=False).run_id
            if run_id not in self.confirming and _record(self.store, overrides) is None:
                self.confirming.add(run_id)
                return Job((_confirm_one, overrides, str(self.store.root), self.options.wandb,
                            self.options.threads), overrides, stage="witness")
        for s in self.found:
            study = self.opened[s.name]
            trials = study.get_trials(deepcopy=False)
            if len(trials) < s.trials:
                study.sampler = _sampler(s, len(trials))
                trial = study.ask(_distributions(s))
                trial.set_user_attr("run_id", resolve(s.overrides(trial.params), check_machine=False).run_id)
                return self._trial(s, study.get_trials(deepcopy=False)[trial.number])
            if any(not t.state.is_finished() for t in trials):
                continue  # its search is still running: its best is not known yet
            best = chosen(study)
            for seed in s.confirm_seeds if best is not None else ():
                overrides = s.overrides(best.params, seed)
                run_id = resolve(overrides, check_machine=False).run_id
                if run_id not in self.confirming and _record(self.store, overrides) is None:
                    self.confirming.add(run_id)
                    return Job((_confirm_one, overrides, str(self.store.root), self.options.wandb,
                                self.options.threads), overrides)
        return None

    def _trial(self, s: Study, frozen) -> Job:
        overrides = s.overrides(frozen.params)
        call = (train_trial, s, str(self.journal), frozen._trial_id, overrides, str(self.store.root),
                self.options.wandb, self.options.threads)
        return Job(call, overrides, s, frozen.number)


def _record(store: Store, overrides: dict) -> dict | None:
    """The run's record, or None while it has none that counts (a killed worker's says nothing about the run)."""
    from ..run.config import resolve
    from ..store import standing

    cfg = resolve(overrides, check_machine=False)
    path = store.record_path(cfg.name, cfg.run_id)
    rec = store.read_record(path) if path.is_file() else None
    return None if rec is None or standing(rec) == "killed" else rec


def confirmed(s: Study, study, store: Store) -> list[dict] | None:
    """The study's confirm records once its search has ended and each is recorded ([] when no trial finished:
    nothing to confirm); None before then."""
    trials = study.get_trials(deepcopy=False)
    if len(trials) < s.trials or any(not t.state.is_finished() for t in trials):
        return None
    best, recs = chosen(study), []
    for seed in s.confirm_seeds if best else ():
        # asked after every run of a sweep: a study still confirming stops at its first missing record
        if (rec := _record(store, s.overrides(best.params, seed))) is None:
            return None
        recs.append(rec)
    return recs


def witnesses(found: list[Study], opened: dict, store: Store, decided: dict) -> dict[str, dict]:
    """Study name -> its witness run's overrides, for each study that needs one: its confirm runs all recorded
    and short of the task's goal, by TUNED.md's rule (which reads the family's own records alone). ``opened``:
    each study's Optuna study by name; ``decided`` caches what is known of a confirmed study (records are final)."""
    from ..reports.tuned import outcome, reached

    for s in found:
        if s.witness and s.name not in decided and (recs := confirmed(s, opened[s.name], store)) is not None:
            row = outcome(recs, s.goal, store.metrics)
            # a family whose confirm runs all diverged or failed has no value to check: its records say why
            short = bool(row["values"]) and not reached(row, s.goal)
            decided[s.name] = s.witness_overrides(chosen(opened[s.name]).params) if short else None
    return {name: overrides for name, overrides in decided.items() if overrides}


def _tell(study, number: int, overrides: dict, store: Store) -> None:
    """The trial's outcome, read from its record: its best validation metric, pruned, or failed."""
    from optuna.trial import TrialState

    rec = _record(store, overrides)
    value = rec["metric"].get("val_best") if rec else None
    if rec is None or rec["status"] != "ok" or value is None or not math.isfinite(value):
        study.tell(number, state=TrialState.FAIL)
    elif "pruned" in ((rec.get("stopped") or {}).get("reason") or ""):
        study.tell(number, state=TrialState.PRUNED)
    else:
        study.tell(number, value)


def _progress(s: Study, study, number: int) -> None:
    t = study.trials[number]
    value = f" {s.metric} {t.value:.4g}" if t.value is not None else ""
    print(f"  search {s.comparison} {s.family}: trial {number + 1}/{s.trials} {t.state.name.lower()}{value} "
          f"{_describe(t.params)}", flush=True)


def _describe(params: dict) -> str:
    return ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in sorted(params.items()))


def chosen(study) -> object | None:
    """The study's best finished trial (Optuna's: pruned and failed trials never win), or None."""
    from optuna.trial import TrialState

    return study.best_trial if study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) else None


def _confirm_one(overrides: dict, out: str, wandb: str, threads: int) -> dict:
    import torch

    from ..run.config import resolve

    torch.set_num_threads(threads)
    return run_locked(resolve(overrides, check_machine=False), Store(out), wandb)


# ---- what the leaderboard reads ------------------------------------------------------------------------------------
def write_summary(path: Path, found: list[Study], journal: Path, store: Store, cache: dict | None = None) -> dict:
    """``<out>/studies/<spec>.json``: every study's trials (run ids, parameters, states, values), its chosen trial,
    its confirm runs and its fANOVA importances; run ids point at the records, which hold every number shown."""
    from ..run.config import resolve

    comparisons: dict[str, dict] = {}
    opened = open_studies(found, journal)
    checked = witnesses(found, opened, store, (cache if cache is not None else {}).setdefault("witness", {}))
    for s in found:
        study = opened[s.name]
        every = study.get_trials(deepcopy=False)
        # chosen once the search has ended, as the driver chooses: a best-so-far is no choice
        best = chosen(study) if len(every) >= s.trials and all(t.state.is_finished() for t in every) else None
        trials = [{"number": t.number, "state": t.state.name.lower(), "value": t.value, "params": t.params,
                   "run_id": t.user_attrs.get("run_id"), "validations": len(t.intermediate_values)}
                  for t in study.get_trials(deepcopy=False)]
        confirm = []
        if best is not None:
            for seed in s.confirm_seeds:
                cfg = resolve(s.overrides(best.params, seed), check_machine=False)
                confirm.append({"seed": seed, "run_id": cfg.run_id, "name": cfg.name})
        entry = comparisons.setdefault(s.comparison, {
            "key": s.comparison,
            "settings": {k: v for k, v in s.fixed.items() if k.startswith("task.")},
            "protocol": {"trials_per_family": s.trials, "max_steps": s.fixed.get("train.max_steps"),
                         "method": s.method, "metric": s.metric, "goal": s.goal, "pruner": s.hyperband,
                         "confirm_seeds": list(s.confirm_seeds), "witness": s.witness},
            "families": {}})
        entry["families"][s.family] = {
            "study": s.name, "document": s.doc, "fixed": s.fixed, "searched": sorted(s.space),
            "trials": trials, "chosen": None if best is None else {"number": best.number, "params": best.params,
                                                                    "value": best.value},
            "confirm": confirm, "witness": _witness_entry(checked.get(s.name)),
            "importance": _cached_importance(study, s, cache)}
    # a list: the file's order (the JSON's keys are sorted)
    summary = {"spec": str(path), "comparisons": list(comparisons.values())}
    store.write_json(summary_path(store, path), summary)
    return summary


def _witness_entry(overrides: dict | None) -> dict | None:
    from ..run.config import resolve

    if overrides is None:
        return None
    cfg = resolve(overrides, check_machine=False)
    return {"seed": cfg.seed, "max_steps": cfg.train.max_steps, "run_id": cfg.run_id, "name": cfg.name}


def _cached_importance(study, s: Study, cache: dict | None) -> dict | None:
    """``importance``, computed again only when the study has more finished trials (fitting the forests takes a
    second, and the summary is written after every run)."""
    if cache is None:
        return importance(study, s)
    finished = sum(t.state.is_finished() for t in study.get_trials(deepcopy=False))
    known = cache.setdefault("importance", {})
    if known.get(s.name, (None,))[0] != finished:
        known[s.name] = (finished, importance(study, s))
    return known[s.name][1]


def importance(study, s: Study) -> dict | None:
    """fANOVA importance of each searched parameter over the finished trials (None with fewer than 3, or with
    one parameter, whose importance is 1 by definition)."""
    import optuna
    from optuna.trial import TrialState

    finished = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if len(s.space) < 2 or len(finished) < 3:
        return None
    evaluator = optuna.importance.FanovaImportanceEvaluator(seed=0)
    return {k: float(v) for k, v in optuna.importance.get_param_importances(study, evaluator=evaluator).items()}


def dry_run(path: Path, store: Store) -> None:
    """Where each study stands, trains nothing."""
    found = studies(path)
    journal = storage_path(store, path)
    opened = open_studies(found, journal) if journal.exists() else {}
    checked = witnesses(found, opened, store, {}) if opened else {}
    for s in found:
        study = opened.get(s.name)
        trials = study.get_trials(deepcopy=False) if study else []
        states = {}
        for t in trials:
            states[t.state.name.lower()] = states.get(t.state.name.lower(), 0) + 1
        best = chosen(study) if study else None
        left = sum(_record(store, s.overrides(best.params, seed)) is None for seed in s.confirm_seeds) if best \
            else len(s.confirm_seeds)
        witness = ""
        if s.name in checked:
            witness = f"; witness ({s.witness}x the steps) {'recorded' if _record(store, checked[s.name]) else 'to train'}"
        print(f"  {s.comparison} {s.family}: {len(trials)}/{s.trials} trials "
              f"({', '.join(f'{n} {k}' for k, n in sorted(states.items())) or 'none yet'}); "
              f"chosen: {_describe(best.params) if best else '-'}; {left} confirm runs to train{witness}", flush=True)
    print(f"tuned sweep {path}: dry run, nothing trained", flush=True)
