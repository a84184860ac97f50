"""The leaderboard's numbers in one pass over the records: ``Tables`` takes one record (or its summary, see
bench/store.py) at a time and keeps only aggregates, so reading 100,000 runs costs the memory of the rows.

    tables, skipped = stream(Store("results"))   # every record of the folder, one at a time
    tables = Tables.of(records)                  # records already in memory (tests, the HTML report)
    tables.rows()                                # leaderboard.Row per section and row, ranked

Runs group into sections by task config, and within a section into rows by every setting but the seed and the
fields declared outside the question (each record lists them). What a row keeps: counts, the few numbers per
seed its statistics need exactly (test metric, median gradient norm, flow ratios, wall time: ``statistics``
over them gives the very floats a list of whole records gave, which the byte-for-byte regeneration test
checks), verdict counters, commits, and the first record's labels. Also gathered on the way: the runs each
figure would show (``plots.Picker``), per-length exact match, the records an anchor selects (``wanted``), and
the CPU time of the runs a sweep summary names (``planned``). ``wanted(record, flat)`` gets a function
giving the record's flattened (config, defaults), made only when asked for. Imports neither torch nor Lightning.
"""

from __future__ import annotations

import gc
import json
import math
import re
import statistics
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from fractions import Fraction

from ..diag.plots import Picker
from ..diag.verdict import NO_VERDICT, verdict
from ..run.config import flatten
from ..store import Store, has_attention, has_flow
from .figures import length_bins

ARROW = {"min": "↓", "max": "↑"}  # a metric's direction, beside its name
# Settings that describe the budget of a task section (shown once in its header when all rows share them).
BUDGET = ("train.max_steps", "task.batch_size", "optim.name", "optim.lr", "optim.clip", "arch.hidden_size")
# The arch label (``gru-2l-bi``) already shows these, so a row label never repeats them.
IN_ARCH_LABEL = ("arch.name", "arch.layers", "arch.bidirectional")


def section_key(rec: dict) -> str:
    return json.dumps(rec["config"]["task"], sort_keys=True)


def declared(rec: dict) -> tuple[dict, list[str]]:
    """The record's ``defaults`` and ``outside_question`` (schema 2). A schema-1 record, written before records
    carried them, gets them from the declarations (which imports the registries; dev.migrate upgrades a
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
    q: dict[str, object] = {}
    for section, values in rec["config"].items():  # flatten's order, two levels inline (a third of the pass)
        if section in ("task", "seed"):
            continue
        if not isinstance(values, dict):
            q[section] = values
            continue
        for name, value in values.items():
            if isinstance(value, dict):
                q.update(flatten(value, f"{section}.{name}."))
            else:
                q[f"{section}.{name}"] = value
    for dotted in declared(rec)[1]:
        q.pop(dotted, None)
    return q


def _setting(config: dict, dotted: str):
    """``config``'s value of a two-part dotted setting (``optim.lr``), None where it has none."""
    section, _, name = dotted.partition(".")
    return (config.get(section) or {}).get(name)


try:
    from orjson import OPT_SORT_KEYS
    from orjson import dumps as _dumps

    def _identity(value: dict) -> bytes | str:
        """Which row (or section) a record joins: its settings as sorted JSON, from orjson in a tenth of json's
        time. Only to tell them apart: what is shown (``section_key``, a row's ``key``) comes from json."""
        try:
            return _dumps(value, option=OPT_SORT_KEYS)
        except TypeError:  # an integer beyond 64 bits
            return json.dumps(value, sort_keys=True)
except ImportError:  # outside the lock
    def _identity(value: dict) -> bytes | str:
        return json.dumps(value, sort_keys=True)


def _nested_key(dotted: dict[str, object]) -> str:
    nested: dict = {}
    for key, value in dotted.items():
        section, _, name = key.partition(".")
        nested.setdefault(section, {})[name] = value
    return json.dumps(nested, sort_keys=True)


def row_key(rec: dict) -> str:
    return _nested_key(question(rec))


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
    tested: str = "last"  # which model the test values are of: "best" (validation checkpoint) or "last"

    def cell(self) -> str:
        if self.mean is None:
            return "—"
        std = f" ± {self.std:.3g}" if self.std is not None else ""
        return f"{self.mean:.4g}{std} (n={self.n_ok})"


