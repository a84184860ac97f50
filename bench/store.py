"""The results store: the one owner of an output folder's layout, its atomic writes and its lookups.

    store = Store("results-local")
    store.record_path(name, run_id)        # <out>/runs/<name>__<id>.json
    store.write_json(path, record)         # temporary file, then rename: never half a file
    loaded = store.records()               # every readable record; unreadable ones named in loaded.skipped

Layout of ``<out>``:

    runs/<name>__<id>.json             the run record, the truth behind every number
    runs/<name>__<id>.metrics.csv.xz   its per-step metrics (older stores: .metrics.csv.gz or .metrics.csv;
                                       open_metrics reads all three)
    runs/<name>__<id>.samples.jsonl    text sampled from it (char-LM runs)
    index/<name>__<id>.json            its summary: the record without the diagnostics' profiles (git-ignored)
    checkpoints/<name>__<id>/          its Lightning checkpoints, best.ckpt and last.ckpt (git-ignored)
    units/<name>__<id>.{html,png,json} its interpretable-units page (char-LM runs)
    sweeps/<spec>.json                 how long a sweep invocation took, on what
    locks/<id>.lock                    held while a process trains that run (flock: dropped when it dies)
    ray/                               an interrupted Ray Tune experiment, until it finishes
    LEADERBOARD.md, leaderboard.csv, flow_<section>.png, TUNED.md   generated from the records
    studies/<spec>.journal, <spec>.json  the tuned protocol's Optuna studies and their summary (sweeps/tune.py)

Every write goes to ``<file>.tmp<pid>`` and is renamed over the file, so a killed process leaves a complete old
file or a complete new one, never half of either. The temporary file it leaves is cleared by the next process
that writes into that folder, once the pid is gone and the file has not changed for a minute (the holder of a
run's lock clears the run's own at once). ``RNNBENCH_WRITE_PAUSE`` (seconds; chaos tests only) holds each write between the temporary file and the
rename, so a kill can be aimed inside one. The module imports no torch: the leaderboard and the sweep planner
read the store without it.

A run's per-step metrics are most of a store's bytes (a CSV row per training step), so they are kept small:
``compress_in`` writes each float32 value (the losses, metrics and total norms torch computes in float32) in the
shortest text that reads back to the same float32, where Lightning's CSV writer gave it the 17 digits of a
float64, and compresses the file with xz (LZMA). Over 60 committed runs that is 0.66 of gzipping Lightning's file
as it was (0.86 of it from xz alone): every float64 value is written as it was, and each float32 one is the
same float32 when read back. The bytes depend only on the input (xz's container holds no time or name), so the
same run gives the same bytes, resumed or not. Files written before this (``.metrics.csv.gz``, Lightning's bytes
gzipped) stay as they are: rewriting them would add their bytes to git's history a second time.

A summary (``summarize``) is the record less what only a picture draws (flow profiles, the final spectra,
attention maps): a tenth of its size, and all that the leaderboard, the reproduction table and the README
read, so ``summaries()`` streams 100,000 runs in seconds, through one pack file (``index/pack-v<N>.tsv``). A
summary notes the size and modification time of the record it was made from; one that does not match (a record
rewritten, edited, or checked out by git) is made again from the record, so a summary never speaks for a record
it was not made from. The summaries are a cache: a damaged one is one warning and made again from its record.

What readers read of a record is checked once, by ``read_record`` and every summary's reading, against the one
schema (bench/run/schema.py): a record that lacks a field or holds it with the wrong type is named and skipped.
"""

from __future__ import annotations

import csv
import fcntl
import io
import json
import lzma
import os
import re
import shutil
import struct
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from options import ConfigError

from .run import schema
from .run.schema import Metrics, open_metrics  # noqa: F401 (the store's readers: bench.store.open_metrics)

try:
    from orjson import loads as _fast_loads
except ImportError:  # outside the lock: json alone, slower
    _fast_loads = None

