"""``make chaos``: SIGKILL a sweep at random moments, resume it each time, and check that nothing was lost.

    python -m bench.chaos [--spec sweeps/chaos.yaml] [--kills 5] [--workers 2] [--seed 0] [--keep DIR]

First the sweep runs uninterrupted into one folder (the reference; its timing tells where to aim the kills).
Then the same sweep starts in a second folder and its whole process group (the sweep and its pool workers) is
SIGKILLed at a random moment while runs are training, ``--kills`` times, resuming each time, and a last resume
finishes it. Checks, printed as one line each:

- lost: planned runs without a complete record at the end, or records that vanished between resumes;
- duplicated: runs trained twice (a record file replaced by a new one: each write is a rename, a new inode),
  and records the plan does not know;
- stray temp files left under ``runs/`` and records that do not parse;
- identical: the leaderboard rows, every column but wall time and commit (a ``+dirty`` flag can change while
  others edit the tree), and each run's status, steps and metrics, bit for bit (CPU runs at equal thread
  counts are bit-reproducible).

Exits 1 on any loss, duplication, stray file or difference.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

from . import leaderboard, records
from .sweep import plan

SPEC = Path(__file__).resolve().parent.parent / "sweeps" / "chaos.yaml"


def launch(spec: Path, out: Path, workers: int, log: Path) -> subprocess.Popen:
    """The sweep as a user runs it, in its own process group so one signal reaches every worker."""
    cmd = [sys.executable, "-m", "bench", "sweep", str(spec), "--out", str(out), "--workers", str(workers),
           "--wandb", "disabled", "--reference", str(out)]
    env = {**os.environ, "WANDB_MODE": "disabled"}
    with open(log, "a") as f:
        return subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, start_new_session=True, env=env)


def reference_run(spec: Path, out: Path, workers: int, log: Path) -> float:
    """Run the sweep uninterrupted; returns its total seconds."""
    start = time.time()
    proc = launch(spec, out, workers, log)
    if proc.wait() not in (0, 1):  # 1: some run failed, which is data
        sys.exit(f"chaos: the uninterrupted sweep exited {proc.returncode}; see {log}")
    return time.time() - start


def training(out: Path) -> bool:
    """Whether a worker holds a run's lock, i.e. is training. Read from /proc/locks: taking a lock to test it
    would make a worker skip that run."""
    locks = Path("/proc/locks")
    if not locks.exists():
        return bool(snapshot(out))
    inodes = {p.stat().st_ino for p in (out / "locks").glob("*.lock") if p.stem != "leaderboard"} \
        if (out / "locks").is_dir() else set()
    held = {int(f[5].rsplit(":", 1)[1]) for f in (line.split() for line in locks.read_text().splitlines())
            if len(f) > 5 and f[1] == "FLOCK"}  # "1: FLOCK ADVISORY WRITE <pid> <maj>:<min>:<inode> 0 EOF"
    return bool(inodes & held)


def wait_for_training(proc: subprocess.Popen, out: Path, timeout: float = 600) -> float:
    """Seconds from now until ``proc``'s workers train (or it exits): imports and pool start-up vary a lot
    on a busy machine, so kills are aimed from there."""
    start = time.time()
    while proc.poll() is None and not training(out) and time.time() - start < timeout:
        time.sleep(0.05)
    return time.time() - start


def kill_group(proc: subprocess.Popen) -> None:
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.time() + 5  # pool workers die with the group; give the kernel a moment to reap them
    while time.time() < deadline:
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)


def snapshot(out: Path) -> dict[str, int]:
    """Record id -> inode: a run trained again replaces its record by rename, so its inode changes."""
    runs = out / "runs"
    return {p.stem.rsplit("__", 1)[-1]: p.stat().st_ino for p in runs.glob("*.json")} if runs.is_dir() else {}


def compare_snapshots(before: dict[str, int], after: dict[str, int]) -> tuple[set[str], set[str]]:
    lost = {i for i in before if i not in after}
    rewritten = {i for i in before if i in after and after[i] != before[i]}
    return lost, rewritten


def board(out: Path) -> str:
    """Leaderboard rows with the columns that must match (all but wall time and commit), as JSON so that
    NaN compares equal to NaN."""
    rows = leaderboard.build_rows(records.load_all(out))
    return json.dumps([{k: v for k, v in asdict(r).items() if k not in ("wall_time_s", "commits")} for r in rows])


def results_by_id(out: Path) -> str:
    return json.dumps({r["id"]: [r["status"], r["steps"], r["metric"], r["grad_norm_preclip"]]
                       for r in records.load_all(out)}, sort_keys=True)


def chaos(spec: Path, kills: int, workers: int, seed: int, work: Path) -> dict:
    planned = {c.run_id for c in plan(spec)}
    ref, out, logs = work / "uninterrupted", work / "killed", work / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    total = reference_run(spec, ref, workers, logs / "uninterrupted.log")
    print(f"chaos: {spec}, {len(planned)} runs on {workers} worker(s); uninterrupted sweep {total:.0f}s",
          flush=True)
    rng = random.Random(seed)
    wall = {r["id"]: r["wall_time_s"] for r in records.load_all(ref)}
    lost, rewritten, landed, attempt, before = set(), set(), 0, 0, {}
    while landed < kills and len(snapshot(out).keys() & planned) < len(planned):
        attempt += 1
        # A random moment within the training still to do (the reference says how long each run takes).
        left = sum(wall.get(i, 0.0) for i in planned - snapshot(out).keys()) / workers
        proc = launch(spec, out, workers, logs / f"attempt{attempt}.log")
        startup, delay = wait_for_training(proc, out), rng.uniform(0.0, 0.8) * left
        time.sleep(delay)
        if proc.poll() is None:
            kill_group(proc)
            landed += 1
        after = snapshot(out)
        lost_now, rewritten_now = compare_snapshots(before, after)
        lost, rewritten, before = lost | lost_now, rewritten | rewritten_now, after
        when = f"{startup:.1f}s start-up + {delay:.1f}s"
        print(f"kill {landed} at {when}: {len(after)}/{len(planned)} recorded" if proc.returncode == -9
              else f"attempt {attempt} finished before its kill at {when}", flush=True)
    proc = launch(spec, out, workers, logs / "final.log")
    proc.wait()
    lost_now, rewritten_now = compare_snapshots(before, snapshot(out))
    return verdict(out, ref, planned, landed, lost | lost_now, rewritten | rewritten_now)


def verdict(out: Path, ref: Path, planned: set[str], kills: int, vanished: set[str], rewritten: set[str]) -> dict:
    final = snapshot(out)
    stray = [p for folder in ("runs", "checkpoints") for p in (out / folder).glob("*.tmp*")]
    try:
        same = board(out) == board(ref) and results_by_id(out) == results_by_id(ref)
        unreadable = False
    except (ValueError, KeyError):  # a record that does not parse is itself a failure
        same, unreadable = False, True
    return {"kills": kills, "lost": len(vanished | (planned - final.keys())),
            "duplicated": len(rewritten) + len(final.keys() - planned), "stray": len(stray),
            "unreadable": unreadable, "identical": same}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.chaos", description=__doc__.split("\n\n")[0])
    p.add_argument("--spec", type=Path, default=SPEC, help=f"sweep file [default: {SPEC}]")
    p.add_argument("--kills", type=int, default=5, help="SIGKILLs to land [default: 5]")
    p.add_argument("--workers", type=int, default=2, help="sweep workers [default: 2]")
    p.add_argument("--seed", type=int, default=0, help="seed of the kill moments [default: 0]")
    p.add_argument("--keep", type=Path, default=None, help="work in this folder and keep it [default: a temp dir]")
    args = p.parse_args(argv)
    if args.keep is not None:
        result = chaos(args.spec, args.kills, args.workers, args.seed, args.keep)
    else:
        with tempfile.TemporaryDirectory(prefix="rnnbench-chaos-") as tmp:
            result = chaos(args.spec, args.kills, args.workers, args.seed, Path(tmp))
    print(f"kills: {result['kills']}  lost: {result['lost']}  duplicated: {result['duplicated']}  "
          f"stray temp files: {result['stray']}  leaderboard identical: {'yes' if result['identical'] else 'no'}"
          + ("  (unreadable records)" if result["unreadable"] else ""))
    bad = result["lost"] or result["duplicated"] or result["stray"] or not result["identical"]
    if result["kills"] < args.kills:
        print(f"note: only {result['kills']} of {args.kills} kills landed before the sweep finished; "
              "a longer --spec gives them more room")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
