"""``make bench-sweep``: a sweep's wall time with 1 worker ÷ with 2 workers (goal >= 1.7 on 2 cores).

    python -m dev.perf_sweep [--spec sweeps/default.yaml] [--documents 1,3] [--workers 2]

Each side runs the sweep the way a user does (``python -m bench sweep``, a fresh interpreter, one torch thread
per run, W&B disabled) into a fresh temporary folder, one side after the other. The ratio uses the sweep's
own wall time from ``<out>/sweeps/<spec>.json`` (planning done, from the first run to the last, pool start-up
included); the whole command's time, with interpreter start and the leaderboard, is printed beside it. The
default suite takes ~25 min for both sides on 2 cores; ``--spec sweeps/tiny.yaml`` or ``--documents`` (pick
YAML documents of the spec, 1-based) make a quick check, where start-up weighs more and the ratio is lower.
Other processes on the machine slow either side: run it on an idle machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from bench.sweeps.spec import load_documents

SPEC = Path(__file__).resolve().parents[1] / "sweeps" / "default.yaml"


def subset(spec: Path, documents: str, folder: Path) -> Path:
    """A copy of ``spec`` with only the chosen documents (``"1,3"``), or ``spec`` itself."""
    if not documents:
        return spec
    docs = load_documents(spec)
    picked = [int(d) for d in documents.split(",")]
    if any(not 1 <= d <= len(docs) for d in picked):
        sys.exit(f"--documents: {spec} has documents 1..{len(docs)}, got {documents}")
    path = folder / spec.name
    path.write_text(yaml.safe_dump_all([docs[d - 1] for d in picked], sort_keys=False))
    return path


def timed_sweep(spec: Path, out: Path, workers: int) -> tuple[float, float, int]:
    """(sweep wall time, whole command time, runs) of one uninterrupted sweep into ``out``."""
    cmd = [sys.executable, "-m", "bench", "sweep", str(spec), "--out", str(out), "--workers", str(workers),
           "--wandb", "disabled", "--reference", str(out)]
    started = time.time()
    done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "WANDB_MODE": "disabled"})
    command = time.time() - started
    if done.returncode not in (0, 1):
        sys.exit(f"sweep with {workers} worker(s) exited {done.returncode}:\n"
                 f"{done.stdout[-2000:]}{done.stderr[-2000:]}")
    summary = json.loads((out / "sweeps" / f"{spec.stem}.json").read_text())
    return summary["wall_time_s"], command, summary["ran"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m dev.perf_sweep", description=__doc__.split("\n\n")[0])
    p.add_argument("--spec", type=Path, default=SPEC, help=f"sweep file [default: {SPEC}]")
    p.add_argument("--documents", default="",
                   help="only these YAML documents of the spec, e.g. 1,3 [default: all]")
    p.add_argument("--workers", type=int, default=2, help="the parallel side's workers [default: 2]")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="rnnbench-perf-sweep-") as tmp:
        spec = subset(args.spec, args.documents, Path(tmp))
        print(f"sweep {args.spec}{f' documents {args.documents}' if args.documents else ''}: "
              f"1 worker, then {args.workers} workers, 1 torch thread per run", flush=True)
        times = {}
        for workers in (1, args.workers):
            wall, command, ran = timed_sweep(spec, Path(tmp) / f"w{workers}", workers)
            times[workers] = (wall, command)
            print(f"  {workers} worker(s): {ran} runs, sweep {wall:.1f}s, whole command {command:.1f}s",
                  flush=True)
    (w1, c1), (wn, cn) = times[1], times[args.workers]
    print(f"speed-up 1 -> {args.workers} workers: {w1 / wn:.2f}x (sweep wall time; goal >= 1.7), "
          f"{c1 / cn:.2f}x whole command; {os.cpu_count()} cores")
    return 0


if __name__ == "__main__":
    sys.exit(main())
