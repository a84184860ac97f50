"""The tuned protocol (bench/sweeps/tune.py): equal budgets checked before any work, both stages, resume."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from bench.reports import leaderboard
from bench.reports import tuned as tuned_report
from bench.run.config import resolve
from bench.run.system import build
from bench.store import Store
from bench.sweeps import sweep, tune
from options import ConfigError

FAMILY = """
program: bench
method: random
metric: {{name: val/mse, goal: minimize}}
run_cap: {cap}
early_terminate: {{type: hyperband, min_iter: 1, eta: 2}}
parameters:
  task.name: {{value: adding}}
  task.seq_len: {{value: 6}}
  task.n_train: {{value: 256}}
  task.n_val: {{value: 64}}
  task.n_test: {{value: 64}}
  task.batch_size: {{value: 16}}
  arch.name: {{value: {arch}}}
  arch.hidden_size: {{value: 4}}
  train.max_steps: {{value: {steps}}}
  train.val_every: {{value: 4}}
  train.diag: {{value: false}}
  optim.lr: {{distribution: log_uniform_values, min: 0.001, max: 0.1}}
  optim.clip: {{values: [0.0, 1.0]}}
  seed: {{value: 0}}
confirm: {{seeds: [1, 2, 3, 4, 5]{witness}}}
"""


def spec(tmp_path, *families, name="tuned.yaml"):
    path = tmp_path / name
    path.write_text("---".join(FAMILY.format(**{"cap": 3, "steps": 12, "witness": "", **f}) for f in families))
    return path


@pytest.mark.parametrize("families, message", [
    (({"arch": "gru"}, {"arch": "lstm", "cap": 4}), "run_cap differs from document 1's"),
    (({"arch": "gru"}, {"arch": "lstm", "steps": 16}), "every family of a comparison gets the same budget"),
    (({"arch": "gru"}, {"arch": "gru"}), "family 'gru' is searched by two documents"),
    (({"arch": "gru", "witness": ", witness: 3"}, {"arch": "lstm"}), "confirm's witness differs from document 1's"),
])
def test_unequal_budgets_are_refused_before_any_work(tmp_path, families, message):
    path = spec(tmp_path, *families)
    with pytest.raises(ConfigError, match=message):
        sweep.run(path, tmp_path / "out", workers=1, wandb="disabled")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("change, message", [
    (("goal: minimize", "goal: maximize"), "metric must be {name: val/mse, goal: minimize}"),
    (("confirm: {seeds: [1, 2, 3, 4, 5]}", "confirm: {seeds: [1, 2]}"), "at least 5 distinct"),
    (("confirm: {seeds: [1, 2, 3, 4, 5]}", "confirm: {seeds: [0, 1, 2, 3, 4]}"), "seed 0 is the search's"),
    (("values: [0.0, 1.0]}", "values: [0.0, 1.0], probabilities: [0.5, 0.5]}"), "'probabilities' has no Optuna"),
    (("min_iter: 1", "min_iter: 3"), "first rung must be 1..2 validations"),
    (("method: random", "method: grid"), "method is one of random, bayes"),
    (("run_cap: 3", "run_cap: 1000000"), "trials\\) must be a whole number >= 2 and <= 1000, got 1000000"),
    (("arch.name: {value: gru}", "arch.name: {values: [gru, lstm]}"), "fixes 'arch.name' with 'value'"),
    (("4, 5]}", "4, 5], witness: 1}"), "witness .* must be a whole number >= 2, got 1"),
    (("4, 5]}", "4, 5], witness: true}"), "witness .* must be a whole number >= 2, got True"),
    (("4, 5]}", "4, 5], longer: 3}"), "may add 'witness'"),
])
def test_bad_tuned_documents_are_one_line_errors(tmp_path, change, message):
    path = spec(tmp_path, {"arch": "gru"})
    path.write_text(path.read_text().replace(*change))
    with pytest.raises(ConfigError, match=message) as err:
        tune.studies(path)
    assert "\n" not in str(err.value)


def test_a_file_mixing_tuned_and_grid_documents_is_refused(tmp_path):
    path = spec(tmp_path, {"arch": "gru"})
    path.write_text(path.read_text() + "---\nmethod: grid\nparameters:\n  task.name: {value: adding}\n")
    with pytest.raises(ConfigError, match="a tuned file .* has only tuned documents"):
        sweep.tuned(path)


def test_both_stages_give_every_family_its_trials_then_confirm_the_best_on_fresh_seeds(tmp_path):
    path = spec(tmp_path, {"arch": "gru"}, {"arch": "vanilla"})
    store = Store(tmp_path / "out")
    trained = sweep.run(path, store, workers=1, wandb="disabled")
    summary = json.loads(tune.summary_path(store, path).read_text())
    [comparison] = summary["comparisons"]
    assert comparison["protocol"]["trials_per_family"] == 3
    records = {r["id"]: r for r in store.records().records}
    assert len(records) == len(trained) == 2 * (3 + 5)
    for family in ("gru", "vanilla"):
        entry = comparison["families"][family]
        assert len(entry["trials"]) == 3 and all(t["run_id"] in records for t in entry["trials"])
        finished = [t for t in entry["trials"] if t["state"] == "complete"]
        best = min(finished, key=lambda t: t["value"])
        assert entry["chosen"]["number"] == best["number"]
        # the value Optuna was told is the record's best validation metric
        assert best["value"] == records[best["run_id"]]["metric"]["val_best"]
        for t in entry["trials"]:
            rec = records[t["run_id"]]
            if t["state"] == "pruned":  # a pruned trial stopped early, and its record says why
                assert "pruned by Optuna's HyperbandPruner" in rec["stopped"]["reason"]
                assert rec["steps"] < 12
        seeds = sorted(records[c["run_id"]]["seed"] for c in entry["confirm"])
        assert seeds == [1, 2, 3, 4, 5]
        chosen_cfg = resolve(tune.studies(path)[0 if family == "gru" else 1].overrides(best["params"], 1),
                             check_machine=False)
        assert chosen_cfg.run_id == entry["confirm"][0]["run_id"]
        assert all(records[c["run_id"]]["steps"] == 12 for c in entry["confirm"])  # the full budget, no pruning
    # the table reads those records: one row per family, the test over the five confirm seeds; a figure of a
    # comparison no longer shown is removed, other PNGs are not
    stale, other = store.root / "importance_adding_tuned_9.png", store.root / "flow_adding.png"
    stale.write_bytes(b"png"), other.write_bytes(b"png")
    text = tuned_report.write(store).read_text()
    assert not stale.exists() and other.exists()
    assert "| gru |" in text and "| vanilla |" in text and "(n=5/5)" in text
    assert "3 trials of up to 12 steps" in text
    from bench.reports import html  # and the static report shows the same tables

    assert "<h2>Tuned comparisons</h2>" in "\n".join(html._tuned(store))


def test_a_family_short_of_the_goal_is_witnessed_at_the_longer_budget_once_it_is_confirmed(tmp_path):
    """Stage 3: with ``witness: 2`` each family whose confirm runs did not solve the task (at 12 steps on a
    4-unit core none does) trains once more, its chosen configuration on seed 1 for 24 steps; the summary names
    that run, TUNED.md says what it did, and a second sweep trains nothing."""
    path = spec(tmp_path, {"arch": "gru", "witness": ", witness: 2"}, {"arch": "vanilla", "witness": ", witness: 2"})
    store = Store(tmp_path / "out")
    trained = sweep.run(path, store, workers=1, wandb="disabled")
    assert len(trained) == 2 * (3 + 5 + 1)
    [comparison] = json.loads(tune.summary_path(store, path).read_text())["comparisons"]
    assert comparison["protocol"]["witness"] == 2
    records = {r["id"]: r for r in store.records().records}
    for s in tune.studies(path):
        entry = comparison["families"][s.family]
        witness = records[entry["witness"]["run_id"]]
        assert witness["seed"] == 1 and witness["steps"] == 24 and entry["witness"]["max_steps"] == 24
        assert resolve(s.witness_overrides(entry["chosen"]["params"]), check_machine=False).run_id == witness["id"]
        # a witness run is the tuned reference's: the leaderboard leaves it to TUNED.md
        assert witness["id"] in tuned_report.tuned_ids(store)
    text = tuned_report.write(store).read_text()
    assert ("Checked at a longer budget (2 times the budget, 24 steps: the chosen configuration on seed 1, tested at "
            "its best validation checkpoint): gru still does not solve it (test mse") in text
    assert sweep.run(path, store, workers=1, wandb="disabled") == []


def test_adding_a_witness_to_a_tuned_file_keeps_its_studies(tmp_path):
    plain = tune.studies(spec(tmp_path, {"arch": "gru"}, name="plain.yaml"))
    witnessed = tune.studies(spec(tmp_path, {"arch": "gru", "witness": ", witness: 3"}, name="witnessed.yaml"))
    assert [(s.name, s.digest) for s in plain] == [(s.name, s.digest) for s in witnessed]
    assert (plain[0].witness, witnessed[0].witness) == (0, 3)


def test_a_study_left_running_by_a_killed_driver_runs_that_trial_again(tmp_path):
    """A killed driver leaves its trial RUNNING in the journal; the next run trains that trial's parameters (the
    run resumes its checkpoint when there is one) instead of drawing a new one, so the family keeps its count."""
    path = spec(tmp_path, {"arch": "gru", "cap": 2})
    store = Store(tmp_path / "out")
    [s] = tune.studies(path)
    study = tune.open_study(s, tune.storage_path(store, path))
    study.sampler = tune._sampler(s, 0)
    left = study.ask(tune._distributions(s))  # what the driver did before it was killed
    sweep.run(path, store, workers=1, wandb="disabled")
    study = tune.open_study(s, tune.storage_path(store, path))
    trials = study.get_trials(deepcopy=False)
    assert len(trials) == 2 and all(t.state.is_finished() for t in trials)
    assert trials[0].params == left.params and trials[0].state != TrialState.FAIL
    rerun = resolve(s.overrides(left.params), check_machine=False)
    assert store.record_path(rerun.name, rerun.run_id).is_file()


def test_a_killed_trial_worker_costs_only_its_run_and_a_resume_trains_only_it_again(tmp_path, monkeypatch, capsys):
    """The pool breaks no more: the killed trial's run is recorded failed naming the signal, the other trial
    finishes, and the killed trial stays RUNNING in the journal, as a killed driver leaves it; the next run trains
    it (and no other trial), then confirms the study."""
    import dying_worker

    path = spec(tmp_path, {"arch": "gru", "cap": 2})
    store = Store(tmp_path / "out")
    [s] = tune.studies(path)
    monkeypatch.setattr(tune, "train_trial", dying_worker.train_trial)
    first = sweep.run(path, store, workers=2, wandb="disabled")
    assert (store.root / "killed-while-other-finished").read_text() == "False"  # the other was training meanwhile
    [killed] = [r for r in first if r.get("killed")]
    assert (killed["status"], killed["error"], killed["killed"]) == ("failed", "worker killed by SIGKILL", "SIGKILL")
    [other] = [r for r in first if r is not killed]
    assert other["status"] == "ok" and other["steps"] > 0
    assert "worker killed by SIGKILL; recorded failed, trained again when the sweep runs again" in \
        capsys.readouterr().out
    assert sweep.exit_code(first) == 1
    trials = {t.user_attrs["run_id"]: t for t in tune.open_study(s, tune.storage_path(store, path)).trials}
    assert len(trials) == 2 and trials[killed["id"]].state == TrialState.RUNNING
    assert trials[other["id"]].state.is_finished()
    kept = store.record_path(other["name"], other["id"]).stat()

    monkeypatch.undo()
    again = sweep.run(path, store, workers=2, wandb="disabled")
    searched = [r for r in again if r["seed"] == 0]  # the search's seed; the confirm runs have fresh ones
    assert [(r["id"], r["status"], r.get("killed")) for r in searched] == [(killed["id"], "ok", None)]
    assert sorted(r["seed"] for r in again if r["seed"] != 0) == list(s.confirm_seeds)  # then the study confirms
    after = store.record_path(other["name"], other["id"]).stat()
    assert (after.st_ino, after.st_mtime_ns) == (kept.st_ino, kept.st_mtime_ns)
    trials = tune.open_study(s, tune.storage_path(store, path)).trials
    assert len(trials) == 2 and all(t.state.is_finished() for t in trials)
    assert sweep.run(path, store, workers=2, wandb="disabled") == []


def test_a_study_whose_first_trials_fail_draws_a_new_point_for_each(tmp_path):
    """QMCSampler learns its space from the first finished trial; before one exists every trial drew the same
    point (the adding T = 200 IRNN study: trial 1 diverged and trials 2-6 repeated it)."""
    path = spec(tmp_path, {"arch": "gru", "cap": 4})
    [s] = tune.studies(path)
    study = tune.open_study(s, tmp_path / "j.journal")
    drawn = []
    for n in range(3):
        study.sampler = tune._sampler(s, n)
        trial = study.ask(tune._distributions(s))
        study.tell(trial.number, state=TrialState.FAIL)
        drawn.append(trial.params["optim.lr"])
    assert len(set(drawn)) == 3, drawn


def test_a_resumed_study_draws_what_an_uninterrupted_one_draws(tmp_path):
    path = spec(tmp_path, {"arch": "gru", "cap": 4})
    [s] = tune.studies(path)
    optuna.logging.set_verbosity(optuna.logging.WARNING)

    def draws(journal, stop_after=None):
        out = []
        for n in range(4):
            if n == stop_after:  # a new process: the study comes back from its journal
                return out + draws(journal)[n:]
            study = tune.open_study(s, journal)
            study.sampler = tune._sampler(s, n)
            if len(study.trials) > n:
                out.append(study.trials[n].params)
                continue
            trial = study.ask(tune._distributions(s))
            study.tell(trial.number, 1.0)
            out.append(trial.params)
        return out

    assert draws(tmp_path / "a.journal") == draws(tmp_path / "b.journal", stop_after=2)


def test_tuned_files_are_not_planned_as_grids(tmp_path):
    from bench.sweeps.plan import plan

    with pytest.raises(ConfigError, match="tuned file"):
        plan(spec(tmp_path, {"arch": "gru"}))


def test_the_interval_and_welch_test_match_scipy_and_the_bold_needs_the_interval_past_the_baseline():
    from scipy import stats

    a, b = [0.10, 0.12, 0.11, 0.13, 0.09], [0.30, 0.25, 0.35, 0.28, 0.31]
    lo, hi = tuned_report.interval(a)
    ref = stats.t.interval(0.95, len(a) - 1, loc=sum(a) / len(a), scale=stats.sem(a))
    assert lo == pytest.approx(ref[0]) and hi == pytest.approx(ref[1])
    assert tuned_report.welch(a, b) == pytest.approx(stats.ttest_ind(a, b, equal_var=False).pvalue)
    row = {"mean": 0.11, "interval": (lo, hi)}
    assert tuned_report.beats_baseline(row, 1 / 6, "min")
    assert not tuned_report.beats_baseline(row, 0.12, "min")  # the mean is below, the interval is not


def _comparison(values: dict[str, list[float]], spectrum: str | None = None,
                top: str | None = None) -> tuple[dict, dict]:
    """A comparison of families with one finished trial each and five planned confirm runs, of which the
    records hold ``values``' (the test MSE of each); a confirm run with no value is not recorded yet. Each
    record's two recurrent layers have the spectrum verdicts ``spectrum`` (l0) and ``top`` (l1; None: a
    matrix, which has none)."""
    def record(i, value):
        return {"id": i, "status": "ok", "params": 10, "metrics_file": None,
                "metric": {"name": "mse", "mode": "min", "test": value, "test_from": "best"},
                "task_info": {"baseline": 1 / 6, "metric": "mse"},
                "seed": int(i[-1]) + 1, "diagnostics": {
                    "flow_ratio_init": -3.0 if value > 0.1 else -1.0, "flow_ratio_final": -3.0 if value > 0.1 else -0.5,
                    "final": {"spectra": {"l0": {"verdict": spectrum}, "l1": {"verdict": top}}},
                    "profiles": {"steps": [0, 10], "flow": [[[1e-3, 1.0]], [[0.3, 1.0]]]}}}

    by_id = {f"{f}{i}": record(f"{f}{i}", v) for f, vs in values.items() for i, v in enumerate(vs)}
    comparison = {"settings": {"task.name": "adding"}, "protocol": {
        "goal": "min", "pruner": None, "method": "random", "trials_per_family": 1, "max_steps": 10,
        "metric": "val/mse", "confirm_seeds": [1, 2, 3, 4, 5]}, "families": {
        f: {"trials": [{"state": "complete"}], "chosen": {"params": {"optim.lr": 0.01}, "value": 0.01},
            "confirm": [{"run_id": f"{f}{i}"} for i in range(5)]} for f in values}}
    return comparison, by_id


def _table(tmp_path, values: dict[str, list[float]], spectrum: str | None = None,
           top: str | None = None) -> dict[str, list[str]]:
    """Each family's row of the rendered table, split into its cells."""
    comparison, by_id = _comparison(values, spectrum, top)
    lines = tuned_report.render_comparison("adding", comparison, by_id, tmp_path, None)
    return {cells[1].strip(): [c.strip() for c in cells[1:-1]]
            for cells in (line.split("|") for line in lines if line.startswith("| ") and "---" not in line)}


