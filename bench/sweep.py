"""Sweep v0: expand a W&B-style sweep file into runs and execute them locally, resumably.

    python -m bench sweep sweeps/default.yaml --out results-local --workers 2

A sweep file holds one or more YAML documents, each a W&B sweep config (``method: grid``; ``parameters``
keyed by dotted path with ``value`` or ``values``), so each document also works with ``wandb sweep`` for users
with a server. Every run is planned and validated before the first one starts. Runs whose record already
exists in ``--out`` are skipped (ids hash the resolved config), so an interrupted sweep resumes where it
stopped. Workers are separate processes, one per core by default, each running its runs on one torch thread
(``--threads`` to change; bit-identical results need equal thread counts).
"""

from __future__ import annotations

import itertools
import os
import sys
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from multiprocessing import get_context
from pathlib import Path

import yaml

from . import records
from .config import ConfigError, RunConfig, resolve

METHODS = ("grid",)


def load_documents(path: Path) -> list[dict]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"sweep file {str(path)!r} not found")
    try:
        docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    except yaml.YAMLError as exc:
        raise ConfigError(f"sweep file {path}: invalid YAML ({str(exc).splitlines()[0]})") from None
    if not docs:
        raise ConfigError(f"sweep file {path} is empty")
    return docs


def expand(doc: dict, where: str) -> list[dict]:
    """A W&B grid document -> the list of its override dicts, in a stable order."""
    if not isinstance(doc, dict) or not isinstance(doc.get("parameters"), dict):
        raise ConfigError(f"{where}: needs a 'parameters' mapping")
    method = doc.get("method", "grid")
    if method not in METHODS:
        raise ConfigError(f"{where}: method {method!r} is not supported yet; valid: {', '.join(METHODS)}")
    keys, choices = [], []
    for key, spec in doc["parameters"].items():
        if isinstance(spec, dict) and "values" in spec and isinstance(spec["values"], list) and spec["values"]:
            choices.append(spec["values"])
        elif isinstance(spec, dict) and "value" in spec:
            choices.append([spec["value"]])
        else:
            raise ConfigError(f"{where}: parameter {key!r} needs 'value' or a non-empty 'values' list")
        keys.append(key)
    return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*choices)]


def plan(path: Path) -> list[RunConfig]:
    """Every run of the sweep, validated, duplicates (same resolved config) removed."""
    seen, runs = set(), []
    for i, doc in enumerate(load_documents(path)):
        for overrides in expand(doc, f"{path} document {i + 1}"):
            try:
                cfg = resolve(overrides)
            except ConfigError as exc:
                raise ConfigError(f"{path} document {i + 1}: {exc}") from None
            if cfg.run_id not in seen:
                seen.add(cfg.run_id)
                runs.append(cfg)
    return runs


def _init_worker(threads: int, parent: int | None = None) -> None:
    import torch

    torch.set_num_threads(threads)
    if parent is not None:
        threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True).start()


def _exit_with_parent(parent: int) -> None:
    """A pool worker outlives a killed sweep otherwise, training on with nobody to collect its result."""
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(1)


def _execute(cfg: RunConfig, out: str, wandb: str) -> dict:
    from .run import train

    return train(cfg, Path(out), wandb=wandb)


def summary_line(rec: dict, done: int, total: int) -> str:
    m = rec["metric"]
    value = "—" if m["test"] is None else f"{m['test']:.4g}"
    verdict = (rec.get("diagnostics") or {}).get("verdict") or "—"
    return (f"[{done}/{total}] {rec['task']:<8} {rec['arch_label']:<8} s{rec['seed']}  "
            f"test/{m['name']}={value:<9} {rec['status']:<8} {verdict:<9} {rec['wall_time_s']:.0f}s")


def run(path: Path, out: Path, workers: int | None = None, wandb: str = "auto", threads: int = 1) -> list[dict]:
    """Run what ``out`` lacks. ``threads`` per run stays 1 by default whatever the worker count: results are
    bit-identical only at equal thread counts, and the committed reference used one."""
    cfgs = plan(path)
    done_ids = records.existing_ids(out)
    todo = [c for c in cfgs if c.run_id not in done_ids]
    workers = max(1, min(workers or os.cpu_count() or 1, len(todo) or 1))
    print(f"sweep {path}: {len(cfgs)} runs; {len(cfgs) - len(todo)} already recorded in {out}; "
          f"{len(todo)} to run on {workers} worker(s) x {threads} thread(s)", flush=True)
    started, results = time.time(), []
    if workers == 1:
        _init_worker(threads)
        for i, cfg in enumerate(todo, 1):
            results.append(_execute(cfg, str(out), wandb))
            print(summary_line(results[-1], i, len(todo)), flush=True)
    elif todo:
        ctx = get_context("spawn")  # fresh interpreters: no inherited torch/W&B state
        with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker, initargs=(threads, os.getpid())) as pool:
            pending = {pool.submit(_execute, cfg, str(out), wandb) for cfg in todo}
            while pending:
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                for fut in finished:
                    results.append(fut.result())
                    print(summary_line(results[-1], len(results), len(todo)), flush=True)
    wall = time.time() - started
    print(f"sweep finished in {wall:.0f}s", flush=True)
    if results:
        write_summary(path, out, planned=len(cfgs), results=results, workers=workers, threads=threads, wall=wall)
    return results


def write_summary(path: Path, out: Path, *, planned: int, results: list[dict], workers: int, threads: int,
                  wall: float) -> None:
    """``out/sweeps/<name>.json``: how long this invocation took, on what; the README quotes it."""
    summary = {
        "spec": str(path), "planned": planned, "ran": len(results),
        "statuses": {s: sum(r["status"] == s for r in results) for s in ("ok", "diverged", "failed")},
        "workers": workers, "threads_per_worker": threads, "wall_time_s": round(wall, 1),
        "provenance": records.provenance(),
    }
    records.write(summary, Path(out) / "sweeps" / f"{Path(path).stem}.json")


def main_exit_code(results: list[dict]) -> int:
    """Diverged runs are data; only runs that failed make the sweep exit non-zero."""
    return 1 if any(r["status"] == "failed" for r in results) else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit("use: python -m bench sweep FILE")
