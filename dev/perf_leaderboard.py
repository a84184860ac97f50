"""The leaderboard at scale: wall time and peak memory of ``rnnbench leaderboard`` over generated records.

    python -m dev.perf_leaderboard                     # make bench: the three cases below (~15 min)
    python -m dev.perf_leaderboard --cases 2000x5 --keep /tmp/lb

Records are cloned from the committed ones (one per task x architecture, seed 0), each config a new learning
rate, a number of seeds each, written through ``Store.write_record`` as a finished run writes them (record, then
its summary), into a temporary folder that is removed afterwards. Each size is timed twice in a fresh process:
``cold`` (the summaries deleted first, as after a ``git clone``: every record is parsed whole once) and ``warm``
(the summaries there, the usual case after a sweep). Peak memory is the child's maximum resident set. The goal
(issue 12): warm <= 10 s at 100,000 records, memory flat in the number of records: the cases are 10,000 and
100,000 records at 5 seeds per config (the rows grow with the records), then 100,000 at 50 seeds (the rows
of the first case, ten times the records).
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.store import Store

ROOT = Path(__file__).resolve().parents[1]


def bases(pattern: str = "*__s0__*.json") -> list[dict]:
    """One committed record per (task, architecture label), seed 0."""
    seen, out = set(), []
    for path in sorted((ROOT / "results" / "runs").glob(pattern)):
        rec = json.loads(path.read_text())
        if (rec["task"], rec["arch_label"]) not in seen and rec["status"] == "ok":
            seen.add((rec["task"], rec["arch_label"]))
            out.append(rec)
    return out


def generate(out: Path, configs: int, seeds: int, base: list[dict], short_profiles: bool = False,
             rng: random.Random | None = None) -> dict[tuple[str, str, float], list[float]]:
    """``configs`` x ``seeds`` records under ``out/runs`` cloned from ``base`` in turn, config i at learning rate
    1e-4 * (i + 1) with uniform random test metrics; returns what each row must average:
    (task, arch label, lr) -> test values."""
    rng, store, expected = rng or random.Random(0), Store(out), {}
    for i in range(configs):
        template = base[i % len(base)]
        lr = round(1e-4 * (i + 1), 6)
        for seed in range(seeds):
            rec = json.loads(json.dumps(template))
            rec["config"]["optim"]["lr"], rec["seed"], rec["config"]["seed"] = lr, seed, seed
            rec["id"] = f"{i * seeds + seed:010x}"
            rec["name"] = f"{rec['task']}__{rec['arch_label']}__s{seed}"
            rec["metric"]["test"] = rng.uniform(0.0, 0.2)
            if short_profiles:
                rec["diagnostics"]["profiles"] = {"steps": [0], "flow": [[[1.0, 0.5]]]}
            expected.setdefault((rec["task"], rec["arch_label"], lr), []).append(rec["metric"]["test"])
            store.write_record(rec)
    return expected


def timed_leaderboard(out: Path) -> tuple[float, float]:
    """Wall seconds and peak resident MB of ``python -m bench leaderboard --out out`` in a fresh process."""
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", _CHILD, str(out)], cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"leaderboard failed on {out}: {proc.stderr.strip().splitlines()[-1:]}")
    return wall, float(proc.stdout.strip().splitlines()[-1]) / 1024


# the child reports its own peak (ru_maxrss, KB on Linux), so a parent's earlier children do not count
_CHILD = ("import resource, sys; from bench.cli import main; code = main(['leaderboard', '--out', sys.argv[1]]); "
          "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)")


def measure(n: int, seeds: int, base: list[dict], keep: Path | None = None) -> dict:
    """Generate ``n`` records at ``seeds`` per config, then time the leaderboard cold and warm."""
    folder = keep or Path(tempfile.mkdtemp(prefix="rnnbench-scale-"))
    try:
        started = time.perf_counter()
        generate(folder, n // seeds, seeds, base)
        made = time.perf_counter() - started
        shutil.rmtree(folder / "index")
        cold = timed_leaderboard(folder)  # makes every summary again
        warm = timed_leaderboard(folder)
        rows = sum(1 for line in (folder / "leaderboard.csv").open()) - 1
        return {"records": n, "rows": rows, "generate_s": made, "cold": cold, "warm": warm}
    finally:
        if keep is None:
            shutil.rmtree(folder, ignore_errors=True)


def case(text: str) -> tuple[int, int]:
    """``100000x5`` -> (100000 records, 5 seeds per config)."""
    records, _, seeds = text.partition("x")
    if not (records.isdigit() and seeds.isdigit() and int(seeds) >= 1 and int(records) >= int(seeds)):
        raise argparse.ArgumentTypeError(f"{text!r}: expected RECORDSxSEEDS, e.g. 100000x5")
    return int(records), int(seeds)


CASES = ["10000x5", "100000x5", "100000x50"]  # rows grow with the records; then the rows of the first, 10x the runs


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(prog="python -m dev.perf_leaderboard", description=__doc__.split("\n")[0])
    parser.add_argument("--cases", type=case, nargs="+", default=[case(c) for c in CASES],
                        help=f"RECORDSxSEEDS to measure (rows = records / seeds) [default: {' '.join(CASES)}]")
    parser.add_argument("--keep", type=Path, help="generate into this folder and keep it (one case only)")
    args = parser.parse_args(argv)
    if args.keep is not None and len(args.cases) != 1:
        parser.error("--keep takes one --cases value")
    base = bases()
    print(f"rnnbench leaderboard over generated records ({len(base)} committed records cloned; cold: no summaries, "
          "as after a clone; warm: summaries there, as after a sweep); wall s and peak resident MB of the process")
    print(f"{'records':>8} {'seeds':>5} {'rows':>7} {'cold s':>7} {'cold MB':>8} {'warm s':>7} {'warm MB':>8}")
    results = []
    for n, seeds in args.cases:
        r = measure(n, seeds, base, args.keep)
        print(f"{n:>8,} {seeds:>5} {r['rows']:>7,} {r['cold'][0]:>7.1f} {r['cold'][1]:>8.0f} "
              f"{r['warm'][0]:>7.1f} {r['warm'][1]:>8.0f}", flush=True)
        results.append(r)
    for r in results:
        if r["records"] >= 100_000:
            print(f"goal: warm <= 10 s at {r['records']:,} records ({r['rows']:,} rows): {r['warm'][0]:.1f} s, "
                  f"{'met' if r['warm'][0] <= 10 else 'NOT met'}")
    same_rows = [r for r in results if r["rows"] == results[0]["rows"]]
    if len(same_rows) > 1:
        a, b = same_rows[0], same_rows[-1]
        print(f"memory at {a['rows']:,} rows: {b['records'] / a['records']:.0f}x the records -> "
              f"{b['warm'][1] / a['warm'][1]:.2f}x the peak (warm), {b['cold'][1] / a['cold'][1]:.2f}x (cold)")
    return results


if __name__ == "__main__":
    main()