def test_a_family_still_confirming_is_shown_but_never_ranked_or_bolded(tmp_path):
    five = [0.010, 0.011, 0.012, 0.013, 0.014]
    # the LSTM has one lucky seed of five; the GRU all five, each worse than that seed
    rows = _table(tmp_path, {"gru": five, "lstm": [0.001]})
    assert rows["lstm"][7] == "pending (1/5 confirm runs)" and "**" not in rows["lstm"][3]
    assert rows["gru"][7] == "—" and "**" not in rows["gru"][3]  # one family ranked: nothing to compare with
    # two confirmed and one still confirming: the better of the two is only the best so far, and not bolded
    rows = _table(tmp_path, {"gru": five, "irnn": [x * 2 for x in five], "lstm": [0.001]})
    assert rows["gru"][7] == "best so far" and "**" not in rows["gru"][3]
    assert rows["irnn"][7].startswith("differs")
    assert rows["gru"][6] == "healthy 5 (r = -0.5)"  # the flow column counts the confirm runs' verdicts
    # once every family's confirm runs are in, the best is named and bolded
    rows = _table(tmp_path, {"gru": five, "irnn": [x * 2 for x in five], "lstm": [x / 10 for x in five]})
    assert rows["lstm"][7] == "best" and rows["lstm"][3].startswith("**")
    # a family whose recurrence has a verdict of its own shows it beside the flow's
    rows = _table(tmp_path, {"lru": five}, spectrum="vanishing")
    assert rows["lru"][6] == "healthy 5 (r = -0.5); spectrum vanishing 5"
    # a stack's layers each: the first may forget within a few steps while the second carries the memory
    rows = _table(tmp_path, {"mingru-2l": five}, spectrum="vanishing", top="healthy")
    assert rows["mingru-2l"][6] == "healthy 5 (r = -0.5); spectrum l0: vanishing 5; l1: healthy 5"