RECORD_SUFFIX = ".json"
METRICS_SUFFIX = ".metrics.csv.xz"
OLDER_METRICS = (".metrics.csv.gz", ".metrics.csv")  # what older stores wrote: still read, replaced on a rerun
SUMMARY = "summary"  # a summary's own field: what it was made from, and what the record holds for the pictures
SUMMARY_VERSION = 1  # bump when ``summarize`` keeps something else: every summary is made again
HEAVY = ("profiles", "final", "attention")  # diagnostics only a picture draws


class RecordError(ConfigError):
    """A file the suite reads is not what it should be (not text, not JSON, cut short); names the file."""


def short_float32(cell: str) -> str:
    """A CSV cell holding a float32 value (as a float64's 17 digits: ``0.7312911748886108``) in the fewest digits
    that read back to that float32 (``0.7312912``); any other cell (an integer, a float64, text) as it is."""
    if "." not in cell and "e" not in cell:
        return cell
    try:
        value = float(cell)
        if _float32(value) != value:
            return cell
    except (ValueError, OverflowError):  # text, or beyond float32's range
        return cell
    for digits in range(1, 10):  # 9 significant digits tell every float32 apart
        short = f"{value:.{digits}g}"
        if _float32(float(short)) == value:
            return short if len(short) < len(cell) and ("." in short or "e" in short) else cell
    return cell


def _float32(value: float) -> float:
    return struct.unpack("f", struct.pack("f", value))[0]


def stem(name: str, run_id: str) -> str:
    return f"{name}__{run_id}"


def loads(data: bytes):
    """JSON bytes -> value: orjson where it can (3x faster), json where it refuses (NaN, which a diverged run may
    record; or a broken file, whose error json describes)."""
    if _fast_loads is not None:
        try:
            return _fast_loads(data)
        except ValueError:
            pass
    return json.loads(data)


def read_json(path: Path, what: str = "record") -> dict:
    """Parse ``path`` or raise one line naming the file and what is wrong with it."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise RecordError(f"{what} {path}: cannot be read ({exc.strerror or exc})") from None
    if _fast_loads is not None:
        try:
            value = _fast_loads(data)
        except ValueError:
            pass  # json below says what is wrong, or reads what orjson refuses (NaN)
        else:
            if isinstance(value, dict):
                return value
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise RecordError(f"{what} {path}: not UTF-8 text") from None
    if not text.strip():
        raise RecordError(f"{what} {path}: empty") from None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        # The suite's JSON files end with their closing bracket, and a file cut short runs out before the parser
        # is done: its error is at the very end (a cut can land just after an inner bracket).
        body = text.rstrip()
        cut = not body.endswith(("}", "]")) or exc.pos >= len(body)
        raise RecordError(f"{what} {path}: {'cut short' if cut else 'not valid JSON'} "
                          f"(line {exc.lineno}, column {exc.colno})") from None
    if not isinstance(value, dict):
        raise RecordError(f"{what} {path}: not a JSON object")
    return value


@dataclass
class Loaded:
    """What ``Store.records`` found: readable records, sorted by name and id, and one line per skipped file."""

    records: list[dict] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)


def checked(record: dict, path: Path | str) -> dict:
    """``record`` (read from ``path``) when it holds every field a reader reads, with its type (the one schema,
    bench/run/schema.py); else RecordError, one line naming the file and the field."""
    missing = schema.missing_identity(record)
    if missing is not None:
        raise RecordError(f"record {path}: no {missing!r} field (not a run record, or cut short)")
    problem = schema.problem(record, schema.RECORD)
    if problem is not None:
        raise RecordError(f"record {path}: {problem} (not a run record, or edited by hand)")
    return record


def _fits(summary) -> bool:
    """Whether a cached summary is one a reader can use: its record's fields, and what it adds."""
    return (isinstance(summary, dict) and schema.missing_identity(summary) is None
            and schema.problem(summary, schema.SUMMARY) is None and schema.problem(summary, schema.RECORD) is None)


def _rebuilt(cache: Path | str, what: str) -> None:
    """The one line a damaged cache costs: it is made again from the records, nothing is lost."""
    print(f"warning: {cache}: {what}; made again from the records (a cache: nothing is lost)", file=sys.stderr)


