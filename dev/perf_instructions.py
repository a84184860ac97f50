"""``make bench-instructions``: a training step of rnnbench against a bare loop's, counted in instructions.

    python -m dev.perf_instructions [--sides offline control] [--steps 20] [--no-cache-sim]

Why. ``make bench`` times sides against a bare loop in wall-clock time, and on this VM that cannot resolve a
few %: a second plain loop that executes the same instructions as the bare loop (to 0.03 %) measured 0.86-1.00
of it. Valgrind's callgrind counts the instructions a process executes, which host noise and memory layout do
not move, and simulates the caches and branch predictor on that stream, which gives a deterministic estimate
of cycles (callgrind's own: Ir + 10 x (L1 misses + branch mispredictions) + 100 x last-level misses).

How. One process per side, under callgrind with instrumentation off until the windows (imports and the first
steps run uninstrumented). At step 40 of the side, the callback turns instrumentation on and runs ``--steps``
bare-loop steps (``perf.HandLoop`` on the side's own core and head, as in ``make bench``), uncounted, to warm
them and the simulated caches (which start empty: a first run put a cold start's last-level misses all on the
bare window, and the side 3 % ahead), then ``--steps`` more that are counted and dumped as "bare", then the
side trains ``--steps`` steps, counted and dumped as "side". Every thread of the
process counts, W&B's too (Lightning's ``WandbLogger``, offline, every 10th per-step row). ``--steps`` is a
multiple of 10, so each window holds its share of those rows.

What it cannot say. Instructions and a cache model are not a clock. Valgrind does not emulate AVX-512, so under
it oneDNN runs its AVX2 kernels, which execute more instructions than the AVX-512 ones a native run uses; the
harness's extra instructions (Python, mostly) are the same either way, so natively their share of a step is
larger than printed here. And a user-space count misses what the kernel does for the process (system calls,
page faults, thread wake-ups) and how slowly the real core runs the interpreter's instructions: on this VM the
harness's extra instructions (1.3 M a step, 1.9 %) cost 0.8-1.1 ms a step natively by ``make bench``'s
measurement on a model too small to matter, where its control reads +0.04 ms, i.e. several times what 1.3 M
instructions would take at one a cycle. So this bench says *which code* the extra is (the interpreter, running
Lightning's and rnnbench's per-step Python) and that it is not the kernels or memory traffic; the clock's
figures of ``make bench`` say what it costs.

It needs valgrind (``callgrind``, ``callgrind_annotate``) and a C compiler with ``valgrind/callgrind.h``, to build
the small helper that marks the windows (``CALLGRIND_*`` client requests). A process takes 15-25 minutes on
this VM (mostly imports under valgrind); the sides run in parallel, one per core.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

SIDES = {"offline": "rnnbench (W&B offline)", "disabled": "rnnbench (W&B disabled)", "lightning": "Lightning alone",
         "control": "plain loop (control)"}
WARM = 40  # side steps before the windows, as make bench's paired processes
HELPER = r"""
#include <valgrind/callgrind.h>
void cg_start(void) { CALLGRIND_START_INSTRUMENTATION; }
void cg_stop(void) { CALLGRIND_STOP_INSTRUMENTATION; }
void cg_zero(void) { CALLGRIND_ZERO_STATS; }
void cg_dump(const char *why) { CALLGRIND_DUMP_STATS_AT(why); }
"""


def missing_tools() -> str | None:
    """What this machine lacks for the bench, in a line, or None."""
    for tool in ("valgrind", "callgrind_annotate", "cc"):
        if shutil.which(tool) is None:
            return f"{tool} is not on PATH"
    probe = subprocess.run(["cc", "-E", "-x", "c", "-"], input="#include <valgrind/callgrind.h>\n",
                           capture_output=True, text=True)
    if probe.returncode:
        return "valgrind/callgrind.h is not found by cc (the valgrind development headers)"
    return None


def build_helper(where: Path) -> Path:
    src, lib = where / "cg.c", where / "libcg.so"
    src.write_text(HELPER)
    subprocess.run(["cc", "-O2", "-shared", "-fPIC", "-o", str(lib), str(src)], check=True)
    return lib


def worker(side: str, steps: int, helper: str) -> None:
    """One side's process, run under callgrind: mark the bare window and the side's window."""
    import lightning as L
    import torch

    from bench.run.train import quiet

    from . import perf

    quiet()
    torch.set_num_threads(1)
    cg = ctypes.CDLL(helper)

    class Windows(L.Callback):
        def __init__(self, clip: float):
            self.clip, self.loop = clip, None

        def on_train_start(self, trainer, pl_module):
            self.loop = perf.HandLoop(pl_module.core, pl_module.head, pl_module.task, lr=0.0, clip=self.clip)

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            step = trainer.global_step
            if step == WARM:
                with torch.enable_grad():
                    # instrumented but not counted: the bare loop's own state and the simulated caches warm up
                    # (instrumentation starts with empty caches, whose misses would all fall on the bare window)
                    cg.cg_start()
                    for _ in range(steps):
                        self.loop.step()
                    cg.cg_zero()
                    for _ in range(steps):
                        self.loop.step()
                cg.cg_dump(b"bare")
            elif step == WARM + steps:
                cg.cg_dump(b"side")
                cg.cg_stop()

    cfg = perf.side_config(WARM + steps + 10)
    perf.run_side(SIDES[side], cfg, Windows(cfg.optim.clip))


EVENTS_CEST = {"L1m": ("I1mr", "D1mr", "D1mw"), "LLm": ("ILmr", "DLmr", "DLmw"), "Bm": ("Bcm", "Bim")}


def totals(dump: str) -> dict[str, int]:
    """A callgrind dump's total of each event (``events:`` names them, ``summary:`` or ``totals:`` counts)."""
    names, counts = None, None
    for line in dump.splitlines():
        if line.startswith("events:"):
            names = line.split()[1:]
        elif line.startswith(("summary:", "totals:")) and counts is None:
            counts = [int(v) for v in line.split()[1:]]
    if names is None or counts is None:
        raise ValueError("not a callgrind dump: no events/summary lines")
    return dict(zip(names, counts + [0] * (len(names) - len(counts)), strict=True))


