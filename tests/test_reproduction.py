"""Anchors and results/REPRODUCTION.md: every sweep file's anchors parse and plan, bad anchors are one line,
the verdict rules on hand-made records, byte-stable output and README block, the leaderboard command, and
dev.cost's record."""

import copy
import csv
import gzip
import json
import re
import shutil
from pathlib import Path

import pytest

from bench import cli
from bench.reports import reproduction as rep
from bench.sweeps import anchor as anchors
from bench.sweeps import tune
from bench.sweeps.plan import plan
from bench.sweeps.spec import WANDB_KEYS, anchored, expand, load_documents, wandb_document
from bench.sweeps.sweep import tuned
from dev import cost
from options import ConfigError

ROOT = Path(__file__).resolve().parent.parent
RUNS = ROOT / "results" / "runs"
SPEC = "sweeps/t.yaml #1"

# ---- sweep files -------------------------------------------------------------------------------------------


def reference_suites() -> list[str]:
    line = next(s for s in (ROOT / "Makefile").read_text().splitlines() if s.startswith("REFERENCE_SUITES"))
    return line.partition("=")[2].split()


def test_every_sweep_file_parses_and_the_anchored_documents_are_found():
    for path in sorted((ROOT / "sweeps").glob("*.yaml")):
        for i, doc in enumerate(load_documents(path)):
            assert expand(doc, f"{path} document {i + 1}"), path
    found = {where: (anchor, overrides) for where, anchor, overrides in anchored(ROOT)}
    expected = {*(f"sweeps/anchors.yaml #{i}" for i in range(1, 7)),
                *(f"sweeps/anchors_gpu.yaml #{i}" for i in range(1, 19)),
                *(f"sweeps/anchors_online.yaml #{i}" for i in range(1, 4)), "sweeps/charlm.yaml #1",
                "sweeps/default.yaml #5", "sweeps/default.yaml #6",
                "sweeps/encdec.yaml #3", "sweeps/encdec.yaml #5"}
    assert set(found) == expected

    def tasks_of(where):
        return {o["task.name"] for o in found[where][1]}

    assert tasks_of("sweeps/default.yaml #5") == tasks_of("sweeps/default.yaml #6") == {"mnist1d"}
    assert tasks_of("sweeps/encdec.yaml #3") == {"vqa"} and tasks_of("sweeps/encdec.yaml #5") == {"sentiment"}
    for where, (anchor, _) in found.items():
        needs = {"anchors_gpu.yaml": "gpu", "anchors_online.yaml": "network"}.get(where.split()[0][7:])
        assert anchor.needs == needs, where


def test_only_anchors_whose_setting_matches_carry_verdicts():
    """The audit of ANCHORS.md ("Which published numbers match which of our settings"), pinned: every other
    anchored row is a reference line, with the reason its setting differs."""
    judged = {(where, tuple(sorted(row.match.items()))) for where, anchor, _ in anchored(ROOT)
              for row in anchor.rows if not row.reference}
    pixel = {("sweeps/anchors_gpu.yaml #" + doc, (("arch.name", arch), ("task.permute", permute)))
             for doc, arch in (("8", "vanilla"), ("11", "gru")) for permute in (False, True)}
    assert judged == {("sweeps/anchors.yaml #1", ()), *pixel,  # the paper's GRU; TCN's Table 1, every family
                      ("sweeps/anchors_gpu.yaml #9", (("arch.name", "lstm"), ("task.permute", False))),
                      ("sweeps/anchors_gpu.yaml #10", (("arch.name", "lstm"), ("task.permute", True))),
                      # the later families: coRNN's scripts and expRNN's README commands are expressed whole
                      ("sweeps/anchors_gpu.yaml #12", (("arch.name", "cornn"), ("task.permute", False))),
                      ("sweeps/anchors_gpu.yaml #13", (("arch.name", "cornn"), ("task.permute", True))),
                      ("sweeps/anchors_gpu.yaml #15", (("arch.name", "exprnn"), ("task.permute", False))),
                      ("sweeps/anchors_gpu.yaml #16", (("arch.name", "exprnn"), ("task.permute", True)))}
    published = {(row.match.get("arch.name"), row.match.get("task.permute")): row.published
                 for where, anchor, _ in anchored(ROOT) if anchor.name.startswith("Pixel") for row in anchor.rows}
    assert published == {("vanilla", False): 0.215, ("vanilla", True): 0.253, ("lstm", False): 0.872,
                         ("lstm", True): 0.857, ("gru", False): 0.962, ("gru", True): 0.873,
                         ("irnn", False): 0.97, ("irnn", True): 0.82}  # IRNN: Le et al., a reference