@dataclass
class _RowAgg:
    """One leaderboard row while its records stream past."""

    first: dict  # the first record's fields a row shows (they do not vary over seeds)
    question: dict  # its dotted settings (``question``)
    defaults: dict  # the declared default of each of them
    key: str  # the row's key: its settings as nested JSON
    values: list = field(default_factory=list)  # the last model's test metric of each ok seed
    best_values: list = field(default_factory=list)  # the best validation checkpoint's (None: not recorded)
    norms: list = field(default_factory=list)
    flow_init: list = field(default_factory=list)
    flow_final: list = field(default_factory=list)
    walls: list = field(default_factory=list)
    n_runs: int = 0
    n_diverged: int = 0
    n_failed: int = 0
    n_solved: int = 0
    verdicts: dict = field(default_factory=lambda: {None: Counter()})  # core role (None: the main one) -> counts
    spike_counts: list = field(default_factory=list)  # None where a record predates spike counts
    commits: set = field(default_factory=set)
    lengths: dict = field(default_factory=dict)  # (lo, hi) length bin -> exact match of each ok seed

    def add(self, rec: dict) -> None:
        self.n_runs += 1
        status = rec["status"]
        self.n_diverged += status == "diverged"
        self.n_failed += status == "failed"
        m = rec["metric"]
        if status == "ok" and m["test"] is not None:
            # records from before checkpoints hold the last model's test value in "test", and no test_from
            best = m.get("test_from") == "best"
            self.values.append(m.get("test_last", m["test"]) if best else m["test"])
            self.best_values.append(m["test"] if best else None)
        self.n_solved += bool(rec["metric"]["solved"])
        norm = rec["grad_norm_preclip"]["median"]
        if norm is not None:
            self.norms.append(norm)
        self.walls.append(rec["wall_time_s"])
        p = rec["provenance"]
        self.commits.add(p["git_sha"][:8] + ("+dirty" if p["git_dirty"] else ""))
        d = rec.get("diagnostics")
        if d:
            self._add_diagnostics(d)
        if status == "ok":
            for b, value in length_bins(rec).items():
                self.lengths.setdefault(b, []).append(value)

    def _add_diagnostics(self, d: dict) -> None:
        self.flow_init.append(d.get("flow_ratio_init"))
        self.flow_final.append(d.get("flow_ratio_final"))
        _count(self.verdicts[None], d.get("flow_ratio_final"))
        for role, core in d.get("cores", {}).items():
            if role != d.get("role"):  # a composed model's main core is the record's own
                _count(self.verdicts.setdefault(role, Counter()), core.get("flow_ratio_final"))
        if d.get("events"):
            self.spike_counts.append(d["events"].get("spikes"))

    def row(self, label: str, section: str, key: str) -> Row:
        # A row shows one kind of test value: the best checkpoints' where every seed has one, else the last models'
        best = bool(self.best_values) and None not in self.best_values
        f, values = self.first, self.best_values if best else self.values
        return Row(
            task=f["task"], label=label, metric=f["metric"], mode=f["mode"],
            mean=statistics.fmean(values) if values else None,
            std=stdev(values) if len(values) > 1 else None,
            n_ok=len(values), n_runs=self.n_runs, n_diverged=self.n_diverged, n_failed=self.n_failed,
            baseline=f["baseline"], solved=None if f["solved_threshold"] is None else self.n_solved,
            grad_norm_median=statistics.median(self.norms) if self.norms else None,
            verdict=self._verdicts(), spikes=self._spikes(),
            flow_ratio_init=_median(self.flow_init), flow_ratio_final=_median(self.flow_final),
            params=f["params"], wall_time_s=statistics.fmean(self.walls), commits=", ".join(sorted(self.commits)),
            section=section, key=key, tested="best" if best else "last",
        )

    def _verdicts(self) -> str:
        """The run's verdict over seeds; a composed model's is its first core's (the encoder), followed by each
        other core's: ``healthy 3/3 · decoder exploding 2/3``."""
        main = _verdict(self.verdicts[None], self.n_runs)
        return " · ".join([main, *(f"{role} {_verdict(c, self.n_runs)}" for role, c in self.verdicts.items()
                                   if role is not None)])

    def _spikes(self) -> str:
        """Steps over 1000x the median pre-clip norm, summed over seeds, and in how many runs: ``3 (2/3 runs)``."""
        counts = self.spike_counts
        if not counts or any(c is None for c in counts):
            return "—"
        total, runs = sum(counts), sum(c > 0 for c in counts)
        return "0" if total == 0 else f"{total} ({runs}/{len(counts)} runs)"


