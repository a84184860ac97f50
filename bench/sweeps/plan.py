"""Planning a sweep: every run of a sweep file, resolved and validated before the first one starts.

    python -c "from bench.sweeps.plan import plan; print(len(plan('sweeps/default.yaml')))"

Documents expand into dotted overrides (bench/sweeps/spec.py); each is resolved into a RunConfig, whose run id
hashes the resolved config, so the same run planned twice is one run. ``pending`` compares the plan with a
results store: runs without a readable record are to do (an unreadable record is named and its run trained
again), and with ``retry_failed`` so are runs recorded as ``failed`` (diverged runs are results, not failures).
"""

from __future__ import annotations

from pathlib import Path

from options import ConfigError

from ..run.config import RunConfig, resolve
from .spec import expand_file


def plan(path: Path, check_machine: bool = True) -> list[RunConfig]:
    """Every run of the sweep, validated, duplicates (same resolved config) removed. ``check_machine``: also
    refuse runs that cannot fit this machine (memory, GPUs); off when they train elsewhere (a Ray cluster)."""
    seen, runs = set(), []
    for doc, overrides in expand_file(path):
        try:
            cfg = resolve(overrides, check_machine=check_machine)
        except ConfigError as exc:
            raise ConfigError(f"{path} document {doc}: {exc}") from None
        if cfg.run_id not in seen:
            seen.add(cfg.run_id)
            runs.append(cfg)
    return runs


def pending(cfgs: list[RunConfig], statuses: dict[str, str], retry_failed: bool = False) -> list[RunConfig]:
    """The planned runs without a readable record (``statuses``: run id -> recorded status, from the store),
    plus those recorded as failed when retrying."""
    done = {i for i, status in statuses.items() if not (retry_failed and status == "failed")}
    return [c for c in cfgs if c.run_id not in done]