def test_each_failed_or_diverged_trial_is_listed_with_what_its_record_says(tmp_path):
    comparison, by_id = _comparison({"gru": [0.010, 0.011, 0.012, 0.013, 0.014]})
    comparison["families"]["gru"]["trials"] += [
        {"state": "fail", "params": {"optim.lr": 0.009}, "run_id": "blown"},
        {"state": "fail", "params": {"optim.lr": 0.002}, "run_id": "broken"},
        {"state": "fail", "params": {"optim.lr": 0.001}}]  # its worker died before the run had an id
    by_id["blown"] = {"status": "diverged", "steps": 120, "divergence": {"step": 114}}
    by_id["broken"] = {"status": "failed", "error": "Traceback ...\nValueError: bad row"}
    text = "\n".join(tuned_report.render_comparison("adding", comparison, by_id, tmp_path, None))
    assert ("Trials that failed or diverged (counted against their family's trials): gru (optim.lr=0.009) diverged "
            "at step 114; gru (optim.lr=0.002) failed: ValueError: bad row; gru (optim.lr=0.001) no record.") in text
    assert "| 1 / 0 / 3 |" in text


def test_a_family_with_no_trial_yet_is_listed_apart_not_shown_as_searching(tmp_path):
    comparison, by_id = _comparison({"gru": [0.010, 0.011, 0.012, 0.013, 0.014],
                                     "irnn": [0.020, 0.021, 0.022, 0.023, 0.024]})
    comparison["families"]["lru"] = {"trials": [], "chosen": None, "confirm": []}
    lines = tuned_report.render_comparison("adding", comparison, by_id, tmp_path, None)
    assert not any(line.startswith("| lru ") for line in lines)
    assert "Not started yet (`make tuned` resumes; not among those ranked): lru." in lines
    assert any(line.startswith("| gru ") and "| best |" in line for line in lines)  # of the families that ran


