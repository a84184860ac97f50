"""Upgrade a results folder's schema-1 records and sweep summaries to what the leaderboard reads without torch.

    python -m bench.dev.migrate results [--check]

Schema 2 records carry ``defaults`` (the default config of their task and architecture) and
``outside_question`` (the fields a leaderboard row ignores), both derived from the field declarations; sweep
summaries carry ``planned_ids`` (the run ids their spec plans). This adds them to older files, from the same
code that writes new ones, and changes nothing else: every other key and value stays as the suite wrote it, and
each record's run id is checked against its resolved config first. ``--check`` only reports what it would do.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..run.config import flatten, resolve
from ..store import Store, read_json
from ..sweeps.plan import plan

ROOT = Path(__file__).resolve().parents[2]


def upgrade_record(rec: dict) -> dict | None:
    """The schema-2 record, or None when ``rec`` has nothing to add."""
    if "defaults" in rec and "outside_question" in rec:
        return None
    cfg = resolve(flatten(rec["config"]), check_machine=False)
    if cfg.run_id != rec["id"]:
        raise SystemExit(f"migrate: {rec['name']}: the resolved config hashes to {cfg.run_id}, not {rec['id']}; "
                         "the declarations changed a run's identity")
    return {**rec, "schema": 2, "defaults": cfg.defaults(), "outside_question": cfg.outside("question")}


def upgrade_summary(summary: dict) -> dict | None:
    if "planned_ids" in summary:
        return None
    spec = ROOT / summary["spec"]
    return {**summary, "planned_ids": sorted(c.run_id for c in plan(spec))}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.dev.migrate", description=__doc__.splitlines()[0])
    p.add_argument("out", type=Path, help="results folder")
    p.add_argument("--check", action="store_true", help="report what would change, write nothing")
    args = p.parse_args(argv)
    store = Store(args.out)
    changed = 0
    for path in store.record_files():
        new = upgrade_record(store.read_record(path))
        if new is not None:
            changed += 1
            if not args.check:
                store.write_json(path, new)
    for path in store.sweep_summaries():
        new = upgrade_summary(read_json(path, "sweep summary"))
        if new is not None:
            changed += 1
            if not args.check:
                store.write_json(path, new)
    print(f"{'would upgrade' if args.check else 'upgraded'} {changed} file(s) in {store.root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
