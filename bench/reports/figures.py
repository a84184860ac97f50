"""Pictures of the composed tasks, drawn from run records alone (``make leaderboard`` regenerates them).

- ``attention_<task>.png``: the teacher-forced attention map each run recorded for one probe example (rows: the
  words the decoder wrote, columns: source positions or image-grid cells), one panel per leaderboard row (the
  lowest seed), so families and attention kinds sit side by side.
- ``exact_by_length_<task>.png``: test exact match against source length, one line per row (mean over seeds,
  bars one sample std), from the per-length metrics a task records (``test/exact_len<lo>_<hi>``): the result
  the attention papers are known for (Bahdanau et al. 2015, fig. 2) on our data.
"""

from __future__ import annotations

import re
import statistics
from collections.abc import Callable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from ..diag.plots import attention_panel  # noqa: E402

BIN = re.compile(r"^test/exact_len(\d+)_(\d+|up)$")


def _lowest_seed(records: list[dict], label_of: Callable[[dict], str], keep) -> dict[str, dict[str, dict]]:
    by_task: dict[str, dict[str, dict]] = {}
    for rec in sorted(records, key=lambda r: (r["task"], r["seed"], r["name"], r["id"])):
        if rec.get("status") == "ok" and keep(rec):
            by_task.setdefault(rec["task"], {}).setdefault(label_of(rec), rec)
    return by_task


def _attention(rec: dict) -> dict | None:
    return (rec.get("diagnostics") or {}).get("attention")


def write_attention_pngs(records: list[dict], out: Path, label_of: Callable[[dict], str]) -> list[Path]:
    written = []
    for task, panels in sorted(_lowest_seed(records, label_of, _attention).items()):
        fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.4), dpi=100, squeeze=False,
                                 layout="constrained")
        for ax, (label, rec) in zip(axes[0], sorted(panels.items()), strict=True):
            a = _attention(rec)
            attention_panel(ax, a["weights"], a.get("source", ""), a.get("reference", ""), a.get("grid"), label)
        fig.suptitle(f"{task}: attention of the decoder (teacher-forced, one held-out example)", fontsize=9)
        path = Path(out) / f"attention_{task}.png"
        fig.savefig(path, metadata={"Software": None})
        plt.close(fig)
        written.append(path)
    return written


def _bins(rec: dict) -> dict[tuple[int, float], float]:
    out = {}
    for key, value in rec["metric"].get("extra", {}).items():
        m = BIN.match(key)
        if m and value is not None:
            out[(int(m.group(1)), float("inf") if m.group(2) == "up" else int(m.group(2)))] = value
    return out


def length_curves(records: list[dict], label_of: Callable[[dict], str]) -> dict[str, dict[str, dict]]:
    """task -> row label -> {bin: [values over seeds]} for records with per-length exact match."""
    curves: dict[str, dict[str, dict]] = {}
    for rec in records:
        bins = _bins(rec) if rec.get("status") == "ok" else {}
        for b, value in bins.items():
            curves.setdefault(rec["task"], {}).setdefault(label_of(rec), {}).setdefault(b, []).append(value)
    return curves


def _bin_label(b: tuple[int, float]) -> str:
    lo, hi = b
    return f"{lo}+" if hi == float("inf") else (str(lo) if lo == hi else f"{lo}-{int(hi)}")


def write_length_pngs(records: list[dict], out: Path, label_of: Callable[[dict], str]) -> list[Path]:
    written = []
    for task, rows in sorted(length_curves(records, label_of).items()):
        bins = sorted({b for row in rows.values() for b in row})
        fig, ax = plt.subplots(figsize=(6.4, 5.2), dpi=100, layout="constrained")
        families = sorted({label.partition(" (")[0] for label in rows})  # one colour per family
        for label, row in sorted(rows.items()):
            xs = [i for i, b in enumerate(bins) if b in row]
            means = [statistics.fmean(row[bins[i]]) for i in xs]
            stds = [statistics.stdev(row[bins[i]]) if len(row[bins[i]]) > 1 else 0.0 for i in xs]
            dashed = "attention=none" in label
            ax.errorbar(xs, means, yerr=stds, marker="o", capsize=2, linestyle="--" if dashed else "-",
                        color=f"C{families.index(label.partition(' (')[0]) % 10}", label=label.replace("\n", " "))
        ax.set_xticks(range(len(bins)), [_bin_label(b) for b in bins])
        ax.set_xlabel("source length (tokens)")
        ax.set_ylabel("test exact match")
        ax.set_ylim(-0.02, 1.02)
        ax.set_title(f"{task}: exact match against source length (dashed: no attention)", fontsize=9)
        fig.legend(*ax.get_legend_handles_labels(), loc="outside lower center", ncols=2, fontsize=7)
        path = Path(out) / f"exact_by_length_{task}.png"
        fig.savefig(path, metadata={"Software": None})
        plt.close(fig)
        written.append(path)
    return written
