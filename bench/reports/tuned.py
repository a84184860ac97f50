"""``TUNED.md``: the tuned comparisons (bench/sweeps/tune.py), from the studies' summaries and the run records.

    python -m bench leaderboard --out results        # writes it with the leaderboard

Each comparison opens with what every family had (trials, maximum steps, sampler, pruner, confirm seeds), then
one row per family:
- the configuration its search chose, and its best validation value there;
- its trials (finished / pruned by Hyperband / failed or diverged);
- the test metric over the confirm seeds, each read at its run's best validation checkpoint: mean ± sample std
  and a 95 % interval for the mean (Student's t with n - 1 degrees of freedom);
- where the task has a threshold, how many confirm seeds solved it and the median step of the first validation
  past it (from the runs' metrics CSVs);
- against the best family (best mean), Welch's t-test (unequal variances, two-sided, ``scipy.stats``): "differs"
  when p < 0.05, else "no significant difference". The best row is bolded only when its whole interval is
  better than the task's baseline.
A figure per comparison, ``importance_<task>_<n>.png``, shows each family's fANOVA importances (Optuna's
evaluator over its finished trials, as Greff et al. 2015 used fANOVA), where the study had enough finished trials.
The run ids in the summaries point at the records; every number shown comes from a record or its metrics CSV.
"""

from __future__ import annotations

import math
import statistics
from pathlib import Path

from ..diag.plots import inputs_hash, pyplot, save_unless_unchanged
from ..store import Store, atomic, read_json
from .curves import series

ALPHA = 0.05
STUDIES = "studies/*.json"


def summaries(store: Store) -> list[dict]:
    """Every tuned sweep's summary in ``<out>/studies``, by file name; an unreadable one is named and skipped."""
    out = []
    for path in sorted((store.root / "studies").glob("*.json")):
        try:
            out.append(read_json(path))
        except (OSError, ValueError) as exc:
            print(f"warning: {path}: unreadable ({exc}); left out of TUNED.md")
    return out


def tuned_ids(store: Store) -> set[str]:
    """The run ids every tuned summary names (search trials and confirm runs)."""
    ids = set()
    for summary in summaries(store):
        for comparison in summary["comparisons"].values():
            for family in comparison["families"].values():
                ids.update(t["run_id"] for t in family["trials"] if t.get("run_id"))
                ids.update(c["run_id"] for c in family["confirm"])
    return ids


def interval(values: list[float]) -> tuple[float, float] | None:
    """The 95 % Student-t interval for the mean of ``values`` (None with fewer than two)."""
    from scipy import stats

    if len(values) < 2:
        return None
    mean, sem = statistics.fmean(values), statistics.stdev(values) / math.sqrt(len(values))
    half = stats.t.ppf(1 - ALPHA / 2, len(values) - 1) * sem
    return mean - half, mean + half


def welch(a: list[float], b: list[float]) -> float | None:
    """Two-sided p-value of Welch's t-test between ``a`` and ``b`` (None when either has fewer than two values
    or both are constant)."""
    from scipy import stats

    if len(a) < 2 or len(b) < 2 or (statistics.pstdev(a) == 0 and statistics.pstdev(b) == 0):
        return None
    return float(stats.ttest_ind(a, b, equal_var=False).pvalue)


def _better(mode: str, x: float, y: float) -> bool:
    return x < y if mode == "min" else x > y


def solved_step(rec: dict, runs: Path) -> int | None:
    """The step of the first validation past the task's threshold, from the run's metrics CSV."""
    threshold = (rec.get("task_info") or {}).get("solved_threshold")
    name = rec.get("metrics_file")
    if threshold is None or not name or not (runs / name).is_file():
        return None
    mode = rec["metric"]["mode"]
    hits = [step for step, v in sorted(series(runs / name, f"val/{rec['metric']['name']}").items())
            if (v < threshold if mode == "min" else v > threshold)]
    return hits[0] if hits else None


def _fmt(x: float | None) -> str:
    return "—" if x is None else f"{x:.4g}"


def _params(params: dict) -> str:
    return ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in sorted(params.items())) \
        or "(nothing searched)"


