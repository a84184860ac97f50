"""The results store and the declarations behind run identity: atomic writes, unreadable records named and
skipped (never fatal), and a leaderboard that reads records alone, without torch."""

import csv
import json
import os
import random
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import SMALL_ADDING, as_float32

from bench import cli
from bench.reports import leaderboard
from bench.reports.studies import tuned_ids
from bench.run.config import TrainConfig, resolve
from bench.store import OLDER_METRICS, Metrics, RecordError, Store, dumps, open_metrics
from bench.sweeps import sweep
from options import ConfigError, coerce

ROOT = Path(__file__).resolve().parent.parent
COMMITTED = ROOT / "results" / "runs"


def test_an_interrupted_write_leaves_the_old_file_whole(tmp_path):
    store = Store(tmp_path)
    path = store.record_path("x", "1")
    store.write_json(path, {"v": 1})
    with pytest.raises(RuntimeError), store.atomic(path) as tmp:
        tmp.write_text('{"v": ')  # a write that dies half-way
        raise RuntimeError
    assert json.loads(path.read_text()) == {"v": 1} and [p.name for p in store.runs.iterdir()] == ["x__1.json"]


def test_two_processes_appending_at_once_keep_every_line(tmp_path):
    # RNNBENCH_WRITE_PAUSE holds each write between reading the file and renaming the new one over it: unlocked,
    # both processes read it empty and the second rename drops the first's lines (two `rnnbench sample` at once)
    path = Store(tmp_path).samples_path("charlm__lstm__s0", "abc")
    script = ("import sys; from pathlib import Path; from bench.store import Store; "
              "Store(sys.argv[1]).append_lines(Path(sys.argv[2]), [sys.argv[3] + ' 1', sys.argv[3] + ' 2'])")
    env = {**os.environ, "RNNBENCH_WRITE_PAUSE": "0.5"}
    writers = [subprocess.Popen([sys.executable, "-c", script, str(tmp_path), str(path), who], cwd=ROOT, env=env)
               for who in "ab"]
    assert [w.wait(timeout=60) for w in writers] == [0, 0]
    assert sorted(path.read_text().splitlines()) == ["a 1", "a 2", "b 1", "b 2"]


@pytest.mark.parametrize("content, problem", [
    ('{"id": "1", "name": "x", "sta', "cut short"),
    (b"\xff\xfe\x00garbage", "not UTF-8 text"),
    ("", "empty"),
    ("[1, 2]", "not a JSON object"),
    ('{"id": "1"}', "no 'name' field"),
])
def test_an_unreadable_record_is_one_line_naming_the_file(tmp_path, content, problem):
    path = Store(tmp_path).record_path("x", "1")
    path.parent.mkdir(parents=True)
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(RecordError) as err:
        Store(tmp_path).read_record(path)
    assert str(err.value).startswith(f"record {path}: {problem}") and "\n" not in str(err.value)


def test_a_truncated_record_never_stops_a_leaderboard_or_a_resume(tmp_path, capsys):
    spec, out = tmp_path / "two.yaml", tmp_path / "out"
    spec.write_text(SMALL_ADDING + "  arch.name: {values: [vanilla, gru]}\n  seed: {values: [0]}\n")
    sweep.run(spec, out, workers=1, wandb="disabled")
    cut = next(Store(out).runs.glob("adding__gru__*.json"))
    cut.write_text(cut.read_text()[:200])
    capsys.readouterr()
    assert cli.main(["leaderboard", "--out", str(out)]) == 1  # written, and the exit status says one was left out
    err = capsys.readouterr().err
    assert f"skipped: record {cut}: cut short" in err and "1 file(s) could not be read" in err
    assert "adding | vanilla" not in (out / "LEADERBOARD.md").read_text()  # the table holds the readable one
    assert "| vanilla |" in (out / "LEADERBOARD.md").read_text()
    again = sweep.run(spec, out, workers=1, wandb="disabled")  # the resume trains the unreadable run again
    assert [r["name"] for r in again] == ["adding__gru__s0"] and "training adding__gru__s0 again" in capsys.readouterr().err
    assert len(Store(out).records().records) == 2


