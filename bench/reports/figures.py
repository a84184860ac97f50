"""Pictures of the composed tasks, drawn from run records alone (``make leaderboard`` regenerates them).

- ``attention_<task>.png``: the teacher-forced attention map each run recorded for one probe example (rows: the
  words the decoder wrote, columns: source positions or image-grid cells), one panel per family: its best row
  (bench/diag/plots.py ``best_per_family``), lowest seed; the row label names the attention kind shown.
- ``exact_by_length_<task>.png``: test exact match against source length, one line per row (mean over seeds,
  bars one sample std clipped to [0, 1]), from the per-length metrics a task records
  (``test/exact_len<lo>_<hi>``): the result the attention papers are known for (Bahdanau et al. 2015, fig. 2) on
  our data.

Both are drawn only when their inputs changed (a hash in the PNG's metadata, ``save_unless_unchanged``).
"""

from __future__ import annotations

import re
import statistics
from pathlib import Path
from typing import TYPE_CHECKING

from ..diag.plots import attention_panel, inputs_hash, pyplot, save_unless_unchanged

if TYPE_CHECKING:
    from matplotlib.figure import Figure

BIN = re.compile(r"^test/exact_len(\d+)_(\d+|up)$")


def write_attention_pngs(panels: dict[str, dict[str, tuple[str, dict]]], out: Path) -> list[Path]:
    """``panels``: task -> family -> (row label, the ok run shown), as ``plots.Picker`` chose them."""
    written = []
    for task, chosen in sorted(panels.items()):
        shown = [(label, rec["diagnostics"]["attention"]) for _, (label, rec) in sorted(chosen.items())]
        path = Path(out) / f"attention_{task}.png"
        save_unless_unchanged(path, inputs_hash("attention", task, shown),
                              lambda task=task, shown=shown: _attention_figure(task, shown))
        written.append(path)
    return written


def _attention_figure(task: str, shown: list[tuple[str, dict]]) -> Figure:
    fig, axes = pyplot().subplots(1, len(shown), figsize=(3.2 * len(shown), 3.4), dpi=100, squeeze=False,
                             layout="constrained")
    for ax, (label, a) in zip(axes[0], shown, strict=True):
        attention_panel(ax, a["weights"], a.get("source", ""), a.get("reference", ""), a.get("grid"), label)
    fig.suptitle(f"{task}: attention of the decoder (teacher-forced, one held-out example)", fontsize=9)
    return fig


def length_bins(rec: dict) -> dict[tuple[int, float], float]:
    """A record's ``test/exact_len<lo>_<hi>`` metrics (``<hi>`` may be ``up``) -> {(lo, hi): exact match}."""
    out = {}
    for key, value in rec["metric"].get("extra", {}).items():
        m = BIN.match(key)
        if m and value is not None:
            out[(int(m.group(1)), float("inf") if m.group(2) == "up" else int(m.group(2)))] = value
    return out


def _bin_label(b: tuple[int, float]) -> str:
    lo, hi = b
    return f"{lo}+" if hi == float("inf") else (str(lo) if lo == hi else f"{lo}-{int(hi)}")


def write_length_pngs(curves: dict[str, dict[str, dict]], out: Path) -> list[Path]:
    """``curves``: task -> row label -> {length bin: [exact match over ok seeds]} (``Tables.length_curves``)."""
    written = []
    for task, rows in sorted(curves.items()):
        path = Path(out) / f"exact_by_length_{task}.png"
        data = sorted((label, sorted((list(b), v) for b, v in row.items())) for label, row in rows.items())
        save_unless_unchanged(path, inputs_hash("exact_by_length", task, data),
                              lambda task=task, rows=rows: _length_figure(task, rows))
        written.append(path)
    return written


def _length_figure(task: str, rows: dict[str, dict]) -> Figure:
    bins = sorted({b for row in rows.values() for b in row})
    fig, ax = pyplot().subplots(figsize=(6.4, 5.2), dpi=100, layout="constrained")
    families = sorted({label.partition(" (")[0] for label in rows})  # one colour per family
    for label, row in sorted(rows.items()):
        xs = [i for i, b in enumerate(bins) if b in row]
        means = [statistics.fmean(row[bins[i]]) for i in xs]
        stds = [statistics.stdev(row[bins[i]]) if len(row[bins[i]]) > 1 else 0.0 for i in xs]
        # bars of one std, clipped to where an exact-match rate can lie, [0, 1]
        bars = [[m - max(m - s, 0.0) for m, s in zip(means, stds, strict=True)],
                [min(m + s, 1.0) - m for m, s in zip(means, stds, strict=True)]]
        dashed = "attention=none" in label
        marker = "s" if "refeed_context=True" in label else "o"  # without attention, but not the plain summary
        ax.errorbar(xs, means, yerr=bars, marker=marker, capsize=2, linestyle="--" if dashed else "-",
                    color=f"C{families.index(label.partition(' (')[0]) % 10}", label=label.replace("\n", " "))
    ax.set_xticks(range(len(bins)), [_bin_label(b) for b in bins])
    ax.set_xlabel("source length (tokens)")
    ax.set_ylabel("test exact match")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(f"{task}: exact match against source length (dashed: no attention)", fontsize=9)
    fig.legend(*ax.get_legend_handles_labels(), loc="outside lower center", ncols=2, fontsize=7)
    return fig