def rows(comparison: dict, by_id: dict[str, dict], runs: Path) -> list[dict]:
    """One dict per family: what the table shows, computed from the records its summary names."""
    out = []
    for family, entry in comparison["families"].items():
        states = [t["state"] for t in entry["trials"]]
        recs = [by_id[c["run_id"]] for c in entry["confirm"] if c["run_id"] in by_id]
        ok = [r for r in recs if r["status"] == "ok" and r["metric"].get("test") is not None]
        values = [r["metric"]["test"] for r in ok]
        steps = [solved_step(r, runs) for r in ok]
        out.append({
            "family": family, "chosen": entry["chosen"], "states": states, "planned": len(entry["confirm"]),
            "recs": recs, "values": values, "mean": statistics.fmean(values) if values else None,
            "std": statistics.stdev(values) if len(values) > 1 else None, "interval": interval(values),
            "solved": [s for s in steps if s is not None], "info": ok[0]["task_info"] if ok else None,
            "params": ok[0]["params"] if ok else None, "tested": {r["metric"].get("test_from") for r in ok},
            "importance": entry.get("importance"),
        })
    return out


def beats_baseline(row: dict, baseline: float | None, mode: str) -> bool:
    """Whether the whole 95 % interval (the mean, with one seed) lies on the better side of the baseline."""
    if baseline is None:
        return True
    worst = row["mean"] if row["interval"] is None else row["interval"][1 if mode == "min" else 0]
    return _better(mode, worst, baseline)


def render_comparison(title: str, comparison: dict, by_id: dict[str, dict], runs: Path, figure: str | None) -> list[str]:
    p = comparison["protocol"]
    found = rows(comparison, by_id, runs)
    mode = p["goal"]
    info = next((r["info"] for r in found if r["info"]), None)
    baseline = info.get("baseline") if info else None
    threshold = info.get("solved_threshold") if info else None
    scored = [r for r in found if r["mean"] is not None]
    best = None
    for r in scored:
        if best is None or _better(mode, r["mean"], best["mean"]):
            best = r
    pruner = (f"Hyperband pruning (first rung {p['pruner']['min_resource']} validations, eta "
              f"{p['pruner']['reduction_factor']})" if p["pruner"] else "no pruning")
    sampler = "Optuna QMC (Sobol) random search" if p["method"] == "random" else "Optuna TPE"
    lines = [f"## {title}", "",
             f"Tuned, the same for every family: {p['trials_per_family']} trials of up to {p['max_steps']} steps "
             f"({sampler}, {pruner}, one seed), then the configuration with the best {p['metric']} retrained on "
             f"seeds {', '.join(map(str, p['confirm_seeds']))} at the full budget and tested at each run's best "
             f"validation checkpoint. Metric: test {info['metric'] if info else p['metric']} "
             f"({'lower' if mode == 'min' else 'higher'} is better)"
             + (f"; baseline {baseline:.4g}" if baseline is not None else "")
             + (f"; solved past {threshold:.4g}" if threshold is not None else "") + ".", ""]
    head = "| family | chosen (search value) | trials: finished / pruned / failed | test mean ± std | 95 % interval | "
    head += "solved: seeds, median step | vs best (Welch's t) | params |"
    lines += [head, "|" + "---|" * 8]
    for r in found:
        chosen = (f"{_params(r['chosen']['params'])} ({_fmt(r['chosen']['value'])})" if r["chosen"]
                  else "no trial finished")
        running = len(r["states"]) - sum(r["states"].count(k) for k in ("complete", "pruned", "fail"))
        counts = (f"{r['states'].count('complete')} / {r['states'].count('pruned')} / {r['states'].count('fail')}"
                  + (f" (+{running} running)" if running else ""))
        if r["mean"] is None:
            score, ci = f"pending ({len(r['recs'])}/{r['planned']} recorded)", "—"
        else:
            score = f"{r['mean']:.4g} ± {_fmt(r['std'])} (n={len(r['values'])}/{r['planned']})"
            lo_hi = r["interval"]
            ci = f"[{lo_hi[0]:.4g}, {lo_hi[1]:.4g}]" if lo_hi else "—"
            if r is best and beats_baseline(r, baseline, mode) and len(scored) > 1:
                score = f"**{score}**"
        if threshold is None or r["mean"] is None:
            solved = "—"
        else:
            solved = f"{len(r['solved'])}/{len(r['values'])}" + (
                f", step {statistics.median(r['solved']):.0f}" if r["solved"] else "")
        if r is best or r["mean"] is None or best is None:
            versus = "best" if r is best else "—"
        else:
            pvalue = welch(r["values"], best["values"])
            versus = "—" if pvalue is None else (
                f"differs (p = {pvalue:.2g})" if pvalue < ALPHA else f"no significant difference (p = {pvalue:.2g})")
        lines.append(f"| {r['family']} | {chosen} | {counts} | {score} | {ci} | {solved} | {versus} | "
                     f"{r['params'] if r['params'] is not None else '—'} |")
    if any(r["tested"] - {"best"} for r in found):
        lines += ["", "Some confirm runs had no validation checkpoint and were tested on their last model."]
    if figure:
        lines += ["", f"Hyperparameter importance (fANOVA over each family's finished trials): ![]({figure})"]
    return lines + [""]


