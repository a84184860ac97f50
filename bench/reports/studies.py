"""The tuned studies' summaries (``<out>/studies/<spec>.json``, written by bench/sweeps/tune.py), read with
nothing but the store: the leaderboard asks which runs are the studies' (it leaves them to TUNED.md) without
importing what draws TUNED.md."""

from __future__ import annotations

from ..store import Store, read_json


def summaries(store: Store) -> list[dict]:
    """Every tuned sweep's summary in ``<out>/studies``, by file name; an unreadable one is named and skipped."""
    out = []
    for path in sorted((store.root / "studies").glob("*.json")):
        try:
            summary = read_json(path)
        except (OSError, ValueError) as exc:
            print(f"warning: {path}: unreadable ({exc}); left out of TUNED.md")
            continue
        comparisons = summary.get("comparisons") if isinstance(summary, dict) else None
        if not isinstance(comparisons, list) or not all(isinstance(c, dict) and "key" in c for c in comparisons):
            print(f"warning: {path}: not a tuned sweep's summary (no list of comparisons); left out of TUNED.md "
                  "(`make tuned` writes it again)")
            continue
        out.append(summary)
    return out


def tuned_ids(store: Store) -> set[str]:
    """The run ids every tuned summary names (search trials and confirm runs)."""
    ids = set()
    for summary in summaries(store):
        for _, comparison in comparison_items(summary):
            for family in comparison["families"].values():
                ids.update(t["run_id"] for t in family["trials"] if t.get("run_id"))
                ids.update(c["run_id"] for c in family["confirm"])
    return ids


def comparison_items(summary: dict) -> list[tuple[str, dict]]:
    """(key, comparison) in the tuned file's order."""
    return [(c["key"], c) for c in summary["comparisons"]]
