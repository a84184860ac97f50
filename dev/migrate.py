"""Upgrade a results folder in place: old records and sweep summaries to what the leaderboard reads, metrics to gzip.

    python -m dev.migrate results [--check]

Schema 2 records carry ``defaults`` (the default config of their task and architecture) and
``outside_question`` (the fields a leaderboard row ignores), both derived from the field declarations; sweep
summaries carry ``planned_ids`` (the run ids their spec plans). This adds them to older files, from the same
code that writes new ones, and changes nothing else: every other key and value stays as the suite wrote it, and
each record's run id is checked against its resolved config first. ``--check`` only reports what it would do.

Records written before the verdict split (bench/diag/verdict.py) lack ``diagnostics.events.spikes``, the count
of steps over 1000x the median pre-clip norm: it is counted from the run's own metrics file (``grad/total``, one
row per optimizer step), after checking that file's step count and largest norm match the record's.

Records written before the store compressed metrics name a plain ``<name>__<id>.metrics.csv``: a CSV row per
training step, most of results/'s bytes. Each one found is replaced by its deterministic gzip
(``gzip_in``, 2.7x smaller, the same bytes once decompressed, which is checked before the CSV goes), so
results/ stays lean as the reference grows; the record changes only in ``metrics_file``. The gzip is written
before the record, and the CSV removed after it, so a migration killed in between is finished by the next one.

A tuned sweep's Optuna journal (``studies/<spec>.journal``) written before the driver loaded its studies instead of
creating them with ``load_if_exists`` holds a create-study line per reopening, a no-op that every replay reads
again. Each one after its study's first is dropped (``compact_journal``), once replaying the compacted journal is
checked to give every study and trial as before. Readers of a journal keep byte offsets into it, so this runs only
while no run of the store is training (its run locks free).
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import math
import shutil
import sys
from pathlib import Path

from bench.diag.verdict import spikes
from bench.run.config import flatten, resolve
from bench.store import Store, atomic, file_lock, open_metrics, read_json
from bench.sweeps.plan import plan

ROOT = Path(__file__).resolve().parents[1]


def upgrade_record(rec: dict) -> dict | None:
    """The schema-2 record, or None when ``rec`` has nothing to add."""
    if "defaults" in rec and "outside_question" in rec:
        return None
    cfg = resolve(flatten(rec["config"]), check_machine=False)
    if cfg.run_id != rec["id"]:
        raise SystemExit(f"migrate: {rec['name']}: the resolved config hashes to {cfg.run_id}, not {rec['id']}; "
                         "the declarations changed a run's identity")
    return {**rec, "schema": 2, "defaults": cfg.defaults(), "outside_question": cfg.outside("question")}


def logged_norms(store: Store, rec: dict) -> list[float]:
    """The per-step pre-clip total norms a run logged, checked against its record's summary of them."""
    with open_metrics(store.runs / rec["metrics_file"]) as f:
        norms = [float(row["grad/total"]) for row in csv.DictReader(f) if row.get("grad/total")]
    g = rec["grad_norm_preclip"]
    if len(norms) != g["steps"] or (norms and not math.isclose(max(norms), g["max"], rel_tol=1e-6)):
        raise SystemExit(f"migrate: {rec['name']}: its metrics file logs {len(norms)} norms (max {max(norms, default=0)}),"
                         f" its record {g['steps']} (max {g['max']}); not counting spikes from it")
    return norms


def add_spikes(store: Store, rec: dict) -> dict | None:
    """The record with ``diagnostics.events.spikes`` counted from its metrics file, or None when it has them."""
    events = (rec.get("diagnostics") or {}).get("events")
    if events is None or "spikes" in events:
        return None
    diagnostics = {**rec["diagnostics"], "events": {**events, "spikes": spikes(logged_norms(store, rec))}}
    return {**rec, "diagnostics": diagnostics}


def gzip_metrics(store: Store, rec: dict, write: bool) -> dict | None:
    """The record naming the gzip of its plain metrics CSV (written here, with ``write``), or None when it names
    no plain CSV that exists."""
    name = rec.get("metrics_file")
    if not name or not name.endswith(".metrics.csv") or not (store.runs / name).is_file():
        return None
    if write:
        gzip_in(store, store.runs / name, store.runs / f"{name}.gz")
    return {**rec, "metrics_file": f"{name}.gz"}


def gzip_in(store: Store, source: Path, path: Path) -> Path:
    """``path``: the gzip of ``source``'s bytes, the same bytes for the same input (header time 0, no name). The
    store now writes xz (``Store.compress_in``); a migrated plain CSV keeps Lightning's bytes, checked below."""
    with store.atomic(path) as tmp, open(source, "rb") as src, open(tmp, "wb") as f, \
            gzip.GzipFile(filename="", mode="wb", fileobj=f, mtime=0) as z:
        shutil.copyfileobj(src, z)
    return Path(path)


