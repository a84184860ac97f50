"""What a leaderboard section says of itself: its budget, the settings that set it apart (in the CSV too), the
sentences it opens with (numbers from the records and metrics CSVs), its own flow picture, no bold for a best
row that does not beat the baseline, "no verdict" where a run has none, and bands inside the metric's range.
Committed records are copied into a temporary folder and edited where a case needs it."""

import csv
import functools
import json
import shutil
from pathlib import Path

import pytest

from bench.diag import plots
from bench.diag.verdict import described
from bench.reports import curves, figures, leaderboard
from bench.reports.tables import Tables
from bench.store import Store, open_metrics

RESULTS = Path(__file__).resolve().parent.parent / "results"

pytestmark = pytest.mark.skipif(not (RESULTS / "runs").is_dir(), reason="no committed reference results")


@functools.cache
def _committed() -> dict[tuple, Path]:
    """(task, arch label, seed, attention, seq_len) -> a committed record of the default budget's runs (not a
    tuned study's trial or confirm run, whose seed-0 trials share those keys)."""
    from bench.reports.studies import tuned_ids
    from bench.store import Store

    out, tuned = {}, tuned_ids(Store(RESULTS))
    for path in sorted((RESULTS / "runs").glob("*.json")):
        rec = json.loads(path.read_text())
        if rec["id"] in tuned:
            continue
        key = (rec["task"], rec["arch_label"], rec["seed"], (rec["config"].get("model") or {}).get("attention"),
               rec["config"]["task"].get("seq_len"))
        out.setdefault(key, path)
    return out


def take(out: Path, task: str, arch: str, seed: int = 0, attention=None, seq_len=None, **edits) -> dict:
    """A committed record and its metrics CSV copied into ``out/runs``, with ``edits`` (dotted keys) applied."""
    path = _committed()[(task, arch, seed, attention, seq_len)]
    (out / "runs").mkdir(parents=True, exist_ok=True)
    for source in path.parent.glob(path.name.removesuffix(".json") + ".*"):
        shutil.copy(source, out / "runs")
    rec = json.loads(path.read_text())
    for key, value in edits.items():
        *parents, leaf = key.split(".")
        target = rec
        for name in parents:
            target = target[name]
        target[leaf] = value
    (out / "runs" / path.name).write_text(json.dumps(rec))
    return rec


def section_text(md: str, title: str) -> str:
    return md.split(f"## {title} — ")[1].split("\n## ")[0]


def test_a_fixed_budget_section_says_so_and_a_section_that_is_not_says_how(tmp_path):
    gru, vanilla = (take(tmp_path, "adding", a, seq_len=50) for a in ("gru", "vanilla"))
    md = leaderboard.render([gru, vanilla])
    assert "Fixed budget: 1000 steps, lr 0.003, every family (gru, vanilla). Same for every row: " \
           "task.batch_size=64, optim.name=adam, optim.clip=1.0, arch.hidden_size=64." in md
    longer = take(tmp_path, "adding", "vanilla", seq_len=50, **{"config.train.max_steps": 2000})
    md = leaderboard.render([gru, longer])
    assert "Budget differs by family: gru: 1000 steps at lr 0.003; vanilla: 2000 steps at lr 0.003." in md
    assert "Fixed budget" not in md
    swept = take(tmp_path, "adding", "gru", seq_len=50, **{"config.optim.lr": 0.01})
    md = leaderboard.render([gru, swept, vanilla])
    assert "Not one budget: rows differ in steps or lr: gru: 1000 steps at lr 0.003 or 1000 steps at lr 0.01; " \
           "vanilla: 1000 steps at lr 0.003." in md


