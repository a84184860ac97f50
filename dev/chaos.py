"""``make chaos``: SIGKILL a sweep all along its run, inside record and checkpoint writes too, resume it each
time, and check that nothing was lost, trained twice or changed.

    python -m dev.chaos [--spec sweeps/chaos.yaml] [--kills 5] [--write-kills 2] [--write-pause 0.3]
                              [--workers 2] [--seed 0] [--keep DIR]

First the sweep runs uninterrupted into one folder: the reference, and a timeline (its duration D, its
start-up until a worker trains, and when each record appeared). The kill moments are planned on that timeline,
one drawn uniformly in each of ``--kills`` equal slices of [0, D), so kills land in start-up, early, midway and
late training and in the wrap-up (summary, leaderboard), not only in the first seconds. Then the same sweep
starts in a second folder and its whole process group (the sweep and its pool workers) is SIGKILLed at each
moment in turn, resuming each time; a last resume finishes it. A resumed sweep replays the start-up, then
stands where the reference stood when it held as many records (``Clock``: progress moves it, not wall time,
which another load on the machine stretches); ``t`` below is that position.

``--write-kills`` of those moments (never in the last slice, which may hold no write) aim inside a write: that
attempt runs with ``RNNBENCH_WRITE_PAUSE`` (each write holds its ``<file>.tmp<pid>`` that long before the
rename; the content is unchanged) and, from its moment on, dies as soon as one of its processes is writing a
record, then a checkpoint, then a metrics file. The reference and the last resume run without the pause.

Each kill prints where it landed (start-up, training, between runs, inside which write, wrap-up), the records
just before it, right after it and after the resume that followed, and ``clean`` unless a record vanished or
was rewritten across it. Then the checks, on one line:

- lost: planned runs without a complete record at the end, or records that vanished between resumes;
- duplicated: runs trained twice (a record file replaced by a new one: each write is a rename, a new inode),
  and records the plan does not know;
- stray temp files left under ``runs/`` or ``checkpoints/`` (a killed write's must be cleared by the resume that
  takes its run's lock), and records that do not parse;
- identical: the leaderboard rows, every column but wall time and commit (a ``+dirty`` flag can change while
  others edit the tree), and each run's status, steps and metrics, bit for bit (CPU runs at equal thread
  counts are bit-reproducible).

Exits 1 on any loss, duplication, stray file or difference.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from bench.reports import leaderboard
from bench.store import Store
from bench.sweeps.plan import plan

SPEC = Path(__file__).resolve().parents[1] / "sweeps" / "chaos.yaml"
PAUSE_VAR = "RNNBENCH_WRITE_PAUSE"
WRITES = ("record", "checkpoint", "metrics")  # the writes of a run a write kill aims at, in turn
POLL = 0.01  # seconds between looks at the folder: well inside a paused write


# ---- the sweep under test -----------------------------------------------------------------------------------
def launch(spec: Path, out: Path, workers: int, log: Path, pause: float = 0.0) -> subprocess.Popen:
    """The sweep as a user runs it, in its own process group so one signal reaches every worker; ``pause``
    holds each write open that long (0: not at all, whatever the caller's environment says)."""
    cmd = [sys.executable, "-m", "bench", "sweep", str(spec), "--out", str(out), "--workers", str(workers),
           "--wandb", "disabled", "--reference", str(out)]
    env = {k: v for k, v in os.environ.items() if k != PAUSE_VAR} | {"WANDB_MODE": "disabled"}
    if pause:
        env[PAUSE_VAR] = str(pause)
    with open(log, "a") as f:
        return subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, start_new_session=True, env=env)


@dataclass
class Timeline:
    """The uninterrupted sweep: its seconds, its start-up (until a worker trains) and when each record appeared."""

    total: float
    startup: float
    records: list[float]

    def at(self, recorded: int) -> float:
        """Where a resumed sweep holding ``recorded`` records stands once its workers train."""
        if not recorded or not self.records:
            return self.startup
        return max(self.startup, self.records[min(recorded, len(self.records)) - 1])


