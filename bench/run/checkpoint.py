"""A run's trained weights, saved beside its record and loaded back by name for sampling and inspection.

    rnnbench sample charlm__lstm__s0 --out results-local      # finds the record, then its checkpoint

``<out>/checkpoints/<name>__<id>.pt`` holds the resolved config and the system's ``state_dict`` (a few hundred
KB for the suite's models). Checkpoints are git-ignored: the committed reference keeps records only, so
sampling from a reference run means retraining it first (``rnnbench run`` with the record's config).
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import torch

from options import ConfigError

from ..store import RecordError, Store
from .config import RunConfig, flatten, resolve
from .system import build


def save(system: torch.nn.Module, cfg: RunConfig, store: Store) -> Path:
    path = store.checkpoint_path(cfg.name, cfg.run_id)
    with store.atomic(path) as tmp:  # never half a checkpoint
        torch.save({"config": cfg.to_dict(), "state_dict": system.state_dict()}, tmp)
    return path


def read(path: Path) -> dict:
    """A checkpoint's contents, or one line naming the file and what is wrong with it."""
    if not zipfile.is_zipfile(path):  # torch.save writes a zip archive, whose directory is at the very end
        raise RecordError(f"checkpoint {path}: cut short, or not a checkpoint (no complete zip archive, which "
                          f"torch.save writes)")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a damaged file raises anything: OSError, KeyError, EOFError, RuntimeError, ...
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise RecordError(f"checkpoint {path}: damaged, not a readable checkpoint "
                          f"({type(exc).__name__}{': ' + reason[:100] if reason else ''})") from None
    if not isinstance(data, dict) or "state_dict" not in data:
        raise RecordError(f"checkpoint {path}: no state_dict in it (not an rnnbench checkpoint)")
    return data


def load(run: str, store: Store):
    """(record, record path, cfg, task, system) with the trained weights, in eval mode, on CPU."""
    record, record_path = store.find(run)
    home = Store.of_record(record_path)
    ckpt = home.checkpoint_path(record["name"], record["id"])
    if not ckpt.is_file():
        raise ConfigError(f"run {record['name']} has no checkpoint at {ckpt}; checkpoints are not committed, "
                          f"retrain it with `rnnbench run` and its config (see the record)")
    state = read(ckpt)["state_dict"]  # before building anything
    try:  # nothing trains here: no memory or GPU check
        cfg = resolve(flatten(record["config"]), check_machine=False)
    except ConfigError as exc:
        raise RecordError(f"record {record_path}: its config no longer resolves: {exc}") from None
    task, system = build(cfg)
    task.setup("test")
    try:
        system.load_state_dict(state)
    except RuntimeError as exc:  # shapes or names that do not match the record's config
        raise RecordError(f"checkpoint {ckpt}: does not fit the record's model ({str(exc).splitlines()[0][:120]})") \
            from None
    return record, record_path, cfg, task, system.eval()