def stdev(values: list[float]) -> float:
    """``statistics.stdev`` of floats, to the last bit, in a tenth of its time: the same exact sum of squared
    deviations (``statistics`` sums Fractions; here integers over one power-of-two denominator) and the same
    correctly rounded square root. A table of 20,000 rows spent a second in ``statistics.stdev``."""
    root = getattr(statistics, "_float_sqrt_of_frac", None)  # Python >= 3.11.? rounds the root correctly
    if root is None or not all(isinstance(v, float) and math.isfinite(v) for v in values):
        return statistics.stdev(values)
    ratios = [v.as_integer_ratio() for v in values]  # a float is n / 2**k exactly
    denominator = max(d for _, d in ratios)
    scaled = [n * (denominator // d) for n, d in ratios]
    count, total = len(scaled), sum(scaled)
    mss = Fraction(count * sum(x * x for x in scaled) - total * total, count * (count - 1) * denominator**2)
    return root(mss.numerator, mss.denominator)


def _count(counter: Counter, ratio) -> None:
    if ratio is not None:  # None: nothing measured (no recurrent core); NaN: measured, and no verdict
        counter[verdict(ratio) or NO_VERDICT] += 1


def _verdict(counts: Counter, n: int) -> str:
    """The most common flow verdict over seeds with its count, e.g. ``vanishing 3/3``; ties list both; then the
    seeds with no verdict (``healthy 1/3, no verdict 2/3``), never folded into another word. Each record is
    judged from its final flow ratio by today's rule (bench/diag/verdict.py), whatever rule the record was
    written under."""
    judged = {v: c for v, c in counts.items() if v != NO_VERDICT}
    parts = []
    if judged:
        top = max(judged.values())
        parts.append(" / ".join(f"{v} {c}/{n}" for v, c in sorted(judged.items()) if c == top))
    if counts.get(NO_VERDICT):
        parts.append(f"{NO_VERDICT} {counts[NO_VERDICT]}/{n}")
    return ", ".join(parts) or "—"


def _median(values: list) -> float | None:
    finite = [v for v in values if isinstance(v, (int, float)) and math.isfinite(v)]
    return statistics.median(finite) if finite else None


@dataclass
class _Section:
    first: dict  # the first record's task_info and task config (its header)
    budget: dict  # BUDGET setting -> [the first record's value, whether another record's differs]
    budget_same: list  # the BUDGET settings no record has differed in yet
    key: str = ""  # its section key (section_key)
    rows: dict = field(default_factory=dict)  # the row's settings as flat JSON -> _RowAgg, in order of appearance


class Tables:
    """The leaderboard's aggregates, fed one record at a time (``add``)."""

    def __init__(self, wanted: Callable[[dict, Callable[[], tuple[dict, dict]]], bool] | None = None,
                 planned: Iterable[str] = (), exclude: Iterable[str] = ()):
        self.sections: dict[str, _Section] = {}
        self.n_records = 0
        # runs of tuned studies (bench/reports/tuned.py shows them): each trial is its own configuration
        self.exclude, self.excluded = set(exclude), 0
        self.wanted, self.kept = wanted, []  # records ``wanted`` accepted (whole: the reproduction table's)
        self.planned, self.cpu_time = set(planned), {}  # run id -> CPU seconds, for the planned ids
        self.figures = {"flow": Picker(), "attention": Picker()}
        self._rows: list[Row] | None = None  # rows() of the records added so far
        self._labels: dict | None = None  # labels() of the records added so far
        self._panels: dict | None = None  # flow_panels() of the records added so far
        self._section_of: dict = {}  # a task config's identity (_identity) -> its _Section

    @classmethod
    def of(cls, records: Iterable[dict], **kwargs) -> Tables:
        tables = cls(**kwargs)
        for rec in records:
            tables.add(rec)
        return tables

    def add(self, rec: dict) -> None:
        if rec["id"] in self.exclude:
            self.excluded += 1
            return
        self.n_records += 1
        self._rows = self._labels = self._panels = None
        config, defaults = rec["config"], None

        def flat_defaults() -> dict:  # flattened once, and only where a new row or an anchor needs it
            nonlocal defaults
            if defaults is None:
                defaults = flatten(declared(rec)[0])
            return defaults

        q = question(rec)
        qkey = _identity(q)
        section = self._section_of.get(_identity(config["task"]))  # json.dumps only for a new section
        if section is None:
            budget = tuple(_setting(config, k) for k in BUDGET)
            key = section_key(rec)
            section = self.sections[key] = _Section(
                first={"task_info": rec["task_info"], "task": config["task"]},
                budget={k: [v, False] for k, v in zip(BUDGET, budget, strict=True)}, budget_same=list(BUDGET), key=key)
            self._section_of[_identity(config["task"])] = section
        for k in section.budget_same:  # only the settings every record so far shared
            if _differs(_setting(config, k), section.budget[k][0]):
                section.budget[k][1] = True
                section.budget_same = [s for s in section.budget_same if s != k]
        skey = section.key
        agg = section.rows.get(qkey)
        if agg is None:
            m = rec["metric"]
            first = {"task": rec["task"], "arch_label": rec["arch_label"], "metric": m["name"], "mode": m["mode"],
                     "baseline": m["baseline"], "solved_threshold": rec["task_info"]["solved_threshold"],
                     "params": rec["params"]}
            agg = section.rows[qkey] = _RowAgg(first, q, {k: flat_defaults().get(k) for k in q}, _nested_key(q))
        agg.add(rec)
        if has_flow(rec):  # a panel per family, and per family with and without attention side by side
            self.figures["flow"].add(rec, skey, agg.key, panel=(rec["arch"], has_attention(rec)))
        if rec["status"] == "ok" and has_attention(rec):
            self.figures["attention"].add(rec, skey, agg.key)
        if self.wanted is not None and self.wanted(rec, lambda: (flatten(config), flat_defaults())):
            self.kept.append(rec)
        if rec["id"] in self.planned:
            self.cpu_time[rec["id"]] = rec.get("cpu_time_s")

    # ---- what the pass found ----------------------------------------------------------------------------------
    def labels(self) -> dict[tuple[str, str], str]:
        """(section, row key) -> row label: the arch label plus each setting that varies across the section's
        rows and differs from its default."""
        if self._labels is not None:
            return self._labels
        out = self._labels = {}
        for skey, section in self.sections.items():
            flats = [agg.question for agg in section.rows.values()]
            varying = {k for k in set().union(*flats)
                       if k not in IN_ARCH_LABEL and any(_differs(f.get(k), flats[0].get(k)) for f in flats)}
            for agg in section.rows.values():
                extra = [f"{k}={fmt(agg.question[k])}" for k in sorted(varying)
                         if k in agg.question and agg.question[k] != agg.defaults.get(k)]
                out[(skey, agg.key)] = agg.first["arch_label"] + (f" ({', '.join(extra)})" if extra else "")
        return out

    def rows(self) -> list[Row]:
        """Every row, sections by task name, ranked within a section (best mean first, rows without one last)."""
        if self._rows is not None:
            return self._rows
        labels, rows = self.labels(), []
        for skey in sorted(self.sections, key=lambda k: (json.loads(k)["name"], k)):
            section = self.sections[skey].rows
            rows.extend(sorted((agg.row(labels[(skey, agg.key)], skey, agg.key) for agg in section.values()),
                               key=_rank))
        self._rows = rows
        return rows

    def flow_panels(self) -> dict[str, dict]:
        """Section -> panel (family, with attention) -> (row label, (seed, name, id), the record when it went
        past whole): the runs each section's flow picture shows (``Picker.pick_sections``)."""
        if self._panels is None:
            labels = self.labels()
            self._panels = self.figures["flow"].pick_sections(lambda skey, key: labels[(skey, key)])
        return self._panels

    def titles(self) -> dict[str, str]:
        return section_titles(list(self.sections))

    def label_of(self, sep: str = " · ") -> Callable[[str, str], str]:
        """(section, row key) -> the row label, plus (after ``sep``) the task settings of its section where a task
        has several (``gru · permute=True``): how a task's pictures name the rows of all its sections."""
        labels, titles = self.labels(), self.titles()

        def label_of(skey: str, key: str) -> str:
            variant = titles[skey].partition(" · ")[2]
            return labels[(skey, key)] + (f"{sep}{variant}" if variant else "")

        return label_of

    def budget(self, skey: str) -> dict:
        """The BUDGET settings every record of the section shares, with their value."""
        return {k: first for k, (first, differs) in self.sections[skey].budget.items() if not differs}

    def family_budgets(self, skey: str) -> dict[str, list[tuple]]:
        """Family (``arch.name``) -> the (train.max_steps, optim.lr) pairs its rows in the section ran, sorted."""
        out: dict[str, set] = {}
        for agg in self.sections[skey].rows.values():
            q = agg.question
            out.setdefault(q.get("arch.name", agg.first["arch_label"]), set()).add(
                (q.get("train.max_steps"), q.get("optim.lr")))
        return {family: sorted(pairs, key=repr) for family, pairs in sorted(out.items())}

    def length_curves(self, label_of: Callable[[str, str], str]) -> dict[str, dict[str, dict]]:
        """task -> row label -> {length bin: [exact match over ok seeds]} for rows with per-length metrics."""
        curves: dict[str, dict[str, dict]] = {}
        for skey, section in self.sections.items():
            for agg in section.rows.values():
                if agg.lengths:
                    row = curves.setdefault(agg.first["task"], {}).setdefault(label_of(skey, agg.key), {})
                    for b, values in agg.lengths.items():
                        row.setdefault(b, []).extend(values)
        return curves


def _differs(a, b) -> bool:
    """Whether two settings would print differently as JSON (1, 1.0 and True are equal in Python, not there)."""
    if type(a) is not type(b):
        return True
    if a == b:  # the common case; still, -0.0 is not 0.0, and [1] is not [True]
        return (a == 0.0 and repr(a) != repr(b)) if isinstance(a, float) else (
            isinstance(a, (list, dict)) and json.dumps(a, sort_keys=True) != json.dumps(b, sort_keys=True))
    return not (isinstance(a, float) and a != a and b != b)  # nan and nan print alike


def _rank(row: Row):
    if row.mean is None:
        return (1, 0.0, row.label)
    return (0, row.mean if row.mode == "min" else -row.mean, row.label)


def fmt(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def valid_range(mode: str) -> tuple[float, float]:
    """Where a task's metric can lie: every ``max`` metric the tasks declare is a fraction (accuracy, exact
    match, BLEU) and every ``min`` one a loss (MSE, cross-entropy, bits per character), at least 0."""
    return (0.0, 1.0) if mode == "max" else (0.0, math.inf)


def past_baseline(value: float, baseline: float, mode: str, share: float = 0.0) -> bool:
    """Whether ``value`` is better than ``baseline`` by more than ``share`` of the way from it to the metric's
    best (1 for a fraction, 0 for a loss)."""
    best = 1.0 if mode == "max" else 0.0
    margin = share * abs(best - baseline)
    return value > baseline + margin if mode == "max" else value < baseline - margin


def section_settings(sections: list[str]) -> dict[str, dict]:
    """Section key -> the task settings that tell it from the task's other sections, with its values
    (``{"permute": True}``; empty where the task has one section)."""
    configs = {key: json.loads(key) for key in sections}
    out = {}
    for key, config in configs.items():
        siblings = [c for c in configs.values() if c["name"] == config["name"]]
        differ = sorted(k for k in config if k != "name" and len({json.dumps(c.get(k)) for c in siblings}) > 1)
        out[key] = {k: config[k] for k in differ}
    return out


def section_titles(sections: list[str]) -> dict[str, str]:
    """Section key -> its task name, plus the task settings that tell it from the task's other sections
    (``sdigits · permute=True``)."""
    return {key: " · ".join([json.loads(key)["name"], *(f"{k}={fmt(v)}" for k, v in settings.items())])
            for key, settings in section_settings(sections).items()}


def slug(title: str) -> str:
    """A section title as part of a file name: ``adding · seq_len=200`` -> ``adding__seq_len=200``."""
    return re.sub(r"[^\w.=+-]+", "-", title.replace(" · ", "__"))


def stream(store: Store, save: bool = True, **kwargs) -> tuple[Tables, list[str]]:
    """``Tables`` over every record of ``store``, read one at a time through its summaries; and one line per
    record that could not be read (named, left out). ``save=False``: write no summary into the store. One
    process: on this 2-core machine two processes, each over half the records with their tables merged, took no
    less time (pickling the tables back ate the gain)."""
    tables, skipped = Tables(**kwargs), []
    # The pass makes no reference cycles, and the collector's full sweeps over the growing tables took a third
    # of it at 100,000 records.
    collecting = gc.isenabled()
    gc.disable()
    try:
        for item in store.summaries(save):
            if isinstance(item, str):
                skipped.append(item)
            else:
                tables.add(item)
    finally:
        if collecting:
            gc.enable()
    return tables, skipped
