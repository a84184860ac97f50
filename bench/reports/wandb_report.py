"""The W&B report: the static report's records as a ``wandb_workspaces.reports.v2`` Report over the W&B runs
the suite mirrored them to (bench/run/mirror.py: project ``rnnbench``, group = task, run name = record name,
run id = the record's ``wandb_id``).

    python -m bench report --wandb [--entity E] [--project P]   # needs `wandb login` and the W&B server

``build`` makes the report object from the records and their metrics CSVs' headers alone, with no network (a
test inspects its blocks, run sets and panels); ``save`` is the one step that talks to the server. A section
per task: its run set (the task's mirrored runs, grouped by the settings that tell the leaderboard rows
apart), the validation and test metric, the pre-clip gradient norm, the flow ratio of layer 0 (each core's,
for composed models) and the flow heatmaps (and attention maps) the diagnostics callback logged.
"""

from __future__ import annotations

import csv
import json
import netrc
import os
import re
from collections import Counter
from pathlib import Path
from urllib.parse import urlparse

import wandb_workspaces.reports.v2 as wr
from wandb_workspaces import expr

from ..run.config import flatten
from ..store import Store, open_metrics
from .leaderboard import ARROW, declared

STEP = "trainer/global_step"  # Lightning's WandbLogger logs it with every row: the CSV's `step`
FLOW = re.compile(r"^diag/(?:\w+/)?flow_ratio/l0$")  # bench/diag/callback.py: main core, then each role's
GRAD = "grad/total"
HEATMAP, ATTENTION = "diag/flow_heatmap", "diag/attention"  # images the callback logs to the mirror only


def logged_in() -> bool:
    """An API key in the environment or in ~/.netrc for the W&B server (what `wandb login` writes); nothing is
    sent anywhere."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    import wandb

    host = urlparse(wandb.Settings().base_url).hostname
    try:
        return netrc.netrc(os.environ.get("NETRC")).authenticators(host) is not None
    except (OSError, netrc.NetrcParseError):
        return False


def metric_keys(recs: list[dict], store: Store) -> set[str]:
    """Every column the task's runs logged (the headers of their metrics CSVs)."""
    keys: set[str] = set()
    for rec in recs:
        path = store.runs / rec["metrics_file"] if rec.get("metrics_file") else None
        if path is not None and path.is_file():
            with open_metrics(path) as f:
                keys.update(next(csv.reader(f), []))
    return keys


def grouping(recs: list[dict]) -> list[str]:
    """The config keys that tell the task's leaderboard rows apart: the architecture, and each setting that
    varies within one architecture (``arch.layers``, ``model.attention``, ``task.permute``); settings that
    come with an architecture (an LSTM's forget bias) do not split it further."""
    flats = [{k: v for k, v in flatten(r["config"]).items() if k != "seed" and k not in declared(r)[1]}
             for r in recs]
    by_arch: dict[str, list[dict]] = {}
    for flat in flats:
        by_arch.setdefault(json.dumps(flat.get("arch.name")), []).append(flat)

    def varies(key: str, group: list[dict]) -> bool:
        return len({json.dumps(f.get(key)) for f in group}) > 1

    within = [k for k in sorted(set().union(*flats)) if any(varies(k, g) for g in by_arch.values())]
    return [f"config.{k}" for k in ["arch.name"] * (len(by_arch) > 1) + within]


def runset(recs: list[dict], task: str, entity: str, project: str) -> wr.Runset:
    """The task's mirrored runs: by W&B id where the record kept it, else by run name in the task's group."""
    ids = sorted(r["wandb_id"] for r in recs if r.get("wandb_id"))
    names = sorted({r["name"] for r in recs if not r.get("wandb_id")})
    picks = [expr.Metric("ID").isin(ids)] if ids else []
    picks += [expr.Metric("Name").isin(names)] if names else []
    runs = picks[0] if len(picks) == 1 else expr.Or(*picks)
    return wr.Runset(entity=entity, project=project, name=task, groupby=grouping(recs),
                     filters=expr.And(expr.Metric("Group") == task, runs))


def panels(recs: list[dict], keys: set[str]) -> list:
    metric, mode = recs[0]["metric"]["name"], recs[0]["metric"]["mode"]
    band = {"aggregate": True, "groupby_aggfunc": "mean", "groupby_rangefunc": "stddev"}
    out = [wr.LinePlot(title=f"val/{metric} {ARROW[mode]}", x=STEP, y=[f"val/{metric}"], **band),
           wr.BarPlot(title=f"test/{metric} {ARROW[mode]}", metrics=[f"test/{metric}"], **band),
           wr.LinePlot(title="pre-clip gradient norm", x=STEP, y=[GRAD], log_y=True, **band)]
    flows = sorted(k for k in keys if FLOW.match(k))
    if flows:
        out += [wr.LinePlot(title="flow ratio, layer 0: log10 ‖∂L/∂h_first‖ / ‖∂L/∂h_last‖", x=STEP, y=flows,
                            **band),
                wr.MediaBrowser(title="gradient flow heatmap", media_keys=[HEATMAP], gallery_axis="run")]
    if any((r.get("diagnostics") or {}).get("attention") for r in recs):
        out.append(wr.MediaBrowser(title="attention map", media_keys=[ATTENTION], gallery_axis="run"))
    return out


def _summary(recs: list[dict]) -> str:
    statuses = Counter(r["status"] for r in recs)
    group = [g.removeprefix("config.") for g in grouping(recs)]
    return (f"{len(recs)} runs (" + ", ".join(f"{n} {s}" for s, n in sorted(statuses.items())) + ")"
            + (f", grouped by {', '.join(group)}." if group else "."))


def build(records: list[dict], store: Store, entity: str, project: str) -> wr.Report:
    """The report object; no network (``Report.save`` is where the server comes in)."""
    by_task: dict[str, list[dict]] = {}
    for rec in sorted(records, key=lambda r: (r["task"], r["name"], r["id"])):
        if rec.get("wandb_mode", "offline") != "disabled":  # a run trained with W&B off has no W&B run
            by_task.setdefault(rec["task"], []).append(rec)
    commits = sorted({r["provenance"]["git_sha"][:8] for r in records if r.get("provenance")})
    blocks = [wr.TableOfContents(),
              wr.P(f"{len(records)} run records (commits {', '.join(commits)}), as mirrored to W&B; "
                   "generated by `python -m bench report --wandb` from the records. Lines: mean over a row's "
                   "seeds, band ± std.")]
    for task, recs in by_task.items():
        blocks += [wr.H2(task), wr.P(_summary(recs)),
                   wr.PanelGrid(runsets=[runset(recs, task, entity, project)],
                                panels=panels(recs, metric_keys(recs, store)))]
    return wr.Report(entity=entity, project=project, title="rnnbench results", width="fluid", blocks=blocks,
                     description=f"{len(records)} runs over {len(by_task)} tasks, from the suite's records")


def default_entity() -> str:
    import wandb

    return wandb.Api().default_entity


def save(report: wr.Report) -> str:
    """Upload the report; returns its URL."""
    report.save()
    return report.url


def write(out: str | Path, entity: str | None, project: str) -> str:
    store = Store(out)
    report = build(store.records().records, store, entity or default_entity(), project)
    return save(report)
