"""Sweeps and the leaderboard: records on a tiny sweep, grid and random specs, device slots, resume after
SIGKILL, two sweeps on one folder, --retry-failed, executor dispatch, byte-stable regeneration."""

import io
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import SMALL_ADDING

from bench import cli
from bench.reports import leaderboard, reproduction
from bench.reports import tuned as tuned_report
from bench.run.config import resolve
from bench.store import Store
from bench.sweeps import sweep
from bench.sweeps.executors import base
from bench.sweeps.executors import local as slots
from bench.sweeps.plan import check_metric, plan
from bench.sweeps.progress import Progress
from bench.sweeps.spec import anchored
from options import ConfigError

ROOT = Path(__file__).resolve().parent.parent


def load_all(out: Path) -> list[dict]:
    return Store(out).records().records


def recorded_ids(out: Path) -> set[str]:
    return set(Store(out).statuses()[0])

# Two documents: vanilla and gru over two seeds, and one vanilla run with a learning rate that diverges.
TINY = (SMALL_ADDING + "  arch.name: {values: [vanilla, gru]}\n  seed: {values: [0, 1]}\n---"
        + SMALL_ADDING + "  arch.name: {value: vanilla}\n  optim.name: {value: sgd}\n  optim.lr: {value: 1.0e+6}\n"
        "  optim.clip: {value: 0}\n  seed: {values: [0]}\n")


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep")
    spec = out / "tiny.yaml"
    spec.write_text(TINY)
    results = sweep.run(spec, out, workers=1, wandb="disabled")
    return spec, out, results


def test_sweep_writes_one_record_per_run_and_carries_on_after_divergence(swept):
    spec, out, results = swept
    assert len(results) == 5
    recs = load_all(out)
    assert sorted(r["status"] for r in recs) == ["diverged"] + ["ok"] * 4
    assert {r["id"] for r in recs} == {c.run_id for c in plan(spec)}
    for r in recs:
        assert r["provenance"]["git_sha"] and "torch" in r["provenance"] and r["params"] > 0
        assert (out / "runs" / r["metrics_file"]).exists() or r["metrics_file"] is None


def test_rerun_skips_recorded_runs(swept, capsys):
    spec, out, _ = swept
    assert sweep.run(spec, out, workers=1, wandb="disabled") == []
    assert "5 already recorded" in capsys.readouterr().out


def test_leaderboard_rows_and_byte_stable_regeneration(swept):
    _, out, _ = swept
    md = leaderboard.write(out).md
    first = md.read_text()
    assert leaderboard.write(out).md.read_text() == first
    rows = leaderboard.build_rows(load_all(out))
    labels = {r.label: r for r in rows}
    assert set(labels) == {"vanilla", "gru", "vanilla (optim.clip=0, optim.lr=1e+06, optim.name=sgd)"}
    assert labels["gru"].n_ok == 2 and labels["gru"].std is not None
    diverged = labels["vanilla (optim.clip=0, optim.lr=1e+06, optim.name=sgd)"]
    assert diverged.n_diverged == 1 and diverged.mean is None
    assert "| diverged | verdict | spikes | flow init → end |" in first and "test mse ↓" in first and "0/1" in first
    assert "| 1/1 | no verdict 1/1 | 1 (1/1 runs) |" in first  # diverged: no flow verdict, said so; its spike counted
    assert (out / "flow_adding.png").stat().st_size > 10_000
    csv_text = (out / "leaderboard.csv").read_text()
    assert csv_text.splitlines()[0].startswith("task,label,metric")


def test_reference_column_matches_rows_by_config(swept, tmp_path):
    _, out, _ = swept
    md = leaderboard.render(load_all(out), reference=load_all(out))
    table = "\n".join(line for line in md.splitlines() if line.startswith("| "))
    assert "| reference |" in md and table.count("(n=2)") == 4  # gru and vanilla, mine and the reference


