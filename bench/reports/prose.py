"""The words a leaderboard section opens with, filled into templates from the records: nothing is typed.

    prose.budget(tables, skey)            # "Fixed budget: 2000 steps, lr 0.001, every family (gru, lstm). ..."
    prose.opening(tables, skey, store)    # two or three sentences: outcome, gradient flow, divergences

The outcome sentence reads the section's rows. The flow sentence reads the runs the section's flow picture shows
(``Picker.pick_sections``: each family's best row, lowest seed) from their records and metrics CSVs in
``store``, so every number in it is in the picture's title, the table or that run's files; without a store it
is left out. "Leaves the baseline" means a validation value 10 % of the way from the baseline to a perfect
score (``SHARE``); the sentence names that margin, since a pictured seed can stay inside it while its family's
mean over seeds is past the baseline. Imports neither torch nor Lightning.
"""

from __future__ import annotations

from ..diag.verdict import verdict
from ..run.schema import Metrics
from ..store import Store
from .tables import Row, Tables, fmt, past_baseline

SHARE = 0.1  # how far past the baseline, of the way to a perfect score, a value must be to have left it
STAYS = 0.5  # a flow ratio that moved less than this (in log10) over training is said to stay


def budget(tables: Tables, skey: str) -> str:
    """Whether the section compares families at one budget, and which: from each row's steps and lr."""
    per_family = tables.family_budgets(skey)
    shared = {k: v for k, v in tables.budget(skey).items() if k not in ("train.max_steps", "optim.lr")}
    pairs = {p for ps in per_family.values() for p in ps}
    if len(pairs) == 1:
        ((steps, lr),) = pairs
        text = f"Fixed budget: {steps} steps, lr {fmt(lr)}, every family ({', '.join(per_family)})."
    else:
        by_budget: dict[tuple, list[str]] = {}  # families that ran the same budgets, in family order
        for family, ps in per_family.items():
            by_budget.setdefault(tuple(ps), []).append(family)
        within = any(len(ps) > 1 for ps in per_family.values())
        lead = "Not one budget: rows differ in steps or lr: " if within else "Budget differs by family: "
        text = lead + "; ".join(
            f"{', '.join(families)}: " + " or ".join(f"{steps} steps at lr {fmt(lr)}" for steps, lr in ps)
            for ps, families in by_budget.items()) + "."
    if shared:
        text += " Same for every row: " + ", ".join(f"{k}={v}" for k, v in shared.items()) + "."
    return text


def opening(tables: Tables, skey: str, store: Store | None = None) -> list[str]:
    """Two or three sentences: how the rows ended against the baseline, how the pictured runs' gradient flow
    changed over training (with a store), and which rows diverged or failed (where any did)."""
    rows = [r for r in tables.rows() if r.section == skey]
    sentences = [outcome(rows, tables.sections[skey].first["task_info"]["solved_threshold"])]
    if store is not None:
        sentences.append(flow(tables, skey, store))
    broken = [f"{what}: " + _join([f"{r.label} in {n} of {r.n_runs} runs" for r in rows if (n := count(r))])
              for what, count in (("Diverged", lambda r: r.n_diverged), ("Failed", lambda r: r.n_failed))
              if any(count(r) for r in rows)]
    if broken:
        sentences.append("; ".join(broken) + ".")
    return [s for s in sentences if s]


