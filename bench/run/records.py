"""Run records: one JSON file per run, the single source of every number the suite reports.

A record holds the resolved config, the task's declaration, status (``ok`` / ``diverged`` / ``failed``),
final and best metrics, steps, wall time, parameter count, the gradient diagnostics (probe history, verdict;
see bench/diag) and provenance (git SHA and dirty flag, library versions, hardware). It also carries what the
field declarations say about its config (``defaults``, ``outside_question``), so the leaderboard reads records
alone.

Bit-exact reproduction holds only on the same hardware and build: the provenance's ``cpu`` name alone cannot
tell CPU generations apart ("AMD EPYC" is several), so records also carry ``cpu_fingerprint`` (a hash of the
CPU's identity and feature flags), ``cpu_id`` (the same, readable), torch's ``cpu_capability`` (the kernels it
dispatches to) and ``blas``; ``same_hardware`` says whether a record's provenance matches this machine.

Where records live and how they are written (atomically) is the results store's business (bench/store.py).
"""

from __future__ import annotations

import hashlib
import os
import platform
import re
import subprocess
from functools import lru_cache
from pathlib import Path

SCHEMA = 2  # 2: defaults and outside_question (bench.dev.migrate adds them to schema-1 records)
ROOT = Path(__file__).resolve().parents[2]  # the repository: git reads its SHA and dirt there


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


@lru_cache(maxsize=1)
def _cpuinfo() -> dict[str, str]:
    """The first processor's block of /proc/cpuinfo (empty where there is none)."""
    fields: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if not line.strip():
                if fields:
                    break  # the first processor's block is enough
                continue
            key, _, value = line.partition(":")
            fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    return fields


def _cpu_name() -> str:
    return _cpuinfo().get("model name") or platform.processor() or platform.machine()


# /proc/cpuinfo fields that identify a CPU's arithmetic: x86, then ARM. Clock speeds, microcode and core ids
# are left out (they do not change results).
_CPU_ID_FIELDS = ("vendor_id", "cpu family", "model", "stepping",
                  "CPU implementer", "CPU architecture", "CPU variant", "CPU part", "CPU revision")
_CPU_FLAG_FIELDS = ("flags", "Features")


def _cpu_identity() -> tuple[str, str]:
    """(readable id, feature flags) of the first CPU in /proc/cpuinfo; platform's words where there is none."""
    fields = _cpuinfo()
    ident = " ".join(f"{k}={fields[k]}" for k in _CPU_ID_FIELDS if k in fields)
    flags = next((fields[k] for k in _CPU_FLAG_FIELDS if k in fields), "")
    if not ident:
        ident = f"{platform.processor() or '?'} {platform.machine()}"
    return ident, " ".join(sorted(flags.split()))


def _blas() -> str:
    """The BLAS torch was built with, and its version where torch names it (from torch's cached build info)."""
    import torch

    config = torch.__config__.show()
    info = re.search(r"BLAS_INFO=([^,\s]+)", config)
    version = re.search(r"Math Kernel Library Version ([^\s]+)", config)
    return (info.group(1) if info else "unknown") + (f" {version.group(1)}" if version else "")


@lru_cache(maxsize=1)
def hardware() -> dict:
    """What decides bit-exactness of a CPU run besides the code: the CPU (fingerprint), the kernels torch
    dispatches to on it, and the BLAS."""
    import torch

    ident, flags = _cpu_identity()
    return {
        "cpu_fingerprint": hashlib.sha1(f"{ident}\n{flags}".encode()).hexdigest()[:12],
        "cpu_id": ident,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "blas": _blas(),
    }


def same_hardware(provenance: dict) -> str | None:
    """None when a run recorded with ``provenance`` should reproduce bit for bit here (same CPU fingerprint,
    CPU capability, torch build and BLAS, and torch's thread count now equal to the record's); else why not."""
    import torch

    here = hardware()
    if not provenance.get("cpu_fingerprint"):
        return (f"the record's CPU fingerprint is absent (records written before provenance carried one), and "
                f"its CPU name {provenance.get('cpu')!r} cannot tell CPU generations apart: bit-exactness is "
                f"unknowable here")
    if provenance["cpu_fingerprint"] != here["cpu_fingerprint"]:
        return (f"CPU differs: record {provenance['cpu_fingerprint']} ({provenance.get('cpu_id')}), "
                f"here {here['cpu_fingerprint']} ({here['cpu_id']})")
    if provenance.get("cpu_capability") != here["cpu_capability"]:
        return (f"CPU capability differs: record {provenance.get('cpu_capability')}, "
                f"here {here['cpu_capability']}")
    if provenance.get("torch") != torch.__version__ or provenance.get("blas") != here["blas"]:
        return (f"torch differs: record {provenance.get('torch')} ({provenance.get('blas')}), "
                f"here {torch.__version__} ({here['blas']})")
    if provenance.get("torch_threads") != torch.get_num_threads():
        return (f"torch threads differ: record {provenance.get('torch_threads')}, "
                f"here {torch.get_num_threads()}")
    return None


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
        "platform": platform.platform(), **hardware(),
    }


def make(cfg, task, *, status, error, divergence, steps, params, test, val_last, val_best, grad_norm,
         wall_time_s, provenance, wandb_mode, accelerator, metrics_file, diagnostics=None,
         wandb_id=None, mirror_error=None, checkpoint=None, extra=None, cpu_time_s=None, test_last=None,
         checkpoint_last=None, stopped=None, resumed_from=None, test_from=None) -> dict:
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
            # test: the best validation checkpoint's (test_from "best"); records from before checkpoints hold
            # the last model's there, and no test_from (the leaderboard reads them as "last")
            "name": info["metric"], "mode": info["mode"], "test": test, "test_last": test_last,
            "test_from": test_from, "val_last": val_last,
            "val_best": val_best, "baseline": info["baseline"],
            "solved": task.is_solved(test) if test is not None else (False if status != "ok" else None),
            "extra": extra or {},  # metrics beside the main one, e.g. {"test/ppl": ..., "val/ppl": ...}
        },
        "divergence": divergence,
        "stopped": stopped,  # {"step", "reason"} when train.patience or train.stop_when_solved ended it early
        "resumed_from": resumed_from,  # the step of the last.ckpt an interrupted attempt left, if any
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
        "mirror_error": mirror_error,  # why the W&B mirror failed (the run did not), one line; None when it did not
        "metrics_file": metrics_file,
        # Lightning checkpoints relative to the results folder (the best validation one, and the last);
        # git-ignored, so absent from a fresh clone
        "checkpoint": checkpoint,
        "checkpoint_last": checkpoint_last,
        "diagnostics": diagnostics,
        "provenance": provenance,
    }