def test_the_reference_suites_plan():
    suites = reference_suites()
    assert {"sweeps/anchors.yaml", "sweeps/charlm.yaml"} <= set(suites)
    # a tuned file's runs are drawn as its studies go (bench/sweeps/tune.py): its studies plan instead
    sizes = {suite: len(tune.studies(ROOT / suite)) if tuned(ROOT / suite) else len(plan(ROOT / suite,
                                                                                         check_machine=False))
             for suite in suites}
    assert all(sizes.values()) and "sweeps/tuned.yaml" in suites
    assert sizes["sweeps/anchors.yaml"] == 53 and sizes["sweeps/charlm.yaml"] == 2


# ---- anchor errors -----------------------------------------------------------------------------------------

GOOD = {"name": "n", "source": "s", "setting": "t", "rows": [{"published": 0.9}]}
DOC = {"method": "grid", "parameters": {"task.name": {"value": "adding"}, "arch.name": {"value": "gru"}}}


@pytest.mark.parametrize("bad, message", [
    ("a paper", "'anchor' must be a mapping with metric, name, needs, ours, reference, rows, setting, source"),
    ({**GOOD, "paper": "x"},
     "unknown anchor key 'paper'; valid: metric, name, needs, ours, reference, rows, setting, source"),
    ({k: v for k, v in GOOD.items() if k != "name"}, "anchor needs a 'name' (text)"),
    ({k: v for k, v in GOOD.items() if k != "source"}, "anchor needs a 'source' (text)"),
    ({**GOOD, "setting": "  "}, "anchor needs a 'setting' (text)"),
    ({**GOOD, "rows": []}, "anchor needs a non-empty 'rows' list"),
    ({**GOOD, "rows": [{"published": 0.9, "expect": "solved"}]},
     "anchor row 1 needs exactly one of 'published' (a number) or 'expect' (baseline or solved)"),
    ({**GOOD, "rows": [{"match": {}}]},
     "anchor row 1 needs exactly one of 'published' (a number) or 'expect'"),
    ({**GOOD, "rows": [{"published": 0.9}, {"expect": "beaten"}]},
     "anchor row 2: expect 'beaten'; valid: baseline, solved"),
    ({**GOOD, "rows": [{"published": "high"}]},
     "anchor row 1: published must be a finite number, got 'high'"),
    ({**GOOD, "rows": [{"published": True}]}, "anchor row 1: published must be a finite number, got True"),
    ({**GOOD, "rows": [{"published": 0.9, "spred": 0.1}]},
     "anchor row 1: unknown key 'spred'; valid: expect, match, published, reference, source, spread"),
    ({**GOOD, "needs": "tpu"}, "anchor needs 'tpu'; valid: gpu, network"),
    ({**GOOD, "reference": True}, "'reference' must say how our setting differs from the source's (text)"),
    ({**GOOD, "rows": [{"published": 0.9, "reference": " "}]},
     "anchor row 1: 'reference' must say how our setting differs from the source's (text)"),
])
def test_a_bad_anchor_is_one_line_naming_the_valid_choices(bad, message):
    with pytest.raises(ConfigError) as err:
        expand({**DOC, "anchor": bad}, "s.yaml document 1")
    text = str(err.value)
    assert "\n" not in text and text.startswith("s.yaml document 1: ") and message in text


def test_wandb_gets_the_document_without_the_anchor():
    doc = {**{key: f"<{key}>" for key in WANDB_KEYS}, **DOC, "anchor": GOOD}
    assert expand(doc, "d") == expand(DOC, "d") == [{"task.name": "adding", "arch.name": "gru"}]
    plain = wandb_document(doc)
    assert set(plain) == set(WANDB_KEYS) and plain == {k: v for k, v in doc.items() if k != "anchor"}
    assert "anchor" in doc  # the caller's document is left as it was


# ---- hand-made records -------------------------------------------------------------------------------------

CONFIG = {"task": {"name": "adding", "seq_len": 100, "batch_size": 64},
          "arch": {"name": "gru", "hidden_size": 64, "layers": 1},
          "optim": {"name": "adam", "lr": 0.001, "clip": 1.0},
          "train": {"max_steps": 2000, "val_every": 250, "accelerator": "auto"}, "seed": 0}
DEFAULTS = {**CONFIG, "arch": {**CONFIG["arch"], "hidden_size": 128}}
OVERRIDES = [{"task.name": "adding", "arch.name": a, "arch.hidden_size": 64, "task.seq_len": 100, "seed": s}
             for a in ("gru", "lstm") for s in (0, 1, 2)]


