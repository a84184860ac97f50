"""The one schema of what the suite reads back from a results store: every field that the leaderboard, the HTML
report, the reproduction table, the README blocks and a resumed sweep read from a run record (or its summary) and
from a sweep summary, with its type; and the reading of a run's per-step metrics CSV.

    problem(record, RECORD)                       # None, or one line: the field missing or of the wrong type
    metrics = Metrics(store.runs)
    metrics.columns(rec["metrics_file"], ("val/mse",))   # None where the run has no readable file
    metrics.skipped                               # one line per damaged metrics file met (named once)

A reader checks a file here once and indexes it without looking afterwards: a file that fails is named (its path
and what is wrong) and left out by the caller, never a KeyError or TypeError three modules later. Fields no
reader reads are not checked: a record carries more (hardware details, the W&B id) than any table shows, and a
record that gains a field stays readable. Imports neither torch nor Lightning.

A schema maps a dotted field to its kind. ``?`` before the name: the field may be absent (records older than it,
or a summary, which leaves the pictures' data out). A kind ending in ``or null`` may be null; a tuple lists the
values allowed. A field inside a parent that is absent or null is not looked for.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import lzma
import math
import zlib
from collections.abc import Iterable
from pathlib import Path


def _number(v) -> bool:
    return type(v) in (int, float)  # True is an int to Python, not to a mean


# A kind: the JSON types it allows (read from JSON, a value is exactly one of them), or a test of the value.
KINDS = {
    "text": {str},
    "a whole number": {int},
    "a number": {int, float},
    "true or false": {bool},
    "a mapping": {dict},
    "a list": {list},
    "a list of text": lambda v: type(v) is list and all(type(x) is str for x in v),
    "a mapping of numbers": lambda v: type(v) is dict and all(x is None or _number(x) for x in v.values()),
    "a mapping of mappings": lambda v: type(v) is dict and all(type(x) is dict for x in v.values()),
}

# What a reader indexes in a run record (bench/run/records.py writes them), and in its summary (bench/store.py).
# The first six are what makes a file a run record at all (a file without them is named "not a run record").
RECORD = {
    "id": "text", "name": "text", "task": "text", "status": ("ok", "diverged", "failed"), "config": "a mapping",
    "metric": "a mapping",
    "arch": "text", "arch_label": "text", "seed": "a whole number", "?killed": "text or null",
    "config.task": "a mapping", "config.task.name": "text", "?config.task.batch_size": "a whole number",
    "config.arch": "a mapping", "config.arch.hidden_size": "a whole number",
    "config.optim": "a mapping", "config.optim.name": "text", "config.optim.lr": "a number",
    "?config.optim.clip": "a number",
    "config.train": "a mapping", "config.train.max_steps": "a whole number",
    "?defaults": "a mapping", "?outside_question": "a list of text",  # schema-1 records lack both (tables.declared)
    "task_info": "a mapping", "task_info.metric": "text", "task_info.mode": ("min", "max"),
    "task_info.baseline": "a number", "task_info.solved_threshold": "a number or null", "task_info.shape": "text",
    "task_info.variant": "text", "task_info.version": "text", "?task_info.seq_len": "a whole number",
    "?task_info.model": "text", "?task_info.sizes": "a mapping",
    "metric.name": "text", "metric.mode": ("min", "max"), "metric.baseline": "a number",
    "metric.test": "a number or null", "?metric.test_last": "a number or null",
    "?metric.test_from": ("best", "last", None), "metric.val_last": "a number or null",
    "metric.val_best": "a number or null", "metric.solved": "true or false or null",
    "?metric.extra": "a mapping of numbers",
    "steps": "a whole number", "params": "a whole number", "wall_time_s": "a number",
    "?cpu_time_s": "a number or null",
    "grad_norm_preclip": "a mapping", "grad_norm_preclip.median": "a number or null",
    "provenance": "a mapping", "provenance.git_sha": "text", "provenance.git_dirty": "true or false",
    "provenance.cpu": "text", "provenance.torch_threads": "a whole number", "?provenance.gpu": "text or null",
    "metrics_file": "text or null",
    "diagnostics": "a mapping or null", "?diagnostics.role": "text or null",
    "?diagnostics.flow_ratio_init": "a number or null", "?diagnostics.flow_ratio_final": "a number or null",
    "?diagnostics.events": "a mapping or null", "?diagnostics.events.spikes": "a whole number or null",
    "?diagnostics.cores": "a mapping of mappings",
    # the pictures' data: in a whole record, absent from its summary
    "?diagnostics.profiles": "a mapping or null", "?diagnostics.profiles.steps": "a list",
    "?diagnostics.profiles.flow": "a list", "?diagnostics.attention": "a mapping or null",
    "?diagnostics.attention.weights": "a list",
}
IDENTITY = 6  # RECORD's first fields: without one, a file is not a run record

# What a summary adds to its record (bench/store.py ``summarize``).
SUMMARY = {"summary": "a mapping", "summary.flow": "true or false", "summary.attention": "true or false"}

# A sweep summary, ``<out>/sweeps/<spec>.json`` (bench/sweeps/sweep.py ``write_summary``), as the README's timing
# lines and CPU minutes read it.
SWEEP = {
    "spec": "text", "ran": "a whole number", "wall_time_s": "a number", "workers": "a whole number",
    "threads_per_worker": "a whole number", "?planned_ids": "a list of text",
    "provenance": "a mapping", "provenance.cpu": "text", "provenance.cpu_count": "a whole number or null",
    "provenance.torch": "text", "provenance.git_sha": "text",
}


def _compile(schema: dict) -> list[tuple[tuple[str, ...], list[tuple]]]:
    """The fields grouped by parent, in the schema's order: (parent's parts, [(name, dotted, may be absent, the
    types allowed or None, a test or None, what it should be)])."""
    groups: dict[tuple[str, ...], list[tuple]] = {}
    for key, kind in schema.items():
        dotted = key.lstrip("?")
        *parent, name = dotted.split(".")
        if isinstance(kind, tuple):
            types, test = frozenset(), (lambda v, a=kind: (v is None or type(v) is str) and v in a)
            should = "one of " + ", ".join("null" if a is None else repr(a) for a in kind)
        else:
            found = KINDS[kind.removesuffix(" or null")]
            null = {type(None)} if kind.endswith(" or null") else set()
            types, test = (frozenset(found | null), None) if isinstance(found, set) else \
                (frozenset(null), found)
            should = kind
        groups.setdefault(tuple(parent), []).append((name, dotted, key.startswith("?"), types, test, should))
    return list(groups.items())


_COMPILED: dict[int, list] = {}


def problem(value: dict, schema: dict) -> str | None:
    """The first field of ``schema`` that ``value`` lacks or holds with the wrong type, as one line; None if
    none does."""
    groups = _COMPILED.get(id(schema))
    if groups is None:
        groups = _COMPILED[id(schema)] = _compile(schema)
    for parents, fields in groups:
        parent = value
        for part in parents:  # a parent absent or null was checked (or allowed) on its own line, earlier
            parent = parent.get(part) if type(parent) is dict else None
        if type(parent) is not dict:
            continue
        for name, dotted, optional, types, test, should in fields:
            if name not in parent:
                if optional:
                    continue
                return f"no '{dotted}' field"
            found = parent[name]
            if type(found) in types or (test is not None and test(found)):
                continue
            return f"'{dotted}' should hold {should}, not {_shown(found)}"
    return None


def _shown(value) -> str:
    try:
        return json.dumps(value)[:40]
    except (TypeError, ValueError):
        return repr(value)[:40]


def missing_identity(value: dict) -> str | None:
    """The first of the fields that make a file a run record that ``value`` lacks (None: it has them all)."""
    return next((k for k in list(RECORD)[:IDENTITY] if k not in value), None)


# ---- the per-step metrics CSV ---------------------------------------------------------------------------------
def open_metrics(path: Path) -> io.TextIOWrapper:
    """A run's metrics file opened for ``csv.reader``: xz-compressed (``.xz``) or, from older stores, gzipped
    (``.gz``) or plain."""
    suffix = Path(path).suffix
    if suffix == ".xz":
        return lzma.open(path, "rt", newline="", encoding="utf-8")
    if suffix == ".gz":
        return gzip.open(path, "rt", newline="", encoding="utf-8")
    return open(path, newline="", encoding="utf-8")


XZ_MAGIC = b"\xfd7zXZ\x00"  # the first bytes of every xz stream


class MetricsError(ValueError):
    """A metrics CSV that cannot be read as one; the message says what is wrong, the caller names the file."""


def read_columns(path: Path, keys: Iterable[str]) -> dict[str, dict[int, float]]:
    """Column -> step -> its finite values, for each of ``keys``, in one read of a metrics CSV. Raises
    MetricsError where the file is not one: damaged compression (a zero-filled file), cut short (the compressed
    stream or the last line unfinished), not UTF-8, no ``step`` column, or a cell read that is not a number."""
    out: dict[str, dict[int, float]] = {key: {} for key in keys}
    if Path(path).suffix not in (".gz", ".xz") and not _ends_with_newline(path):  # a compressed one says, below
        raise MetricsError("cut short (its last line is unfinished)")
    if Path(path).suffix == ".xz" and not _starts_with(path, XZ_MAGIC):  # xz reads zero bytes as padding, not damage
        raise MetricsError("not an xz file (no xz header): damaged, e.g. zero-filled")
    try:
        with open_metrics(path) as f:
            reader = csv.reader(f)  # by position: a dict per row costs most of the read, a row per training step
            header = next(reader, [])
            if "step" not in header:
                raise MetricsError("no 'step' column in its first line (not a metrics CSV, or damaged)")
            at = header.index("step")
            wanted = [(header.index(key), key, values) for key, values in out.items() if key in header]
            for row in reader:
                step = row[at] if at < len(row) else ""
                for i, key, values in wanted:
                    text = row[i] if i < len(row) else ""
                    if text and step:
                        value = _cell(text, key, reader.line_num)
                        if math.isfinite(value):
                            values[int(_cell(step, "step", reader.line_num))] = value
    except (EOFError, zlib.error) as exc:  # the compressed stream ends early: a copy or a write cut short
        raise MetricsError(f"cut short ({exc})") from None
    except (gzip.BadGzipFile, lzma.LZMAError) as exc:
        kind = "an xz" if Path(path).suffix == ".xz" else "a gzip"
        raise MetricsError(f"not {kind} file ({exc}): damaged, e.g. zero-filled") from None
    except UnicodeDecodeError:
        raise MetricsError("not UTF-8 text") from None
    except csv.Error as exc:
        raise MetricsError(f"not CSV ({exc})") from None
    return out


def _starts_with(path: Path, magic: bytes) -> bool:
    with open(path, "rb") as f:
        return f.read(len(magic)) == magic


def _cell(text: str, key: str, line: int) -> float:
    try:
        return float(text)
    except ValueError:
        raise MetricsError(f"line {line}: {key} {text[:20]!r} is not a number (cut short, or damaged)") from None


def _ends_with_newline(path: Path) -> bool:
    """Whether the file ends with a newline, as every line the CSV logger writes does (an empty file passes: its
    missing header says what is wrong)."""
    with open(path, "rb") as f:
        if f.seek(0, 2) == 0:
            return True
        f.seek(-1, 2)
        return f.read(1) == b"\n"


class Metrics:
    """The metrics files of one folder (a store's ``runs/``), as the reports read them: a damaged file is named in
    ``skipped`` once, however many readers ask for it, and read as absent."""

    def __init__(self, folder: Path):
        self.folder, self.skipped, self._damaged = Path(folder), [], set()

    @classmethod
    def of(cls, where: Metrics | Path | None) -> Metrics | None:
        """``where`` as a reader: a folder of metrics files becomes one, None stays None."""
        return where if isinstance(where, Metrics) or where is None else cls(Path(where))

    def path(self, file: str | None) -> Path | None:
        """The file's path when the run has one and it exists (a failed run has none)."""
        path = self.folder / file if isinstance(file, str) and file else None
        return path if path is not None and path.is_file() else None

    def columns(self, file: str | None, keys: Iterable[str]) -> dict[str, dict[int, float]] | None:
        """``read_columns`` of ``<folder>/<file>``; None where there is no such file, or it is damaged."""
        path = self.path(file)
        if path is None or path in self._damaged:
            return None
        try:
            return read_columns(path, keys)
        except (MetricsError, OSError) as exc:
            self._damaged.add(path)
            reason = str(exc) if isinstance(exc, MetricsError) else f"cannot be read ({exc.strerror or exc})"
            self.skipped.append(f"metrics {path}: {reason}; left out of the curves and sentences read from it")
            return None

    def series(self, file: str | None, key: str) -> dict[int, float] | None:
        """step -> the finite values of column ``key``; None as ``columns``."""
        found = self.columns(file, (key,))
        return None if found is None else found[key]