def test_the_opening_says_what_each_short_familys_longer_budget_did(tmp_path):
    five = [0.010, 0.011, 0.012, 0.013, 0.014]
    comparison, by_id = _comparison({"gru": five, "vanilla": [0.170, 0.160, 0.165, 0.168, 0.162],
                                     "irnn": [0.171, 0.172, 0.17, 0.173, 0.174]})
    comparison["protocol"]["witness"] = 3
    for family in ("vanilla", "irnn"):
        comparison["families"][family]["witness"] = {"seed": 1, "max_steps": 30, "run_id": f"{family}-w"}
    by_id["vanilla-w"] = {**by_id["vanilla0"], "id": "vanilla-w", "metric": {**by_id["vanilla0"]["metric"],
                                                                             "test": 0.05, "baseline": 1 / 6}}
    text = "\n".join(tuned_report.render_comparison("adding", comparison, by_id, tmp_path, None))
    assert ("Checked at a longer budget (3 times the budget, 30 steps: the chosen configuration on seed 1, tested at "
            "its best validation checkpoint): vanilla leaves the baseline (test mse 0.05 against 0.1667: more than 10% "
            "of the way to a perfect 0; vanishing flow at the end); irnn: not recorded yet.") in text
    # one run has no interval: a hair past the baseline is still at it, by the margin the flow clause names
    by_id["vanilla-w"]["metric"]["test"] = 0.16
    text = "\n".join(tuned_report.render_comparison("adding", comparison, by_id, tmp_path, None))
    assert "vanilla still stays at the baseline (test mse 0.16 against 0.1667: less than 10% of the way" in text