def record(seed: int = 0, test: float | None = 0.5, *, dotted: dict | None = None, status: str = "ok",
           mode: str = "max", metric: str = "acc", baseline: float = 0.1, threshold: float | None = None,
           solved: bool | None = None, flow: float | None = 0.0, spikes: int = 0, improving: bool = False,
           extra: dict | None = None) -> dict:
    """A record with the fields reproduction.build reads (shaped as results/runs/*.json)."""
    config = copy.deepcopy(CONFIG)
    config["seed"] = seed
    for key, value in (dotted or {}).items():
        section, _, name = key.partition(".")
        config[section][name] = value
    label = config["arch"]["name"] + ("-2l" if config["arch"]["layers"] == 2 else "")
    name = f"{config['task']['name']}__{label}__s{seed}"
    return {
        "name": name, "id": f"id{seed}", "task": config["task"]["name"], "arch_label": label,
        "config": config, "defaults": copy.deepcopy(DEFAULTS),
        "outside_question": ["train.accelerator", "train.strategy"],
        "metric": {"name": metric, "mode": mode, "test": test if status == "ok" else None,
                   "baseline": baseline, "solved": solved, "val_best": 0.9,
                   "val_last": 0.9 if improving else 0.8, "extra": extra or {}},
        "task_info": {"name": config["task"]["name"], "baseline": baseline, "solved_threshold": threshold,
                      "mode": mode, "metric": metric},
        "status": status, "seed": seed, "params": 12345, "wall_time_s": 90.0,
        "provenance": {"git_sha": "0123456789abcdef", "gpu": None, "cpu": "Test CPU", "torch_threads": 1},
        "diagnostics": {"flow_ratio_final": flow, "events": {"spikes": spikes}},
        "metrics_file": f"{name}__id{seed}.metrics.csv",
    }


def seeds(*tests, **kw) -> list[dict]:
    return [record(i, t, **kw) for i, t in enumerate(tests)]


def lines_of(spec: dict, recs: list[dict], overrides=OVERRIDES, **kw) -> list[rep.Line]:
    return rep.build(recs, [(SPEC, anchors.parse({"name": "A", "source": "S", "setting": "T", **spec}, SPEC),
                             overrides)], **kw)


GRU_ONLY = [o for o in OVERRIDES if o["arch.name"] == "gru"]


def verdict(row: dict, recs: list[dict], **anchor) -> str:
    (line,) = lines_of({"rows": [row], **anchor}, recs, GRU_ONLY)
    return line.verdict


@pytest.mark.parametrize("tests, expected", [
    ((0.89, 0.90, 0.91), "reproduced"), ((0.94, 0.95, 0.96), "beaten"), ((0.84, 0.85, 0.86), "short"),
])
def test_a_published_number_with_its_spread(tests, expected):
    assert verdict({"published": 0.91, "spread": 0.02}, seeds(*tests)) == expected


@pytest.mark.parametrize("mode, tests, expected", [
    ("max", (0.485,), "reproduced"),  # 2 points on an accuracy (2 % of 0.5 would call it short)
    ("max", (0.47,), "short"),
    ("min", (0.515,), "short"),  # 2 % of the value on a loss (2 points would call it reproduced)
    ("min", (0.505,), "reproduced"),
    ("min", (0.48,), "beaten"),  # lower is better
    ("min", (5.08,), "reproduced"),
    ("min", (4.8,), "beaten"),
    ("max", (0.53,), "beaten"),
])
def test_without_a_spread(mode, tests, expected):
    published = 5.0 if tests[0] > 1 else 0.5
    assert verdict({"published": published}, seeds(*tests, mode=mode)) == expected


@pytest.mark.parametrize("solved, expected", [
    ((True, True, False), "reproduced"), ((True, False, False), "short"),
])
def test_expect_solved_is_most_seeds_past_the_threshold(solved, expected):
    recs = [record(i, 0.01, mode="min", metric="mse", threshold=1 / 600, solved=s)
            for i, s in enumerate(solved)]
    (line,) = lines_of({"rows": [{"expect": "solved"}]}, recs, GRU_ONLY)
    assert line.verdict == expected and line.delta == f"solved {sum(solved)}/3"
    assert line.published == "solved (claim)"


@pytest.mark.parametrize("mean, expected", [(0.17, "reproduced"), (0.10, "beaten"), (0.25, "short")])
def test_expect_baseline_is_within_5_percent_of_it(mean, expected):
    recs = seeds(mean, mean, mode="min", metric="mse", baseline=1 / 6)
    assert verdict({"expect": "baseline"}, recs) == expected