def test_records_are_written_atomically(tmp_path):
    rec = {"name": "x", "id": "1"}
    Store(tmp_path).write_json(tmp_path / "runs" / "x__1.json", rec)
    assert [p.name for p in (tmp_path / "runs").iterdir()] == ["x__1.json"]
    assert json.loads((tmp_path / "runs" / "x__1.json").read_text()) == rec


def test_run_id_hashes_the_resolved_config():
    a = resolve({"task": "adding", "arch": "gru"})
    assert a.run_id == resolve({"task": "adding", "arch": "gru", "arch.hidden_size": 128}).run_id
    assert a.run_id != resolve({"task": "adding", "arch": "gru", "seed": 1}).run_id
    assert a.run_id == resolve({"task": "adding", "arch": "gru", "train.accelerator": "cpu"}).run_id


@pytest.mark.skipif(not (ROOT / "results" / "runs").is_dir(), reason="no committed reference results yet")
def test_committed_leaderboard_regenerates_byte_for_byte():
    recs = leaderboard.load(ROOT / "results")[0]  # less the tuned studies' runs, which TUNED.md shows
    store = Store(ROOT / "results")  # the sections' flow sentences read the pictured runs' metrics CSVs
    assert (ROOT / "results" / "LEADERBOARD.md").read_text() == leaderboard.render(recs, store=store)
    assert (ROOT / "results" / "leaderboard.csv").read_text() == leaderboard.render_csv(recs)
    # and the reproduction table, with its README block, from the same records
    lines = reproduction.build(recs, anchored(ROOT), store.runs, reproduction.costs_of(store))
    assert (ROOT / "results" / "REPRODUCTION.md").read_text() == reproduction.render(lines)
    text = (ROOT / "README.md").read_text()
    start, end = text.index(reproduction.README_START), text.index(reproduction.README_END)
    assert text[start:end + len(reproduction.README_END)] == reproduction.readme_block(lines)
    # `rnnbench leaderboard` streams the records' summaries in one pass, keeping whole only what an anchor selects
    tables, skipped = leaderboard.read(ROOT / "results", wanted=reproduction.selector(anchored(ROOT)))
    assert not skipped and tables.n_records == len(recs)
    assert leaderboard.render(tables, store=store) == leaderboard.render(recs, store=store)
    assert leaderboard.render_csv(tables) == leaderboard.render_csv(recs)
    assert reproduction.build(tables.kept, anchored(ROOT), store.runs, reproduction.costs_of(store)) == lines


@pytest.mark.skipif(not (ROOT / "results" / "runs").is_dir(), reason="no committed reference results yet")
def test_readme_table_regenerates_from_the_committed_records():
    text = (ROOT / "README.md").read_text()
    start, end = text.index(leaderboard.README_START), text.index(leaderboard.README_END)
    assert text[start:end + len(leaderboard.README_END)] == leaderboard.readme_block(ROOT / "results")


@pytest.mark.skipif(not (ROOT / "results" / "runs").is_dir(), reason="no committed reference results yet")
def test_committed_records_come_from_the_reference_suites():
    # The Makefile's REFERENCE_SUITES: what `make reference` runs into results/.
    suites = [line.split(":=")[1].split() for line in (ROOT / "Makefile").read_text().splitlines()
              if line.startswith("REFERENCE_SUITES")][0]
    planned = {c.run_id for suite in suites if not sweep.tuned(ROOT / suite) for c in plan(ROOT / suite)}
    planned |= tuned_report.tuned_ids(Store(ROOT / "results"))  # a tuned file's runs: what its studies drew
    recs = load_all(ROOT / "results")
    # a subset: the reference trains over several sittings (sweeps resume), and records land as runs finish
    assert {r["id"] for r in recs} <= planned
    assert all(not r["provenance"]["git_dirty"] for r in recs)


