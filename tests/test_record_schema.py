"""One record schema (bench/run/schema.py): a run record, sweep summary or metrics CSV that lacks a field the
readers read, or holds it with the wrong type, is one line naming the file and what is wrong; the command
finishes its work on the rest and exits 1, its outputs made before any is written. A damaged summary cache is
made again from the records; the temporary files a killed writer left are cleared by the next write there.

Each case here was a KeyError or TypeError traceback (or a crash after training) before the schema."""

import gzip
import json
import os
import shutil
import subprocess
import sys
import time
from functools import lru_cache
from pathlib import Path

import pytest
from conftest import SMALL_ADDING

import architectures
from bench import cli
from bench.reports import leaderboard, reproduction
from bench.run.schema import RECORD, Metrics, problem
from bench.store import PACK, STALE_S, Store

ROOT = Path(__file__).resolve().parent.parent
COMMITTED = ROOT / "results" / "runs"
pytestmark = pytest.mark.skipif(not COMMITTED.is_dir(), reason="no committed reference results")


@lru_cache(maxsize=1)
def _chosen(n: int) -> tuple[str, ...]:
    """``n`` committed ok adding records of one section (task settings), each of another family, as JSON."""
    sections: dict[str, dict[str, str]] = {}
    for path in sorted(COMMITTED.glob("adding__*__s0__*.json")):
        rec = json.loads(path.read_text())
        if rec["status"] == "ok" and rec["metrics_file"] and (COMMITTED / rec["metrics_file"]).is_file():
            family = sections.setdefault(json.dumps(rec["config"]["task"], sort_keys=True), {})
            family.setdefault(rec["arch"], path.read_text())
            if len(family) == n:
                return tuple(family.values())
    raise AssertionError(f"no section of the committed adding records has {n} families")


def fake_store(tmp_path: Path, n: int = 3) -> Path:
    """A results folder holding ``n`` committed adding records of one section, of different families, with
    their metrics CSVs."""
    out = tmp_path / "out"
    (out / "runs").mkdir(parents=True)
    for text in _chosen(n):
        rec = json.loads(text)
        Store(out).record_path(rec["name"], rec["id"]).write_text(text)
        shutil.copy(COMMITTED / rec["metrics_file"], out / "runs")
    return out


def first_record(out: Path) -> Path:
    return Store(out).record_files()[0]


def edit(path: Path, change) -> None:
    rec = json.loads(path.read_text())
    change(rec)
    path.write_text(json.dumps(rec))


def leaderboard_cli(capsys, out: Path, *extra: str) -> tuple[int, list[str]]:
    capsys.readouterr()
    code = cli.main(["leaderboard", "--out", str(out), *extra])
    return code, [line for line in capsys.readouterr().err.splitlines() if line.startswith("skipped: ")]


def drop(key):
    return lambda rec: rec.pop(key)


def put(path: str, value):
    *parents, name = path.split(".")

    def change(rec):
        for part in parents:
            rec = rec[part]
        rec[name] = value
    return change


# the cases, each a traceback in `leaderboard` and `report` before
DAMAGES = [
    (drop("provenance"), "no 'provenance' field"),
    (put("metric.test", "0.5"), "'metric.test' should hold a number or null, not \"0.5\""),
    (put("wall_time_s", None), "'wall_time_s' should hold a number, not null"),
    (put("config.task", [1, 2]), "'config.task' should hold a mapping, not [1, 2]"),
    (put("metric.solved", 1), "'metric.solved' should hold true or false or null, not 1"),
    (put("grad_norm_preclip", None), "'grad_norm_preclip' should hold a mapping, not null"),
    (put("status", "okay"), "'status' should hold one of 'ok', 'diverged', 'failed', not \"okay\""),
    (put("diagnostics", {"events": {"spikes": "many"}}), "'diagnostics.events.spikes' should hold a whole number"),
]


@pytest.mark.parametrize("change, message", DAMAGES, ids=[m.split(" ")[0] for _, m in DAMAGES])
def test_a_record_with_a_field_missing_or_mistyped_is_one_line_and_skipped(tmp_path, capsys, change, message):
    out = fake_store(tmp_path)
    bad = first_record(out)
    edit(bad, change)
    code, skipped = leaderboard_cli(capsys, out)
    assert code == 1 and len(skipped) == 1
    assert skipped[0].startswith(f"skipped: record {bad}: {message}")
    board = (out / "LEADERBOARD.md").read_text()
    assert board.count("\n| ") - 1 == 2  # the two others' rows, and the header
    assert (out / "REPRODUCTION.md").is_file() and (out / "leaderboard.csv").is_file()
    capsys.readouterr()
    assert cli.main(["report", "--out", str(out)]) == 1  # the report reads whole records: the same line
    assert f"skipped: record {bad}: {message}" in capsys.readouterr().err
    assert (out / "report" / "index.html").is_file()
    _, unreadable = Store(out).statuses()  # a resume trains it again, as a run with no readable record
    assert list(unreadable) == [Store.id_of(bad)]


