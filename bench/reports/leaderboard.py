"""Leaderboards generated from run records alone: ``LEADERBOARD.md`` and ``leaderboard.csv``.

    python -m bench leaderboard --out results

Runs group into sections by task and task config, and within a section into rows by every setting but the
seed and the fields declared outside the question (each record lists them). A row reports the test metric as mean +- sample std over its ``ok`` seeds, with direction, baseline,
solved rate, divergences, the median pre-clip gradient norm, parameters, wall time and commits. The output
depends on the records only (no clock, no paths), so regenerating it is byte-for-byte stable; it reads
nothing but the results store, and imports neither torch nor Lightning. A record that cannot be read is named
on stderr and left out.
"""

from __future__ import annotations

import csv
import io
import json
import math
import statistics
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from ..diag.verdict import verdict
from ..run.config import flatten
from ..store import Store, atomic, read_json

ARROW = {"min": "↓", "max": "↑"}
# Settings that describe the budget of a task section (shown once in its header when all rows share them).
BUDGET = ("train.max_steps", "task.batch_size", "optim.name", "optim.lr", "optim.clip", "arch.hidden_size")


def section_key(rec: dict) -> str:
    return json.dumps(rec["config"]["task"], sort_keys=True)


def declared(rec: dict) -> tuple[dict, list[str]]:
    """The record's ``defaults`` and ``outside_question`` (schema 2). A schema-1 record, written before records
    carried them, gets them from the declarations (which imports the registries; bench.dev.migrate upgrades a
    folder of records once, as it did the committed reference)."""
    if "defaults" in rec and "outside_question" in rec:
        return rec["defaults"], rec["outside_question"]
    from ..run.config import resolve

    cfg = resolve(flatten(rec["config"]), check_machine=False)
    rec["defaults"], rec["outside_question"] = cfg.defaults(), cfg.outside("question")
    return rec["defaults"], rec["outside_question"]


def question(rec: dict) -> dict[str, object]:
    """The dotted settings of a row: the config but its task (the section), seed, and the fields outside the
    question."""
    outside = set(declared(rec)[1])
    return {k: v for k, v in flatten(rec["config"]).items()
            if not k.startswith("task.") and k != "seed" and k not in outside}


def row_key(rec: dict) -> str:
    nested: dict = {}
    for dotted, value in question(rec).items():
        section, _, name = dotted.partition(".")
        nested.setdefault(section, {})[name] = value
    return json.dumps(nested, sort_keys=True)


@dataclass
class Row:
    task: str
    label: str
    metric: str
    mode: str
    mean: float | None
    std: float | None
    n_ok: int
    n_runs: int
    n_diverged: int
    n_failed: int
    baseline: float
    solved: int | None
    grad_norm_median: float | None
    verdict: str
    spikes: str
    flow_ratio_init: float | None
    flow_ratio_final: float | None
    params: int
    wall_time_s: float
    commits: str
    section: str
    key: str

    def cell(self) -> str:
        if self.mean is None:
            return "—"
        std = f" ± {self.std:.3g}" if self.std is not None else ""
        return f"{self.mean:.4g}{std} (n={self.n_ok})"


def _default_value(dotted: str, rec: dict):
    """The declared default of a setting for the record's task and architecture (labels show only what a row
    changed)."""
    return flatten(declared(rec)[0]).get(dotted)