def test_two_worker_processes_record_every_run(tmp_path, capsys):
    spec = tmp_path / "two.yaml"
    spec.write_text(SMALL_ADDING + "  arch.name: {values: [vanilla, gru]}\n  seed: {values: [0]}\n")
    results = sweep.run(spec, tmp_path / "out", workers=2, wandb="disabled")
    assert sorted(r["name"] for r in results) == ["adding__gru__s0", "adding__vanilla__s0"]
    assert all(r["status"] == "ok" and r["provenance"]["torch_threads"] >= 1 for r in results)
    assert len(load_all(tmp_path / "out")) == 2
    out = capsys.readouterr().out
    assert "2 to run on 2 worker(s) x 1 thread(s)" in out and "\r" not in out  # piped: no redrawn bar
    lines = [line for line in out.splitlines() if line.startswith("[")]
    assert [line[:5] for line in lines] == ["[1/2]", "[2/2]"]
    assert all(re.search(r"\| running \d · failed 0 · ETA \d+s$", line) for line in lines)



def test_a_killed_worker_costs_only_its_run_and_a_resume_trains_it_again(tmp_path, monkeypatch, capsys):
    import dying_worker

    spec, out = tmp_path / "two.yaml", tmp_path / "out"
    # vanilla trains long enough to be in flight when the gru run's worker is killed at its step 2
    spec.write_text(SMALL_ADDING.replace("max_steps: {value: 4}", "max_steps: {value: 300}")
                    + "  arch.name: {value: vanilla}\n  seed: {value: 0}\n---\n"
                    + SMALL_ADDING + "  arch.name: {value: gru}\n  seed: {value: 0}\n")
    monkeypatch.setattr(slots, "run_locked", dying_worker.run_locked)
    results = sweep.run(spec, out, workers=2, wandb="disabled")
    assert (out / "killed-while-other-finished").read_text() == "False"  # vanilla was training meanwhile
    by_arch = {r["arch"]: r for r in results}
    assert by_arch["vanilla"]["status"] == "ok" and by_arch["vanilla"]["steps"] == 300
    killed = by_arch["gru"]
    assert (killed["status"], killed["error"], killed["killed"]) == ("failed", "worker killed by SIGKILL", "SIGKILL")
    assert Store(out).read_record(Store(out).record_path(killed["name"], killed["id"]))["killed"] == "SIGKILL"
    assert "1 failed" in capsys.readouterr().out
    assert sweep.exit_code(results) == 1

    monkeypatch.undo()
    vanilla = Store(out).record_path("adding__vanilla__s0", by_arch["vanilla"]["id"])
    before = vanilla.stat()
    again = sweep.run(spec, out, workers=2, wandb="disabled")
    assert [(r["arch"], r["status"], r["steps"], r.get("killed")) for r in again] == [("gru", "ok", 4, None)]
    assert "(1 killed under their worker: training them again); 1 to run" in capsys.readouterr().out
    assert (vanilla.stat().st_ino, vanilla.stat().st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert sweep.run(spec, out, workers=2, wandb="disabled") == []


# --- random search -------------------------------------------------------------------------------------------

RANDOM = SMALL_ADDING.replace("method: grid", "method: random\nrun_cap: 6") + (
    "  arch.name: {values: [vanilla, gru]}\n"
    "  optim.lr: {distribution: log_uniform_values, min: 1.0e-4, max: 1.0e-2}\n"
    "  optim.weight_decay: {min: 0.0, max: 0.1}\n"
    "  optim.clip: {distribution: q_uniform, min: 0.5, max: 2, q: 0.5}\n"
    "  task.data_seed: {distribution: int_uniform, min: 1, max: 1000}\n"
    "  seed: {values: [0, 1, 2]}\n")


def test_random_search_is_deterministic_and_runs_every_config_over_every_seed(tmp_path):
    spec = tmp_path / "random.yaml"
    spec.write_text(RANDOM)
    first = plan(spec)
    assert [c.run_id for c in first] == [c.run_id for c in plan(spec)]  # resume depends on it
    assert len(first) == 6  # run_cap counts runs, as in W&B: 2 sampled configs x 3 seeds
    configs: dict[str, set] = {}
    for c in first:
        key = json.dumps({k: v for k, v in c.to_dict().items() if k != "seed"}, sort_keys=True)
        configs.setdefault(key, set()).add(c.seed)
    assert list(configs.values()) == [{0, 1, 2}, {0, 1, 2}]
    for c in first:
        assert 1e-4 <= c.optim.lr <= 1e-2 and 0 <= c.optim.weight_decay <= 0.1
        assert c.optim.clip in (0.5, 1.0, 1.5, 2.0) and 1 <= c.task.data_seed <= 1000
    spec.write_text(RANDOM.replace("run_cap: 6", "run_cap: 9"))  # another document, another draw
    assert len(plan(spec)) == 9 and {c.run_id for c in first} - {c.run_id for c in plan(spec)}


def test_random_search_without_seed_values_draws_run_cap_runs(tmp_path):
    spec = tmp_path / "random.yaml"
    spec.write_text(RANDOM.replace("  seed: {values: [0, 1, 2]}\n", "  seed: {value: 3}\n")
                    + "program: bench\ncommand: [python, -m, bench, run]\n"
                    + "metric: {name: val/mse, goal: minimize}\n")
    runs = plan(spec)
    assert len(runs) == 6 and {c.seed for c in runs} == {3}


@pytest.mark.parametrize("change, message", [
    (("method: random", "method: bayes"), "method 'bayes' is not supported yet; valid: grid, random"),
    (("run_cap: 6\n", ""), "method random needs a top-level run_cap"),
    (("run_cap: 6", "run_cap: 2"), "run_cap 2 is less than the 3 seeds every sampled config runs"),
    (("distribution: log_uniform_values", "distribution: loguniform"),
     "parameter 'optim.lr': unknown distribution 'loguniform'; valid: categorical, constant, int_uniform, "
     "log_uniform_values, q_uniform, uniform"),
    (("min: 1.0e-4, max: 1.0e-2", "min: 0.1, max: 0.01"), "parameter 'optim.lr': min 0.1 > max 0.01"),
    (("min: 1.0e-4, max: 1.0e-2", "min: 0, max: 0.01"), "log_uniform_values needs min > 0"),
    (("run_cap: 6", "run_cap: 6\ncount: 3"), "unknown key 'count' (not a W&B sweep key); valid: command"),
    (("{min: 0.0, max: 0.1}", "{mean: 0.1}"), "parameter 'optim.weight_decay': unknown key 'mean'"),
    (("method: random\nrun_cap: 6", "method: grid"),
     "parameter 'optim.lr' needs 'value' or a non-empty 'values' list (distributions need method random)"),
])
def test_bad_sweep_specs_are_one_line_errors(tmp_path, change, message):
    spec = tmp_path / "s.yaml"
    spec.write_text(RANDOM.replace(*change))
    with pytest.raises(ConfigError) as err:
        plan(spec)
    assert message in str(err.value) and "\n" not in str(err.value)
    assert str(err.value).startswith(f"{spec} document 1: ")


def test_every_committed_anchor_names_values_its_document_sets_and_a_metric_its_task_reports():
    documents = anchored(ROOT)  # refuses a match key or value the document does not set
    assert len(documents) >= 5
    for where, anchor, overrides in documents:
        for row in anchor.rows:
            assert any(row.matches(o) for o in overrides), (where, row.match)
        if anchor.metric:  # its task and options resolve offline (Hub names are fetched only when a run starts)
            check_metric(anchor.metric, resolve(overrides[0], check_machine=False))


# --- feedback ------------------------------------------------------------------------------------------------

def test_progress_appends_its_status_when_piped_and_redraws_a_bar_on_a_terminal(monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    rec = {"task": "adding", "arch_label": "gru", "seed": 0, "metric": {"name": "mse", "test": 0.5},
           "status": "ok", "wall_time_s": 2.0, "diagnostics": {"verdict": "healthy"}}
    piped = io.StringIO()
    progress = Progress(4, 2, stream=piped, tty=False)
    progress.result(rec)
    progress.result({**rec, "status": "failed", "metric": {"name": "mse", "test": None}})
    progress.tick()
    lines = piped.getvalue().splitlines()
    assert lines[0] == ("[1/4] adding   gru      s0  test/mse=0.5       ok       healthy   2s | "
                        "running 2 · failed 0 · ETA 3s")  # mean 2s x 3 left / 2 workers
    assert lines[1].endswith("| running 2 · failed 1 · ETA 2s") and len(lines) == 2
    term = io.StringIO()
    progress = Progress(4, 2, stream=term, tty=True)
    progress.result(rec)
    assert term.getvalue().startswith("\r\x1b[K[1/4] adding") and "\n[######" in term.getvalue()
    assert "] 1/4 done · running 2 · failed 0 · ETA 3s · 0s elapsed" in term.getvalue()
    monkeypatch.setenv("COLUMNS", "40")  # a wrapped bar could not be redrawn in place
    assert len(progress.bar()) == 39


# --- device slots --------------------------------------------------------------------------------------------

def test_device_slots_pack_runs_per_gpu_with_a_faked_gpu_count(monkeypatch):
    packed = slots.slot_plan(2, workers=None, runs_per_gpu=4)
    assert packed == [("0", 1), ("1", 1)] * 4  # round-robin, so a --workers cap still spreads over GPUs
    assert slots.slot_plan(2, workers=3, runs_per_gpu=4) == [("0", 1), ("1", 1), ("0", 1)]
    assert slots.slot_plan(0, workers=None, cores=2) == [(None, 1), (None, 1)]  # the reference's layout
    assert slots.slot_plan(0, workers=None, threads=2, cores=8) == [(None, 2)] * 4
    assert slots.describe(packed) == "8 worker(s) x 1 thread(s) on 2 GPU(s), 4 per GPU"
    monkeypatch.setenv("RNNBENCH_FAKE_GPUS", "2")
    assert slots.gpu_count() == 2 and slots.gpu_count(override=1) == 1
    monkeypatch.setenv("RNNBENCH_FAKE_GPUS", "two")
    with pytest.raises(ConfigError, match="RNNBENCH_FAKE_GPUS must be a whole number"):
        slots.gpu_count()


def test_runs_over_several_gpus_are_not_pinned_to_one(monkeypatch, tmp_path):
    calls = []

    def record_call(self, todo, store, plan_slots, progress):
        calls.append(([c.train.devices for c in todo], plan_slots))
        return []

    monkeypatch.setattr(slots.Local, "_run_on", record_call)
    cfgs = [resolve({"task": "adding", "arch": "gru", "train.devices": d}) for d in (2, 1)]
    slots.Local(base.Options(spec=None, gpus=2, runs_per_gpu=2)).run(cfgs, Store(tmp_path), None)
    assert calls == [([1], [("0", 1), ("1", 1)]), ([2], [(None, 1)])]  # packed first, then DDP on all GPUs
    calls.clear()
    slots.Local(base.Options(spec=None, gpus=0, workers=2)).run(cfgs, Store(tmp_path), None)
    assert calls[0] == ([2, 1], [(None, 1)] * 2)  # on CPU nothing is pinned: one pool for all


def test_pool_workers_pin_their_gpu_before_importing_torch():
    probe = "import sys, bench.sweeps.executors.local; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True).stdout.strip() == "False"
    pool = slots.Pool(slots.slot_plan(2, workers=None, runs_per_gpu=1))
    try:
        for job in range(pool.free):
            pool.give(job, os.getenv, "CUDA_VISIBLE_DEVICES")
        seen = []
        while pool.busy:
            seen += [value for _, value in pool.ended(timeout=5.0)]
    finally:
        pool.close()
    assert sorted(seen) == ["0", "1"]


def test_a_pool_worker_killed_under_its_job_ends_that_job_alone_and_its_slot_gets_a_fresh_worker():
    def drain(pool) -> dict:
        ended = {}
        while pool.busy:
            ended.update(pool.ended(timeout=5.0))
        return ended

    pool = slots.Pool([(None, 1), (None, 1)])
    try:
        pool.give("first", os.getpid)  # jobs go to the first free worker
        pool.give("second", os.getpid)
        pids = drain(pool)
        pool.give("dies", os.kill, pids["first"], signal.SIGKILL)  # the first worker kills itself mid-job
        pool.give("lives", time.sleep, 0)
        ended = drain(pool)
        assert ended["dies"] == slots.Killed("SIGKILL", ended["dies"].started) and ended["lives"] is None
        assert pool.free == 2
        pool.give("after", os.getpid)  # the dead worker's slot: a fresh process takes it
        assert drain(pool)["after"] not in pids.values()
    finally:
        pool.close()


# --- resume and integrity ------------------------------------------------------------------------------------

SIX = SMALL_ADDING + "  arch.name: {values: [vanilla, gru]}\n  seed: {values: [0, 1, 2]}\n"


def sweep_command(spec: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "bench", "sweep", str(spec), "--out", str(out), "--workers", "1",
            "--wandb", "disabled", "--reference", str(out)]


def assert_one_complete_record_per_run(spec: Path, out: Path) -> None:
    planned = sorted(c.run_id for c in plan(spec))
    recs = load_all(out)  # every record parses
    assert sorted(r["id"] for r in recs) == planned
    assert all((out / "runs" / r["metrics_file"]).is_file() for r in recs)
    assert not [p for p in (out / "runs").iterdir() if ".tmp" in p.name]


def test_sigkill_at_any_moment_then_resume_finishes_the_rest(tmp_path):
    spec, out = tmp_path / "six.yaml", tmp_path / "out"
    spec.write_text(SIX)
    proc = subprocess.Popen(sweep_command(spec, out), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.time() + 120
    while proc.poll() is None and time.time() < deadline and not recorded_ids(out):
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # the sweep and anything it started, mid-way through the next run
    proc.wait()
    before = recorded_ids(out)
    planned = {c.run_id: c for c in plan(spec)}
    missing = [c for i, c in planned.items() if i not in before]
    if missing:  # what a kill between writing and renaming leaves behind
        (out / "runs" / f"{missing[0].name}__{missing[0].run_id}.json.tmp99999").write_text("{\"half\": ")
    results = sweep.run(spec, out, workers=1, wandb="disabled")
    assert sorted(r["id"] for r in results) == sorted(c.run_id for c in missing)  # nothing trained twice
    assert_one_complete_record_per_run(spec, out)


def test_two_sweeps_on_one_folder_train_each_run_once(tmp_path):
    spec, out = tmp_path / "six.yaml", tmp_path / "out"
    spec.write_text(SIX)
    procs = [subprocess.Popen(sweep_command(spec, out), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True) for _ in range(2)]
    logs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], logs
    trained = [int(re.search(r"sweep finished in \d+s: (\d+) trained", log).group(1)) for log in logs]
    assert sum(trained) == 6, logs
    assert_one_complete_record_per_run(spec, out)
    table = [line for line in (out / "LEADERBOARD.md").read_text().splitlines() if line.startswith("| ")]
    assert sum("(n=3)" in line for line in table) == 2


def test_retry_failed_reruns_failed_runs_but_not_diverged_ones(tmp_path, capsys):
    spec, out = tmp_path / "s.yaml", tmp_path / "out"
    spec.write_text(TINY.replace("  arch.name: {values: [vanilla, gru]}\n  seed: {values: [0, 1]}\n",
                                 "  arch.name: {value: vanilla}\n  seed: {values: [0, 1]}\n"))
    assert len(sweep.run(spec, out, workers=1, wandb="disabled")) == 3
    path = next((out / "runs").glob("adding__vanilla__s1__*.json"))
    Store(out).write_json(path, {**json.loads(path.read_text()), "status": "failed"})
    assert sweep.run(spec, out, workers=1, wandb="disabled") == []  # a plain resume keeps the failure
    again = sweep.run(spec, out, workers=1, wandb="disabled", retry_failed=True)
    assert [(r["name"], r["status"]) for r in again] == [("adding__vanilla__s1", "ok")]
    printed = capsys.readouterr().out
    assert "3 already recorded in" in printed and "(1 failed: retrying them); 1 to run" in printed
    assert sorted(r["status"] for r in load_all(out)) == ["diverged", "ok", "ok"]


# --- executors -----------------------------------------------------------------------------------------------

def test_an_executor_plugs_in_with_the_shared_plan_progress_and_summary(tmp_path, monkeypatch, capsys):
    calls = {}

    class Fake(base.Executor):
        name, help, accepts_address = "fake", "trains in this process, for this test", True

        def run(self, todo, store, progress):
            calls.update(ids=[c.run_id for c in todo], address=self.options.address,
                         runs_per_gpu=self.options.runs_per_gpu)
            return [progress.result(base.run_locked(c, store, self.options.wandb)) for c in todo]

    monkeypatch.setitem(base.EXECUTORS._items, "fake", Fake)  # registered here, not found as a file
    spec, out = tmp_path / "one.yaml", tmp_path / "out"
    spec.write_text(SMALL_ADDING + "  arch.name: {value: gru}\n  seed: {values: [0]}\n")
    results = sweep.run(spec, out, wandb="disabled", executor="fake", address="ray://head:10001", runs_per_gpu=4)
    assert calls == {"ids": [c.run_id for c in plan(spec)], "address": "ray://head:10001", "runs_per_gpu": 4}
    assert [r["status"] for r in results] == ["ok"]
    assert "[1/1] adding   gru" in capsys.readouterr().out
    assert json.loads((out / "sweeps" / "one.json").read_text())["executor"] == "fake"
    assert sweep.run(spec, out, wandb="disabled", executor="fake") == [] and len(calls["ids"]) == 0


def test_a_missing_executor_package_is_one_line_before_any_work(tmp_path, monkeypatch):
    def no_ray(name):
        raise ModuleNotFoundError("No module named 'ray'", name="ray")

    monkeypatch.setattr(base.importlib, "import_module", no_ray)
    monkeypatch.delitem(base.EXECUTORS._items, "ray", raising=False)  # as if no test had imported it yet
    spec = tmp_path / "one.yaml"
    spec.write_text(SMALL_ADDING + "  arch.name: {value: gru}\n")
    with pytest.raises(ConfigError, match=r"^executor 'ray' needs the 'ray' package: pip install 'ray\[tune\]'$"):
        sweep.run(spec, tmp_path / "out", executor="ray")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("argv, message", [
    (["--executor", "slurm"], "argument --executor: invalid choice: 'slurm'"),
    (["--address", "ray://head:10001"], "--address is for --executor ray, not local"),
    (["--runs-per-gpu", "0"], "--runs-per-gpu: must be >= 1 and <= 64, got 0"),
])
def test_sweep_flag_errors_exit_2_with_one_line(capsys, tmp_path, argv, message):
    with pytest.raises(SystemExit) as code:
        cli.main(["sweep", "sweeps/tiny.yaml", "--out", str(tmp_path / "out"), *argv])
    err = capsys.readouterr().err
    assert code.value.code == 2 and err.count("\n") == 1 and message in err
    assert not (tmp_path / "out").exists()
