"""Typed run configuration, resolved from dotted overrides and validated before any work starts.

A run is ``task`` x ``arch`` x ``optim`` x ``train`` x ``seed``. Every field is addressable by a dotted path
(``task.seq_len``, ``arch.hidden_size``, ``optim.lr``, ``seed``): the CLI flags, the sweep YAML and the run
record all use the same paths. ``task.name`` and ``arch.name`` pick which config dataclass the rest of the
section fills in, so each registered task / architecture documents its own options.

What a field means to the suite is declared on the field (``options.opt``): its range, whether it is part of a
run's identity (the run id), whether it is part of the question a leaderboard row answers, and whether it was
added after records existed. This module turns those declarations into the run id, the record's ``defaults``
and ``outside_question`` (what the leaderboard reads, so it needs no registry), and the checks of ``resolve``.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass, fields, replace
from typing import Any

from options import SEED_MAX, ConfigError, check, coerce, default_of, opt, role

OPTIMIZERS = ("adam", "rmsprop", "sgd")
SCHEDULES = ("none", "cosine", "step", "multistep")
WANDB_MODES = ("auto", "online", "offline", "disabled")
STRATEGIES = ("auto", "ddp", "ddp_spawn")
ACCELERATORS = ("auto", "cpu", "cuda", "gpu")


@dataclass(frozen=True)
class OptimConfig:
    name: str = opt("adam", "optimizer", choices=OPTIMIZERS)
    lr: float = opt(1e-3, "learning rate", gt=0)
    weight_decay: float = opt(0.0, "L2 weight decay", ge=0)
    clip: float = opt(1.0, "clip the global gradient L2 norm to this value (0 disables)", ge=0)
    # Added after records existed: shown only when changed, so older run ids stay as they were.
    schedule: str = opt("none", "learning-rate schedule, stepped every optimizer step: none, cosine (lr to 0 over "
                                "train.max_steps), step (times optim.gamma every optim.step_every steps) or "
                                "multistep (times optim.gamma at each of optim.milestones)",
                        choices=SCHEDULES, omit_default=True)
    step_every: int = opt(1000, "the step schedule's period in optimizer steps", ge=1, omit_default=True)
    gamma: float = opt(0.1, "the step and multistep schedules' factor", gt=0, le=1, omit_default=True)
    # A string, as options hold only scalars: the steps in increasing order, so one schedule has one spelling
    # (and one run id).
    milestones: str = opt("", "the multistep schedule's optimizer steps, increasing and comma-separated "
                              "(e.g. 13320,26211,34805)", omit_default=True)
    momentum: float = opt(0.0, "SGD's momentum (0: plain SGD)", ge=0, lt=1, omit_default=True)


@dataclass(frozen=True)
class TrainConfig:
    max_steps: int = opt(1000, "optimizer steps (the budget; the same for every architecture of a task)", ge=1)
    val_every: int = opt(250, "validate every this many steps", ge=1)
    # Where a run executes does not change what it computes: neither is part of its identity or question.
    accelerator: str = opt("auto", "Lightning accelerator (CPU runs are bit-reproducible)",
                           choices=ACCELERATORS, identity=False)
    # devices > 1 change the effective batch, so they count; added after the reference, shown only when > 1.
    devices: int = opt(1, "devices for one run (DDP); each gets task.batch_size, so the effective batch grows",
                       ge=1, omit_default=True)
    strategy: str = opt("auto", "Lightning strategy for devices > 1 (ddp_spawn works inside sweep workers; ddp "
                                "re-launches the command line)",
                        choices=STRATEGIES, identity=False, omit_default=True)
    diag: bool = opt(True, "gradient diagnostics (flow profile, spectra, unit health, verdict); see bench/diag")
    diag_every: int = opt(0, "probe the diagnostics every this many steps (0: max_steps // 10)", ge=0)
    # Added after records existed: shown only when set, so older run ids stay as they were. Stopping early saves
    # time; the record says at which step and why, and the test still reads the best validation checkpoint.
    patience: int = opt(0, "stop after this many validations without improvement (Lightning's EarlyStopping on "
                           "the task's metric; 0: never)", ge=0, omit_default=True)
    stop_when_solved: bool = opt(False, "stop at the first validation past the task's solved threshold",
                                 omit_default=True)

    @property
    def diag_cadence(self) -> int:
        return self.diag_every or max(1, self.max_steps // 10)


def _section(instance: Any, name: str | None = None) -> dict:
    """A config dataclass as plain data, leaving out ``omit_default`` fields that hold their default."""
    head = {"name": name} if name is not None else {}
    return {**head, **{f.name: getattr(instance, f.name) for f in fields(instance)
                       if not (role(f, "omit_default") and getattr(instance, f.name) == default_of(f))}}


def _dotted_with(instance: Any, prefix: str, key: str) -> list[str]:
    return [f"{prefix}.{f.name}" for f in fields(instance) if not role(f, key)]


@dataclass(frozen=True)
class RunConfig:
    task: Any
    arch: Any
    task_name: str
    arch_name: str
    optim: OptimConfig = OptimConfig()
    train: TrainConfig = TrainConfig()
    seed: int = 0
    # The composed model's options (bench/run/models.py) for a task that names one; None for a sequence task,
    # whose run ids and records (all written before model.* existed) therefore stay as they were.
    model: Any = None

    def _sections(self) -> dict[str, Any]:
        sections = {"task": self.task, "arch": self.arch, "optim": self.optim, "train": self.train}
        return sections if self.model is None else {**sections, "model": self.model}

    def to_dict(self) -> dict:
        """The resolved config as nested plain data: what records, W&B and run ids see."""
        d = {"task": _section(self.task, self.task_name), "arch": _section(self.arch, self.arch_name),
             "optim": _section(self.optim), "train": _section(self.train), "seed": self.seed}
        return d if self.model is None else {**d, "model": _section(self.model)}

    def outside(self, key: str) -> list[str]:
        """Dotted fields declared outside the run's ``identity`` or ``question``."""
        return sorted(p for name, section in self._sections().items() for p in _dotted_with(section, name, key))

    @property
    def run_id(self) -> str:
        """Deterministic hash of the resolved config, without the fields declared outside its identity, and of
        the task's and the architecture's code versions (``code_versions``)."""
        d = self.to_dict()
        for dotted in self.outside("identity"):
            section, _, name = dotted.partition(".")
            d[section].pop(name, None)
        versions = self.code_versions()
        if versions:
            d["versions"] = versions
        data = self.data_digests()
        if data:
            d["data"] = data
        return hashlib.sha1(json.dumps(d, sort_keys=True).encode()).hexdigest()[:10]

    def code_versions(self) -> dict[str, str]:
        """The task's and the core's ``version`` where it differs from the one their runs were recorded at
        before versions joined run ids (``id_base_version``, "1" unless a class says otherwise): a bump changes
        the id, so a sweep trains the run again, while every id recorded before stays as it was."""
        import architectures
        import tasks

        classes = {"task": tasks.get(self.task_name), "arch": architectures.entry(self.arch_name).core}
        return {section: cls.version for section, cls in classes.items()
                if cls.version != getattr(cls, "id_base_version", "1")}

    def data_digests(self) -> dict[str, str]:
        """The content hash of every local file or folder the task reads (``Task.data_files``): an edited corpus
        is a new run, which a resumed sweep trains; generated or packaged data add nothing, so their ids stay."""
        import tasks

        return {option: content_digest(path)
                for option, path in tasks.get(self.task_name).data_files(self.task).items()}

    def defaults(self) -> dict:
        """The default config of this task and architecture, shaped like ``to_dict`` (records carry it, so the
        leaderboard can tell what a row changed without importing any registry)."""
        return resolve({"task.name": self.task_name, "arch.name": self.arch_name}, check_machine=False).to_dict()

    @property
    def arch_label(self) -> str:
        """``gru``, ``gru-2l``, ``gru-bi``, ``gru-2l-bi``: the family with its depth and directions."""
        depth = f"-{self.arch.layers}l" if self.arch.layers > 1 else ""
        return f"{self.arch_name}{depth}{'-bi' if self.arch.bidirectional else ''}"

    @property
    def name(self) -> str:
        return f"{self.task_name}__{self.arch_label}__s{self.seed}"


