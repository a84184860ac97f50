"""The tuned studies' summaries (``<out>/studies/<spec>.json``, written by bench/sweeps/tune.py), read with
nothing but the store: the leaderboard asks which runs are the studies' (it leaves them to TUNED.md) without
importing what draws TUNED.md."""

from __future__ import annotations

from ..store import Store, read_json


def summaries(store: Store) -> list[dict]:
    """Every tuned sweep's readable summary in ``<out>/studies``, by file name (``damaged`` names the others)."""
    return _read(store)[0]


def damaged(store: Store) -> list[str]:
    """One line per tuned summary in ``<out>/studies`` that cannot be read or is not one: the leaderboard names
    it with the records it left out (exit 1), and TUNED.md goes on without it."""
    return _read(store)[1]


def _read(store: Store) -> tuple[list[dict], list[str]]:
    out, bad = [], []
    for path in sorted((store.root / "studies").glob("*.json")):
        try:
            summary = read_json(path)
        except (OSError, ValueError) as exc:
            bad.append(f"tuned summary {path}: unreadable ({exc}); left out of TUNED.md")
            continue
        comparisons = summary.get("comparisons") if isinstance(summary, dict) else None
        if not isinstance(comparisons, list) or not all(isinstance(c, dict) and "key" in c for c in comparisons):
            bad.append(f"tuned summary {path}: not a tuned sweep's summary (no list of comparisons); left out of "
                       "TUNED.md (`make tuned` writes it again)")
            continue
        out.append(summary)
    return out, bad


def tuned_ids(store: Store) -> set[str]:
    """The run ids every tuned summary names."""
    return {i for summary in summaries(store) for i in run_ids(summary)}


def run_ids(summary: dict) -> list[str]:
    """The run ids one tuned summary names, in its order: search trials, confirm runs and witness runs."""
    ids = []
    for _, comparison in comparison_items(summary):
        for family in comparison["families"].values():
            ids += [t["run_id"] for t in family["trials"] + family["confirm"] if t.get("run_id")]
            if family.get("witness"):
                ids.append(family["witness"]["run_id"])
    return ids


def comparison_items(summary: dict) -> list[tuple[str, dict]]:
    """(key, comparison) in the tuned file's order."""
    return [(c["key"], c) for c in summary["comparisons"]]