def test_why_a_row_fell_short_is_read_from_its_records(tmp_path):
    def why(recs):
        (line,) = lines_of({"rows": [{"published": 0.91}]}, recs, GRU_ONLY, runs=tmp_path)
        assert line.verdict == "short"
        return line.why

    vanishing = dict(flow=-5.0, spikes=3, improving=True)
    diverged = [record(0, 0.5, **vanishing), record(1, None, status="diverged", **vanishing),
                record(2, 0.5, **vanishing)]
    assert why(diverged) == "1/3 runs diverged"
    assert why(seeds(0.5, 0.5, 0.5, **vanishing)) == (
        "gradient flow vanishing in 3/3 runs (median log10 ratio -5.00)")
    assert why(seeds(0.5, 0.5, 0.5, spikes=2, improving=True)) == (
        "6 gradient spikes over 1000× the median (clipped)")
    improving = seeds(0.5, 0.5, 0.5, improving=True)
    for rec in improving:
        write_val(tmp_path, rec, {500: 0.5, 1000: 0.7, 1500: 0.8, 2000: 0.9})
    assert why(improving) == ("still improving at the budget: val acc over 1 % better in the last quarter of "
                              "training than before it in 3/3 runs (2000 steps)")
    for rec in improving:  # the records below have no metrics file: no series, no claim that it improved
        (tmp_path / rec["metrics_file"]).unlink()
    assert why(seeds(0.5, 0.5, 0.5)) == (  # the builder's val: best 0.9, last 0.8
        "overfitting in 3/3 runs: val acc best 0.9, last 0.8 (the test reads the last model)")
    flat = seeds(0.5, 0.5, 0.5)
    for rec in flat:
        rec["metric"]["val_last"] = 0.89  # within 5 % of the best: neither overfitting nor improving
    assert why(flat).startswith("flow healthy, no spikes; the budget (2000 steps)")
    (line,) = lines_of({"rows": [{"published": 0.91}]}, [record(0, None, status="diverged")], GRU_ONLY)
    assert line.verdict == "short" and line.ours == "— (0/1 ok)" and line.why == "1/1 runs diverged"
    (ok,) = lines_of({"rows": [{"published": 0.5}]}, seeds(0.5, 0.5, flow=-5.0), GRU_ONLY)
    assert ok.verdict == "reproduced" and ok.why == ""  # why is for short rows only


def test_a_reference_row_is_shown_with_its_reason_and_no_verdict():
    spec = {"reference": "another corpus", "rows": [{"match": {"arch.name": "gru"}, "published": 0.5},
                                                     {"match": {"arch.name": "lstm"}, "expect": "baseline"}]}
    gru, lstm = lines_of(spec, seeds(0.2, 0.3, 0.25))  # gru run and far from the number; lstm not run
    assert (gru.verdict, gru.delta, gru.why, gru.ours) == (
        "reference", "—", "setting differs: another corpus", "0.25 ± 0.05 (n=3)")
    assert (lstm.verdict, lstm.ours, lstm.why) == ("reference", "—", "setting differs: another corpus; not run yet")
    own = {"rows": [{"match": {"arch.name": "gru"}, "published": 0.5, "reference": "  a bigger\n model "},
                    {"match": {"arch.name": "lstm"}, "published": 0.5}]}
    gru, lstm = lines_of(own, seeds(0.5, 0.5) + [record(i, 0.5, dotted={"arch.name": "lstm"}) for i in (0, 1)])
    assert (gru.verdict, gru.why, lstm.verdict) == ("reference", "setting differs: a bigger model", "reproduced")
    text = rep.render([gru, lstm])
    assert "**1 reproduced · 0 beaten · 0 short · 0 pending · 1 reference (no verdict)** (2 rows)" in text
    assert "| 0.5 ± 0 (n=2) | — | *reference* | setting differs: a bigger model |" in text
    assert "| A | gru | 0.5 | 0.5 ± 0 (n=2) | 1 reproduced · 1 reference |" in rep.readme_block([gru, lstm])
    gpu = lines_of({"needs": "gpu", "reference": "markers anywhere; 11 delimiters", "rows": [{"published": 0.5}]}, [])
    assert "| A | — | 0.5 | — | 2 reference: setting differs: markers anywhere; 11 delimiters |" in rep.readme_block(gpu)