def summarize(record: dict, made_from: os.stat_result) -> dict:
    """The record less its diagnostics' HEAVY parts (a composed model's cores too); ``made_from``: the record
    file's stat, which the summary must match to be used."""
    d = record.get("diagnostics")
    out = dict(record)
    if isinstance(d, dict) and d:
        slim = {k: v for k, v in d.items() if k not in HEAVY}
        if isinstance(d.get("cores"), dict):
            slim["cores"] = {role: {k: v for k, v in core.items() if k not in HEAVY} if isinstance(core, dict) else core
                             for role, core in d["cores"].items()}
        out["diagnostics"] = slim
    out[SUMMARY] = {"version": SUMMARY_VERSION, "size": made_from.st_size, "mtime_ns": made_from.st_mtime_ns,
                    "flow": has_flow(record), "attention": has_attention(record)}
    return out


def folder_problem(folder: Path) -> str | None:
    """What would stop a write into ``folder`` (made if missing), one line; None if nothing: a path that does not
    resolve (a symlink loop), a broken link or a file where a folder should be, a folder not writable."""
    try:
        Path(folder).resolve()
    except (OSError, RuntimeError):  # Python raises RuntimeError on a symlink loop
        return f"{folder} does not resolve (a symlink loop)"
    nearest = Path(folder).absolute()
    while not nearest.exists():
        if nearest.is_symlink():
            return f"{nearest} is a broken link"
        nearest = nearest.parent
    if not nearest.is_dir():
        return f"{nearest} is a file, not a folder"
    if not os.access(nearest, os.W_OK | os.X_OK):
        return f"cannot write in {nearest}"
    return None


def standing(record: dict) -> str:
    """A record's (or summary's) status as a resume reads it: ``killed`` for a run whose worker was killed under
    it (recorded ``failed``; nothing about the run failed, so a resume trains it again), else its status."""
    return "killed" if record.get("killed") else record["status"]


def has_flow(rec: dict) -> bool:
    """Whether a record (or its summary) holds a flow profile to draw."""
    if SUMMARY in rec:
        return rec[SUMMARY]["flow"]
    return bool(((rec.get("diagnostics") or {}).get("profiles") or {}).get("flow"))


def has_attention(rec: dict) -> bool:
    """Whether a record (or its summary) holds an attention map to draw."""
    if SUMMARY in rec:
        return rec[SUMMARY]["attention"]
    return bool((rec.get("diagnostics") or {}).get("attention"))


def _summary_of(path: str, made_from: os.stat_result) -> dict | None:
    """The summary at ``path`` when it was made from a file with this stat, else None."""
    try:
        with open(path, "rb") as f:
            summary = loads(f.read())
        made = summary[SUMMARY]
        if (made["version"], made["size"], made["mtime_ns"]) != (SUMMARY_VERSION, made_from.st_size,
                                                                 made_from.st_mtime_ns):
            return None  # stale: made from another version of the record
    except OSError:
        return None  # none yet
    except (ValueError, KeyError, TypeError):
        _rebuilt(path, "a damaged summary (not JSON, or not one)")
        return None
    if not _fits(summary):
        _rebuilt(path, "a damaged summary (a field missing or of the wrong type)")
        return None
    return summary


PACK = f"pack-v{SUMMARY_VERSION}.tsv"  # a new summary version starts a new pack


def _pack_line(file: str, made_from: os.stat_result, summary: dict) -> bytes:
    return f"{file}\t{made_from.st_size}\t{made_from.st_mtime_ns}\t".encode() + _dumps_line(summary) + b"\n"


def _dumps_line(value: dict) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()  # one line: JSON escapes newlines


def _order(file: str) -> list[str]:
    """A record file's place: (name, id), as ``record_names`` sorts."""
    return file[: -len(RECORD_SUFFIX)].rsplit("__", 1)


