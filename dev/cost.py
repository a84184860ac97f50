"""What a GPU suite would cost on this CPU: seconds per optimizer step of each of its models, measured.

    python -m dev.cost [sweeps/anchors_gpu.yaml] [--out results] [--steps 5]

For every configuration of the sweep file (its first seed), the model is built exactly as a run builds it
(``bench.run.system.build``), then timed over ``--steps`` optimizer steps (after one warm-up) on synthetic inputs
of the run's batch and sequence length: forward, backward, pre-clip norm clipping and the optimizer step, one
torch thread (as the suite's CPU runs). Inputs are random because the cost of a recurrent step does not depend
on the values, and so the measurement needs no dataset download (sequential MNIST's files may be absent).
Diagnostics and evaluation are not included, so a real run costs somewhat more. Composed models (translate,
caption, ...) are skipped with a line: their cost depends on data-dependent lengths.

Writes ``<out>/cost/<spec stem>.json``: per configuration its dotted overrides, seconds per step, the steps the
sweep gives it and what that budget would take here, with the machine's provenance and its load average while
measuring (other processes inflate the figure; the record says how busy the machine was). results/REPRODUCTION.md
shows the figure beside the pending rows it prices.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

import tasks
from bench.run.config import resolve
from bench.run.records import provenance
from bench.run.system import build
from bench.store import Store
from bench.sweeps.spec import expand_file
from tasks.composed import ComposedTask


def synthetic_batch(task, batch: int, length: int) -> torch.Tensor:
    """Random inputs of the width the core reads, (B, T, D)."""
    return torch.rand(batch, length, task.input_size)


def seconds_per_step(overrides: dict, steps: int) -> float:
    cfg = resolve(overrides, check_machine=False)
    torch.manual_seed(0)
    task, system = build(cfg)
    length = getattr(cfg.task, "seq_len", None) or task.seq_len
    x = synthetic_batch(task, cfg.task.batch_size, length)
    opt = torch.optim.Adam(system.parameters(), lr=cfg.optim.lr)
    times = []
    for i in range(steps + 1):
        started = time.perf_counter()
        y, _ = system.core(x)
        pred = system.head(task.readout(y, system.core.directions))
        pred.float().pow(2).mean().backward()
        if cfg.optim.clip > 0:
            torch.nn.utils.clip_grad_norm_(system.parameters(), cfg.optim.clip)
        opt.step()
        opt.zero_grad()
        if i:  # the first step warms the allocator and kernels up
            times.append(time.perf_counter() - started)
    return sorted(times)[len(times) // 2]


def measure(spec: Path, steps: int) -> list[dict]:
    seen, out = set(), []
    for doc, overrides in expand_file(spec):
        key = json.dumps({k: v for k, v in overrides.items() if k != "seed"}, sort_keys=True)
        if key in seen:
            continue
        seen.add(key)
        if issubclass(tasks.get(overrides["task.name"]), ComposedTask):
            print(f"{overrides['task.name']}: skipped (a composed model; this probe times recurrent cores on "
                  "sequence tasks)", flush=True)
            continue
        s = round(seconds_per_step(overrides, steps), 4)  # the hours below are this figure's, as recorded
        budget = int(overrides.get("train.max_steps", 1000))
        out.append({"document": doc, "dotted": overrides, "s_per_step": s, "budget_steps": budget,
                    "budget_hours": round(s * budget / 3600, 3)})
        print(f"{overrides.get('task.name')} {overrides.get('arch.name')} "
              f"{ {k: v for k, v in overrides.items() if k.startswith('task.') and k != 'task.name'} }: "
              f"{s:.3f} s/step -> {s * budget / 3600:.2f} h for {budget} steps", flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m dev.cost", description=__doc__.splitlines()[0])
    p.add_argument("spec", type=Path, nargs="?", default=Path("sweeps/anchors_gpu.yaml"))
    p.add_argument("--out", type=Path, default=Path("results"))
    p.add_argument("--steps", type=int, default=5, help="timed optimizer steps per configuration (>= 1)")
    args = p.parse_args(argv)
    if args.steps < 1:
        p.error(f"--steps must be >= 1, got {args.steps}")
    torch.set_num_threads(1)
    load_before = os.getloadavg()[0]
    rows = measure(args.spec, args.steps)
    store = Store(args.out)
    path = store.write_json(args.out / "cost" / f"{args.spec.stem}.json", {
        "spec": str(args.spec), "what": "median seconds per optimizer step (forward, backward, clip, step) on "
                                         "synthetic inputs, 1 torch thread, no diagnostics or evaluation",
        "steps_timed": args.steps, "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "configs": rows, "provenance": {**provenance(), "torch_threads": 1}})
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