def test_run_identity_and_the_question_come_from_the_field_declarations():
    base = resolve({"task": "adding", "arch": "gru"})
    moved = resolve({"task": "adding", "arch": "gru", "train.accelerator": "cpu", "train.strategy": "ddp_spawn"})
    assert moved.run_id == base.run_id  # where a run executes is not part of its identity
    assert base.outside("identity") == base.outside("question") == ["train.accelerator", "train.strategy"]
    assert "devices" not in base.to_dict()["train"]  # added after the reference: shown only when changed
    assert resolve({"task": "adding", "arch": "gru", "train.devices": 2}).run_id != base.run_id
    assert TrainConfig.__dataclass_fields__["accelerator"].metadata["identity"] is False


@pytest.mark.parametrize("value, annotation, result", [
    ("3", "int", 3), (3.0, "int", 3), ("1e-3", "float", 1e-3), ("true", "bool", True), ("none", "float | None", None),
])
def test_values_are_read_as_their_declared_type(value, annotation, result):
    assert coerce(value, annotation, "x.y") == result


@pytest.mark.parametrize("value, annotation", [
    (True, "int"), ("true", "int"), (2.5, "int"), (False, "float"), ("nan", "float"), ("inf", "float"),
    (1, "bool"), (3, "str"),
])
def test_bools_are_not_numbers_and_numbers_are_not_bools(value, annotation):
    with pytest.raises(ConfigError, match=r"^x\.y: cannot read"):
        coerce(value, annotation, "x.y")


@pytest.mark.skipif(not COMMITTED.is_dir(), reason="no committed reference results")
def test_the_leaderboard_reads_records_alone_without_torch(tmp_path):
    runs = tmp_path / "out" / "runs"
    runs.mkdir(parents=True)
    tuned = tuned_ids(Store(COMMITTED.parent))  # the tuned studies' trials: each its own configuration
    for path in sorted(COMMITTED.glob("adding__*__s0__*.json")):
        if path.stem.rsplit("__", 1)[1] not in tuned:
            shutil.copy(path, runs)
    probe = ("import sys; from bench.cli import main; code = main(['leaderboard', '--out', sys.argv[1]]); "
             "print(code, sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'lightning', 'tasks', "
             "'architectures')))")
    out = subprocess.run([sys.executable, "-c", probe, str(tmp_path / "out")], capture_output=True, text=True,
                         cwd=ROOT, check=True).stdout.splitlines()[-1]
    assert out == "0 []"
    records = Store(tmp_path / "out").records().records
    rows = leaderboard.build_rows(records)
    assert {r.label for r in rows} == {r["arch_label"] for r in records} and len(rows) > 1


def test_provenance_reads_git_at_the_repository_root():
    from bench.run import records

    # The dirty flag covers tasks/ and architectures/ too only when git runs at the root, not inside bench/.
    assert (records.ROOT / "pyproject.toml").is_file() and (records.ROOT / "tasks").is_dir()
    assert records.provenance()["git_sha"] == records._git("rev-parse", "HEAD") != "unknown"


