"""A run's trained weights, saved beside its record and loaded back by name for sampling and inspection.

    rnnbench sample charlm__lstm__s0 --out results-local      # finds the record, then its checkpoint

``<out>/checkpoints/<name>__<id>.pt`` holds the resolved config and the system's ``state_dict`` (a few hundred
KB for the suite's models). Checkpoints are git-ignored: the committed reference keeps records only, so
sampling from a reference run means retraining it first (``rnnbench run`` with the record's config).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from .config import ConfigError, RunConfig, flatten, resolve

FOLDER = "checkpoints"


def path_for(out: Path, cfg: RunConfig) -> Path:
    return Path(out) / FOLDER / f"{cfg.name}__{cfg.run_id}.pt"


def save(system: torch.nn.Module, cfg: RunConfig, out: Path) -> Path:
    path = path_for(out, cfg)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    torch.save({"config": cfg.to_dict(), "state_dict": system.state_dict()}, tmp)
    os.replace(tmp, path)  # never half a checkpoint
    return path


def find_record(run: str, out: Path) -> tuple[dict, Path]:
    """``run`` is a record path, or a run name (``charlm__lstm__s0``, optionally ``__<id>``) under ``out/runs``."""
    candidate = Path(run)
    if candidate.suffix == ".json" and candidate.is_file():
        return json.loads(candidate.read_text()), candidate
    runs = Path(out) / "runs"
    # Records are <name>__<id>.json; files beside them (<...>.samples.jsonl, ...) have more dots.
    matches = sorted(p for p in runs.glob(f"{run}*.json") if p.name.count(".") == 1) if runs.is_dir() else []
    exact = [p for p in matches if p.stem == run or p.stem.rsplit("__", 1)[0] == run]
    if len(exact) == 1:
        return json.loads(exact[0].read_text()), exact[0]
    if not exact:
        known = sorted(p.stem.rsplit("__", 1)[0] for p in runs.glob("*.json")) if runs.is_dir() else []
        hint = f"; runs there: {', '.join(known[:8])}{' ...' if len(known) > 8 else ''}" if known else ""
        raise ConfigError(f"no run record {run!r} under {runs}{hint}")
    raise ConfigError(f"{run!r} matches {len(exact)} records under {runs}: add the id, e.g. {exact[0].stem}")


def load(run: str, out: Path):
    """(record, cfg, task, system) with the trained weights, in eval mode, on CPU."""
    from .run import build

    record, record_path = find_record(run, out)
    ckpt = Path(record_path).parent.parent / FOLDER / f"{record['name']}__{record['id']}.pt"
    if not ckpt.is_file():
        raise ConfigError(f"run {record['name']} has no checkpoint at {ckpt}; checkpoints are not committed, "
                          f"retrain it with `rnnbench run` and its config (see the record)")
    cfg = resolve(flatten(record["config"]))
    task, system = build(cfg)
    task.setup("test")
    system.load_state_dict(torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"])
    return record, cfg, task, system.eval()
