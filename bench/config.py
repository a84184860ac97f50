"""Typed run configuration, resolved from dotted overrides and validated before any work starts.

A run is ``task`` x ``arch`` x ``optim`` x ``train`` x ``seed``. Every field is addressable by a dotted path
(``task.seq_len``, ``arch.hidden_size``, ``optim.lr``, ``seed``): the CLI flags, the sweep YAML and the run
record all use the same paths. ``task.name`` and ``arch.name`` pick which config dataclass the rest of the
section fills in, so each registered task / architecture documents its own options.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import MISSING, asdict, dataclass, fields, replace
from typing import Any

import architectures
import tasks
from architectures.config import opt

OPTIMIZERS = ("adam", "rmsprop", "sgd")
WANDB_MODES = ("auto", "online", "offline", "disabled")
STRATEGIES = ("auto", "ddp", "ddp_spawn")
# Train fields added after the committed reference was recorded: a config shows them only when they differ
# from these defaults, so records from before they existed still compare equal (leaderboard rows, run ids).
LATER_TRAIN_DEFAULTS = {"devices": 1, "strategy": "auto"}


class ConfigError(ValueError):
    """A user-caused configuration problem; the CLI prints it as one line and exits 2."""


@dataclass(frozen=True)
class OptimConfig:
    name: str = opt("adam", f"optimizer: {', '.join(OPTIMIZERS)}")
    lr: float = opt(1e-3, "learning rate")
    weight_decay: float = opt(0.0, "L2 weight decay")
    clip: float = opt(1.0, "clip the global gradient L2 norm to this value (0 disables)")


@dataclass(frozen=True)
class TrainConfig:
    max_steps: int = opt(1000, "optimizer steps (the budget; the same for every architecture of a task)")
    val_every: int = opt(250, "validate every this many steps")
    accelerator: str = opt("auto", "Lightning accelerator: auto, cpu, gpu (CPU runs are bit-reproducible)")
    devices: int = opt(1, "devices for one run (DDP); each gets task.batch_size, so the effective batch grows")
    strategy: str = opt("auto", f"Lightning strategy for devices > 1: {', '.join(STRATEGIES)} (ddp_spawn works "
                                "inside sweep workers; ddp re-launches the command line)")
    diag: bool = opt(True, "gradient diagnostics (flow profile, spectra, unit health, verdict); see bench/diag")
    diag_every: int = opt(0, "probe the diagnostics every this many steps (0: max_steps // 10)")

    @property
    def diag_cadence(self) -> int:
        return self.diag_every or max(1, self.max_steps // 10)


@dataclass(frozen=True)
class RunConfig:
    task: Any
    arch: Any
    task_name: str
    arch_name: str
    optim: OptimConfig = OptimConfig()
    train: TrainConfig = TrainConfig()
    seed: int = 0

    def to_dict(self) -> dict:
        """The resolved config as nested plain data: what records, W&B and run ids see."""
        train = {k: v for k, v in asdict(self.train).items()
                 if k not in LATER_TRAIN_DEFAULTS or v != LATER_TRAIN_DEFAULTS[k]}
        return {"task": {"name": self.task_name, **asdict(self.task)},
                "arch": {"name": self.arch_name, **asdict(self.arch)},
                "optim": asdict(self.optim), "train": train, "seed": self.seed}

    @property
    def run_id(self) -> str:
        """Deterministic hash of the resolved config. Accelerator and strategy are excluded: they do not change
        the question. Devices > 1 change the effective batch, so they count (to_dict omits devices=1)."""
        d = self.to_dict()
        d["train"] = {k: v for k, v in d["train"].items() if k not in ("accelerator", "strategy")}
        return hashlib.sha1(json.dumps(d, sort_keys=True).encode()).hexdigest()[:10]

    @property
    def arch_label(self) -> str:
        return self.arch_name if self.arch.layers == 1 else f"{self.arch_name}-{self.arch.layers}l"

    @property
    def name(self) -> str:
        return f"{self.task_name}__{self.arch_label}__s{self.seed}"


def _coerce(value: Any, annotation: Any, path: str) -> Any:
    """Convert a CLI/YAML value to the field's type; reject what cannot be converted.

    ``annotation`` is the field's annotation as a string (``from __future__ import annotations``).
    """
    kinds = {"int": int, "float": float, "str": str, "bool": bool}
    allowed = [kinds[a.strip()] for a in str(annotation).split("|") if a.strip() in kinds]
    optional = "None" in str(annotation)
    if optional and (value is None or (isinstance(value, str) and value.lower() in ("none", "null"))):
        return None
    for kind in allowed:
        try:
            if kind is bool:
                if isinstance(value, bool):
                    return value
                if str(value).lower() in ("true", "1", "yes"):
                    return True
                if str(value).lower() in ("false", "0", "no"):
                    return False
                continue
            if kind is int and isinstance(value, float) and not value.is_integer():
                continue
            if kind is int and isinstance(value, str) and not value.lstrip("-").isdigit():
                continue
            return kind(value)
        except (TypeError, ValueError):
            continue
    raise ConfigError(f"{path}: cannot read {value!r} as {annotation}")


def _fill(cls: type, base: Any, values: dict[str, Any], section: str) -> Any:
    valid = {f.name: f for f in fields(cls)}
    unknown = sorted(set(values) - set(valid))
    if unknown:
        raise ConfigError(f"unknown option {section}.{unknown[0]}; valid: "
                          + ", ".join(f"{section}.{k}" for k in sorted(valid)))
    return replace(base, **{k: _coerce(v, valid[k].type, f"{section}.{k}") for k, v in values.items()})


def _pick(registry_names: list[str], name: Any, kind: str) -> str:
    if name not in registry_names:
        raise ConfigError(f"unknown {kind} {name!r}; valid: {', '.join(registry_names)}")
    return name


def flatten(config: dict, prefix: str = "") -> dict:
    """Nested config (``RunConfig.to_dict()``, a record's ``config``) -> the dotted overrides ``resolve`` takes."""
    out = {}
    for key, value in config.items():
        out.update(flatten(value, f"{prefix}{key}.") if isinstance(value, dict) else {f"{prefix}{key}": value})
    return out


def resolve(overrides: dict[str, Any]) -> RunConfig:
    """Build and validate a RunConfig from ``{"task.name": ..., "arch.name": ..., "optim.lr": ..., ...}``.

    ``task`` and ``arch`` are accepted as short for ``task.name`` / ``arch.name``.
    """
    sections: dict[str, dict[str, Any]] = {"task": {}, "arch": {}, "optim": {}, "train": {}}
    seed = 0
    for key, value in overrides.items():
        head, _, rest = key.partition(".")
        if key in ("task", "arch"):
            sections[key]["name"] = value
        elif key == "seed":
            seed = _coerce(value, "int", "seed")
        elif head in sections and rest:
            sections[head][rest] = value
        else:
            raise ConfigError(f"unknown option {key!r}; valid sections: task.*, arch.*, optim.*, train.*, seed")
    task_name = _pick(tasks.names(), sections["task"].pop("name", None), "task")
    arch_name = _pick(architectures.names(), sections["arch"].pop("name", None), "architecture")
    task_cls, entry = tasks.get(task_name), architectures.entry(arch_name)
    cfg = RunConfig(
        task=_fill(task_cls.Config, task_cls.Config(), sections["task"], "task"),
        arch=_fill(entry.config, entry.default_config(), sections["arch"], "arch"),
        task_name=task_name, arch_name=arch_name,
        optim=_fill(OptimConfig, OptimConfig(), sections["optim"], "optim"),
        train=_fill(TrainConfig, TrainConfig(), sections["train"], "train"),
        seed=seed,
    )
    validate(cfg)
    return cfg


def validate(cfg: RunConfig) -> None:
    checks = [
        (cfg.optim.name in OPTIMIZERS, f"unknown optimizer {cfg.optim.name!r}; valid: {', '.join(OPTIMIZERS)}"),
        (cfg.optim.lr > 0, f"optim.lr must be > 0, got {cfg.optim.lr}"),
        (cfg.optim.clip >= 0, f"optim.clip must be >= 0 (0 disables), got {cfg.optim.clip}"),
        (cfg.train.max_steps > 0, f"train.max_steps must be > 0, got {cfg.train.max_steps}"),
        (cfg.train.val_every > 0, f"train.val_every must be > 0, got {cfg.train.val_every}"),
        (cfg.train.diag_every >= 0, f"train.diag_every must be >= 0 (0: max_steps // 10), got {cfg.train.diag_every}"),
        (cfg.train.accelerator in ("cpu", "gpu", "cuda", "auto"),
         f"unknown train.accelerator {cfg.train.accelerator!r}; valid: auto, cpu, cuda, gpu"),
        (cfg.train.devices >= 1, f"train.devices must be >= 1, got {cfg.train.devices}"),
        (cfg.train.strategy in STRATEGIES,
         f"unknown train.strategy {cfg.train.strategy!r}; valid: {', '.join(STRATEGIES)}"),
        (cfg.arch.hidden_size > 0, f"arch.hidden_size must be > 0, got {cfg.arch.hidden_size}"),
        (cfg.arch.layers > 0, f"arch.layers must be > 0, got {cfg.arch.layers}"),
        (0 <= cfg.arch.dropout < 1, f"arch.dropout must be in [0, 1), got {cfg.arch.dropout}"),
        (cfg.arch.recurrent_init in architectures.base.RECURRENT_INITS,
         f"unknown arch.recurrent_init {cfg.arch.recurrent_init!r}; valid: "
         + ", ".join(architectures.base.RECURRENT_INITS)),
        (cfg.task.batch_size > 0, f"task.batch_size must be > 0, got {cfg.task.batch_size}"),
        (cfg.seed >= 0, f"seed must be >= 0, got {cfg.seed}"),
    ]
    for ok, message in checks:
        if not ok:
            raise ConfigError(message)
    task = tasks.get(cfg.task_name)
    problem = task.check(cfg.task)
    if problem:
        raise ConfigError(problem)
    per_batch = task.updates_per_batch(cfg.task)
    for name in ("max_steps", "val_every"):
        value = getattr(cfg.train, name)
        if value % per_batch:
            raise ConfigError(f"train.{name} ({value}) must be a multiple of {per_batch}, the optimizer steps per "
                              f"batch under truncated BPTT (task.seq_len / task.tbptt); e.g. {value - value % per_batch or per_batch}")
    nonlinearity = getattr(cfg.arch, "nonlinearity", "tanh")
    if nonlinearity not in ("tanh", "relu"):
        raise ConfigError(f"unknown arch.nonlinearity {nonlinearity!r}; valid: relu, tanh")


def field_docs(cls: type) -> list[tuple[str, Any, str]]:
    """(name, default, help) for each field: the source of ``--help``."""
    out = []
    for f in fields(cls):
        default = f.default if f.default is not MISSING else None
        out.append((f.name, default, f.metadata.get("help", "")))
    return out