def test_pending_rows_say_what_they_need_and_what_they_would_cost():
    spec = {"needs": "gpu", "rows": [{"match": {"arch.name": "lstm"}, "published": 0.5},
                                     {"match": {"arch.name": "gru"}, "published": 0.5}]}
    priced = {"dotted": {**OVERRIDES[3], "train.max_steps": 2000}, "s_per_step": 2.5, "budget_hours": 1.39}
    other = {"dotted": {**OVERRIDES[3], "task.seq_len": 999}, "s_per_step": 9.0, "budget_hours": 5.0}
    lstm, gru = lines_of(spec, seeds(0.5, 0.5), costs=[priced, other])
    assert (lstm.verdict, lstm.label, lstm.ours) == ("pending", "lstm", "—")
    assert lstm.why == ("GPU suite, not yet run on a GPU; on this CPU about 1.4 h per run "
                        "(2.5 s/step, dev.cost)")
    assert gru.verdict == "reproduced"
    online = lines_of({"needs": "network", "rows": [{"published": 0.5}]}, [])  # one pending line per family
    assert [(line.label, line.verdict, line.why) for line in online] == [
        (arch, "pending", "needs the dataset download (online)") for arch in ("gru", "lstm")]
    (plain,) = lines_of({"rows": [{"published": 0.5}]}, [], GRU_ONLY)
    assert (plain.label, plain.why) == ("gru", "not run yet")


def test_a_pending_label_is_spelled_from_the_overrides():
    overrides = [{"task.name": "adding", "arch.name": a, "arch.layers": n, "arch.bidirectional": bi,
                  "task.seq_len": t, "seed": 0}
                 for a, n, bi in (("lstm", 2, False), ("gru", 1, True)) for t in (100, 200)]
    lines = lines_of({"rows": [{"published": 0.5}]}, [], overrides)
    assert [(line.label, line.verdict) for line in lines] == [
        ("lstm-2l, seq_len 100", "pending"), ("lstm-2l, seq_len 200", "pending"),
        ("gru-bi, seq_len 100", "pending"), ("gru-bi, seq_len 200", "pending")]


def test_a_half_run_document_lists_its_missing_family_as_pending():
    lines = lines_of({"rows": [{"published": 0.5}]}, seeds(0.5, 0.51, 0.49))  # gru and lstm planned, gru run
    gru, lstm = lines
    assert (gru.label, gru.verdict, gru.ours, gru.why) == ("gru", "reproduced", "0.5 ± 0.01 (n=3)", "")
    assert (gru.metric, gru.mode, gru.wall) == ("acc", "max", "1.5 min/run × 3")
    assert (lstm.label, lstm.verdict, lstm.ours, lstm.delta) == ("lstm", "pending", "—", "—")
    assert lstm.why == "not run yet" and lstm.published == gru.published == "0.5"
    text = rep.render(lines)
    assert "**1 reproduced · 0 beaten · 0 short · 1 pending · 0 reference (no verdict)** (2 rows)" in text
    assert "| gru acc ↑ | 0.5 | 0.5 ± 0.01 (n=3) | +0 | **reproduced** |" in text
    assert "| lstm | 0.5 | — | — | **pending** | not run yet |" in text


def test_the_suite_line_of_a_shared_section_names_every_document():
    spec = {"name": "A", "source": "S", "setting": "T", "rows": [{"published": 0.5}]}
    documents = [(f"sweeps/t.yaml #{i}", anchors.parse(spec, f"sweeps/t.yaml #{i}"), overrides)
                 for i, overrides in ((1, GRU_ONLY), (2, [{**o, "arch.layers": 2} for o in GRU_ONLY]))]
    lines = rep.build(seeds(0.5, 0.5), documents)
    assert [(line.spec, line.label, line.verdict) for line in lines] == [
        ("sweeps/t.yaml #1", "gru", "reproduced"), ("sweeps/t.yaml #2", "gru-2l", "pending")]
    text = rep.render(lines)
    assert text.count("\n## A\n") == 1 and text.count("Suite: ") == 1
    assert "Suite: `sweeps/t.yaml #1`, `sweeps/t.yaml #2`.\n" in text


def test_a_record_belongs_only_to_the_document_that_planned_it():
    one, two = record(0, dotted={"arch.layers": 1}), record(0, dotted={"arch.layers": 2})
    assert rep.belongs(one, OVERRIDES)
    assert not rep.belongs(two, OVERRIDES)  # arch.layers: default 1, and the document never sets it
    assert rep.belongs(two, [{**o, "arch.layers": 2} for o in OVERRIDES])
    assert not rep.belongs(record(0, dotted={"arch.hidden_size": 32}), OVERRIDES)
    assert not rep.belongs(record(0, dotted={"optim.lr": 0.01}), OVERRIDES)  # an undeclared change
    moved = record(0)
    moved["config"]["train"]["accelerator"] = "cpu"  # outside the question: where it ran
    assert rep.belongs(moved, OVERRIDES)
    lines = lines_of({"rows": [{"published": 0.5}]}, [two, record(1, 0.5, dotted={"arch.layers": 2})])
    assert [(line.label, line.verdict) for line in lines] == [("gru", "pending"), ("lstm", "pending")]