def reference_run(spec: Path, out: Path, workers: int, log: Path) -> Timeline:
    """Run the sweep uninterrupted and unpaused (its timing is the kills' map)."""
    start = time.time()
    proc = launch(spec, out, workers, log)
    while proc.poll() is None and not training(out):
        time.sleep(POLL)
    startup = time.time() - start
    if proc.wait() not in (0, 1):  # 1: some run failed, which is data
        sys.exit(f"chaos: the uninterrupted sweep exited {proc.returncode}; see {log}")
    # A record is renamed into place whole, so its mtime is when it appeared.
    appeared = sorted(max(0.0, p.stat().st_mtime - start) for p in Store(out).record_files())
    return Timeline(time.time() - start, startup, appeared)


def kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()
    deadline = time.time() + 5  # pool workers die with the group; give the kernel a moment to reap them
    while time.time() < deadline:
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)


# ---- looking at the folder without disturbing it --------------------------------------------------------------
def snapshot(out: Path) -> dict[str, int]:
    """Record id -> inode: a run trained again replaces its record by rename, so its inode changes."""
    return {Store.id_of(p): p.stat().st_ino for p in Store(out).record_files()}


def compare_snapshots(before: dict[str, int], after: dict[str, int]) -> tuple[set[str], set[str]]:
    lost = {i for i in before if i not in after}
    rewritten = {i for i in before if i in after and after[i] != before[i]}
    return lost, rewritten


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


def write_kind(tmp: Path) -> str:
    """What a ``<file>.tmp<pid>`` is the temporary file of."""
    name = tmp.name.rsplit(".tmp", 1)[0]
    for suffix, kind in ((".ckpt", "checkpoint"), (".metrics.csv.xz", "metrics"), (".metrics.csv.gz", "metrics"),
                         (".json", "record")):
        if name.endswith(suffix):
            return kind
    return "other"


def live_writes(out: Path, group: int) -> list[Path]:
    """Temporary files that a process of ``group`` is writing now. A killed writer's stay behind until a resume
    takes their run's lock: their pid is dead, so they are not writes in progress."""
    found = []
    for tmp in Store(out).temp_files():
        pid = tmp.name.rsplit(".tmp", 1)[-1]
        try:
            if pid.isdigit() and os.getpgid(int(pid)) == group:
                found.append(tmp)
        except ProcessLookupError:
            pass
    return found


def where(out: Path, group: int, planned: set[str], seen_training: bool, aimed: str | None) -> str:
    """What a kill at this instant interrupts."""
    writes = sorted(live_writes(out, group), key=lambda t: write_kind(t) != aimed)  # the aimed-at kind first
    if writes:
        return f"inside a {write_kind(writes[0])} write ({writes[0].relative_to(out)})"
    if training(out):
        return "during training"
    if not seen_training:
        return "during start-up"
    return "during wrap-up (summary, leaderboard)" if planned <= snapshot(out).keys() else "between runs"


# ---- the kills -----------------------------------------------------------------------------------------------
@dataclass
class Aim:
    at: float                  # seconds into the reference's timeline
    write: str | None = None   # from ``at`` on, wait for a write of this kind; None: kill at ``at``

    def __str__(self) -> str:
        return f"{self.at:.1f}s" + (f" ({self.write} write)" if self.write else "")


def plan_kills(kills: int, write_kills: int, total: float, rng: random.Random) -> list[Aim]:
    """One moment drawn uniformly in each of ``kills`` equal slices of [0, total), so early, middle and late
    moments all get kills; ``write_kills`` of them, in slices drawn at random, aim inside a write. The last
    slice gets one only when every slice must: after its moment the sweep may have no write left to do."""
    aims = [Aim(total * (i + rng.random()) / kills) for i in range(kills)]
    write_kills = min(write_kills, kills)
    chosen = sorted(rng.sample(range(max(kills - 1, write_kills)), write_kills))
    for i, kind in zip(chosen, itertools.cycle(WRITES)):
        aims[i].write = kind
    return aims


@dataclass
class Kill:
    aim: Aim
    at: float                  # where it landed on the reference's timeline
    landed: str
    before: dict[str, int]     # snapshots: just before the kill, right after it, after the resume that followed
    after: dict[str, int]
    resumed: dict[str, int] | None = None

    def problems(self) -> tuple[set[str], set[str]]:
        """Records that vanished or were rewritten from just before this kill to the end of its resume."""
        lost, rewritten = compare_snapshots(self.before, self.after)
        lost_then, rewritten_then = compare_snapshots(self.after, self.resumed or {})
        return lost | lost_then, rewritten | rewritten_then

    def line(self, number: int, kills: int, total: float, planned: int) -> str:
        lost, rewritten = self.problems()
        verdict = "clean" if not (lost or rewritten) else f"LOST {len(lost)}, REWRITTEN {len(rewritten)}"
        aimed = f"aimed inside a {self.aim.write} write" if self.aim.write else "aimed at a uniform moment"
        return (f"kill {number}/{kills} at t={self.at:.1f}s of {total:.0f}s ({aimed}): {self.landed}; "
                f"records {len(self.before)} before, {len(self.after)} right after, "
                f"{len(self.resumed or {})}/{planned} after the resume; {verdict}")