def test_outputs_written_together_are_all_new_or_all_old(tmp_path, monkeypatch):
    """A command's outputs (LEADERBOARD.md, REPRODUCTION.md, TUNED.md, the README) go through write_texts: a write
    that fails part-way (a full disk) leaves every one of them as it was, and no temporary file behind."""
    store = Store(tmp_path)
    first, second = tmp_path / "A.md", tmp_path / "B.md"
    store.write_texts({first: "old a", second: "old b"})
    real = Path.write_text

    def full_disk(self, text, *args, **kwargs):
        if self.name.startswith("B.md"):
            raise OSError(28, "No space left on device")
        return real(self, text, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", full_disk)
    with pytest.raises(OSError):
        store.write_texts({first: "new a", second: "new b"})
    monkeypatch.undo()
    assert (first.read_text(), second.read_text()) == ("old a", "old b")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["A.md", "B.md"]
    store.write_texts({first: "new a", second: "new b"})
    assert (first.read_text(), second.read_text()) == ("new a", "new b")


def test_metrics_keep_every_float32_exactly_in_fewer_bytes(tmp_path):
    # A CSV as Lightning's CSVLogger writes it: float32 values (a loss's .item()) as a float64's 17 digits, and
    # float64 ones (a diagnostic computed in Python), integers, empty cells, nan
    rng = random.Random(0)
    f32 = [struct.unpack("f", struct.pack("f", rng.uniform(-3, 3) * 10 ** rng.randint(-9, 9)))[0] for _ in range(400)]
    f64 = [rng.uniform(-3, 3) for _ in range(400)]
    source = tmp_path / "metrics.csv"
    with open(source, "w", newline="") as f:
        writer = csv.writer(f)  # Lightning's writer: the csv module's defaults, \r\n line ends
        writer.writerow(["diag/flow_ratio/l0", "step", "train/loss"])
        writer.writerows([[repr(b) if i % 50 == 0 else "", i, repr(a)] for i, (a, b) in enumerate(zip(f32, f64, strict=True))])
        writer.writerow(["", 400, "nan"])
    store = Store(tmp_path / "out")
    packed = store.compress_in(source, store.metrics_path("adding__gru__s0", "0123456789"))
    assert packed.name.endswith(".metrics.csv.xz")
    with open_metrics(packed) as f:
        rows = list(csv.reader(f))
    with open(source, newline="") as f:
        before = list(csv.reader(f))
    assert rows[0] == before[0] and len(rows) == len(before)
    for row, old in zip(rows[1:], before[1:], strict=True):
        assert row[0] == old[0] and row[1] == old[1]  # float64s and integers: the text Lightning wrote
        assert row[2] == old[2] if old[2] == "nan" else as_float32(row[2]) == float(old[2])  # reads back to itself
    assert sum(len(r[2]) for r in rows[1:]) < 0.7 * sum(len(r[2]) for r in before[1:])
    again = store.compress_in(source, tmp_path / "again.metrics.csv.xz")
    assert again.read_bytes() == packed.read_bytes()  # same input, same bytes
    assert Metrics(packed.parent).series(packed.name, "train/loss") == {
        i: float(r[2]) for i, r in enumerate(rows[1:401])}


def test_records_keep_lists_of_numbers_on_one_line_and_read_back_the_same():
    data = {"b": [1, 2.5, None, "a, ]"], "a": {"flow": [[1e-3, 1.0], [0.5]], "none": []}, "e": {}, "n": float("nan")}
    text = dumps(data)
    assert '"flow": [\n      [0.001, 1.0],\n      [0.5]\n    ]' in text and '"b": [1, 2.5, null, "a, ]"]' in text
    # the same JSON as the indented form it replaced, for the first 40 committed records (by name)
    for path in [*sorted(COMMITTED.glob("*.json"))[:40], None]:
        value = data if path is None else json.loads(path.read_text())
        assert json.dumps(json.loads(dumps(value)), indent=2, sort_keys=True) == \
            json.dumps(value, indent=2, sort_keys=True)


def test_a_rerun_replaces_the_metrics_an_older_format_left(tmp_path):
    store = Store(tmp_path)
    store.runs.mkdir(parents=True)
    older = [store.runs / f"adding__gru__s0__0123456789{suffix}" for suffix in OLDER_METRICS]
    for path in older:
        path.write_text("step\n")
    store.drop_older_metrics("adding__gru__s0", "0123456789")
    assert not any(p.exists() for p in older)