_DIGESTS: dict[tuple, str] = {}  # (path, every file's size and mtime) -> digest: hashed once per process


def content_digest(path: str) -> str:
    """sha256 over a file's bytes, or over a folder's files (names and bytes; hidden ones aside), 16 hex digits."""
    root, files = os.path.realpath(path), [os.path.realpath(path)]
    if os.path.isdir(root):
        files = []
        for top, dirs, names in os.walk(root):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))  # .cache, .git: not the data
            files += [os.path.join(top, n) for n in sorted(names) if not n.startswith(".")]
    stats = tuple((f, os.stat(f).st_size, os.stat(f).st_mtime_ns) for f in files)
    if stats in _DIGESTS:
        return _DIGESTS[stats]
    h = hashlib.sha256()
    for f in files:
        with open(f, "rb") as stream:
            h.update(os.path.relpath(f, root).encode("utf-8", "surrogateescape") + b"\0"
                     + hashlib.file_digest(stream, "sha256").digest())
    # A file changed within the clock's granularity may keep its size and time (git's "racy" case): not kept.
    if all(time.time_ns() - mtime > 2 * 10**9 for _, _, mtime in stats):
        _DIGESTS[stats] = h.hexdigest()[:16]
    return h.hexdigest()[:16]


def milestone_steps(text: str) -> tuple[int, ...]:
    """``optim.milestones`` as steps: ``"30,60"`` -> (30, 60); one line naming the problem otherwise."""
    if not text.strip():
        return ()
    parts = [p.strip() for p in text.split(",")]
    if not all(p.isdigit() and int(p) > 0 for p in parts):
        raise ConfigError(f"optim.milestones: cannot read {text!r} as optimizer steps; valid: positive whole "
                          "numbers separated by commas, e.g. 100,200")
    steps = tuple(int(p) for p in parts)
    spelled = ",".join(map(str, sorted(set(steps))))
    if text != spelled:  # "60,30", "30, 60", "030": one schedule, other spellings, other run ids
        raise ConfigError(f"optim.milestones must be increasing steps with no spaces, got {text!r}; valid: "
                          f"{spelled!r}")
    return steps


