"""The plan cache: what planning a sweep file found, kept so that planning it again imports neither torch nor
Lightning (the registries that resolve a run take seconds to import; reading this takes milliseconds).

    python -c "from bench.sweeps import plan_cache; print(plan_cache.folder())"    # .cache/plans
    RNNBENCH_PLAN_CACHE=/tmp/plans rnnbench sweep sweeps/default.yaml --dry-run   # another folder

A plan is a function of the sweep file, the code that resolves it and what that code reads outside itself, so
an entry's key (``key``) hashes the file's path and bytes, every source file that decides a resolved config,
its run id or its name (``sources``: each path name with its bytes), whether the machine is checked, the
interpreter and the installed packages (a task checks that one is there), and where ``~`` and the torch cache
point. Besides that, some tasks read files while they validate: a corpus whose alphabet sizes the model, data
folders, cached weights, a package's data. Planning records every path it stats, opens or lists
(``outside_reads``) with its size and modification time (``fingerprints``), and an entry whose files changed is
a miss: a bad path fixed, or a corpus edited, plans again. A read is seen only the first time a process makes it
(tasks keep what they read in memory), so a plan is stored only by a process that had run no task code before
(``watchable``): every command line does; a test or a notebook that trained first only reads the cache.

What the entry holds is bench/sweeps/plan.py's business; the machine check (memory, GPUs) is never cached, only
what it reads of each run, so that a hit checks this machine again. Entries are ``<folder>/<key>.json``, written
atomically; the oldest go beyond ``KEEP`` entries.
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
PACKAGES = ("architectures", "options", "tasks")  # every *.py below them, at any depth
FILES = ("bench/run/config.py", "bench/run/models.py", "bench/sweeps/anchor.py", "bench/sweeps/plan.py",
         "bench/sweeps/plan_cache.py", "bench/sweeps/spec.py")
ENVIRONMENT = ("HOME", "TORCH_HOME", "XDG_CACHE_HOME")  # where ~ and torch's cache of weights point
SYSTEM = ("/proc/", "/sys/", "/dev/")  # what a machine reports, not what a plan reads
KEEP = 256


def folder() -> Path:
    return Path(os.environ.get("RNNBENCH_PLAN_CACHE") or ROOT / ".cache" / "plans")


def sources(root: Path | None = None) -> list[Path]:
    """The files that decide a resolved config, its run id and name, relative to ``root``, sorted."""
    root = root or ROOT
    found = [p.relative_to(root) for package in PACKAGES for p in (root / package).rglob("*.py")]
    return sorted(found + [Path(f) for f in FILES])


def key(spec: Path, check_machine: bool, root: Path | None = None) -> str | None:
    """The entry's name for planning ``spec`` with the sources under ``root``; None when ``spec`` cannot be read
    (a missing file or a folder: planning says so in one line)."""
    root = root or ROOT
    try:
        text = Path(spec).read_bytes()
    except OSError:
        return None
    h = hashlib.sha256()
    for part in (str(spec).encode(), text, str(check_machine).encode(), *_environment()):
        _add(h, part)
    for path in sources(root):
        _add(h, path.as_posix().encode())
        _add(h, (root / path).read_bytes())
    return h.hexdigest()


def _add(h, data: bytes) -> None:
    h.update(len(data).to_bytes(8, "big") + data)  # length-prefixed: no two sequences of parts hash alike


def _environment() -> list[bytes]:
    # Installing or removing a package changes its site folder's modification time.
    folders = [*site.getsitepackages(), site.getusersitepackages()]
    return [sys.version.encode(), *(f"{f} {_stamp(f)}".encode() for f in folders),
            *(f"{name}={os.environ.get(name, '')}".encode() for name in ENVIRONMENT)]


def load(name: str | None) -> dict | None:
    """The entry ``name``, or None: none stored, unreadable, or a file it read has changed since."""
    if name is None:
        return None
    try:
        entry = json.loads((folder() / f"{name}.json").read_text(encoding="utf-8"))
        reads = entry["reads"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return entry if all(_stamp(path) == stamp for path, stamp in reads.items()) else None


def store(name: str | None, entry: dict, reads: set[str]) -> None:
    """Write the entry with the fingerprints of what planning read; a cache that cannot be written is no error
    (the next plan resolves again)."""
    if name is None:
        return
    try:
        text = json.dumps({**entry, "reads": fingerprints(reads)})  # overrides keep their order
        with atomic(folder() / f"{name}.json") as tmp:
            tmp.write_text(text, encoding="utf-8")
        _prune()
    except (OSError, TypeError, ValueError):  # TypeError: an override YAML gave as a date, not JSON
        pass


def _prune() -> None:
    entries = sorted(folder().glob("*.json"), key=lambda p: p.stat().st_mtime_ns)
    for path in entries[:-KEEP]:
        path.unlink(missing_ok=True)


def fingerprints(paths: set[str]) -> dict[str, list[int] | None]:
    """Each path read outside the code (not compiled modules, not /proc) -> its modification time and size."""
    return {p: _stamp(p) for p in sorted(paths) if not p.startswith(SYSTEM) and "__pycache__" not in p}


def _stamp(path: str) -> list[int] | None:
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None  # absent counts too: a file that appears (weights fetched, data unpacked) is a change
    return [st.st_mtime_ns, st.st_size]


_watching: list[set[str]] = []
_hooked = False
REGISTRIES = ("architectures", "tasks", "bench.run.models")


def watchable() -> bool:
    """Whether no task code has run in this process yet: what it cached in memory (a corpus read once, say)
    would be read again without a trace, so only a plan that imports the registries itself is stored."""
    return not any(name in sys.modules for name in REGISTRIES)


@contextmanager
def outside_reads() -> Iterator[set[str]]:
    """Collects the paths the code in the block stats (``os.stat``: exists, isfile, Path.exists), opens or lists.
    Open and list are audit events (PEP 578); a stat is not, so ``os.stat`` is wrapped while the block runs."""
    global _hooked
    if not _hooked:
        sys.addaudithook(_audit)  # for the life of the process: it returns at once outside a block
        _hooked = True
    seen: set[str] = set()
    real = os.stat

    def stat(path, *args, **kwargs):
        _note(path)
        return real(path, *args, **kwargs)

    _watching.append(seen)
    os.stat = stat
    try:
        yield seen
    finally:
        os.stat = real
        _watching.pop()


def _audit(event: str, args: tuple) -> None:
    if _watching and event in ("open", "os.listdir", "os.scandir"):
        _note(args[0])


def _note(path) -> None:
    if _watching and isinstance(path, (str, bytes, os.PathLike)):  # not a file descriptor
        _watching[-1].add(os.fsdecode(path))