class Clock:
    """Where an attempt stands on the reference's timeline. Every attempt replays the start-up, counted from its
    launch. From when its workers first train, it is where the reference was when it held as many records, plus
    the seconds since its last record appeared, up to the reference's next record: progress, not wall time,
    moves it, since a machine shared with other work can run the same runs at half or twice the pace. Once
    every record is in, the wrap-up (summary, leaderboard) counts on from the reference's last record."""

    def __init__(self, out: Path, planned: set[str], timeline: Timeline):
        self.out, self.planned, self.timeline = out, planned, timeline
        self.launched, self.trains_since, self.since = time.time(), None, 0.0
        self.recorded = len(Store(out).record_files())

    def read(self) -> float:
        now = time.time()
        if self.trains_since is None:
            if not training(self.out):
                return now - self.launched
            self.trains_since = self.since = now
        recorded = len(Store(self.out).record_files())
        if recorded != self.recorded:
            self.recorded, self.since = recorded, now
        position = self.timeline.at(recorded) + now - self.since
        return position if recorded >= len(self.planned) else min(position, self.timeline.at(recorded + 1))

    def reached(self, at: float) -> bool:
        """Whether the attempt is at ``at`` or past it. A start-up moment counts from launch, and is reached at
        the latest when this attempt's own (maybe shorter) start-up ends, so that no kill is skipped."""
        position = self.read()
        if at < self.timeline.startup:
            return self.trains_since is not None or position >= at
        return self.trains_since is not None and position >= at


def strike(proc: subprocess.Popen, out: Path, planned: set[str], aim: Aim, at: float, clock: Clock) -> Kill | None:
    """Kill ``proc``'s group at ``at`` on the timeline or, aiming inside a write, at its first write of that kind
    from then on; None if the sweep finished first."""
    while proc.poll() is None:
        if clock.reached(at) and (aim.write is None
                                  or any(write_kind(t) == aim.write for t in live_writes(out, proc.pid))):
            break
        time.sleep(POLL)
    else:
        return None
    position, before = clock.read(), snapshot(out)
    landed = where(out, proc.pid, planned, clock.trains_since is not None, aim.write)
    kill_group(proc)
    if proc.returncode != -signal.SIGKILL:  # it exited on its own in the last instant
        return None
    return Kill(aim, position, landed, before, snapshot(out))


def chaos(spec: Path, kills: int, workers: int, seed: int, work: Path, write_kills: int = 2,
          pause: float = 0.3) -> dict:
    planned = {c.run_id for c in plan(spec)}
    ref, out, logs = work / "uninterrupted", work / "killed", work / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    timeline = reference_run(spec, ref, workers, logs / "uninterrupted.log")
    rng = random.Random(seed)
    aims = plan_kills(kills, write_kills, timeline.total, rng)
    print(f"chaos: {spec}, {len(planned)} runs on {workers} worker(s); uninterrupted sweep {timeline.total:.0f}s: "
          f"start-up {timeline.startup:.0f}s, records from {timeline.at(1):.0f}s to {timeline.at(len(planned)):.0f}s"
          f"\nkill moments: {', '.join(map(str, aims))}", flush=True)
    done: list[Kill] = []
    attempt = 0
    while aims and not planned <= snapshot(out).keys():
        attempt += 1
        resumes_at = timeline.at(len(snapshot(out)))
        at = aims[0].at
        if timeline.startup <= at <= resumes_at:  # the records are past this moment already: draw a later one
            at = rng.uniform(resumes_at, timeline.total)
        proc = launch(spec, out, workers, logs / f"attempt{attempt}.log", pause if aims[0].write else 0.0)
        kill = strike(proc, out, planned, aims[0], at, Clock(out, planned, timeline))
        if done and done[-1].resumed is None:
            done[-1].resumed = snapshot(out)
            print(done[-1].line(len(done), kills, timeline.total, len(planned)), flush=True)
        if kill is None:
            if proc.returncode not in (0, 1):
                sys.exit(f"chaos: attempt {attempt} exited {proc.returncode}; see {logs / f'attempt{attempt}.log'}")
            print(f"attempt {attempt} finished before its kill at t={aims[0]}", flush=True)
            break
        aims.pop(0)
        done.append(kill)
    last = snapshot(out)
    launch(spec, out, workers, logs / "final.log").wait()
    final = snapshot(out)
    if done and done[-1].resumed is None:
        done[-1].resumed = final
        print(done[-1].line(len(done), kills, timeline.total, len(planned)), flush=True)
    vanished, rewritten = compare_snapshots(last, final)
    for kill in done:
        lost_here, rewritten_here = kill.problems()
        vanished, rewritten = vanished | lost_here, rewritten | rewritten_here
    result = verdict(out, ref, planned, vanished, rewritten)
    return result | {"kills": len(done), "in_writes": sum(k.landed.startswith("inside") for k in done)}