def test_an_anchor_metric_reads_the_task_extra_metric():
    recs = seeds(0.9, 0.9, extra={"test/bleu": 0.14, "val/bleu": 0.5})
    (line,) = lines_of({"metric": "bleu", "rows": [{"published": 0.138}]}, recs, GRU_ONLY)
    assert (line.metric, line.mode, line.verdict) == ("bleu", "max", "reproduced")
    assert line.ours.startswith("0.14 ")
    assert rep.value(recs[0], anchors.parse({**GOOD, "metric": "bleu"}, "x")) == 0.14
    assert rep.metric_of(recs[0], anchors.parse(GOOD, "x")) == ("acc", "max")


def test_rows_that_differ_in_a_task_setting_are_separate_lines():
    overrides = [{**o, "task.seq_len": t} for o in OVERRIDES for t in (100, 200)]
    recs = [record(s, 0.01 if t == 100 else 0.15, dotted={"task.seq_len": t}, mode="min", metric="mse",
                   threshold=1 / 600, solved=t == 100) for t in (100, 200) for s in (0, 1, 2)]
    lines = lines_of({"rows": [{"match": {"arch.name": "gru"}, "expect": "solved"}]}, recs, overrides)
    assert {(line.label, line.verdict) for line in lines} == {
        ("gru, seq_len 100", "reproduced"), ("gru, seq_len 200", "short")}
    assert all(line.ours.endswith("(n=3)") for line in lines)


def write_metrics(runs: Path, rec: dict, rows: list[tuple[int, str]]) -> None:
    """A metrics file as the store writes it (gzipped), or as older stores hold it (plain), by its name."""
    path = runs / rec["metrics_file"]
    with (gzip.open(path, "wt", newline="") if path.suffix == ".gz" else open(path, "w", newline="")) as f:
        w = csv.writer(f)
        w.writerow(["step", "train/loss", "val/mse"])
        for step, mse in rows:
            w.writerow([step, "0.5", ""])  # a training row: no validation value
            w.writerow([step, "", mse])


@pytest.mark.parametrize("suffix", [".gz", ""])  # the store's gzipped metrics, and an older store's plain CSVs
def test_solved_by_is_the_first_validation_step_under_the_threshold(tmp_path, suffix):
    recs = [record(i, 0.001, mode="min", metric="mse", threshold=1 / 600, solved=i < 2) for i in range(3)]
    for rec in recs:
        rec["metrics_file"] += suffix
    write_metrics(tmp_path, recs[0], [(250, "0.1"), (500, "0.001"), (750, "0.0001")])
    write_metrics(tmp_path, recs[1], [(250, "0.1"), (500, "0.01"), (750, "0.001"), (1000, "0.01")])
    write_metrics(tmp_path, recs[2], [(250, "0.1"), (500, "0.0017")])  # just above 1/600
    assert rep.solved_by(recs, tmp_path) == "625 (2/3)"
    assert rep.solved_by(recs[2:], tmp_path) == "never (0/1)"
    assert rep.solved_by(recs, None) == "—"
    assert rep.solved_by(seeds(0.5), tmp_path) == "—"  # no threshold
    (line,) = lines_of({"rows": [{"expect": "solved"}]}, recs, GRU_ONLY, runs=tmp_path)
    assert line.solved_by == "625 (2/3)"


# ---- rendering ---------------------------------------------------------------------------------------------


def mixed_lines() -> list[rep.Line]:
    return (lines_of({"rows": [{"match": {"arch.name": "gru"}, "published": 0.5},
                               {"match": {"arch.name": "lstm"}, "published": 0.9, "spread": 0.01,
                                "source": "P"}]},
                     seeds(0.5, 0.51, 0.49))
            + lines_of({"name": "B", "needs": "gpu", "rows": [{"published": 0.2}]}, [])
            + lines_of({"name": "C", "rows": [{"published": 0.2}]}, seeds(0.5), GRU_ONLY))