class _Pack:
    """The pack being read, walked alongside the sorted record files. ``line(file, stat)`` is the file's line
    when it still matches the record. ``changed`` turns true at the first difference (a line for a record gone,
    a line that no longer matches, a record without one); ``rewrite`` then opens a new pack holding every line
    before that point, for the caller to go on writing."""

    def __init__(self, path: Path):
        self.path, self.done, self.kept, self.before, self.changed = path, 0, 0, 0, False
        try:
            self.f = open(path, "rb")
        except OSError:
            self.f = None
        self.next = self._read()

    def _read(self) -> bytes | None:
        if self.f is None:
            return None
        line = self.f.readline()
        if line and not line.endswith(b"\n"):  # cut short: the pack is only a cache
            line = b""
        return line or None

    def line(self, file: str, made_from: os.stat_result) -> bytes | None:
        key, name = _order(file), file.encode()
        while self.next is not None and self.next.split(b"\t", 1)[0] != name \
                and _order(self.next.split(b"\t", 1)[0].decode("utf-8", "replace")) < key:
            self.changed = True  # a record gone
            self._advance()
        if self.next is None or self.next.split(b"\t", 1)[0] != name:
            return None
        fields, line = self.next.split(b"\t", 3), self.next
        self._advance()
        if len(fields) == 4 and fields[1:3] == [str(made_from.st_size).encode(), str(made_from.st_mtime_ns).encode()]:
            self.before = self.kept
            if not self.changed:
                self.kept = self.done  # every line so far stays as it is
            return line
        self.changed = True  # the record changed since
        return None

    def reject(self) -> None:
        """The line ``line`` just returned is damaged inside (its record matches, its summary does not read): it
        is not kept, and the pack is rewritten from it."""
        self.kept, self.changed = self.before, True

    def _advance(self) -> None:
        self.done += len(self.next)
        self.next = self._read()

    def left(self) -> bool:
        return self.next is not None

    def rewrite(self):
        """A new pack (a temporary file beside the old) with the old one's lines before the first change."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        new = open(self.path.with_name(f"{self.path.name}.tmp{os.getpid()}"), "wb")
        if self.kept:
            with open(self.path, "rb") as old:
                shutil.copyfileobj(_Limited(old, self.kept), new)
        return new

    def close(self) -> None:
        if self.f is not None:
            self.f.close()


def _summary_in(line: bytes) -> dict | None:
    """The summary a pack line holds, or None where it is damaged (not JSON, or not a summary)."""
    try:
        summary = loads(line.split(b"\t", 3)[3])
    except (ValueError, IndexError):
        return None
    return summary if _fits(summary) else None


def _opened(old: _Pack):
    """``old.rewrite()``, or None where the index cannot be written (a read-only store): it is only a cache."""
    try:
        return old.rewrite()
    except OSError:
        return None


class _Limited:
    """The first ``n`` bytes of a file, for copyfileobj."""

    def __init__(self, f, n: int):
        self.f, self.n = f, n

    def read(self, size: int = -1) -> bytes:
        size = self.n if size < 0 else min(size, self.n)
        data = self.f.read(size)
        self.n -= len(data)
        return data


def dumps(data, indent: str = "") -> str:
    """``json.dumps(data, indent=2, sort_keys=True)``, except that a list of scalars stays on one line: a record's
    flow profiles (lists of per-timestep ratios, most of its bytes) then read as rows, in about 0.6 of the bytes,
    instead of one number per line."""
    inner = indent + "  "
    if isinstance(data, dict) and data:
        items = (f"{inner}{json.dumps(k)}: {dumps(v, inner)}" for k, v in sorted(data.items()))
        return "{\n" + ",\n".join(items) + f"\n{indent}}}"
    if isinstance(data, (list, tuple)) and any(isinstance(v, (dict, list, tuple)) for v in data):
        return "[\n" + ",\n".join(inner + dumps(v, inner) for v in data) + f"\n{indent}]"
    return json.dumps(data)


class Store:
    def __init__(self, root: str | Path):
        self.root = Path(root)
        # the runs' metrics CSVs as the reports read them; the damaged ones met, named in ``metrics.skipped``
        self.metrics = Metrics(self.root / "runs")

    def __repr__(self) -> str:
        return f"Store({str(self.root)!r})"

    # ---- layout -------------------------------------------------------------------------------------------
    @property
    def runs(self) -> Path:
        return self.root / "runs"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def ray(self) -> Path:
        return self.root / "ray"

    def record_path(self, name: str, run_id: str) -> Path:
        return self.runs / (stem(name, run_id) + RECORD_SUFFIX)

    def summary_path(self, name: str, run_id: str) -> Path:
        return self.root / "index" / (stem(name, run_id) + RECORD_SUFFIX)

    def metrics_path(self, name: str, run_id: str) -> Path:
        return self.runs / (stem(name, run_id) + METRICS_SUFFIX)

    def samples_path(self, name: str, run_id: str) -> Path:
        return self.runs / f"{stem(name, run_id)}.samples.jsonl"

    def checkpoint_dir(self, name: str, run_id: str) -> Path:
        """A run's Lightning checkpoints (``best.ckpt``, ``last.ckpt``) and, while it trains, its per-step log."""
        return self.checkpoints / stem(name, run_id)

    def units_path(self, name: str, run_id: str, suffix: str) -> Path:
        return self.root / "units" / f"{stem(name, run_id)}{suffix}"

    def decoded_path(self, name: str, run_id: str, suffix: str) -> Path:
        return self.root / "decode" / f"{stem(name, run_id)}{suffix}"

    def lock_path(self, key: str) -> Path:
        return self.root / "locks" / f"{key}.lock"

    def sweep_summary_path(self, spec: str | Path) -> Path:
        return self.root / "sweeps" / f"{Path(spec).stem}.json"

    def sweep_summaries(self) -> list[Path]:
        folder = self.root / "sweeps"
        return sorted(folder.glob("*.json")) if folder.is_dir() else []

    def check_writable(self, name: str | None = None, run_id: str | None = None, sweep: bool = False) -> None:
        """Refuse, in one ConfigError line, a store a run (``name``, ``run_id``) or a sweep could not write into,
        before any work: found after training, it would lose the run. The summaries (``index/``) are left out: a
        store that cannot hold them still works."""
        folders = [self.root, self.runs, self.checkpoints]
        if name is not None:
            folders += [self.checkpoint_dir(name, run_id), self.record_path(name, run_id).parent,
                        self.metrics_path(name, run_id).parent, self.samples_path(name, run_id).parent]
        if sweep:
            folders += [self.lock_path("any").parent, self.sweep_summary_path("any").parent]
        for folder in dict.fromkeys(folders):
            problem = folder_problem(folder)
            if problem is not None:
                raise ConfigError(problem)

    # ---- atomic writes --------------------------------------------------------------------------------------
    def atomic(self, path: Path):
        return atomic(path)

    def write_text(self, path: Path, text: str) -> Path:
        with self.atomic(path) as tmp:
            tmp.write_text(text, encoding="utf-8")
        return Path(path)

    def write_bytes(self, path: Path, data: bytes) -> Path:
        with self.atomic(path) as tmp:
            tmp.write_bytes(data)
        return Path(path)

    def write_texts(self, texts: dict[Path, str]) -> None:
        """Files that belong together (a command's outputs): each is written in full beside its target first,
        and only then are they renamed over their files, so a write that fails (a full disk) leaves every one of
        them as it was. Temporary files a killed writer left of these names go first."""
        with ExitStack() as stack:
            for path, text in texts.items():
                self.remove_orphaned_temp_files(path)
                stack.enter_context(self.atomic(path)).write_text(text, encoding="utf-8")

    def write_json(self, path: Path, data: dict) -> Path:
        return self.write_text(path, dumps(data) + "\n")

    def write_record(self, record: dict) -> Path:
        """The run record, then its summary. The old summary goes first, so a process killed in between leaves
        a record without one (made again when read), never a summary of another record."""
        path = self.record_path(record["name"], record["id"])
        summary = self.summary_path(record["name"], record["id"])
        summary.unlink(missing_ok=True)
        self.write_json(path, record)
        self._write_summary(summary, summarize(record, os.stat(path)))
        return path

    def _write_summary(self, path: Path, summary: dict) -> None:
        try:
            self.write_text(path, json.dumps(summary, sort_keys=True, separators=(",", ":")))
        except OSError:
            pass  # a store we may not write (someone else's reference): readers make it from the record

    def compress_in(self, source: Path, path: Path) -> Path:
        """``path``: ``source``, a Lightning metrics CSV, with its float32 values written short, xz-compressed;
        the same bytes for the same input."""
        with open(source, newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f))
        text = io.StringIO(newline="")
        csv.writer(text).writerows([rows[0], *([short_float32(cell) for cell in row] for row in rows[1:])]
                                   if rows else [])
        return self.write_bytes(path, lzma.compress(text.getvalue().encode("utf-8"), preset=6))

    def drop_older_metrics(self, name: str, run_id: str) -> None:
        """Remove a run's metrics in an older format, once its record names the current one (a rerun's)."""
        for suffix in OLDER_METRICS:
            (self.runs / (stem(name, run_id) + suffix)).unlink(missing_ok=True)

    def append_lines(self, path: Path, lines: list[str]) -> Path:
        """Add lines to a text file, rewriting it whole (a reader never sees half a line), under the file's lock:
        two commands appending at once (two ``rnnbench sample``) would each rewrite what it read before the
        other's lines."""
        with self.lock(Path(path).name):
            before = Path(path).read_text(encoding="utf-8") if Path(path).is_file() else ""
            return self.write_text(path, before + "".join(line + "\n" for line in lines))

    def remove_temp_files(self, name: str, run_id: str) -> None:
        """A process killed between writing and renaming leaves ``*.tmp*`` files; only the holder of the run's
        lock may clear them, since only it could be writing them."""
        for folder in (self.runs, self.checkpoints):
            for stray in folder.glob(f"{stem(name, run_id)}.*tmp*"):
                stray.unlink(missing_ok=True)

    def remove_orphaned_temp_files(self, path: Path) -> None:
        """Temporary files of ``path`` whose writer died (a sweep killed while writing the leaderboard): files
        no lock guards, so they go when their process is gone and they are stale (``clear_stale_temp_files``)."""
        clear_stale_temp_files(Path(path).parent, Path(path).name)

    def temp_files(self) -> list[Path]:
        return [p for folder in (self.runs, self.checkpoints) for p in folder.glob("*.tmp*")]

    # ---- records ---------------------------------------------------------------------------------------------
    def record_files(self) -> list[Path]:
        return sorted(self.runs.glob("*" + RECORD_SUFFIX)) if self.runs.is_dir() else []

    @staticmethod
    def id_of(path: Path) -> str:
        return Path(path).stem.rsplit("__", 1)[-1]

    def read_record(self, path: Path) -> dict:
        """The record at ``path``, checked against the one schema (bench/run/schema.py) of what readers read;
        RecordError, one line naming the file and the field, where it falls short."""
        return checked(read_json(path), path)

    def records(self) -> Loaded:
        """Every readable record, sorted by (name, id); an unreadable one is named in ``skipped``, never fatal."""
        loaded = Loaded()
        for path in self.record_files():
            try:
                loaded.records.append(self.read_record(path))
            except RecordError as exc:
                loaded.skipped.append(str(exc))
        loaded.records.sort(key=lambda r: (r["name"], r["id"]))
        return loaded

    def sweeps(self) -> Loaded:
        """Every sweep summary (``sweeps/<spec>.json``) that holds what its readers read (bench/run/schema.py), by
        file name, in ``records``; one line per one that does not, in ``skipped``."""
        loaded = Loaded()
        for path in self.sweep_summaries():
            try:
                summary = read_json(path, "sweep summary")
            except RecordError as exc:
                loaded.skipped.append(str(exc))
                continue
            problem = schema.problem(summary, schema.SWEEP)
            if problem is None:
                loaded.records.append(summary)
            else:
                loaded.skipped.append(f"sweep summary {path}: {problem} (not one, or edited by hand)")
        return loaded

    def record_names(self) -> list[str]:
        """The file names of the records under ``runs/``, in (name, id) order."""
        if not self.runs.is_dir():
            return []
        with os.scandir(self.runs) as entries:
            files = [e.name for e in entries if e.name.endswith(RECORD_SUFFIX) and not e.name.startswith(".")]
        return sorted(files, key=lambda f: f[: -len(RECORD_SUFFIX)].rsplit("__", 1))

    def summaries(self, save: bool = True) -> Iterator[dict | str]:
        """The summary of every record, in (name, id) order, one at a time; a record that cannot be read yields
        the line naming its problem instead. ``save=False`` (another folder's records, a reference) writes
        nothing into the store; a store that cannot be written is read all the same.

        Summaries are read from the pack (``index/pack-v<N>.tsv``: one line per record, its file name, size and
        modification time, then its summary) where its line still matches the record, else from the record's own
        summary file, or made from the record. 100,000 small files cost a disk read each once the page cache has
        let them go; the pack is one sequential read. It is rewritten, from the first line that changed, only
        when a line did. A line that matches its record but does not read as a summary (damaged on disk, edited)
        is one warning, and the summary is made again from the record: the pack is a cache."""
        pack = self.root / "index" / PACK
        old = _Pack(pack)
        new = None  # the rewritten pack, opened at the first change
        damaged = False
        try:
            for file in self.record_names():
                try:
                    made_from = os.stat(os.path.join(self.runs, file))
                except OSError as exc:
                    yield f"record {self.runs / file}: cannot be read ({exc.strerror or exc})"
                    continue
                line = old.line(file, made_from)
                summary = None if line is None else _summary_in(line)
                if line is not None and summary is None:
                    old.reject()
                    if not damaged:
                        damaged = True
                        _rebuilt(pack, f"a damaged line (the summary of {file})")
                if summary is None:
                    try:
                        summary = self.summary(file, save)
                    except RecordError as exc:
                        yield str(exc)
                        continue
                    line = _pack_line(file, made_from, summary)
                    old.changed = True  # a line the pack lacked, or a new one
                if save and new is None and old.changed:
                    new = _opened(old)  # everything before this record, as it was; None where it cannot be written
                    save = new is not None
                if new is not None:
                    new.write(line)
                yield summary
            if save and new is None and (old.left() or old.changed):  # records gone since the pack was written
                new = _opened(old)
            if new is not None:
                new.close()
                try:
                    os.replace(new.name, pack)
                except OSError:
                    os.unlink(new.name)
                new = None
        finally:
            old.close()
            if new is not None:  # the reader stopped early: keep the old pack
                new.close()
                os.unlink(new.name)

    def summary(self, file: str, save: bool = True) -> dict:
        """The summary of the record ``runs/<file>``; a missing or stale one is made from the record (and saved,
        with ``save``). Raises RecordError, naming the record, where it cannot be read."""
        path = os.path.join(self.runs, file)
        where = os.path.join(self.root, "index", file)  # the summary keeps the record's file name
        try:
            made_from = os.stat(path)
        except OSError as exc:
            raise RecordError(f"record {path}: cannot be read ({exc.strerror or exc})") from None
        summary = _summary_of(where, made_from)
        if summary is None:
            summary = summarize(self.read_record(Path(path)), made_from)
            if save:
                self._write_summary(Path(where), summary)
        return summary

    def statuses(self) -> tuple[dict[str, str], dict[str, str]]:
        """run id -> recorded status (``standing``), and run id -> the problem of each unreadable record (which
        counts as not recorded, so a resume trains that run again and replaces the file)."""
        found, unreadable = {}, {}
        for file in self.record_names():  # through the summaries: a resumed sweep of 100,000 runs starts at once
            run_id = self.id_of(Path(file))
            try:
                found[run_id] = standing(self.summary(file, save=False))  # reading a store writes nothing
            except RecordError as exc:
                unreadable[run_id] = str(exc)
        return found, unreadable

    def status_of(self, name: str, run_id: str) -> str | None:
        path = self.record_path(name, run_id)
        if not path.exists():
            return None
        try:
            return standing(self.read_record(path))
        except RecordError:
            return None  # unreadable: train it again

    def find(self, run: str) -> tuple[dict, Path]:
        """``run`` is a record path, or a run name (``charlm__lstm__s0``, optionally ``__<id>``) in this store."""
        candidate = Path(run)
        if candidate.suffix == RECORD_SUFFIX and candidate.is_file():
            return self.read_record(candidate), candidate
        # Records are <name>__<id>.json; files beside them (<...>.samples.jsonl, ...) have more dots.
        files = [p for p in self.record_files() if p.name.count(".") == 1]
        exact = [p for p in files if p.stem == run or p.stem.rsplit("__", 1)[0] == run]
        if len(exact) == 1:
            return self.read_record(exact[0]), exact[0]
        if not exact:
            known = sorted(p.stem.rsplit("__", 1)[0] for p in files)
            hint = f"; runs there: {', '.join(known[:8])}{' ...' if len(known) > 8 else ''}" if known else ""
            raise ConfigError(f"no run record {run!r} under {self.runs}{hint}")
        raise ConfigError(f"{run!r} matches {len(exact)} records under {self.runs}: add the id, e.g. {exact[0].stem}")

    @staticmethod
    def of_record(record_path: Path) -> Store:
        """The store a record file lives in (``<out>/runs/<file>``)."""
        return Store(Path(record_path).resolve().parent.parent)

    # ---- locks -------------------------------------------------------------------------------------------------
    def run_lock(self, run_id: str):
        return file_lock(self.lock_path(run_id))

    def lock(self, key: str, wait: bool = True):
        return file_lock(self.lock_path(key), wait=wait)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except (OverflowError, ValueError):  # no process has such a number
        return False
    return True


