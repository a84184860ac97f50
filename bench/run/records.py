"""Run records: one JSON file per run, the single source of every number the suite reports.

A record holds the resolved config, the task's declaration, status (``ok`` / ``diverged`` / ``failed``),
final and best metrics, steps, wall time, parameter count, the gradient diagnostics (probe history, verdict;
see bench/diag) and provenance (git SHA and dirty flag, library versions, hardware). It also carries what the
field declarations say about its config (``defaults``, ``outside_question``), so the leaderboard reads records
alone. Where records live and how they are written (atomically) is the results store's business
(bench/store.py).
"""

from __future__ import annotations

import os
import platform
import subprocess
from functools import lru_cache
from pathlib import Path

SCHEMA = 2  # 2: defaults and outside_question (bench.dev.migrate adds them to schema-1 records)
ROOT = Path(__file__).resolve().parent.parent


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


@lru_cache(maxsize=1)
def provenance() -> dict:
    import lightning
    import torch
    import torchmetrics

    sha = _git("rev-parse", "HEAD") or "unknown"
    # Only code counts as dirt: results/ and local outputs change while a sweep runs.
    dirty = bool(_git("status", "--porcelain", "--untracked-files=no", "--", ".", ":!results"))
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {
        "git_sha": sha, "git_dirty": dirty, "python": platform.python_version(), "torch": torch.__version__,
        "lightning": lightning.__version__, "torchmetrics": torchmetrics.__version__,
        "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version() if gpu else None,
        "cpu": _cpu_name(), "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(), "gpu": gpu,
        "platform": platform.platform(),
    }


def make(cfg, task, *, status, error, divergence, steps, params, test, val_last, val_best, grad_norm,
         wall_time_s, provenance, wandb_mode, accelerator, metrics_file, diagnostics=None,
         wandb_id=None, checkpoint=None, extra=None, cpu_time_s=None) -> dict:
    info = task.describe()
    return {
        "schema": SCHEMA,
        "id": cfg.run_id,
        "name": cfg.name,
        "task": cfg.task_name,
        "arch": cfg.arch_name,
        "arch_label": cfg.arch_label,
        "seed": cfg.seed,
        "status": status,
        "config": cfg.to_dict(),
        "defaults": cfg.defaults(),  # the task's and architecture's defaults: what this config changed
        "outside_question": cfg.outside("question"),  # dotted fields a leaderboard row ignores
        "task_info": info,
        "metric": {
            "name": info["metric"], "mode": info["mode"], "test": test, "val_last": val_last,
            "val_best": val_best, "baseline": info["baseline"],
            "solved": task.is_solved(test) if test is not None else (False if status != "ok" else None),
            "extra": extra or {},  # metrics beside the main one, e.g. {"test/ppl": ..., "val/ppl": ...}
        },
        "divergence": divergence,
        "error": error,
        "steps": steps,
        "params": params,
        "grad_norm_preclip": grad_norm,
        "wall_time_s": round(wall_time_s, 2),
        # CPU seconds of the run's process (all its threads): unlike wall time, not inflated by a busy machine.
        "cpu_time_s": None if cpu_time_s is None else round(cpu_time_s, 2),
        "accelerator": accelerator,
        "reproducibility": ("bitwise: CPU with deterministic algorithms" if accelerator == "CPUAccelerator" else
                            "not guaranteed: cuDNN RNN kernels are nondeterministic (pytorch #18110); "
                            "compare GPU runs over seeds"),
        "wandb_mode": wandb_mode,
        "wandb_id": wandb_id,  # project rnnbench; None when W&B was disabled
        "metrics_file": metrics_file,
        "checkpoint": checkpoint,  # relative to the results folder; git-ignored, so absent from a fresh clone
        "diagnostics": diagnostics,
        "provenance": provenance,
    }