def test_render_is_byte_stable_and_counts_its_verdicts(tmp_path):
    lines = mixed_lines()
    text = rep.render(lines)
    assert text == rep.render(mixed_lines()) and text.encode() == rep.render(lines).encode()
    assert str(tmp_path) not in text and str(ROOT) not in text and not re.search(r"20\d\d-\d\d-\d\d", text)
    assert [(line.anchor.name, line.label, line.verdict) for line in lines] == [
        ("A", "gru", "reproduced"), ("A", "lstm", "pending"),
        ("B", "gru", "pending"), ("B", "lstm", "pending"), ("C", "gru", "beaten")]
    assert "**1 reproduced · 1 beaten · 0 short · 3 pending · 0 reference (no verdict)** (5 rows)" in text
    assert text.count("| **") == 5 and text.count("\n## ") == 3 and "[P]" in text
    assert rep.render([]).endswith("No anchored sweep documents yet.\n")


def test_update_readme_replaces_only_its_block(tmp_path):
    lines = mixed_lines()
    readme = tmp_path / "README.md"
    head, tail = "# Title\n\nSome text.\n\n", "\n\n## After\n\nMore text.\n"
    readme.write_text(f"{head}{rep.README_START}\nold table\n{rep.README_END}{tail}")
    assert rep.update_readme(readme, lines)
    assert readme.read_text() == head + rep.readme_block(lines) + tail
    text = readme.read_text()  # one row per anchor: our best row, and the verdicts of all its rows
    assert "| A | gru | 0.5 | 0.5 ± 0.01 (n=3) | 1 reproduced · 1 pending |" in text
    assert "| B | — | 0.2 | — | 2 pending: GPU suite, not yet run on a GPU |" in text
    assert text.count("\n| A |") == 1 and text.count("\n| B |") == 1
    assert not rep.update_readme(readme, lines)  # regenerating changes nothing
    plain = tmp_path / "PLAIN.md"
    plain.write_bytes(b"# No markers\n\ntext\n")
    assert not rep.update_readme(plain, lines) and plain.read_bytes() == b"# No markers\n\ntext\n"


# ---- the command and the cost probe ------------------------------------------------------------------------


@pytest.mark.skipif(not any(RUNS.glob("mnist1d__gru__s0__*.json")), reason="no mnist1d records in results")
def test_the_leaderboard_command_writes_reproduction_md(tmp_path, capsys):
    runs = tmp_path / "out" / "runs"
    runs.mkdir(parents=True)
    for seed in (0, 1, 2):
        for path in RUNS.glob(f"mnist1d__gru__s{seed}__*"):
            shutil.copy(path, runs)
    assert cli.main(["leaderboard", "--out", str(tmp_path / "out")]) == 0
    text = (tmp_path / "out" / "REPRODUCTION.md").read_text()
    section = text.split("## MNIST-1D, our default size beside the paper's GRU")[1].split("\n## ")[0]
    assert "Suite: `sweeps/default.yaml #5`, `sweeps/default.yaml #6`." in section
    (row,) = [s for s in section.splitlines() if s.startswith("| gru acc ↑ |")]
    assert "(n=3)" in row and "| — | *reference* | setting differs: the model and budget" in row  # not the paper's
    rows = [s for s in section.splitlines() if s.startswith("| ") and "*reference*" in s]
    pending = [s.split(" | ")[0][2:] for s in rows if s.endswith("; not run yet | — | — | — | — | — |")]
    assert pending == ["vanilla", "irnn", "lstm", "gru-2l"] and len(rows) == 5  # the families not run yet
    assert "REPRODUCTION.md" in capsys.readouterr().out
    assert text == rep.render(rep.build(rep.load(tmp_path / "out")[0], anchored(ROOT), runs))


def test_cost_measures_each_config_once(tmp_path, capsys):
    spec = tmp_path / "tiny.yaml"
    spec.write_text("method: grid\nparameters:\n  task.name: {value: adding}\n  task.seq_len: {value: 20}\n"
                    "  task.batch_size: {value: 8}\n  arch.name: {value: gru}\n"
                    "  arch.hidden_size: {value: 8}\n  train.max_steps: {value: 100}\n"
                    "  seed: {values: [0, 1]}\n")
    assert cost.main([str(spec), "--out", str(tmp_path / "out"), "--steps", "1"]) == 0
    data = json.loads((tmp_path / "out" / "cost" / "tiny.json").read_text())
    (config,) = data["configs"]  # the two seeds are one configuration
    assert config["s_per_step"] > 0 and config["budget_steps"] == 100 and config["document"] == 1
    assert config["budget_hours"] == round(config["s_per_step"] * 100 / 3600, 3)
    assert config["dotted"]["arch.name"] == "gru" and config["dotted"]["task.seq_len"] == 20
    assert data["steps_timed"] == 1 and data["provenance"]["torch_threads"] == 1
    assert len(data["load_average"]) == 2 and all(x >= 0 for x in data["load_average"])
    assert {"git_sha", "torch", "cpu"} <= set(data["provenance"])
    assert rep.costs_of(rep.Store(tmp_path / "out")) == data["configs"]