def importance_figure(path: Path, title: str, comparison: dict) -> bool:
    """Bars of each family's fANOVA importances; False (and no file) when no family has them."""
    data = {f: e["importance"] for f, e in comparison["families"].items() if e.get("importance")}
    if not data:
        return False
    params = sorted({k for imp in data.values() for k in imp})

    def draw():
        plt = pyplot()
        fig, ax = plt.subplots(figsize=(6.4, 3.2))
        width = 0.8 / len(data)
        for i, (family, imp) in enumerate(data.items()):
            ax.bar([j + i * width for j in range(len(params))], [imp.get(k, 0.0) for k in params], width,
                   label=family)
        ax.set_xticks([j + 0.4 - width / 2 for j in range(len(params))], params)
        ax.set_ylim(0, 1)
        ax.set_ylabel("fANOVA importance")
        ax.set_title(title, fontsize=9)
        ax.legend(fontsize=8)
        fig.tight_layout()
        return fig

    save_unless_unchanged(path, inputs_hash("importance", title, data), draw)
    return True


def write(out: Path | Store, records: list[dict] | None = None) -> Path | None:
    """``<out>/TUNED.md`` (and its figures) when ``out`` holds tuned studies; None when it holds none."""
    store = out if isinstance(out, Store) else Store(out)
    found = summaries(store)
    if not found:
        return None
    if records is None:
        records = store.records().records
    by_id = {r["id"]: r for r in records}
    lines = ["# rnnbench — tuned comparisons", "",
             "Generated by `make leaderboard` from `studies/*.json` (bench/sweeps/tune.py) and the run records; "
             "do not edit by hand. Each family had the same tuning budget and is tested at its best validation "
             "checkpoint (bench/reports/tuned.py says how each column is computed).", ""]
    for summary in found:
        ids = [t["run_id"] for c in summary["comparisons"].values() for f in c["families"].values()
               for t in f["trials"] + f["confirm"] if t.get("run_id") in by_id]
        lines += [f"`{summary['spec']}`: {cpu_hours([by_id[i] for i in ids])} over the {len(ids)} runs recorded so "
                  "far (search trials and confirm runs; the records' CPU time).", ""]
        for n, (key, comparison) in enumerate(comparison_items(summary), 1):
            task = comparison["settings"].get("task.name", "task")
            title = f"{task} ({key}) — {summary['spec']}"
            name = f"importance_{task}_{Path(summary['spec']).stem}_{n}.png"
            drawn = importance_figure(store.root / name, title, comparison)
            lines += render_comparison(title, comparison, by_id, store.runs, name if drawn else None)
    path = store.root / "TUNED.md"
    with atomic(path) as tmp:
        tmp.write_text("\n".join(lines), encoding="utf-8")
    return path


def cpu_hours(records: list[dict]) -> str:
    """The records' summed CPU time in core-hours (a record from before CPU time was kept counts its wall time)."""
    seconds = sum(r.get("cpu_time_s") or r.get("wall_time_s") or 0.0 for r in records)
    return f"{seconds / 3600:.2f} CPU core-hours"


def comparison_items(summary: dict) -> list[tuple[str, dict]]:
    return list(summary["comparisons"].items())
