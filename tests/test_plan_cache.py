"""The plan cache (bench/sweeps/plan_cache.py): a hit plans the runs that resolving plans, without torch; an entry
goes stale when any file that planning used changes (a task file the sweep does not even name, a new task file,
a corpus it read); a plan that ends in an error is not kept; the machine check is made again on every hit. Every
test keeps its entries in a temporary folder."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import SMALL_ADDING, SMALL_TASK

import architectures
import tasks
from bench import cli
from bench.run import config
from bench.store import Store
from bench.sweeps import plan_cache
from bench.sweeps.plan import planned
from options import ConfigError

ROOT = Path(__file__).resolve().parent.parent
TWO = SMALL_ADDING + "  arch.name: {values: [vanilla, gru]}\n  seed: {values: [0]}\n"


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "plans"
    monkeypatch.setenv("RNNBENCH_PLAN_CACHE", str(folder))
    monkeypatch.chdir(ROOT)  # an entry is named by the working directory too
    # conftest imported the registries, so this process would only read the cache; these tests write it too
    monkeypatch.setattr(plan_cache, "watchable", lambda: True)
    return folder


def forbid_resolving(monkeypatch) -> None:
    """From here on a plan must come from the cache: resolving a run fails the test."""
    monkeypatch.setattr(config, "resolve", lambda *a, **k: pytest.fail("resolved a run on a cache hit"))


def entries(folder: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(folder.glob("*.json"))]


@pytest.mark.parametrize("spec", ["sweeps/default.yaml", "sweeps/encdec.yaml"])
def test_a_hit_plans_the_runs_that_resolving_plans(cache, spec):
    fresh = planned(ROOT / spec)
    assert all(r.cfg is not None for r in fresh) and len(entries(cache)) == 1
    hit = planned(ROOT / spec)
    assert all(r.cfg is None for r in hit)  # read from the entry, nothing resolved
    assert [(r.run_id, r.name) for r in hit] == [(r.cfg.run_id, r.cfg.name) for r in fresh]
    for was, now in list(zip(fresh, hit, strict=True))[::9]:  # the overrides kept resolve to the same config
        assert now.config() == was.cfg


def test_an_entry_holds_every_module_loaded_and_every_file_read(cache):
    planned(ROOT / "sweeps" / "tiny.yaml")
    (entry,) = entries(cache)
    registries = (tasks.__name__, architectures.__name__)
    registered = {m.__file__ for name, m in list(sys.modules.items()) if name.partition(".")[0] in registries}
    assert len(registered) > len(tasks.names()) and registered <= entry["files"].keys()  # tiny.yaml names two
    assert {str(ROOT / "sweeps" / "tiny.yaml"), config.__file__, plan_cache.__file__} <= entry["files"].keys()
    assert all(plan_cache.fingerprint(path) == seen for path, seen in entry["files"].items())


def test_a_warm_dry_run_imports_neither_torch_nor_lightning_and_writes_nothing(cache, tmp_path):
    spec, out = tmp_path / "two.yaml", tmp_path / "out"
    spec.write_text(TWO)
    runs = planned(spec)  # warms the cache
    done = runs[0]
    # a committed record renamed: a resumed sweep counts only records that meet the record schema
    committed = sorted((ROOT / "results" / "runs").glob("adding__vanilla__*.json"))[0]
    record = {**json.loads(committed.read_text()), "id": done.run_id, "name": done.name}
    Store(out).write_json(Store(out).record_path(done.name, done.run_id), record)
    before = sorted(p.relative_to(out) for p in out.rglob("*"))
    probe = ("import sys\nfrom bench import cli\n"
             f"code = cli.main(['sweep', {str(spec)!r}, '--dry-run', '--out', {str(out)!r}])\n"
             "print(code, 'torch' in sys.modules, 'lightning' in sys.modules)")
    # os.environ, exactly: a library loaded here may have set variables in the C environment that it does not show
    result = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=120,
                            env=dict(os.environ))
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        f"sweep {spec}: 2 runs; 1 already recorded in {out}; 1 to run (dry run: nothing trains)",
        f"  {runs[1].name} [{runs[1].run_id}]",
        "0 False False",
    ]
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before


def test_an_edited_or_added_source_makes_the_entry_stale(cache, tmp_path):
    """Planned from a copy of the code in a fresh process (as a command line plans), so the entry names the copy's
    files; then the copy is edited, put back, and given a new task file."""
    copy = tmp_path / "repo"
    for package in ("bench", "tasks", "architectures", "options", "sweeps"):
        shutil.copytree(ROOT / package, copy / package, ignore=shutil.ignore_patterns("__pycache__"))
    probe = "from bench.sweeps.plan import planned; print(len(planned('sweeps/tiny.yaml')))"
    result = subprocess.run([sys.executable, "-c", probe], cwd=copy, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    (entry,) = entries(cache)
    assert str(copy / "tasks" / "copy.py") in entry["files"] and str(copy / "tasks") in entry["files"]
    assert plan_cache.current(entry)
    edited = copy / "tasks" / "copy.py"  # a task that tiny.yaml does not train: the registry still loads it
    original = edited.read_bytes()
    edited.write_bytes(original + b"# an edit\n")
    assert not plan_cache.current(entry)
    edited.write_bytes(original)  # the same bytes again, though a newer file: the entry holds
    assert plan_cache.current(entry)
    (copy / "tasks" / "parity.py").write_text("")  # a new file in the task package may register a task
    assert not plan_cache.current(entry)


def test_a_file_that_planning_read_misses_when_it_changes(cache, tmp_path):
    corpus, spec = tmp_path / "corpus.txt", tmp_path / "lm.yaml"
    small = "".join(f"  {k}: {{value: {v}}}\n" for k, v in SMALL_TASK["charlm"].items())
    spec.write_text("method: grid\nparameters:\n  task.name: {value: charlm}\n  arch.name: {value: gru}\n"
                    f"  task.corpus: {{value: {corpus}}}\n" + small)
    with pytest.raises(ConfigError, match="is not a file"):
        planned(spec)
    assert entries(cache) == []  # an error is not kept
    corpus.write_text("the quick brown fox jumps over the lazy dog. " * 200)  # the missing corpus, supplied
    assert [r.cfg is not None for r in planned(spec)] == [True]
    assert [r.cfg is None for r in planned(spec)] == [True]
    (entry,) = entries(cache)
    assert str(corpus) in entry["files"]
    with open(corpus, "a") as f:
        f.write("and a few more words.")
    assert [r.cfg is not None for r in planned(spec)] == [True]


def test_a_bad_sweep_file_is_refused_again_with_the_same_line_and_not_kept(cache, tmp_path, capsys):
    spec, out = tmp_path / "bad.yaml", tmp_path / "out"
    spec.write_text(SMALL_ADDING + "  arch.name: {values: [gru, lstmm]}\n")

    def refused() -> str:
        with pytest.raises(SystemExit) as exc:
            cli.main(["sweep", str(spec), "--out", str(out)])
        assert exc.value.code == 2
        return capsys.readouterr().err

    first = refused()
    valid = ", ".join(architectures.names())
    assert first == f"rnnbench: error: {spec} document 1: unknown architecture 'lstmm'; valid: {valid}\n"
    assert refused() == first
    assert entries(cache) == [] and not out.exists()


@pytest.mark.parametrize("extra, tight", [
    ("", True),  # the memory estimate against a machine with (monkeypatched) almost no memory free
    ("  train.accelerator: {value: gpu}\n  train.devices: {value: 64}\n", False),  # more GPUs than any machine
])
def test_the_machine_check_refuses_on_a_hit_as_it_does_on_resolving(cache, tmp_path, monkeypatch, extra, tight):
    spec = tmp_path / "one.yaml"
    spec.write_text(SMALL_ADDING + "  arch.name: {value: gru}\n" + extra)
    overrides = dict(planned(spec, check_machine=False)[0].overrides)
    if extra:
        with pytest.raises(ConfigError):
            planned(spec)  # refused, but planned and stored
    else:
        planned(spec)  # fits: stored
    assert len(entries(cache)) == 2
    if tight:
        monkeypatch.setattr(config, "available_bytes", lambda: 1000)
    with pytest.raises(ConfigError) as fresh:
        config.resolve(overrides)
    forbid_resolving(monkeypatch)
    with pytest.raises(ConfigError) as hit:
        planned(spec)
    assert str(hit.value) == f"{spec} document 1: {fresh.value}"
    assert ("needs about" if tight else "GPU(s); valid here") in str(hit.value)
    assert len(planned(spec, check_machine=False)) == 1  # a run that trains elsewhere is not checked here