# ---- the verdict rules say what their text says (each of these failed before the rule was fixed) ------------


@pytest.mark.parametrize("tests, expected, delta", [
    ((0.17, 0.17, 0.40), "reproduced", "at it 2/3"),  # one outlier drags the mean 48 % above the baseline
    ((0.10, 0.10, 0.50), "beaten", "at it 0/3, below 2/3"),  # two seeds escaped: the mean alone reads short
    ((0.17, 0.10, 0.25), "short", "at it 1/3, below 1/3"),  # no majority either way
])
def test_expect_baseline_is_judged_per_seed(tests, expected, delta):
    recs = seeds(*tests, mode="min", metric="mse", baseline=1 / 6)
    (line,) = lines_of({"rows": [{"expect": "baseline"}]}, recs, GRU_ONLY)
    assert line.verdict == expected and line.delta.endswith(delta)


def test_expect_baseline_counts_the_ok_seeds():
    recs = [record(0, 0.17, mode="min", metric="mse", baseline=1 / 6),
            record(1, None, status="diverged", mode="min", metric="mse", baseline=1 / 6),
            record(2, 0.17, mode="min", metric="mse", baseline=1 / 6)]
    (line,) = lines_of({"rows": [{"expect": "baseline"}]}, recs, GRU_ONLY)
    assert line.verdict == "reproduced" and line.delta.endswith("at it 2/2")


def test_clipped_is_said_only_where_clipping_was_on():
    overrides = [{**o, "optim.clip": 0.0} for o in GRU_ONLY]
    recs = seeds(0.5, 0.5, 0.5, spikes=2, dotted={"optim.clip": 0.0})
    (line,) = lines_of({"rows": [{"published": 0.91}]}, recs, overrides)
    assert line.why == "6 gradient spikes over 1000× the median (clipping off)"
    (line,) = lines_of({"rows": [{"published": 0.91}]}, seeds(0.5, 0.5, 0.5, spikes=2), GRU_ONLY)
    assert line.why == "6 gradient spikes over 1000× the median (clipped)"


def write_val(runs: Path, rec: dict, values: dict[int, float]) -> None:
    """A metrics CSV with the record's validation column (and a training row per step, as Lightning logs)."""
    column = f"val/{rec['metric']['name']}"
    with open(runs / rec["metrics_file"], "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["step", "train/loss", column])
        for step, v in values.items():
            w.writerow([step, "0.5", ""])
            w.writerow([step, "", v])


def improving_why(tmp_path, curves: list[dict[int, float]], mode: str = "max") -> str:
    recs = seeds(*(0.5 for _ in curves), mode=mode, improving=True)  # val_last == val_best in every record
    for rec, values in zip(recs, curves, strict=True):
        write_val(tmp_path, rec, values)
        best = (max if mode == "max" else min)(values.values())
        rec["metric"].update(val_best=best, val_last=list(values.values())[-1])
    (line,) = lines_of({"rows": [{"published": 0.91 if mode == "max" else 0.01}]}, recs, GRU_ONLY, runs=tmp_path)
    assert line.verdict == "short"
    return line.why


def test_still_improving_needs_the_validation_metric_to_improve_over_the_last_quarter(tmp_path):
    steps = (250, 500, 750, 1000, 1250, 1500, 1750, 2000)
    flat = dict(zip(steps, (0.30, 0.45, 0.48, 0.49, 0.50, 0.50, 0.500, 0.501), strict=True))  # last is best, by 0.2 %
    assert not improving_why(tmp_path, [flat] * 3).startswith("still improving")
    rising = dict(zip(steps, (0.30, 0.35, 0.40, 0.42, 0.44, 0.46, 0.48, 0.50), strict=True))
    assert improving_why(tmp_path, [rising, rising, flat]) == (
        "still improving at the budget: val acc over 1 % better in the last quarter of training than before "
        "it in 2/3 runs (2000 steps)")
    # a loss, flat and then rising (worse) late, with a lucky last evaluation equal to the best: not improving
    charlm = dict(zip(steps, (2.85, 2.22, 2.03, 1.95, 1.920, 1.925, 1.935, 1.919), strict=True))
    assert not improving_why(tmp_path, [charlm], mode="min").startswith("still improving")