def test_the_csv_and_the_titles_tell_the_sections_of_a_task_apart(tmp_path):
    records = [take(tmp_path, "adding", "gru", seq_len=T) for T in (50, 100, 200)]
    lines = list(csv.DictReader(leaderboard.render_csv(records).splitlines()))
    assert list(lines[0])[:3] == ["task", "task.seq_len", "label"]
    assert [(line["task.seq_len"], line["label"]) for line in lines] == [("100", "gru"), ("200", "gru"),
                                                                          ("50", "gru")]
    md = leaderboard.render(records)
    assert [line.split(" — ")[0] for line in md.splitlines() if line.startswith("## ")] == [
        "## adding · seq_len=100", "## adding · seq_len=200", "## adding · seq_len=50"]
    assert "task.seq_len" not in leaderboard.render_csv(records[:1])  # one section: nothing to tell apart


def test_nothing_is_bold_when_it_does_not_beat_the_baseline(tmp_path):
    # the adding task's baseline is 1/6: both rows end behind it, so neither is the best of anything
    behind = [take(tmp_path, "adding", "gru", seq_len=50, **{"metric.test": 0.2}),
              take(tmp_path, "adding", "vanilla", seq_len=50, **{"metric.test": 0.18})]
    block = leaderboard.readme_block(tmp_path, behind)
    assert "0.18" in block and "**" not in block
    ahead = [take(tmp_path, "adding", "gru", seq_len=50, **{"metric.test": 0.01}), behind[1]]
    assert "**0.01**" in leaderboard.readme_block(tmp_path, ahead)


def test_a_run_with_no_verdict_is_shown_as_such_never_as_ok(tmp_path, monkeypatch):
    assert described(float("nan")) == "no verdict" and described(-3.0) == "vanishing"
    assert described(float("nan"), "diverged") == "diverged, no verdict"
    nan = {"diagnostics.flow_ratio_final": float("nan")}
    judged, unjudged = (take(tmp_path, "adding", "vanilla", seed=s, seq_len=50, **e) for s, e in ((1, {}), (0, nan)))
    assert {r.label: r.verdict for r in Tables.of([judged, unjudged]).rows()} == {
        "vanilla": "vanishing 1/2, no verdict 1/2"}
    assert Tables.of([unjudged]).rows()[0].verdict == "no verdict 1/1"
    titles = draw_flow(monkeypatch, tmp_path, [unjudged])
    assert titles == {"flow_adding.png": ["vanilla (s0): no verdict"]}


def draw_flow(monkeypatch, out: Path, records: list[dict]) -> dict[str, list[str]]:
    """The panel titles of each flow picture ``make leaderboard`` would draw from ``records``."""
    import matplotlib.pyplot as plt

    drawn = {}

    def capture(path, key, draw):
        fig = draw()
        drawn[Path(path).name] = [ax.get_title() for ax in fig.axes if ax.get_title()]
        plt.close(fig)
        return True

    monkeypatch.setattr(plots, "save_unless_unchanged", capture)
    leaderboard.write_figures(Store(out), Tables.of(records))
    return drawn


def test_every_section_has_its_flow_picture_and_attention_stands_beside_its_absence(tmp_path, monkeypatch):
    (tmp_path / "flow_adding.png").write_bytes(b"a picture of sections that no longer exist")
    records = [take(tmp_path, "adding", "gru", seq_len=T) for T in (100, 200)]
    records += [take(tmp_path, "translate", "gru", attention=a) for a in ("additive", "none")]
    titles = draw_flow(monkeypatch, tmp_path, records)
    assert set(titles) == {"flow_adding__seq_len=100.png", "flow_adding__seq_len=200.png", "flow_translate.png"}
    assert [t.split(":")[0] for t in titles["flow_translate.png"]] == ["gru (s0)", "gru (model.attention=none) (s0)"]
    assert not (tmp_path / "flow_adding.png").exists()  # a stale picture goes
    md = leaderboard.render(records)
    assert "Pictures: flow_adding__seq_len=200.png; learning curves in report/curves_adding__seq_len=200.png" in md