def test_an_interval_never_reaches_past_where_the_metric_can_lie(tmp_path):
    # seeds far apart: the t-interval of the mean reaches below an MSE of 0, which no run can score
    rows = _table(tmp_path, {"gru": [0.001, 0.002, 0.3, 0.001, 0.002]})
    lo, hi = (float(v) for v in rows["gru"][4].strip("[]").split(","))
    assert lo == 0 and hi > 0.1
    assert tuned_report.within((-0.2, 1.3), "max") == (0.0, 1.0) and tuned_report.within(None, "min") is None


def test_a_tuned_section_opens_with_what_its_records_say_and_pictures_each_familys_flow(tmp_path):
    # the tanh RNN stays at the baseline with its gradient gone; the others keep it and beat the baseline
    five = [0.010, 0.011, 0.012, 0.013, 0.014]
    comparison, by_id = _comparison({"gru": five, "lstm": [x * 2 for x in five],
                                     "vanilla": [0.170, 0.160, 0.165, 0.168, 0.162]})
    lines = tuned_report.render_comparison("adding", comparison, by_id, tmp_path, None, "gradflow_adding.png")
    text = "\n".join(lines)
    assert ("Of the families whose confirm runs are all in, gru and lstm keep the gradient alive (healthy flow at "
            "the end in most confirm runs) and beat the baseline (the whole interval past it); vanilla loses the "
            "gradient (vanishing flow at the end) and does not beat the baseline") in text
    assert "vanilla (s1) stays near 10^-3.0" in text and "gru (s1) rises from 10^-1.0 to 10^-0.5" in text
    assert "![gradient flow](gradflow_adding.png)" in text
    # the picture: one panel per family, its first confirm seed, redrawn only when that changes
    from bench.diag.plots import write_panels_png

    png = tmp_path / "gradflow_adding.png"
    panels = [(f, by_id[f"{f}0"]) for f in ("gru", "lstm", "vanilla")]
    write_panels_png(png, "adding (tuned)", panels)
    first = png.stat().st_mtime_ns
    write_panels_png(png, "adding (tuned)", panels)
    assert png.stat().st_mtime_ns == first