TEMP = re.compile(r"\.tmp(\d+)$")  # atomic's temporary name, <file>.tmp<pid>: the only files cleared
STALE_S = 60  # untouched this long: no write in progress (a writer on another machine has a pid we cannot see)
_cleared: set[Path] = set()  # folders this process has cleared


def clear_stale_temp_files(folder: Path, of: str | None = None) -> list[Path]:
    """Remove the temporary files a process killed inside a write left in ``folder`` (a figure's
    ``flow_adding.png.tmp<pid>``; ``of``: only those of this file name): files named as ``atomic`` names them,
    whose process is gone and that have not changed for STALE_S seconds, so a concurrent writer's file is never
    taken. Returns what it removed."""
    removed, now = [], time.time()
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        found = TEMP.search(entry.name)
        if found is None or (of is not None and entry.name[: found.start()] != of) \
                or int(found.group(1)) == os.getpid() or _alive(int(found.group(1))):
            continue
        try:
            if entry.is_file(follow_symlinks=False) and now - entry.stat(follow_symlinks=False).st_mtime > STALE_S:
                os.unlink(entry.path)
                removed.append(Path(entry.path))
        except OSError:
            pass  # gone already, or not ours to remove
    return removed


@contextmanager
def atomic(path: Path) -> Iterator[Path]:
    """Yields a temporary path beside ``path``; renamed over it when the block ends without an error. The first
    write of a process into a folder clears the temporary files killed writers left there."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.parent not in _cleared:
        _cleared.add(path.parent)
        clear_stale_temp_files(path.parent)
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    try:
        yield tmp
        pause = float(os.environ.get("RNNBENCH_WRITE_PAUSE", "0") or 0)
        if pause:
            time.sleep(pause)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@contextmanager
def file_lock(path: Path, wait: bool = False) -> Iterator[bool]:
    """Yields True when this process now holds ``path``'s lock, False when another holds it (``wait=False``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # The file stays: unlinking a lock file races with a process that has just opened it.
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)  # releases the lock