def _optim_problem(cfg: RunConfig) -> str | None:
    """What spans optim's fields: a schedule's own options only with it, momentum only where SGD reads it."""
    o = cfg.optim
    steps = milestone_steps(o.milestones)
    if o.schedule == "multistep" and not steps:
        return "optim.schedule multistep needs optim.milestones, e.g. 100,200"
    if steps and o.schedule != "multistep":
        return f"optim.milestones is read only by the multistep schedule, got optim.schedule {o.schedule}; " \
               "valid: optim.schedule multistep, or no optim.milestones"
    if steps and steps[-1] > cfg.train.max_steps:
        return (f"optim.milestones: step {steps[-1]} is past train.max_steps ({cfg.train.max_steps}); valid: "
                f"steps <= {cfg.train.max_steps}")
    if o.momentum and o.name != "sgd":
        return f"optim.momentum is SGD's, got optim.name {o.name}; valid: optim.name sgd, or optim.momentum 0"
    return None


def _fill(cls: type, base: Any, values: dict[str, Any], section: str) -> Any:
    valid = {f.name: f for f in fields(cls)}
    unknown = sorted(set(values) - set(valid))
    if unknown:
        raise ConfigError(f"unknown option {section}.{unknown[0]}; valid: "
                          + ", ".join(f"{section}.{k}" for k in sorted(valid)))
    return replace(base, **{k: coerce(v, valid[k].type, f"{section}.{k}") for k, v in values.items()})


def _pick(registry_names: list[str], name: Any, kind: str) -> str:
    if name not in registry_names:
        raise ConfigError(f"unknown {kind} {name!r}; valid: {', '.join(registry_names)}")
    return name