@pytest.mark.slow  # a Ray runtime starts: minutes on 2 busy cores
def test_ray_trains_the_same_trials_and_confirm_runs_as_the_local_pool(tmp_path):
    import ray

    from bench.sweeps.executors.base import Options

    path = spec(tmp_path, {"arch": "gru", "cap": 2})
    local, remote = Store(tmp_path / "local"), Store(tmp_path / "ray")
    sweep.run(path, local, workers=1, wandb="disabled")
    ray.init(num_cpus=2, log_to_driver=False, include_dashboard=False, logging_level="ERROR")
    try:
        tune.run(path, remote, Options(spec=path, wandb="disabled", workers=2), executor="ray")
    finally:
        ray.shutdown()

    def ids(store):
        summary = json.loads(tune.summary_path(store, path).read_text())
        [family] = [f for c in summary["comparisons"] for f in c["families"].values()]
        return [t["run_id"] for t in family["trials"]], [c["run_id"] for c in family["confirm"]]

    assert ids(local) == ids(remote)
    assert {r["id"] for r in local.records().records} == {r["id"] for r in remote.records().records}


def test_ray_trials_larger_than_any_node_are_refused_before_any_work(tmp_path, monkeypatch):
    """The tuned sweep joins Ray as the ray executor does, with its checks (a stand-in cluster of 2-CPU nodes)."""
    from bench.sweeps.executors import ray as executor_ray
    from bench.sweeps.executors.base import Options

    path = spec(tmp_path, {"arch": "gru", "cap": 2})
    monkeypatch.setattr(executor_ray, "connect", lambda address: False)
    monkeypatch.setattr(executor_ray, "nodes", lambda: [{"CPU": 2.0}, {"CPU": 2.0}])
    with pytest.raises(ConfigError, match=r"a trial needs 3 CPUs \(--threads 3 x train.devices 1\) but the cluster "
                                          r"at head:6379 has 2 on one node"):
        tune.run(path, Store(tmp_path / "out"), Options(spec=path, wandb="disabled", threads=3,
                                                        address="head:6379"), executor="ray")
    assert not (tmp_path / "out").exists()


ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.skipif(not (ROOT / "results" / "studies").is_dir(), reason="no committed tuned studies yet")
def test_committed_tuned_tables_regenerate_from_the_records():
    store = Store(ROOT / "results")
    assert (ROOT / "results" / "TUNED.md").read_text() == tuned_report.render(store)
    text = (ROOT / "README.md").read_text()
    start, end = text.index(tuned_report.README_START), text.index(tuned_report.README_END)
    assert text[start:end + len(tuned_report.README_END)] == tuned_report.readme_block(store)
    # every trial a study finished is recorded (confirm runs and trials under way may not be yet: the reference
    # trains over several sittings), and the leaderboard leaves the studies' runs to TUNED.md
    recorded = {r["id"] for r in store.records().records}
    summary = json.loads((ROOT / "results" / "studies" / "tuned.json").read_text())
    finished = {t["run_id"] for c in summary["comparisons"] for f in c["families"].values() for t in f["trials"]
                if t["state"] in ("complete", "pruned")}
    assert finished and finished <= recorded
    assert not tuned_report.tuned_ids(store) & {r["id"] for r in leaderboard.load(store)[0]}