def verdict(out: Path, ref: Path, planned: set[str], vanished: set[str], rewritten: set[str]) -> dict:
    final = snapshot(out)
    try:
        same = board(out) == board(ref) and results_by_id(out) == results_by_id(ref)
        unreadable = False
    except (ValueError, KeyError):  # a record that does not parse is itself a failure
        same, unreadable = False, True
    return {"lost": len(vanished | (planned - final.keys())),
            "duplicated": len(rewritten) + len(final.keys() - planned), "stray": len(Store(out).temp_files()),
            "unreadable": unreadable, "identical": same}


def board(out: Path) -> str:
    """Leaderboard rows with the columns that must match (all but wall time and commit), as JSON so that
    NaN compares equal to NaN."""
    rows = leaderboard.build_rows(Store(out).records().records)
    return json.dumps([{k: v for k, v in asdict(r).items() if k not in ("wall_time_s", "commits")} for r in rows])


def results_by_id(out: Path) -> str:
    return json.dumps({r["id"]: [r["status"], r["steps"], r["metric"], r["grad_norm_preclip"]]
                       for r in Store(out).records().records}, sort_keys=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m dev.chaos", description=__doc__.split("\n\n")[0])
    p.add_argument("--spec", type=Path, default=SPEC, help=f"sweep file [default: {SPEC}]")
    p.add_argument("--kills", type=int, default=5, help="SIGKILLs to land, write kills included [default: 5]")
    p.add_argument("--write-kills", type=int, default=2,
                   help="of those, how many aim inside a record, then checkpoint, then metrics write [default: 2]")
    p.add_argument("--write-pause", type=float, default=0.3,
                   help=f"seconds each write stays open in a write kill's attempt ({PAUSE_VAR}) [default: 0.3]")
    p.add_argument("--workers", type=int, default=2, help="sweep workers [default: 2]")
    p.add_argument("--seed", type=int, default=0, help="seed of the kill moments [default: 0]")
    p.add_argument("--keep", type=Path, default=None, help="work in this folder and keep it [default: a temp dir]")
    args = p.parse_args(argv)
    if args.kills < 1 or args.write_kills < 0 or args.write_pause <= 0:
        p.error("--kills must be >= 1, --write-kills >= 0 and --write-pause > 0")
    run = (args.spec, args.kills, args.workers, args.seed)
    options = {"write_kills": args.write_kills, "pause": args.write_pause}
    if args.keep is not None:
        result = chaos(*run, args.keep, **options)
    else:
        with tempfile.TemporaryDirectory(prefix="rnnbench-chaos-") as tmp:
            result = chaos(*run, Path(tmp), **options)
    print(f"kills: {result['kills']} ({result['in_writes']} inside a write)  lost: {result['lost']}  "
          f"duplicated: {result['duplicated']}  stray temp files: {result['stray']}  "
          f"leaderboard identical: {'yes' if result['identical'] else 'no'}"
          + ("  (unreadable records)" if result["unreadable"] else ""))
    if result["kills"] < args.kills:
        print(f"note: only {result['kills']} of {args.kills} kills landed before the sweep finished; "
              "a longer --spec gives them more room")
    bad = result["lost"] or result["duplicated"] or result["stray"] or not result["identical"]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