def outcome(rows: list[Row], threshold: float | None) -> str:
    """``Best: gru, test mse 0.0026 ± 0.0006 (n=3) against a baseline of 0.1667; vanilla ends at the baseline
    (...); no run is solved (...).``"""
    first, ranked = rows[0], [r for r in rows if r.mean is not None]
    if not ranked:
        return f"No row has a test value: none of its {sum(r.n_runs for r in rows)} runs finished ok."
    best, base, perfect = ranked[0], f"{first.baseline:.4g}", "1" if first.mode == "max" else "0"
    if not past_baseline(best.mean, first.baseline, first.mode):
        text = f"No row beats the baseline of {base}: the best, {best.label}, ends at {best.cell()}"
    else:
        text = f"Best: {best.label}, test {first.metric} {best.cell()} against a baseline of {base}"
        stay = [r.label for r in ranked if not past_baseline(r.mean, first.baseline, first.mode, SHARE)]
        if stay:
            text += (f"; {_join(stay)} {'ends' if len(stay) == 1 else 'end'} at the baseline (less than "
                     f"{SHARE:.0%} of the way from it to a perfect {perfect})")
    if threshold is None:
        return text + "."
    solved = [f"{r.label} in {r.solved}/{r.n_runs}" for r in rows if r.solved]
    sign = "<" if first.mode == "min" else ">"
    return text + (f"; solved (test {first.metric} {sign} {threshold:.4g}) by {_join(solved)} runs." if solved else
                   f"; no run is solved (test {first.metric} {sign} {threshold:.4g}).")


def flow(tables: Tables, skey: str, store: Store) -> str:
    """The pictured runs' gradient at the first position as a fraction of the last one's, at initialisation and
    at the end of training, when its verdict changed, and when the run's validation metric left the baseline."""
    shown = tables.flow_panels().get(skey)
    if not shown:
        return ""
    clauses, role = [], None
    for label, (seed, name, run_id), rec in shown.values():
        rec = rec or store.read_record(store.record_path(name, run_id))
        role = rec["diagnostics"].get("role") or role
        clauses.append(f"{label} (s{seed}) " + flow_clause(rec, store.metrics))
    where = f"position 0 of the {role}" if role else "t = 0"
    return (f"Gradient at {where} as a fraction of the last {'position' if role else 'step'}'s, in the pictured "
            "runs: " + "; ".join(clauses) + ".")


def flow_clause(rec: dict, metrics: Metrics) -> str:
    d, m = rec["diagnostics"], rec["metric"]
    init, final = d.get("flow_ratio_init"), d.get("flow_ratio_final")
    if verdict(final) is None:
        text = "has no flow verdict: its final flow ratio is not finite"
    elif verdict(init) is None or abs(final - init) < STAYS:
        text = f"stays near {_power(final)}" + (f" ({_power(init)} at initialisation)" if verdict(init) else "")
    else:
        text = f"{'rises' if final > init else 'falls'} from {_power(init)} to {_power(final)}"
    key = f"val/{m['name']}"
    series = metrics.columns(rec["metrics_file"], ("diag/flow_ratio/l0", key)) or {}  # none, or damaged (named)
    turn = _turn(series.get("diag/flow_ratio/l0", {}), verdict(init), verdict(final))
    if turn is not None:
        text += f", turning {verdict(final)} near step {turn}"
    if series.get(key):  # the margin is named: a pictured seed can stay inside it while its family's mean is past
        values, perfect = series[key], "1" if m["mode"] == "max" else "0"
        left = next((s for s, v in sorted(values.items()) if past_baseline(v, m["baseline"], m["mode"], SHARE)), None)
        best = (max if m["mode"] == "max" else min)(values.values())
        text += (f", and its {key} leaves the baseline ({SHARE:.0%} of the way to a perfect {perfect}) near step "
                 f"{left}" if left is not None else
                 f", and its {key} never gets {SHARE:.0%} of the way from the baseline to a perfect {perfect} "
                 f"(its best: {best:.4g})")
    return text


def _turn(ratios: dict[int, float], start: str | None, end: str | None) -> int | None:
    """The first probe step whose verdict is the final one, where that differs from the first probe's."""
    if start is None or end is None or start == end:
        return None
    return next((step for step, r in sorted(ratios.items()) if verdict(r) == end), None)


def _power(ratio: float) -> str:
    return f"10^{round(ratio, 1) + 0.0:.1f}"  # + 0.0: no "10^-0.0"


def _join(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]