def cycles(t: dict[str, int]) -> int | None:
    """Callgrind's cycle estimate, Ir + 10 (L1m + Bm) + 100 LLm, where the dump simulated caches and branches."""
    if not all(e in t for group in EVENTS_CEST.values() for e in group):
        return None
    miss = {k: sum(t[e] for e in group) for k, group in EVENTS_CEST.items()}
    return t["Ir"] + 10 * (miss["L1m"] + miss["Bm"]) + 100 * miss["LLm"]


LINE = re.compile(r"^\s*([\d,]+)\s+\(\s*[\d.]+%\)\s+(.+?)\s*$")


def by_object(annotated: str) -> Counter:
    """Self instructions by shared object, from ``callgrind_annotate --inclusive=no`` output. A function line
    names its object in brackets; the lines of code inlined from another file (a header) do not, and take the
    object their function has on its own line. Code with an address for a name is JIT-compiled (oneDNN)."""
    rows, home = [], {}
    for line in annotated.splitlines():
        m = LINE.match(line)
        if not m or m.group(2).startswith("PROGRAM TOTALS"):
            continue
        name = m.group(2)
        obj = re.search(r"\s\[([^\]]+)\]$", name)
        if obj:
            name = name[:obj.start()]
        function = name.rsplit(":", 1)[-1].split("'")[0]
        if re.match(r"\?\?\?:0x[0-9a-f]+$", name):
            key = "JIT code (oneDNN kernels)"
        elif obj and obj.group(1) != "???":
            key = re.sub(r"\.so[.\d]*$", ".so", Path(obj.group(1)).name)
            home.setdefault(function, key)
        else:
            key = None
        rows.append((int(m.group(1).replace(",", "")), function, key))
    out: Counter = Counter()
    for n, function, key in rows:
        out[key or home.get(function, "unknown")] += n
    return out


def annotate(path: Path) -> Counter:
    done = subprocess.run(["callgrind_annotate", "--threshold=100", "--inclusive=no", "--show=Ir", str(path)],
                          capture_output=True, text=True, check=True)
    return by_object(done.stdout)