def flatten(config: dict, prefix: str = "") -> dict:
    """Nested config (``RunConfig.to_dict()``, a record's ``config``) -> the dotted overrides ``resolve`` takes."""
    out: dict = {}
    _flatten_into(out, config, prefix)
    return out


def _flatten_into(out: dict, config: dict, prefix: str) -> None:
    for key, value in config.items():
        if isinstance(value, dict):
            _flatten_into(out, value, f"{prefix}{key}.")
        else:
            out[prefix + key] = value


def resolve(overrides: dict[str, Any], check_machine: bool = True) -> RunConfig:
    """Build and validate a RunConfig from ``{"task.name": ..., "arch.name": ..., "optim.lr": ..., ...}``.

    ``task`` and ``arch`` are accepted as short for ``task.name`` / ``arch.name``. ``check_machine`` also checks
    that the run fits this machine (its memory, the GPUs it asks for): off where nothing trains here.
    """
    import architectures
    import tasks

    from .models import options_for

    sections: dict[str, dict[str, Any]] = {"task": {}, "arch": {}, "optim": {}, "train": {}, "model": {}}
    seed = 0
    for key, value in overrides.items():
        head, _, rest = key.partition(".")
        if key in ("task", "arch"):
            sections[key]["name"] = value
        elif key == "seed":
            seed = coerce(value, "int", "seed")
        elif head in sections and rest:
            sections[head][rest] = value
        else:
            raise ConfigError(f"unknown option {key!r}; valid sections: task.*, arch.*, optim.*, train.*, model.*, "
                              "seed")
    task_name = _pick(tasks.names(), sections["task"].pop("name", None), "task")
    arch_name = _pick(architectures.names(), sections["arch"].pop("name", None), "architecture")
    task_cls, entry = tasks.get(task_name), architectures.entry(arch_name)
    model_cls = options_for(task_cls)
    if model_cls is None and sections["model"]:
        raise ConfigError(f"unknown option model.{sorted(sections['model'])[0]}: task {task_name} trains a core "
                          "and a linear head, which take no model.* options")
    cfg = RunConfig(
        task=_fill(task_cls.Config, task_cls.Config(), sections["task"], "task"),
        arch=_fill(entry.config, entry.default_config(), sections["arch"], "arch"),
        task_name=task_name, arch_name=arch_name,
        optim=_fill(OptimConfig, OptimConfig(), sections["optim"], "optim"),
        train=_fill(TrainConfig, TrainConfig(), sections["train"], "train"),
        seed=seed,
        model=None if model_cls is None else _fill(model_cls, model_cls(), sections["model"], "model"),
    )
    validate(cfg, check_machine=check_machine)
    return cfg


def validate(cfg: RunConfig, check_machine: bool = True) -> None:
    """The declared range of every field, then what spans fields: the task's own checks, the budget in whole
    batches, and whether the run fits this machine (memory, GPUs)."""
    import tasks

    for name, section in cfg._sections().items():
        check(section, name)
    if not 0 <= cfg.seed <= SEED_MAX:
        raise ConfigError(f"seed must be >= 0 and <= {SEED_MAX}, got {cfg.seed}")
    task = tasks.get(cfg.task_name)
    problem = task.check(cfg.task) or _direction_problem(cfg, task) or _optim_problem(cfg)
    if problem:
        raise ConfigError(problem)
    if cfg.model is not None:
        from .models import check as check_model

        problem = check_model(cfg.model, task.image_channels(cfg.task))
        if problem:
            raise ConfigError(problem)
    size = task.train_size(cfg.task)
    if size is not None and size < cfg.task.batch_size:
        raise ConfigError(f"task.batch_size ({cfg.task.batch_size}) is larger than the {size} training examples "
                          f"of this {cfg.task_name} config: not one batch to train on")
    if cfg.train.stop_when_solved and task(cfg.task).solved_threshold is None:
        raise ConfigError(f"train.stop_when_solved: task {cfg.task_name} declares no solved threshold; valid: false")
    per_batch = task.updates_per_batch(cfg.task)
    for name in ("max_steps", "val_every"):
        value = getattr(cfg.train, name)
        if value % per_batch:
            raise ConfigError(f"train.{name} ({value}) must be a multiple of {per_batch}, the optimizer steps per "
                              f"batch under truncated BPTT (task.seq_len / task.tbptt); e.g. "
                              f"{value - value % per_batch or per_batch}")
    if check_machine:
        check_devices(cfg.train.accelerator, cfg.train.devices)
        if cfg.model is None:  # composed models' sizes come from their data (vocabularies): not estimated
            check_memory(*memory_need(cfg, task(cfg.task)))