def _series(path: Path, column: str) -> list[tuple[int, float]]:
    """``column`` of a metrics CSV by step (read here, apart from the code)."""
    with open_metrics(path) as f:
        return sorted((int(r["step"]), float(r[column])) for r in csv.DictReader(f) if r.get(column))


def _first(path: Path, column: str, passes) -> int | None:
    """The first step at which ``column`` of a metrics CSV passes a test."""
    return next((step for step, value in _series(path, column) if passes(value)), None)


def test_a_section_opens_with_sentences_whose_numbers_come_from_the_records(tmp_path):
    gru, vanilla = (take(tmp_path, "adding", a, seq_len=50) for a in ("gru", "vanilla"))
    store = Store(tmp_path)
    text = section_text(leaderboard.render([gru, vanilla], store=store), "adding")
    opening = text.split("\n\n")[1]
    baseline = gru["metric"]["baseline"]
    assert opening.startswith(f"Best: gru, test mse {gru['metric']['test']:.4g} (n=1) against a baseline of "
                              f"{baseline:.4g}; vanilla ends at the baseline")
    d = gru["diagnostics"]
    csv_file = store.runs / gru["metrics_file"]
    healthy = _first(csv_file, "diag/flow_ratio/l0", lambda r: r >= -2)
    left = _first(csv_file, "val/mse", lambda v: v < 0.9 * baseline)
    assert healthy is not None and left is not None
    assert (f"gru (s0) rises from 10^{d['flow_ratio_init']:.1f} to 10^{d['flow_ratio_final']:.1f}, turning healthy "
            f"near step {healthy}, and its val/mse leaves the baseline (10% of the way to a perfect 0) near step {left}"
            ) in opening
    v = vanilla["diagnostics"]
    best = min(v for _, v in _series(store.runs / vanilla["metrics_file"], "val/mse"))
    assert (f"vanilla (s0) rises from 10^{v['flow_ratio_init']:.1f} to 10^{v['flow_ratio_final']:.1f}, and its "
            f"val/mse never gets 10% of the way from the baseline to a perfect 0 (its best: {best:.4g})") in opening
    assert "Gradient at t = 0" not in leaderboard.render([gru, vanilla])  # no store: no metrics CSVs to read
    # other records, other words: the sentences are made from the records, not kept
    still = take(tmp_path, "adding", "gru", seq_len=50, **{"diagnostics.flow_ratio_final": -9.5})
    opening = section_text(leaderboard.render([still, vanilla], store=store), "adding").split("\n\n")[1]
    assert f"gru (s0) stays near 10^-9.5 (10^{d['flow_ratio_init']:.1f} at initialisation)" in opening


def test_bands_stay_inside_the_metrics_range_and_curves_show_the_baseline():
    c = curves.Curve(steps=[0, 1], mean=[0.95, 0.05], std=[0.2, 0.2], n=3)
    assert curves.band(c, "max") == ([0.75, 0.0], [1.0, 0.25])  # a fraction
    low, high = curves.band(c, "min")  # a loss: at least 0, unbounded above
    assert low == [0.75, 0.0] and high == pytest.approx([1.15, 0.25])
    fig = curves._figure({"gru": c}, "sdigits", "acc", "max", 0.1)
    ax = fig.axes[0]
    assert any(list(line.get_ydata()) == [0.1, 0.1] for line in ax.get_lines())  # the baseline, across
    ys = ax.collections[0].get_paths()[0].vertices[:, 1]
    assert ys.min() >= 0.0 and ys.max() <= 1.0
    fig = figures._length_figure("translate", {"gru": {(1, 2): [0.9, 1.0, 1.0]}, "gru (x)": {(1, 2): [0.0, 0.1]}})
    ax = fig.axes[0]
    segments = [s for bars in ax.containers for col in bars.lines[2] for s in col.get_segments()]
    assert segments and all(0.0 <= y <= 1.0 for s in segments for y in s[:, 1])  # unclipped: 1.02 and -0.02