def test_every_committed_record_meets_the_schema():
    # the schema asks for what the records hold: none of the reference's own records is left out
    failing = {p.name: problem(json.loads(p.read_text()), RECORD) for p in COMMITTED.glob("*__*.json")}
    assert {k: v for k, v in failing.items() if v} == {}


def test_a_damaged_sweep_summary_is_named_and_the_rest_is_read(tmp_path, capsys):
    out = fake_store(tmp_path)
    sweeps = out / "sweeps"
    sweeps.mkdir()
    good = {"spec": "sweeps/a.yaml", "planned": 1, "planned_ids": [], "ran": 1, "wall_time_s": 60.0, "workers": 1,
            "threads_per_worker": 1, "provenance": {"cpu": "x", "cpu_count": 2, "torch": "2", "git_sha": "abcdef12"}}
    (sweeps / "a.json").write_text(json.dumps(good))
    (sweeps / "b.json").write_text(json.dumps({**good, "spec": "sweeps/b.yaml", "planned_ids": None}))
    (sweeps / "c.json").write_text(json.dumps(good)[:50])
    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\n{leaderboard.README_START}\n{leaderboard.README_END}\n")
    code, skipped = leaderboard_cli(capsys, out, "--readme", str(readme))
    assert code == 1 and len(skipped) == 2
    assert sorted(skipped)[0] == (f"skipped: sweep summary {sweeps / 'b.json'}: 'planned_ids' should hold a list "
                                  "of text, not null (not one, or edited by hand)")
    assert sorted(skipped)[1].startswith(f"skipped: sweep summary {sweeps / 'c.json'}: cut short")
    assert "`sweeps/a.yaml`: 1 runs in 1.0 min" in readme.read_text()  # the readable one is quoted
    assert "sweeps/b.yaml" not in readme.read_text()


ZEROED = {".xz": "not an xz file", ".gz": "not a gzip file"}  # what a zero-filled file is, by its compression


@pytest.mark.parametrize("damage, message", [
    (lambda p: p.write_bytes(b"\0" * p.stat().st_size), ZEROED),
    (lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]), "cut short"),
])
def test_a_damaged_metrics_csv_is_named_and_read_as_none(tmp_path, capsys, damage, message):
    out = fake_store(tmp_path)
    rec = json.loads(first_record(out).read_text())
    csv = out / "runs" / rec["metrics_file"]
    message = message[csv.suffix] if isinstance(message, dict) else message  # the first record's: xz or gzip
    damage(csv)
    code, skipped = leaderboard_cli(capsys, out)  # the flow sentences read each pictured run's CSV
    assert code == 1 and len(skipped) == 1 and skipped[0].startswith(f"skipped: metrics {csv}: {message}")
    assert (out / "LEADERBOARD.md").read_text().count("\n| ") - 1 == 3  # the record itself stays
    assert (out / "REPRODUCTION.md").is_file()
    metrics = Metrics(out / "runs")  # the reproduction table's readers: no line, and the file named once
    assert reproduction.solved_by([rec], metrics) == "—" and not reproduction.improving_at_end(rec, metrics)
    assert len(metrics.skipped) == 1


@pytest.mark.parametrize("text, message", [
    ("step,val/mse\n0,0.5\n2,1e", "cut short (its last line is unfinished)"),
    ("step,val/mse\n0,0.5\n2,1e\n", "line 3: val/mse '1e' is not a number"),
    ("", "no 'step' column"),
])
def test_a_plain_metrics_csv_cut_mid_number_is_named(tmp_path, text, message):
    (tmp_path / "r.metrics.csv").write_text(text)
    metrics = Metrics(tmp_path)
    assert metrics.series("r.metrics.csv", "val/mse") is None and metrics.columns("r.metrics.csv", ["x"]) is None
    assert len(metrics.skipped) == 1  # named once, however many readers ask
    assert metrics.skipped[0].startswith(f"metrics {tmp_path / 'r.metrics.csv'}: {message}")


def test_a_null_metrics_file_reads_as_a_run_without_one(tmp_path, capsys):
    out = fake_store(tmp_path)
    edit(first_record(out), put("metrics_file", None))  # as a failed run records it: no line, no crash
    rec = json.loads(first_record(out).read_text())
    assert reproduction.solved_by([rec], Store(out).metrics) == "—"
    assert leaderboard_cli(capsys, out) == (0, [])


def test_the_outputs_are_made_before_any_is_written(tmp_path, capsys, monkeypatch):
    out = fake_store(tmp_path)

    def fails(*args, **kwargs):
        raise RuntimeError("the reproduction table failed")

    monkeypatch.setattr(reproduction, "compute", fails)
    with pytest.raises(RuntimeError):
        cli.main(["leaderboard", "--out", str(out)])
    assert not (out / "LEADERBOARD.md").exists() and not (out / "leaderboard.csv").exists()


