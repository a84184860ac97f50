"""`make chaos` on the smoke sweep: SIGKILL a 2-worker sweep all along its run and inside writes, resume,
compare (slow: a minute or two)."""

import re
from pathlib import Path

import pytest

from dev import chaos

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_killed_and_resumed_sweep_loses_nothing_and_matches_an_uninterrupted_one(tmp_path, capsys):
    code = chaos.main(["--spec", str(ROOT / "sweeps" / "tiny.yaml"), "--kills", "5", "--write-kills", "2",
                       "--workers", "2", "--keep", str(tmp_path)])
    printed = capsys.readouterr().out
    assert code == 0, printed
    kills = re.findall(r"^kill \d+/5 .*$", printed, re.MULTILINE)
    assert len(kills) >= 3, printed  # the sweep may finish before the last kills land; each that lands must be clean
    assert all(line.endswith("; clean") for line in kills), printed
    assert any(re.search(r": inside a (record|checkpoint|metrics) write \(", line) for line in kills), printed
    assert int(re.search(r"kills: (\d+) \((\d+) inside a write\)", printed).group(2)) >= 1, printed
    # stray temp files: 0 also says the resumes cleared what the killed writes left
    assert "lost: 0  duplicated: 0  stray temp files: 0  leaderboard identical: yes" in printed