def _fmt(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _labels(group: dict[str, list[dict]]) -> dict[str, str]:
    """Arch label plus each setting that varies across rows and differs from its default."""
    flat = {key: question(recs[0]) for key, recs in group.items()}
    varying = {k for k in set().union(*flat.values())
               if k not in ("arch.name", "arch.layers", "arch.bidirectional")  # the arch label shows them
               and len({json.dumps(f.get(k)) for f in flat.values()}) > 1}
    labels = {}
    for key, recs in group.items():
        extra = [f"{k}={_fmt(flat[key][k])}" for k in sorted(varying)
                 if k in flat[key] and flat[key][k] != _default_value(k, recs[0])]
        labels[key] = recs[0]["arch_label"] + (f" ({', '.join(extra)})" if extra else "")
    return labels


def _group(records: list[dict]) -> dict[str, dict[str, list[dict]]]:
    """section key -> row key -> the records of that row (its seeds)."""
    sections: dict[str, dict[str, list[dict]]] = {}
    for rec in records:
        sections.setdefault(section_key(rec), {}).setdefault(row_key(rec), []).append(rec)
    return sections


def label_of_rows(records: list[dict], sep: str = " · ") -> Callable[[dict], str]:
    """record -> its leaderboard row label, plus (after ``sep``) the task settings of its section where a task
    has several (``gru · permute=True``): how a task's pictures name the rows of all its sections."""
    labels = {(s, k): label for s, group in _group(records).items() for k, label in _labels(group).items()}
    titles = section_titles(list(dict.fromkeys(section_key(r) for r in records)))

    def label_of(rec: dict) -> str:
        key = section_key(rec)
        variant = titles[key].partition(" · ")[2]
        return labels[(key, row_key(rec))] + (f"{sep}{variant}" if variant else "")

    return label_of


def build_rows(records: list[dict]) -> list[Row]:
    rows = []
    for skey, group in sorted(_group(records).items(), key=lambda kv: (json.loads(kv[0])["name"], kv[0])):
        labels = _labels(group)
        section_rows = [_row(recs, labels[key], skey, key) for key, recs in group.items()]
        rows.extend(sorted(section_rows, key=_rank))
    return rows


def _rank(row: Row):
    if row.mean is None:
        return (1, 0.0, row.label)
    return (0, row.mean if row.mode == "min" else -row.mean, row.label)


def _row(recs: list[dict], label: str, skey: str, key: str) -> Row:
    first = recs[0]
    ok = [r for r in recs if r["status"] == "ok" and r["metric"]["test"] is not None]
    values = [r["metric"]["test"] for r in ok]
    solved = [r["metric"]["solved"] for r in recs]
    norms = [r["grad_norm_preclip"]["median"] for r in recs if r["grad_norm_preclip"]["median"] is not None]
    commits = sorted({r["provenance"]["git_sha"][:8] + ("+dirty" if r["provenance"]["git_dirty"] else "")
                      for r in recs})
    diags = [r["diagnostics"] for r in recs if r.get("diagnostics")]
    return Row(
        task=first["task"], label=label, metric=first["metric"]["name"], mode=first["metric"]["mode"],
        mean=statistics.fmean(values) if values else None,
        std=statistics.stdev(values) if len(values) > 1 else None,
        n_ok=len(ok), n_runs=len(recs), n_diverged=sum(r["status"] == "diverged" for r in recs),
        n_failed=sum(r["status"] == "failed" for r in recs), baseline=first["metric"]["baseline"],
        solved=None if first["task_info"]["solved_threshold"] is None else sum(bool(s) for s in solved),
        grad_norm_median=statistics.median(norms) if norms else None, verdict=_verdicts(diags, len(recs)),
        spikes=_spikes(diags),
        flow_ratio_init=_median([d["flow_ratio_init"] for d in diags]),
        flow_ratio_final=_median([d["flow_ratio_final"] for d in diags]),
        params=first["params"],
        wall_time_s=statistics.fmean(r["wall_time_s"] for r in recs), commits=", ".join(commits),
        section=skey, key=key,
    )


def _median(values: list) -> float | None:
    finite = [v for v in values if isinstance(v, (int, float)) and math.isfinite(v)]
    return statistics.median(finite) if finite else None


def _verdicts(diags: list[dict], n: int) -> str:
    """The run's verdict over seeds; a composed model's is its first core's (the encoder), followed by each other
    core's: ``healthy 3/3 · decoder exploding 2/3``."""
    main = _verdict(diags, n)
    roles = dict.fromkeys(role for d in diags for role in d.get("cores", {}) if role != d.get("role"))
    others = [f"{role} {_verdict([d['cores'][role] for d in diags if role in d.get('cores', {})], n)}"
              for role in roles]
    return " · ".join([main, *others])


def _verdict(diags: list[dict], n: int) -> str:
    """The most common flow verdict over seeds with its count, e.g. ``vanishing 3/3``; ties list both. Each
    record is judged from its final flow ratio by today's rule (bench/diag/verdict.py), whatever rule the
    record was written under."""
    counts = Counter(v for v in (verdict(d.get("flow_ratio_final")) for d in diags) if v)
    if not counts:
        return "—"
    top = max(counts.values())
    return " / ".join(f"{v} {c}/{n}" for v, c in sorted(counts.items()) if c == top)


def _spikes(diags: list[dict]) -> str:
    """Steps over 1000x the median pre-clip norm, summed over seeds, and in how many runs: ``3 (2/3 runs)``."""
    counts = [d["events"].get("spikes") for d in diags if d.get("events")]
    if not counts or any(c is None for c in counts):
        return "—"
    total, runs = sum(counts), sum(c > 0 for c in counts)
    return "0" if total == 0 else f"{total} ({runs}/{len(counts)} runs)"


def _shape_of(info: dict) -> str:
    """A sequence task's length, or a composed task's model and sizes (vocabularies, image shape, classes)."""
    if "seq_len" in info:
        return f"Sequence length {info['seq_len']}"
    sizes = ", ".join(f"{k} {'x'.join(map(str, v)) if isinstance(v, list) else v}" for k, v in info["sizes"].items())
    return f"Model: {info['model']} ({sizes})"


def _header(recs: list[dict]) -> list[str]:
    info = recs[0]["task_info"]
    task_cfg = {k: v for k, v in recs[0]["config"]["task"].items() if k not in ("name", "batch_size")}
    shared = {}
    for k in BUDGET:
        values = {json.dumps(flatten(r["config"]).get(k)) for r in recs}
        if len(values) == 1:
            shared[k] = flatten(recs[0]["config"]).get(k)
    solved = info["solved_threshold"]
    lines = [
        f"## {info['name']} — {info['shape']}, v{info['version']}",
        "",
        f"Variant: {info['variant']}. {_shape_of(info)}. "
        + ", ".join(f"{k}={v}" for k, v in task_cfg.items()) + ".",
        f"Metric: test {info['metric']} {ARROW[info['mode']]}; chance-level baseline {info['baseline']:.4g}"
        + (f"; solved when {'<' if info['mode'] == 'min' else '>'} {solved:.4g}." if solved is not None else "."),
        "Same budget for every row: " + ", ".join(f"{k}={v}" for k, v in shared.items()) + ".",
        "",
    ]
    return lines


def render(records: list[dict], reference: list[dict] | None = None) -> str:
    rows = build_rows(records)
    ref_rows = {(r.section, r.key): r for r in build_rows(reference)} if reference else {}
    by_section: dict[str, list[dict]] = {}
    for rec in records:
        by_section.setdefault(section_key(rec), []).append(rec)
    out = ["# rnnbench leaderboard", "",
           "Generated by `make leaderboard` from the run records in `runs/`; do not edit by hand.",
           "Rows: mean ± sample std of the final test metric over seeds that finished `ok` "
           "(diverged and failed runs are counted, not averaged). ‖g‖: median over runs of each run's median "
           "pre-clip total gradient L2 norm. Verdict: vanishing / healthy / exploding from the gradient-flow "
           "ratio alone, at the end of training (rule in bench/diag/verdict.py), most common over seeds. Spikes: "
           "optimizer steps whose pre-clip norm exceeded 1000× the run's median, summed over seeds (clipping "
           "contained them; a separate column, never folded into the verdict). Flow: "
           "log10 ‖∂L/∂h_first‖ / ‖∂L/∂h_last‖ of layer 0, median over seeds, at initialisation → end. "
           "Wall: mean seconds per run. Pictures: flow_<task>.png. Composed models (sweeps/encdec.yaml): verdict and "
           "flow of the first core (an encoder: the whole loss's gradient reaching each source position), then "
           "each other core's verdict; pictures also attention_<task>.png and exact_by_length_<task>.png.", ""]
    current = None
    for i, row in enumerate(rows):
        if row.section != current:
            current = row.section
            out += _header(by_section[row.section])
            ref_col = " reference |" if reference is not None else ""
            out.append(f"| arch | test {row.metric} {ARROW[row.mode]} |{ref_col} baseline | solved | diverged | "
                       "verdict | spikes | flow init → end | ‖g‖ pre-clip | params | wall s | commit |")
            out.append("|---|---|" + ("---|" if reference is not None else "") + "---|" * 10)
        ref = ""
        if reference is not None:
            match = ref_rows.get((row.section, row.key))
            ref = f" {match.cell() if match else '—'} |"
        solved = "—" if row.solved is None else f"{row.solved}/{row.n_runs}"
        norm = "—" if row.grad_norm_median is None else f"{row.grad_norm_median:.3g}"
        flow = f"{_num(row.flow_ratio_init)} → {_num(row.flow_ratio_final)}"
        out.append(f"| {row.label} | {row.cell()} |{ref} {row.baseline:.4g} | {solved} | "
                   f"{row.n_diverged}/{row.n_runs} | {row.verdict} | {row.spikes} | {flow} | {norm} | {row.params:,} | "
                   f"{row.wall_time_s:.0f} | {row.commits} |")
        if i + 1 == len(rows) or rows[i + 1].section != current:
            out.append("")
    if not rows:
        out.append("No run records yet.")
    return "\n".join(out).rstrip() + "\n"


def _num(value: float | None) -> str:
    return "—" if value is None else f"{value:.2f}"


def render_csv(records: list[dict]) -> str:
    buf = io.StringIO()
    names = [f for f in Row.__dataclass_fields__ if f not in ("section", "key")]
    writer = csv.DictWriter(buf, fieldnames=names, lineterminator="\n")
    writer.writeheader()
    for row in build_rows(records):
        writer.writerow({k: v for k, v in asdict(row).items() if k in names})
    return buf.getvalue()


@dataclass
class Written:
    md: Path  # LEADERBOARD.md
    n_records: int  # records it was generated from
    skipped: list[str]  # one line per record that could not be read (named, left out)


def load(folder: Path | Store) -> tuple[list[dict], list[str]]:
    """The readable records of a results folder, and one line per record left out."""
    loaded = (folder if isinstance(folder, Store) else Store(folder)).records()
    return loaded.records, loaded.skipped


def write(out: Path, reference: Path | None = None,
          loaded: tuple[list[dict], list[str]] | None = None) -> Written:
    """Regenerate ``out/LEADERBOARD.md``, ``out/leaderboard.csv`` and the flow pictures from ``out/runs``
    (``loaded``: that folder's ``load``, when the caller has read it already)."""
    store = Store(out)
    records, skipped = loaded if loaded is not None else load(store)
    skipped = list(skipped)
    ref = None
    if reference is not None and Path(reference).resolve() != store.root.resolve():
        ref, ref_skipped = load(reference)
        skipped += ref_skipped
    for name in ("LEADERBOARD.md", "leaderboard.csv"):
        store.remove_orphaned_temp_files(store.root / name)
    md = store.write_text(store.root / "LEADERBOARD.md", render(records, ref))
    store.write_text(store.root / "leaderboard.csv", render_csv(records))
    from ..diag.plots import write_task_pngs

    label_of = label_of_rows(records, sep="\n")  # a task's sections (sdigits plain and permuted) share one PNG
    write_task_pngs(records, store.root, label_of=label_of)
    from .figures import write_attention_pngs, write_length_pngs

    write_attention_pngs(records, store.root, label_of)
    write_length_pngs(records, store.root, label_of)
    return Written(md, len(records), skipped)


README_START = "<!-- leaderboard:start (generated by `make leaderboard`; do not edit) -->"
README_END = "<!-- leaderboard:end -->"


def section_titles(sections: list[str]) -> dict[str, str]:
    """Section key -> its task name, plus the task settings that tell it from the task's other sections
    (``sdigits · permute=True``)."""
    configs = {key: json.loads(key) for key in sections}
    titles = {}
    for key, config in configs.items():
        siblings = [c for c in configs.values() if c["name"] == config["name"]]
        differ = sorted(k for k in config if k != "name" and len({json.dumps(c.get(k)) for c in siblings}) > 1)
        titles[key] = " · ".join([config["name"], *(f"{k}={_fmt(config[k])}" for k in differ)])
    return titles


def _cpu_minutes(summary: dict, by_id: dict[str, dict]) -> str:
    """ "(31.2 CPU-min over all 36 of its recorded runs)": CPU time summed over every run the spec plans that has a
    record, where records carry it (newer ones do); a resumed sweep's wall time covers only what it ran."""
    times = [by_id[i].get("cpu_time_s") for i in summary.get("planned_ids", []) if i in by_id]
    if not times or any(t is None for t in times):
        return ""
    return f" ({sum(times) / 60:.1f} CPU-min over all {len(times)} of its recorded runs)"


def _family(label: str) -> tuple[str, str]:
    """A row label -> (its architecture label, the settings it changed): ``gru (model.attention=none)`` ->
    (``gru``, ``model.attention=none``)."""
    arch, _, rest = label.partition(" (")
    return arch, rest.removesuffix(")")


def readme_block(out: Path, records: list[dict] | None = None) -> str:
    """A compact task x architecture table (mean ± std · most common verdict) and the sweep's timing."""
    store = Store(out)
    records = load(store)[0] if records is None else records
    rows = build_rows(records)
    labels = sorted({_family(r.label)[0] for r in rows})
    lines = [README_START, "",
             "| task | metric | baseline | " + " | ".join(labels) + " |",
             "|---|---|---|" + "---|" * len(labels)]
    titles = section_titles(list(dict.fromkeys(r.section for r in rows)))
    for section in titles:
        # one line per setting a row changed (e.g. model.attention=none), one column per family
        variants = dict.fromkeys(_family(r.label)[1] for r in rows if r.section == section)
        for variant in variants:
            cells = {_family(r.label)[0]: r for r in rows if r.section == section and _family(r.label)[1] == variant}
            first = next(iter(cells.values()))
            ok = [r for r in cells.values() if r.mean is not None]
            best = (min if first.mode == "min" else max)(ok, key=lambda r: r.mean) if ok else None
            row = []
            for label in labels:
                r = cells.get(label)
                text = "" if r is None else r.cell().replace(f" (n={r.n_ok})", "")
                text = f"**{text}**" if r is best and r is not None else text
                if r is not None and r.verdict != "—":
                    text += " · " + " / ".join(v.split(" ")[0] for v in r.verdict.split(" / "))
                if r is not None and r.spikes not in ("0", "—"):
                    text += f" · {r.spikes.split(' ')[0]} spikes"
                row.append(text)
            title = titles[section] + (f" · {variant}" if variant else "")
            lines.append(f"| {title} | test {first.metric} {ARROW[first.mode]} | {first.baseline:.4g} | "
                         + " | ".join(row) + " |")
    by_id = {r["id"]: r for r in records}
    for summary in store.sweep_summaries():
        s = read_json(summary, "sweep summary")
        p = s["provenance"]
        lines += ["", f"`{s['spec']}`: {s['ran']} runs in {s['wall_time_s'] / 60:.1f} min on {s['workers']} "
                      f"worker(s) x {s['threads_per_worker']} thread(s){_cpu_minutes(s, by_id)}, "
                      f"{p['cpu']} ({p['cpu_count']} cores), torch {p['torch']}, commit {p['git_sha'][:8]}."]
    lines += ["", README_END]
    return "\n".join(lines)


def replace_block(text: str, start: str, end: str, block: str) -> str:
    """``text`` with the part from ``start`` to ``end`` (markers included) replaced by ``block``; unchanged when
    a marker is missing."""
    if start not in text or end not in text:
        return text
    head, rest = text.split(start, 1)
    return head + block + rest.split(end, 1)[1]


def update_readme(readme: Path, out: Path, records: list[dict] | None = None) -> bool:
    """Replace the generated block of ``readme``; returns whether the file changed."""
    text = Path(readme).read_text()
    if README_START not in text or README_END not in text:
        return False
    new = replace_block(text, README_START, README_END, readme_block(out, records))
    if new != text:
        with atomic(Path(readme)) as tmp:
            tmp.write_text(new, encoding="utf-8")
    return new != text