def _direction_problem(cfg: RunConfig, task) -> str | None:
    """A bidirectional core reads each sequence whole, backwards too: refused where a step must not see later
    steps (a decoder generates them) or a window's state carries into the next."""
    from .models import KINDS

    if not cfg.arch.bidirectional:
        return None
    if task.carries_state or task.truncation_for(cfg.task):
        return (f"arch.bidirectional: task {cfg.task_name} carries the state from one window into the next, "
                "which a core that reads each window backwards cannot; valid: false")
    kind = getattr(task, "model", None)
    if kind and not KINDS[kind].encodes:
        return (f"arch.bidirectional: the {kind} model's only recurrent core is its decoder, which generates "
                "left to right and cannot read ahead; valid: false")
    return None


def estimate_bytes(cfg: RunConfig, task) -> int:
    """A generous estimate of a training step's memory: parameters with their gradient and two Adam moments,
    and the activations the fused kernel keeps for backward (gates, h and c per step and layer, the input and
    the head's output), over one backward span (a truncation chunk under truncated BPTT)."""
    import architectures

    gates = len(architectures.entry(cfg.arch_name).core.gate_names)  # weight blocks per layer: 1, 3 or 4
    h, layers, b = cfg.arch.hidden_size, cfg.arch.layers, cfg.task.batch_size
    dirs = 2 if cfg.arch.bidirectional else 1
    widths = [task.input_size] + [dirs * h] * (layers - 1)
    params = (dirs * sum(gates * h * (d + h) + 2 * gates * h for d in widths)
              + task.readout_size(dirs * h) * task.output_size + task.output_size)
    span = task.truncation or task.seq_len
    per_step = dirs * layers * (gates + 3) * h + task.input_size + 2 * task.output_size
    return 4 * (4 * params + b * span * per_step)


def available_bytes() -> int | None:
    """Memory this machine has free for a run (MemAvailable), or None where it cannot be read."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _gib(n: float) -> str:
    return f"{n / 2**30:.3g} GiB"


def check_devices(accelerator: str, devices: int) -> None:
    """GPUs asked for must be here: Lightning finds out only when the Trainer starts, with a traceback."""
    if accelerator not in ("cuda", "gpu"):
        return
    import torch

    have = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if have < devices:
        raise ConfigError(f"train.accelerator {accelerator} with train.devices {devices}: "
                          f"this machine has {have} GPU(s); valid here: auto, cpu"
                          + (f" or train.devices <= {have}" if have else ""))


def memory_need(cfg: RunConfig, task) -> tuple[str, int, str]:
    """(run name, estimated bytes, the sizes behind the estimate): all that ``check_memory`` reads of a run, as
    plain data, so a plan cache (bench/sweeps/plan_cache.py) checks a run again without the registries."""
    sizes = (f"arch.hidden_size={cfg.arch.hidden_size}, arch.layers={cfg.arch.layers}, "
             f"task.batch_size={cfg.task.batch_size}, {task.seq_len} steps")
    return cfg.name, estimate_bytes(cfg, task), sizes


def check_memory(name: str, need: int, sizes: str) -> None:
    have = available_bytes()
    if have is not None and need > have:
        raise ConfigError(f"{name}: needs about {_gib(need)} of memory ({sizes}) but this machine has {_gib(have)} "
                          "free; make them smaller")


def field_docs(cls: type) -> list[tuple[str, Any, str]]:
    """(name, default, help with the declared range) for each field: the source of ``--help``."""
    from options import describe_range

    return [(f.name, default_of(f), f.metadata.get("help", "") + describe_range(f)) for f in fields(cls)]
