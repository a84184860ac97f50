"""`make chaos` on the smoke sweep: SIGKILL a 2-worker sweep at random moments, resume, compare (slow: minutes)."""

import re
from pathlib import Path

import pytest

from bench import chaos

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
def test_killed_and_resumed_sweep_loses_nothing_and_matches_an_uninterrupted_one(tmp_path, capsys):
    code = chaos.main(["--spec", str(ROOT / "sweeps" / "tiny.yaml"), "--kills", "5", "--workers", "2",
                       "--keep", str(tmp_path)])
    printed = capsys.readouterr().out
    assert code == 0, printed
    kills = int(re.search(r"kills: (\d+)", printed).group(1))
    assert kills >= 3, printed  # the sweep may finish before the last kills land; each that lands must be clean
    assert "lost: 0  duplicated: 0  stray temp files: 0  leaderboard identical: yes" in printed