def test_a_damaged_line_of_the_summary_cache_is_made_again(tmp_path, capsys):
    out = fake_store(tmp_path)
    assert leaderboard_cli(capsys, out) == (0, [])
    clean = (out / "LEADERBOARD.md").read_text()
    pack = out / "index" / PACK
    lines = pack.read_bytes().splitlines(keepends=True)
    head = lines[1].rsplit(b"\t", 1)[0]
    lines[1] = head + b'\t{"id": "broken\n'  # the record's file, size and time still match
    lines[2] = lines[2].replace(b'"wall_time_s":', b'"wall_time_s":null,"x":')  # JSON, not a summary
    pack.write_bytes(b"".join(lines))
    summary = out / "index" / head.split(b"\t")[0].decode()  # its record's own summary, read next: damaged too
    summary.write_text('{"status": 3}')
    capsys.readouterr()
    assert cli.main(["leaderboard", "--out", str(out)]) == 0
    warned = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning: ")]
    assert len(warned) == 2 and f"warning: {pack}: a damaged line" in warned[0] and str(summary) in warned[1]
    assert (out / "LEADERBOARD.md").read_text() == clean
    capsys.readouterr()
    assert cli.main(["leaderboard", "--out", str(out)]) == 0  # rebuilt: no warning the next time
    assert "warning" not in capsys.readouterr().err


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_temporary_files_a_killed_writer_left_are_cleared_by_the_next_write(tmp_path, capsys):
    out = fake_store(tmp_path)
    dead, old = _dead_pid(), time.time() - 2 * STALE_S
    stale = [out / f"flow_adding.png.tmp{dead}", out / f"LEADERBOARD.md.tmp{dead}"]
    kept = [out / f"flow_x.png.tmp{os.getppid()}",  # its writer lives
            out / "notes.tmp",  # not a name the suite writes
            out / f"leaderboard.csv.tmp{dead + 1}"]  # fresh: maybe a writer whose pid is not ours to see
    for path in stale + kept:
        path.write_text("half")
    for path in stale + kept[:2]:
        os.utime(path, (old, old))
    assert leaderboard_cli(capsys, out) == (0, [])
    assert not any(p.exists() for p in stale) and all(p.exists() for p in kept)


def test_a_cut_short_summary_of_another_sweep_does_not_stop_a_sweep_after_training(tmp_path, capsys):
    spec, out = tmp_path / "one.yaml", tmp_path / "out"
    spec.write_text(SMALL_ADDING + f"  arch.name: {{value: {architectures.names()[0]}}}\n  seed: {{value: 0}}\n")
    other = out / "sweeps" / "other.json"
    other.parent.mkdir(parents=True)
    other.write_text('{"spec": "sweeps/other.yaml", "planned_ids": ["a", ')
    capsys.readouterr()
    code = cli.main(["sweep", str(spec), "--out", str(out), "--wandb", "disabled", "--reference", str(tmp_path / "no")])
    err = capsys.readouterr().err
    assert code == 1 and f"skipped: sweep summary {other}: cut short" in err and "Traceback" not in err
    assert len(Store(out).records().records) == 1 and (out / "LEADERBOARD.md").is_file()
    assert (out / "sweeps" / "one.json").is_file()  # its own summary, beside the other


def test_a_gzip_written_whole_reads(tmp_path):
    # the reader's checks pass what the store writes: a complete gzip stream with a final newline
    plain = tmp_path / "m.csv"
    plain.write_text("step,val/mse\n0,0.5\n1,nan\n2,0.25\n")
    with gzip.open(tmp_path / "m.metrics.csv.gz", "wt") as f:
        f.write(plain.read_text())
    metrics = Metrics(tmp_path)
    assert metrics.series("m.metrics.csv.gz", "val/mse") == {0: 0.5, 2: 0.25} and not metrics.skipped


@pytest.mark.parametrize("damage, message", [
    (lambda p: p.write_bytes(b"\0" * p.stat().st_size), "not an xz file"),
    (lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]), "cut short"),
])
def test_a_damaged_xz_metrics_file_is_named(tmp_path, damage, message):
    # what the store writes now: xz, read whole, and named when damaged
    plain = tmp_path / "m.csv"
    plain.write_text("step,val/mse\n" + "".join(f"{i},{0.5 / (i + 1)!r}\n" for i in range(2000)))
    packed = Store(tmp_path).compress_in(plain, tmp_path / "m.metrics.csv.xz")
    assert Metrics(tmp_path).series(packed.name, "val/mse")[1] == 0.25
    damage(packed)
    metrics = Metrics(tmp_path)
    assert metrics.series(packed.name, "val/mse") is None
    assert metrics.skipped[0].startswith(f"metrics {packed}: {message}")