def test_a_summary_that_is_not_one_is_named_and_skipped(tmp_path):
    store = Store(tmp_path)
    (tmp_path / "studies").mkdir()
    (tmp_path / "studies" / "old.json").write_text('{"spec": "x", "comparisons": {"a": {}}}')
    (tmp_path / "studies" / "bad.json").write_text("{not json")
    assert tuned_report.render(store, records=[]) is None and tuned_report.tuned_ids(store) == set()
    # named with the records the leaderboard left out, which makes its exit status 1
    skipped = leaderboard.read(store)[1]
    assert len(skipped) == 2 and "bad.json: unreadable" in skipped[0]
    assert "old.json: not a tuned sweep's summary" in skipped[1]


def test_reopening_studies_adds_nothing_to_their_journal(tmp_path):
    """Each study is created once: the summary reopens every study after every run, and Optuna's create_study with
    load_if_exists appends a line each time, which every later replay of the journal reads again."""
    path = spec(tmp_path, {"arch": "gru", "cap": 2}, {"arch": "vanilla", "cap": 2})
    store = Store(tmp_path / "out")
    sweep.run(path, store, workers=1, wandb="disabled")
    journal = tune.storage_path(store, path)
    ops = [json.loads(line)["op_code"] for line in journal.read_text().splitlines()]
    assert ops.count(0) == 2  # JournalOperation.CREATE_STUDY, once per study
    size = journal.stat().st_size
    tune.open_studies(tune.studies(path), journal), tune.dry_run(path, store)
    assert journal.stat().st_size == size