def run(side: str, steps: int, helper: Path, where: Path, cache_sim: bool) -> dict:
    out = where / f"{side}.out"
    cmd = ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}",
           *(["--cache-sim=yes", "--branch-sim=yes"] if cache_sim else []),
           sys.executable, "-m", "dev.perf_instructions", "--worker", side, "--steps", str(steps),
           "--helper", str(helper)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    dumps = {}
    for path in where.glob(f"{side}.out.*"):  # one file per dump: .1 is "bare", .2 is "side"
        text = path.read_text()
        trigger = re.search(r"^desc: Trigger: Client Request: (bare|side)$", text, re.M)
        if trigger:  # and not the dump at the process's end, empty as instrumentation stopped
            dumps[trigger.group(1)] = path
    if done.returncode or set(dumps) != {"bare", "side"}:
        raise SystemExit(f"perf_instructions: the {SIDES[side]!r} process failed (exit {done.returncode}, dumps "
                         f"{sorted(dumps)}):\n{done.stderr[-3000:]}")
    return {w: {"totals": totals(dumps[w].read_text()), "objects": annotate(dumps[w])} for w in ("bare", "side")}


def report(results: dict[str, dict], steps: int) -> None:
    print(f"per step, over {steps} steps of each (M = millions; make bench's goal, >= 0.95 of the bare loop, is on "
          "the clock: these say which code the difference is, not what it costs natively):")
    cest = all(cycles(r[w]["totals"]) is not None for r in results.values() for w in r)
    head = f"  {'side':<26} {'bare Ir':>8} {'side Ir':>8} {'bare/side':>9}"
    print(head + (f" {'bare cyc':>9} {'side cyc':>9} {'bare/side':>9}  (estimated cycles)" if cest else ""))
    for side, r in results.items():
        b, s = r["bare"]["totals"]["Ir"], r["side"]["totals"]["Ir"]
        row = f"  {SIDES[side]:<26} {b / steps / 1e6:7.2f}M {s / steps / 1e6:7.2f}M {b / s:9.4f}"
        if cest:
            bc, sc = cycles(r["bare"]["totals"]), cycles(r["side"]["totals"])
            row += f" {bc / steps / 1e6:8.2f}M {sc / steps / 1e6:8.2f}M {bc / sc:9.4f}"
        print(row)
    for side, r in results.items():
        bare, ours = r["bare"]["objects"], r["side"]["objects"]
        extra = r["side"]["totals"]["Ir"] - r["bare"]["totals"]["Ir"]
        print(f"where {SIDES[side]}'s extra instructions run, M a step (self cost by object, bare and side; "
              f"{extra / steps / 1e6:+.3f}M in all):")
        for obj in sorted(set(bare) | set(ours), key=lambda o: -abs(ours[o] - bare[o]))[:6]:
            print(f"  {obj:<34} {bare[obj] / steps / 1e6:8.3f} {ours[obj] / steps / 1e6:8.3f} "
                  f"{(ours[obj] - bare[obj]) / steps / 1e6:+8.3f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sides", nargs="+", choices=sorted(SIDES), default=["offline", "control"],
                        help="which sides to count [default: offline control]; all four: offline disabled "
                             "lightning control")
    parser.add_argument("--steps", type=int, default=20, help="steps in each counted window (a multiple of 10)")
    parser.add_argument("--no-cache-sim", dest="cache_sim", action="store_false",
                        help="count instructions only (faster); without it caches and branches are simulated too")
    parser.add_argument("--worker", choices=sorted(SIDES), help=argparse.SUPPRESS)
    parser.add_argument("--helper", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.steps <= 0 or args.steps % 10:
        print(f"perf_instructions: --steps must be a positive multiple of 10 (the W&B row cadence), not "
              f"{args.steps}", file=sys.stderr)
        return 2
    if args.worker:
        worker(args.worker, args.steps, args.helper)
        return 0
    lacking = missing_tools()
    if lacking:
        print(f"perf_instructions: needs valgrind, callgrind_annotate and a C compiler with "
              f"valgrind/callgrind.h; {lacking}", file=sys.stderr)
        return 2
    from bench.run.records import provenance

    p = provenance()
    print(f"LSTM on adding (make bench's config), counted under callgrind; torch {p['torch']}, 1 thread, {p['cpu']}")
    with tempfile.TemporaryDirectory() as tmp:
        where = Path(tmp)
        helper = build_helper(where)
        with ThreadPoolExecutor(max_workers=max(1, min(len(args.sides), os.cpu_count() or 1))) as pool:
            futures = {s: pool.submit(run, s, args.steps, helper, where, args.cache_sim) for s in args.sides}
            results = {s: f.result() for s, f in futures.items()}
    report(results, args.steps)
    return 0


if __name__ == "__main__":
    sys.exit(main())
