"""The plan cache: what planning a sweep file found, kept with a fingerprint of everything planning used, so that
planning it again imports neither torch nor Lightning (resolving imports both, which takes seconds).

    RNNBENCH_PLAN_CACHE=/tmp/plans rnnbench sweep sweeps/default.yaml --dry-run   # another folder than .cache/plans

No list says what a plan depends on: an entry records what planning used, and a lookup checks exactly that
again (``files``, path -> fingerprint):
- the file of every module loaded when planning ended (``sys.modules``): the suite's code, every task and
  architecture file the registries found, the installed packages;
- every file planning opened and every folder it listed (audit events, PEP 578): the sweep file, a corpus whose
  alphabet sizes the model, a package's data, the task package's folder (a new file there is a new task).
This project's files are fingerprinted by their bytes (sha256), installed files (under the interpreter's
prefixes, which installing rewrites) by modification time and size, a folder by its names (but ``__pycache__``),
a missing path as missing. An entry is named by the sweep file's path, the working directory, the interpreter,
whether the machine is checked and the whole environment: what planning reads of it (``~``) cannot be watched.

Only a plan without error is kept: a task may refuse a path it only looked at (``os.path.exists`` raises no audit
event), and a run that trains is resolved, so checked, again (``Planned.config``). A read is seen only the first
time a process makes it (tasks keep what they read in memory), so only a process whose planning loads the task
package itself writes an entry (``watchable``): every command line does. The machine check (memory, GPUs) is
never cached, only what it reads of each run (bench/sweeps/plan.py), so a hit checks this machine again.
Entries are ``<folder>/<name>.json``, written atomically; the oldest go beyond ``KEEP`` entries.
"""

from __future__ import annotations

import hashlib
import json
import os
import site
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..store import atomic

ROOT = Path(__file__).resolve().parents[2]
INSTALLED = tuple(sorted({os.path.join(p, "") for p in (sys.prefix, sys.base_prefix, sys.exec_prefix,
                                                        sys.base_exec_prefix, *site.getsitepackages())}))
SYSTEM = ("/proc/", "/sys/", "/dev/")  # what a machine reports, not what a plan reads
KEEP = 256


def folder() -> Path:
    return Path(os.environ.get("RNNBENCH_PLAN_CACHE") or ROOT / ".cache" / "plans")


def key(spec: Path, check_machine: bool) -> str:
    """The entry's name for planning ``spec`` here."""
    h = hashlib.sha256()
    for part in (os.fspath(spec), os.getcwd(), sys.executable, sys.version, str(check_machine),
                 *sorted(f"{k}={v}" for k, v in os.environ.items())):
        data = part.encode("utf-8", "surrogateescape")
        h.update(len(data).to_bytes(8, "big") + data)  # length-prefixed: no two sequences of parts hash alike
    return h.hexdigest()


def load(name: str) -> dict | None:
    """The entry ``name``, or None: none stored, unreadable, or a file it used has changed since."""
    try:
        entry = json.loads((folder() / f"{name}.json").read_text(encoding="utf-8"))
        return entry if current(entry) else None
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def current(entry: dict) -> bool:
    """Whether every file the entry's plan used is as it was."""
    return all(fingerprint(path) == seen for path, seen in entry["files"].items())


def store(name: str, entry: dict, reads: set[str], started: int) -> None:
    """Write the entry with the fingerprints of the modules loaded and the paths read; not when one of them
    changed after ``started`` (``time.time_ns()`` when planning began: the plan may predate the change). A cache
    that cannot be written is no error (the next plan resolves again)."""
    paths = sorted(modules() | {p for p in reads if not p.startswith(SYSTEM) and "__pycache__" not in p})
    if any(_mtime(p) >= started for p in paths if not os.path.isdir(p)):
        return
    try:
        text = json.dumps({**entry, "files": {p: fingerprint(p) for p in paths}})  # overrides keep their order
        with atomic(folder() / f"{name}.json") as tmp:
            tmp.write_text(text, encoding="utf-8")
        _prune()
    except (OSError, TypeError, ValueError):  # TypeError: an override YAML gave as a date, not JSON
        pass


def modules() -> set[str]:
    """The file of every module loaded in this process."""
    return {os.path.abspath(f) for m in list(sys.modules.values())
            if isinstance(f := getattr(m, "__file__", None), str)}


def fingerprint(path: str) -> str | list[int] | None:
    try:
        if os.path.isdir(path):
            names = "\0".join(sorted(set(os.listdir(path)) - {"__pycache__"})).encode("utf-8", "surrogateescape")
            return "folder " + hashlib.sha256(names).hexdigest()
        if path.startswith(INSTALLED):
            st = os.stat(path)
            return [st.st_mtime_ns, st.st_size]
        with open(path, "rb") as f:
            return hashlib.sha256(f.read()).hexdigest()
    except (OSError, ValueError):
        return None  # missing counts too: a file that appears (weights fetched, data unpacked) is a change


def _mtime(path: str) -> int:
    try:
        return os.stat(path).st_mtime_ns
    except (OSError, ValueError):
        return -1


def _prune() -> None:
    entries = sorted(folder().glob("*.json"), key=lambda p: p.stat().st_mtime_ns)
    for path in entries[:-KEEP]:
        path.unlink(missing_ok=True)


_watching: list[set[str]] = []
_hooked = False


def watchable() -> bool:
    """Whether no task code has run in this process yet: what it keeps in memory (a corpus read once) would be
    used again without a read, so only a plan that loads the task package itself is stored."""
    return "tasks" not in sys.modules


@contextmanager
def reads() -> Iterator[set[str]]:
    """Collects the paths the code in the block opens or lists: audit events (PEP 578); the hook stays for the
    life of the process and returns at once outside a block."""
    global _hooked
    if not _hooked:
        sys.addaudithook(_audit)
        _hooked = True
    seen: set[str] = set()
    _watching.append(seen)
    try:
        yield seen
    finally:
        _watching.pop()


def _audit(event: str, args: tuple) -> None:
    if _watching and event in ("open", "os.listdir", "os.scandir"):
        path = args[0]
        if isinstance(path, (str, bytes, os.PathLike)):  # not a file descriptor
            _watching[-1].add(os.path.abspath(os.fsdecode(path)))
