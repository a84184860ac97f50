"""Read-only stores: a command that only reads a store writes nothing into it (the leaderboard's reference, a
sweep's ``--reference``: a fresh clone's results/ has no index/), and a command that must write into a store it
cannot write refuses in one line before computing anything, exit 2.

chmod means nothing to root, who runs these tests in some places: "writes nothing" is checked as a snapshot of
the folder, and "cannot write" as ``os.access`` answering so (as the checks before training are tested); the
chmod versions run where the tests do not run as root."""

import json
import os
import shutil
import stat
from pathlib import Path

import pytest
from conftest import SMALL_ADDING

import architectures
from bench import cli
from bench.store import Store

ROOT = Path(__file__).resolve().parent.parent
COMMITTED = ROOT / "results" / "runs"
pytestmark = pytest.mark.skipif(not COMMITTED.is_dir(), reason="no committed reference results")
AS_ROOT = pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")


def store_with(tmp_path: Path, name: str, pattern: str) -> Path:
    """A results folder holding the first committed ok record matching ``pattern`` (no checkpoint: none is
    committed) and its metrics CSV."""
    folder = tmp_path / name
    (folder / "runs").mkdir(parents=True)
    for path in sorted(COMMITTED.glob(pattern)):
        rec = json.loads(path.read_text())
        if rec["status"] == "ok" and rec["metrics_file"]:
            shutil.copy(path, folder / "runs")
            shutil.copy(COMMITTED / rec["metrics_file"], folder / "runs")
            return folder
    raise AssertionError(f"no committed ok record {pattern}")


def snapshot(folder: Path) -> dict:
    return {p: (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(folder.rglob("*"))}


def read_only(monkeypatch, folder: Path) -> None:
    """Everything under ``folder`` reads as not writable."""
    real, root = os.access, folder.resolve()

    def access(path, mode, **kwargs):
        inside = Path(path).resolve().is_relative_to(root)
        return not (inside and mode & os.W_OK) and real(path, mode, **kwargs)

    monkeypatch.setattr(os, "access", access)


def test_the_leaderboard_writes_nothing_into_its_reference(tmp_path, capsys):
    mine, ref = store_with(tmp_path, "mine", "adding__*__s0__*.json"), store_with(tmp_path, "ref", "adding__*__s0__*.json")
    before = snapshot(ref)
    assert cli.main(["leaderboard", "--out", str(mine), "--reference", str(ref)]) == 0
    assert snapshot(ref) == before and not (ref / "index").exists()  # its summaries were made, and not kept
    assert "| reference |" in (mine / "LEADERBOARD.md").read_text()


def test_a_sweep_writes_nothing_into_its_reference(tmp_path, capsys):
    spec, out, ref = tmp_path / "one.yaml", tmp_path / "out", store_with(tmp_path, "ref", "adding__*__s0__*.json")
    spec.write_text(SMALL_ADDING + f"  arch.name: {{value: {architectures.names()[0]}}}\n  seed: {{value: 0}}\n")
    before = snapshot(ref)
    assert cli.main(["sweep", str(spec), "--out", str(out), "--wandb", "disabled", "--reference", str(ref)]) == 0
    assert snapshot(ref) == before and (out / "LEADERBOARD.md").is_file()


def writers(tmp_path: Path) -> list[tuple[list[str], Path]]:
    """(command line, its store) of each command that writes into a store."""
    lm = store_with(tmp_path, "lm", "charlm__*__s0__*.json")
    composed = store_with(tmp_path, "composed", "translate__*__s0__*.json")
    run_of = {folder: Store(folder).record_files()[0].stem.rsplit("__", 1)[0] for folder in (lm, composed)}
    return [(["leaderboard", "--out", str(lm)], lm),
            (["sample", run_of[lm], "--out", str(lm)], lm),
            (["units", run_of[lm], "--out", str(lm)], lm),
            (["decode", run_of[composed], "--out", str(composed)], composed)]


@pytest.mark.parametrize("command", ["leaderboard", "sample", "units", "decode"])
def test_a_command_that_must_write_says_so_before_computing(tmp_path, capsys, monkeypatch, command):
    argv, folder = next((a, f) for a, f in writers(tmp_path) if a[0] == command)
    read_only(monkeypatch, folder)
    before = snapshot(folder)
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:
        cli.main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_.value.code == 2 and len(err) == 1
    assert err[0].startswith(f"rnnbench: error: {command} writes into {folder}") and "cannot write in" in err[0]
    assert snapshot(folder) == before


@AS_ROOT
def test_a_chmod_read_only_reference_is_read(tmp_path, capsys):
    mine, ref = store_with(tmp_path, "mine", "adding__*__s0__*.json"), store_with(tmp_path, "ref", "adding__*__s0__*.json")
    folders = [ref, ref / "runs"]
    for folder in folders:
        folder.chmod(stat.S_IRUSR | stat.S_IXUSR)
    try:
        assert cli.main(["leaderboard", "--out", str(mine), "--reference", str(ref)]) == 0
        with pytest.raises(SystemExit) as exit_:
            cli.main(["leaderboard", "--out", str(ref)])
        assert exit_.value.code == 2 and "leaderboard writes into" in capsys.readouterr().err
    finally:
        for folder in folders:
            folder.chmod(stat.S_IRWXU)
