"""A run's trained model, loaded back by run name from its Lightning checkpoint, for sampling and inspection.

    rnnbench sample charlm__lstm__s0 --out results-local      # finds the record, then its best checkpoint

``<out>/checkpoints/<name>__<id>/best.ckpt`` (the best validation checkpoint) and ``last.ckpt`` are Lightning
checkpoints: weights, optimizer, loops, and the run's config as the system's hyper-parameters, so
``System.load_from_checkpoint(path)`` rebuilds the model from the file alone. Checkpoints are git-ignored: the
committed reference keeps records only, so sampling from a reference run means retraining it first
(``rnnbench run`` with the record's config).
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import torch

from options import ConfigError

from ..store import RecordError, Store
from .config import flatten, resolve
from .system import System


def load_system(path: Path) -> System:
    """The system saved in the checkpoint ``path``, on CPU, in eval mode; one line naming the file if it is not
    a loadable checkpoint or holds non-finite weights."""
    if not zipfile.is_zipfile(path):  # torch.save writes a zip archive, whose directory is at the very end
        raise RecordError(f"checkpoint {path}: cut short, or not a checkpoint (no complete zip archive, which "
                          f"torch.save writes)")
    try:
        system = System.load_from_checkpoint(path, map_location="cpu").eval()
    except Exception as exc:  # a damaged file raises anything: OSError, KeyError, EOFError, RuntimeError, ...
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise RecordError(f"checkpoint {path}: damaged, not a readable checkpoint "
                          f"({type(exc).__name__}{': ' + reason[:100] if reason else ''})") from None
    # Flipped bytes inside an intact zip load as NaN or inf: every sample, ranking or score made from them would be.
    for name, tensor in system.state_dict().items():
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise RecordError(f"checkpoint {path}: {name} holds non-finite values (NaN or inf): damaged, or saved "
                              f"after the run diverged; retrain it with `rnnbench run` and its config")
    return system


def load(run: str, store: Store):
    """(record, record path, cfg, task, system) with the best validation checkpoint's weights, in eval mode, on
    CPU."""
    record, record_path = store.find(run)
    home = Store.of_record(record_path)
    relative = record.get("checkpoint")
    ckpt = home.root / relative if isinstance(relative, str) else None
    if ckpt is None or not ckpt.is_file():
        where = ckpt or home.checkpoint_dir(record["name"], record["id"])
        raise ConfigError(f"run {record['name']} has no checkpoint at {where}; checkpoints are not committed, "
                          f"retrain it with `rnnbench run` and its config (see the record)")
    try:  # the checkpoint rebuilds from its own copy of the config: check the record's still means something
        cfg = resolve(flatten(record["config"]), check_machine=False)
    except ConfigError as exc:
        raise RecordError(f"record {record_path}: its config no longer resolves: {exc}") from None
    system = load_system(ckpt)
    if system.cfg.run_id != cfg.run_id:
        raise RecordError(f"checkpoint {ckpt}: holds run {system.cfg.run_id}, not the record's {cfg.run_id}")
    system.task.setup("test")
    return record, record_path, system.cfg, system.task, system
