"""Learning curves from the runs' metrics CSVs: the validation metric against step, one line per leaderboard
row (mean over its ``ok`` seeds, as the leaderboard averages), a band of one sample std clipped to the metric's
valid range, and the task's chance-level baseline as a grey line; one figure per leaderboard section.

    curves = learning_curves(records, store, tables)      # section key -> row label -> Curve
    draw(curves[skey], "adding · seq_len=200", "mse", "min", 0.1667, path)  # a small PNG (the static report's)

Every number is read from ``<out>/runs/<record["metrics_file"]>`` (xz; gzipped or plain in older stores; columns
``step`` and ``val/<metric>``); a run without the file, or a diverged or failed one, adds no line, and one whose
file is damaged is named in ``store.metrics.skipped`` and adds none either. Byte-stable:
no clock or version in the PNG.
"""

from __future__ import annotations

import re
import statistics
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..diag.plots import inputs_hash, pyplot, save_unless_unchanged
from ..run.schema import read_columns
from ..store import Store
from .tables import ARROW, Tables, row_key, section_key, valid_range

if TYPE_CHECKING:
    from matplotlib.figure import Figure

STYLES = ("-", "--", ":", "-.")  # one per setting a row changed, within one family's colour


@dataclass
class Curve:
    steps: list[int]
    mean: list[float]
    std: list[float]  # 0 where one seed logged the step
    n: int  # seeds behind the line


def series(path: Path, key: str) -> dict[int, float]:
    """step -> the finite values of column ``key`` in a metrics CSV (a run logs a row per logging call)."""
    return columns(path, (key,))[key]


def columns(path: Path, keys: Iterable[str]) -> dict[str, dict[int, float]]:
    """Column -> step -> its finite values, for each of ``keys``, in one read of a metrics CSV; raises
    ``MetricsError`` where the file is damaged (the reports read through ``Store.metrics``, which names it)."""
    return read_columns(path, keys)


def _curve(runs: list[dict[int, float]]) -> Curve:
    steps = sorted({s for run in runs for s in run})
    values = [[run[s] for run in runs if s in run] for s in steps]
    return Curve(steps, [statistics.fmean(v) for v in values],
                 [statistics.stdev(v) if len(v) > 1 else 0.0 for v in values], len(runs))


def learning_curves(records: list[dict], store: Store, tables: Tables) -> dict[str, dict]:
    """section key -> row label -> Curve of ``val/<metric>`` over the row's ok runs that kept a metrics CSV
    (``tables``: the records' leaderboard, which names the rows)."""
    labels = tables.labels()
    runs: dict[str, dict[str, list]] = {}
    for rec in records:
        if rec["status"] != "ok":
            continue
        points = store.metrics.series(rec["metrics_file"], f"val/{rec['metric']['name']}")  # None: none, or damaged
        if points:
            skey = section_key(rec)
            runs.setdefault(skey, {}).setdefault(labels[(skey, row_key(rec))], []).append(points)
    return {skey: {label: _curve(r) for label, r in sorted(rows.items())} for skey, rows in sorted(runs.items())}


def family(label: str) -> str:
    """A row label's architecture: ``gru (model.attention=none)`` and ``gru · permute=True`` are ``gru``."""
    return re.split(r" \(| · ", label)[0]


def draw(curves: dict[str, Curve], title: str, metric: str, mode: str, baseline: float, path: Path) -> Path:
    """The learning-curve PNG at ``path``, drawn only when its inputs changed (bench/diag/plots.py)."""
    key = inputs_hash("curves", title, metric, mode, baseline, {label: asdict(c) for label, c in curves.items()})
    save_unless_unchanged(path, key, lambda: _figure(curves, title, metric, mode, baseline))
    return Path(path)


def band(c: Curve, mode: str) -> tuple[list[float], list[float]]:
    """The curve's mean ± one std, clipped to where the metric can lie (accuracy in [0, 1], a loss >= 0)."""
    lo, hi = valid_range(mode)
    return ([max(m - s, lo) for m, s in zip(c.mean, c.std, strict=True)],
            [min(m + s, hi) for m, s in zip(c.mean, c.std, strict=True)])


def _figure(curves: dict[str, Curve], title: str, metric: str, mode: str, baseline: float) -> Figure:
    ncols = 2 if len(curves) > 4 else 1
    fig, ax = pyplot().subplots(figsize=(6.4, 3.4 + 0.16 * -(-len(curves) // ncols)), dpi=90, layout="constrained")
    families = sorted({family(label) for label in curves})
    # Losses fall by orders of magnitude: a log axis, where a band reaching zero or below stops at its floor.
    means = [m for c in curves.values() for m in c.mean]
    log = mode == "min" and min(means) > 0 and max(means) > 10 * min(means)
    lows = [x for c in curves.values() for x in band(c, mode)[0]]
    floor = 0.5 * min([*means, *(x for x in lows if x > 0)]) if log else None
    seen: dict[str, int] = {}
    for label, c in curves.items():
        family_ = family(label)
        style = STYLES[seen.setdefault(family_, 0) % len(STYLES)]
        seen[family_] += 1
        color = f"C{families.index(family_) % 10}"
        ax.plot(c.steps, c.mean, color=color, linestyle=style, linewidth=1.2, marker="o", markersize=2.5,
                label=f"{label} (n={c.n})")
        low, high = band(c, mode)
        ax.fill_between(c.steps, [max(x, floor) for x in low] if log else low, high, color=color, alpha=0.15,
                        linewidth=0)
    if not log or baseline > 0:
        ax.axhline(baseline, color="0.45", linestyle=(0, (4, 3)), linewidth=1.0,
                   label=f"chance-level baseline {baseline:.4g}")
    if log:
        ax.set_yscale("log")
        if min(lows) <= floor:
            ax.set_ylim(bottom=floor)
    ax.set_xlabel("training step")
    ax.set_ylabel(f"val/{metric} {ARROW[mode]}")
    ax.set_title(f"{title}: validation {metric}, mean ± std over seeds", fontsize=9)
    fig.legend(loc="outside lower center", fontsize=7, ncols=ncols, frameon=False)
    return fig
