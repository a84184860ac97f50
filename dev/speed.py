"""``make bench-speed`` (and the end of ``make bench``): training steps per second of every registered family, its
fast path against its step-by-step reference path and against ``torch.nn.GRU`` of the same hidden size.

    python -m dev.speed [--device cpu|cuda] [--seq-lens 100 1000] [--hidden 64] [--batch 32] [--families ...]
                        [--quick] [--out results-local/bench]

A training step is what a run does with the core: forward over the whole sequence (the fast path ``core(x)``, or
``core.forward_reference(x)``, which the equivalence tests prove equal to it), the MSE of a linear head on every
output, backward, an Adam step. The fast path is the family's fused torch kernel, its parallel scan, or, for a
family with neither, its cell step by step, which *is* the reference path (both columns then time the same code,
and their ratio shows the noise). A family whose scan is slower than its loop on a CPU sets ``scan_on_cpu =
False`` from this table, and its CPU runs take the loop; its fast column still times the scan. ``nn.GRU`` is the yardstick every row is divided by: the one kernel every
reader knows, at the same batch, hidden size and input.

How it is timed. A shared machine drifts within seconds, so the three sides of a row alternate: every round times
one block of each (the order rotated each round), a block long enough (``--block`` seconds) for the clock to
resolve it, and a ratio is the median of the per-round ratios. Each side first warms up (kernels chosen, buffers
allocated). The number of rounds follows from the row's ``--budget``, between ``--min-rounds`` and
``--max-rounds``, so the slow reference path at T = 1000 gets few rounds and the whole table stays bounded.

Writes ``speed-<device>.json`` (provenance: git SHA, torch, threads, CPU or GPU model; settings; every block's
seconds a step) and ``speed-<device>.md``, the table generated from that record, under ``--out``; prints the table.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import torch
from torch import nn

import architectures
from architectures.base import RecurrentCore
from bench.cli import THREADS, Parser, ranged
from bench.run.records import provenance
from bench.store import atomic, folder_problem

SIDES = ("fast", "reference", "nn.GRU")
POSITIVE = ranged(int, ge=1, le=1_000_000)
SECONDS = ranged(float, ge=0, le=3600)


def fast_path(core: RecurrentCore, device: str = "cpu") -> str:
    """What the fast column times, in words: the fused kernel, the scan, or the cell loop. A family that keeps its
    scan off a CPU (``scan_on_cpu = False``: its CPU runs take the cell loop, the reference column) still has
    its scan timed here, since this table is what that flag is set from."""
    if core.fused_cls is not None:
        return f"nn.{core.fused_cls.__name__}"
    if type(core).scan is not RecurrentCore.scan:
        return "parallel scan" + ("" if core.scan_on_cpu or device != "cpu" else " (CPU runs: cell loop)")
    return "cell loop (= reference)"


def trainer(core: nn.Module, forward: Callable, x: torch.Tensor, target: torch.Tensor) -> Callable[[], None]:
    """One training step of ``core`` through ``forward(x) -> y (B, T, H)``, with its own head and Adam."""
    head = nn.Linear(core.hidden_size, 1).to(x.device)  # one layer, one direction: every side's y is (B, T, H)
    opt = torch.optim.Adam([*core.parameters(), *head.parameters()], lr=1e-4)

    def step() -> None:
        loss = nn.functional.mse_loss(head(forward(x)), target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def sides(name: str, args, steps: int) -> tuple[str, dict[str, Callable[[], None]]]:
    """The fast path's kind and the three sides' training steps for family ``name`` at T = ``steps``; fast and
    reference train the same core (one module, two paths), nn.GRU its own."""
    torch.manual_seed(0)
    device = torch.device(args.device)
    e = architectures.entry(name)
    core = architectures.build(name, args.input, replace(e.default_config(), hidden_size=args.hidden)).to(device)
    gru = nn.GRU(args.input, args.hidden, batch_first=True).to(device)
    x = torch.randn(args.batch, steps, args.input, device=device)
    target = torch.randn(args.batch, steps, 1, device=device)
    kind = fast_path(core, device.type)
    core.scan_on_cpu = True  # the fast column times the scan wherever the family has one (``fast_path``)
    return kind, {
        "fast": trainer(core, lambda v: core(v)[0], x, target),
        "reference": trainer(core, lambda v: core.forward_reference(v)[0], x, target),
        "nn.GRU": trainer(gru, lambda v: gru(v)[0], x, target),
    }


def timed(step: Callable[[], None], n: int, sync: Callable[[], None]) -> float:
    """Seconds a step over a block of ``n`` steps."""
    sync()
    start = time.perf_counter()
    for _ in range(n):
        step()
    sync()
    return (time.perf_counter() - start) / n


def measure(steps: dict[str, Callable[[], None]], args, sync: Callable[[], None]) -> dict[str, list[float]]:
    """Warm each side up, then alternate blocks of the sides in rounds: side -> seconds a step, one per round."""
    estimate = {}
    for side, step in steps.items():
        spent, done = 0.0, 0
        while done < args.warmup and (done == 0 or spent < args.block * args.warmup):
            estimate[side] = timed(step, 1, sync)
            spent, done = spent + estimate[side], done + 1
    block = {side: max(1, round(args.block / max(estimate[side], 1e-9))) for side in steps}
    per_round = sum(block[side] * estimate[side] for side in steps)
    rounds = max(args.min_rounds, min(args.max_rounds, int(args.budget / per_round)))
    out = {side: [] for side in steps}
    order = list(steps)
    for r in range(rounds):
        for side in order[r % len(order):] + order[:r % len(order)]:
            out[side].append(timed(steps[side], block[side], sync))
    return out


def run(args) -> dict:
    """The whole record: provenance, settings and one row per family and sequence length."""
    torch.set_num_threads(args.threads)
    made = provenance()  # before timing: the commit that ran, should another land meanwhile
    sync = torch.cuda.synchronize if args.device == "cuda" else (lambda: None)
    rows = []
    for steps in args.seq_lens:
        for name in args.families:
            kind, fns = sides(name, args, steps)
            seconds = measure(fns, args, sync)
            rows.append({"family": name, "fast_path": kind, "T": steps, "seconds": seconds})
            print(f"  {name} T={steps}: " + ", ".join(
                f"{side} {1 / statistics.median(s):.2f}/s" for side, s in seconds.items()), flush=True)
    settings = {k: getattr(args, k) for k in ("device", "hidden", "batch", "input", "threads", "warmup", "block",
                                              "budget", "min_rounds", "max_rounds", "quick")}
    return {"what": "training steps per second", "settings": settings, "provenance": made, "rows": rows}


def spread(seconds: list[float]) -> str:
    rates = [1 / s for s in seconds]
    return f"{statistics.median(rates):.3g} ({min(rates):.3g}–{max(rates):.3g})"


def ratio(a: list[float], b: list[float]) -> str:
    """Median over rounds of (b's seconds a step / a's): how many times a's speed is b's."""
    return f"{statistics.median(y / x for x, y in zip(a, b, strict=True)):.3g}"


def table(record: dict) -> str:
    """The Markdown table of a record (``run``'s), with its settings and provenance above it."""
    s, p = record["settings"], record["provenance"]
    where = p["gpu"] if s["device"] == "cuda" else f"{p['cpu']}, {s['threads']} thread(s)"
    cuda = f", CUDA {p['cuda']}, cuDNN {p['cudnn']}" if s["device"] == "cuda" else ""
    lines = [
        f"Training steps per second on {s['device']} ({where}): forward over the sequence, MSE of a linear head on "
        f"every output, backward, Adam. Batch {s['batch']}, hidden {s['hidden']}, input {s['input']}, one layer, "
        f"float32. Median over rounds (min–max); ratios are medians of per-round ratios, the three sides "
        f"alternating within each round.",
        "",
        f"torch {p['torch']}{cuda}, git {p['git_sha'][:12]}{' (dirty)' if p['git_dirty'] else ''}, "
        f"{p['platform']}{', quick mode' if s['quick'] else ''}; every block's timing in the JSON record beside.",
        "",
        "| family | fast path | T | rounds | fast steps/s | reference steps/s | nn.GRU steps/s | fast ÷ nn.GRU "
        "| reference ÷ nn.GRU | fast ÷ reference |",
        "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for row in record["rows"]:
        t = row["seconds"]
        lines.append(f"| {row['family']} | {row['fast_path']} | {row['T']} | {len(t['fast'])} | {spread(t['fast'])} "
                     f"| {spread(t['reference'])} | {spread(t['nn.GRU'])} | {ratio(t['fast'], t['nn.GRU'])} "
                     f"| {ratio(t['reference'], t['nn.GRU'])} | {ratio(t['fast'], t['reference'])} |")
    return "\n".join(lines) + "\n"


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = Parser(prog="python -m dev.speed", description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"), help="[default: cpu]")
    parser.add_argument("--seq-lens", type=POSITIVE, nargs="+", default=[100, 1000], help="[default: 100 1000]")
    parser.add_argument("--families", nargs="+", default=architectures.names(), metavar="NAME",
                        help="registered architectures [default: all]")
    parser.add_argument("--hidden", type=POSITIVE, default=64, help="hidden size, every side [default: 64]")
    parser.add_argument("--batch", type=POSITIVE, default=32, help="[default: 32]")
    parser.add_argument("--input", type=POSITIVE, default=2, help="input width, as the adding task's [default: 2]")
    parser.add_argument("--threads", type=THREADS, default=1,
                        help="torch threads [default: 1, as every sweep run trains]")
    parser.add_argument("--warmup", type=POSITIVE, default=3, help="warm-up steps a side, fewer where one step "
                        "outlasts --block [default: 3]")
    parser.add_argument("--block", type=SECONDS, default=0.25, help="seconds a timed block aims at [default: 0.25]")
    parser.add_argument("--budget", type=SECONDS, default=15.0,
                        help="seconds of timed rounds a row aims at [default: 15]")
    parser.add_argument("--min-rounds", type=POSITIVE, default=3, help="[default: 3]")
    parser.add_argument("--max-rounds", type=POSITIVE, default=9, help="[default: 9]")
    parser.add_argument("--quick", action="store_true", help="one warm-up step, two rounds of one step: for tests")
    parser.add_argument("--out", type=Path, default=Path("results-local/bench"),
                        help="folder for speed-<device>.json and .md [default: results-local/bench]")
    args = parser.parse_args(argv)
    unknown = [n for n in args.families if n not in architectures.names()]
    if unknown:
        parser.error(f"unknown architecture {unknown[0]!r}; valid: {', '.join(architectures.names())}")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: no CUDA device is available here; valid: cpu")
    if args.min_rounds > args.max_rounds:
        parser.error(f"--min-rounds {args.min_rounds} exceeds --max-rounds {args.max_rounds}")
    if problem := folder_problem(args.out):
        parser.error(f"--out {problem}")
    if args.quick:
        args.warmup, args.block, args.budget, args.min_rounds, args.max_rounds = 1, 0.0, 0.0, 2, 2
    return args


def main(argv: list[str] | None = None) -> dict:
    args = parse(argv)
    print(f"speed: {len(args.families)} families x T in {args.seq_lens} on {args.device}", flush=True)
    record = run(args)
    text = table(record)
    stem = args.out / f"speed-{args.device}"
    with atomic(stem.with_suffix(".json")) as tmp:
        tmp.write_text(json.dumps(record, indent=1) + "\n")
    with atomic(stem.with_suffix(".md")) as tmp:
        tmp.write_text(text)
    print(text + f"written: {stem}.md, {stem}.json")
    return record


if __name__ == "__main__":
    main()