def test_a_study_lost_with_its_journal_is_replayed_from_the_records_without_training(tmp_path):
    path = spec(tmp_path, {"arch": "gru", "cap": 2})
    store = Store(tmp_path / "out")
    sweep.run(path, store, workers=1, wandb="disabled")
    before = json.loads(tune.summary_path(store, path).read_text())
    tune.storage_path(store, path).unlink()  # the draws are seeded from the document: the same trials come back
    assert sweep.run(path, store, workers=1, wandb="disabled") == []
    after = json.loads(tune.summary_path(store, path).read_text())

    def outcome(summary):  # what the study decided (a replay reports no intermediate values, so no counts of them)
        [family] = summary["comparisons"][0]["families"].values()
        return [{k: t[k] for k in ("number", "state", "params", "run_id")} for t in family["trials"]], \
            family["chosen"], family["confirm"]

    assert outcome(after) == outcome(before)


def test_the_cpu_time_is_shared_out_by_family_from_the_records():
    records = [{"arch": "gru", "cpu_time_s": 1800.0}, {"arch": "gru", "cpu_time_s": 1800.0},
               {"arch": "antisymmetric", "cpu_time_s": None, "wall_time_s": 360.0}]  # no CPU time: its wall time
    assert tuned_report.cpu_hours(records) == "1.10 CPU core-hours"
    assert tuned_report.by_family(records) == "By family: antisymmetric 0.10 (1 run), gru 1.00 (2 runs)."


def test_the_committed_mnist1d_comparison_sizes_every_family_like_the_papers_gru():
    """sweeps/tuned.yaml sizes each family of its MNIST-1D comparison to the paper GRU's 5,134 parameters (its
    widths were counted for it): a width or depth edited alone would make that comparison one of sizes."""
    found = [s for s in tune.studies(ROOT / "sweeps" / "tuned.yaml") if "task.name=mnist1d" in s.comparison]
    sizes = {s.family: sum(p.numel() for p in build(resolve(s.fixed, check_machine=False))[1].parameters())
             for s in found}
    assert len(sizes) == 12 and all(abs(n - 5134) <= 0.1 * 5134 for n in sizes.values()), sizes