def remove_plain_metrics(store: Store, rec: dict) -> None:
    """Remove the plain CSV beside the gzip that ``rec`` names, once the gzip is checked to hold its bytes."""
    name = rec.get("metrics_file")
    if not name or not name.endswith(".metrics.csv.gz"):
        return
    plain, packed = store.runs / name.removesuffix(".gz"), store.runs / name
    if not plain.is_file() or not packed.is_file():
        return
    if gzip.decompress(packed.read_bytes()) != plain.read_bytes():
        raise SystemExit(f"migrate: {packed} does not decompress to {plain.name}; keeping both")
    plain.unlink()


def upgrade_summary(summary: dict) -> dict | None:
    if "planned_ids" in summary:
        return None
    spec = ROOT / summary["spec"]
    return {**summary, "planned_ids": sorted(c.run_id for c in plan(spec))}


CREATE_STUDY, DELETE_STUDY = 0, 1  # optuna.storages.journal's JournalOperation values


def compact_journal(path: Path) -> bytes | None:
    """``path``'s journal without the create-study lines of studies already created, or None when it has none;
    checked by replaying both."""
    lines, kept = path.read_bytes().splitlines(keepends=True), []
    names: dict[int, str] = {}  # the studies as a replay holds them: id (numbered as created) -> name
    created = 0
    for line in lines:
        try:
            log = json.loads(line)
        except ValueError:  # a line a killed writer left half written: Optuna's reader skips it, and so does this
            kept.append(line)
            continue
        if log.get("op_code") == CREATE_STUDY:
            if log["study_name"] in names.values():
                continue  # a no-op in a replay
            names[created], created = log["study_name"], created + 1
        elif log.get("op_code") == DELETE_STUDY:
            names.pop(log["study_id"], None)  # its name may be created again
        kept.append(line)
    if len(kept) == len(lines):
        return None
    data = b"".join(kept)
    compacted = path.with_name(f"{path.name}.compacted")
    try:
        compacted.write_bytes(data)
        if replayed(compacted) != replayed(path):
            raise SystemExit(f"migrate: {path}: the compacted journal replays differently; left as it is")
    finally:
        compacted.unlink(missing_ok=True)
    return data


def replayed(path: Path) -> list:
    """Every study in the journal ``path`` and each trial's number, state, parameters, values and attributes."""
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    storage = JournalStorage(JournalFileBackend(str(path)))
    return [(s.study_name, [(t.number, t.state, t.params, t.values, t.intermediate_values, t.user_attrs,
                             t.system_attrs) for t in optuna.load_study(study_name=s.study_name, storage=storage).trials])
            for s in storage.get_all_studies()]


def training(store: Store) -> list[str]:
    """The run ids whose lock another process holds: a run training now."""
    held = []
    for lock in sorted((store.root / "locks").glob("*.lock")):
        with file_lock(lock) as mine:
            if not mine:
                held.append(lock.stem)
    return held


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m dev.migrate", description=__doc__.splitlines()[0])
    p.add_argument("out", type=Path, help="results folder")
    p.add_argument("--check", action="store_true", help="report what would change, write nothing")
    args = p.parse_args(argv)
    store = Store(args.out)
    journals = sorted((store.root / "studies").glob("*.journal"))
    if journals and not args.check and (busy := training(store)):  # before any work: nothing half done
        raise SystemExit(f"migrate: {len(busy)} run(s) are training in {store.root} (run {busy[0]}): stop the "
                         "sweep first; a journal's readers keep byte offsets into it")
    changed = 0
    for path in store.record_files():
        rec = store.read_record(path)
        new = upgrade_record(rec)
        new = add_spikes(store, new or rec) or new
        new = gzip_metrics(store, new or rec, write=not args.check) or new
        if new is not None:
            changed += 1
            if not args.check:
                store.write_json(path, new)
        if not args.check:
            remove_plain_metrics(store, new or rec)
    for path in store.sweep_summaries():
        new = upgrade_summary(read_json(path, "sweep summary"))
        if new is not None:
            changed += 1
            if not args.check:
                store.write_json(path, new)
    for path in journals:
        data = compact_journal(path)
        if data is not None:
            changed += 1
            if not args.check:
                with atomic(path) as tmp:
                    tmp.write_bytes(data)
    print(f"{'would upgrade' if args.check else 'upgraded'} {changed} file(s) in {store.root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
