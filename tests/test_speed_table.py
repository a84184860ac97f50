"""dev/speed.py (``make bench-speed``): the table has a row per family and length with both paths and nn.GRU timed,
the record beside it, and bad input is refused before any work. No timing is asserted."""

import json

import pytest

import architectures
from architectures.base import RecurrentCore
from dev import speed

COLUMNS = ["family", "fast path", "T", "rounds", "fast steps/s", "reference steps/s", "nn.GRU steps/s",
           "fast ÷ nn.GRU", "reference ÷ nn.GRU", "fast ÷ reference"]


def two_families() -> list[str]:
    """One with a fused kernel and one with a scan: neither fast path goes through forward_reference."""
    cores = {n: architectures.entry(n).core for n in architectures.names()}
    fused = next(n for n, c in cores.items() if c.fused_cls is not None)
    # a scan kept off the CPU (scan_on_cpu False) is timed all the same: the fast side must still not step
    scanned = next(n for n, c in cores.items() if c.scan is not RecurrentCore.scan and not c.scan_on_cpu)
    return [fused, scanned]


def test_quick_table_times_fast_and_reference_paths(tmp_path, monkeypatch):
    calls = []
    reference = RecurrentCore.forward_reference
    monkeypatch.setattr(RecurrentCore, "forward_reference", lambda self, *a, **k: (calls.append(1),
                                                                                   reference(self, *a, **k))[1])
    families = two_families()
    record = speed.main(["--quick", "--families", *families, "--seq-lens", "3", "5", "--out", str(tmp_path)])

    # quick: one warm-up step and two rounds of one step, per side and row; only the reference side steps
    assert len(calls) == 3 * 2 * len(families)
    assert json.loads((tmp_path / "speed-cpu.json").read_text()) == record
    assert record["provenance"]["git_sha"] and record["provenance"]["torch"]
    rows = [r for r in (tmp_path / "speed-cpu.md").read_text().splitlines() if r.startswith("|")]
    header = [c.strip() for c in rows[0].strip("|").split("|")]
    assert header == COLUMNS
    body = [[c.strip() for c in r.strip("|").split("|")] for r in rows[2:]]
    assert [(r[0], r[2]) for r in body] == [(f, t) for t in ("3", "5") for f in families]
    for r in body:
        assert r[1] == speed.fast_path(architectures.build(r[0], 2), "cpu") and r[3] == "2"
        for cell in r[4:]:  # steps/s "median (min–max)" and the ratios: positive numbers
            assert all(float(v) > 0 for v in cell.replace("(", " ").replace(")", " ").replace("–", " ").split())
    for row in record["rows"]:
        assert set(row["seconds"]) == set(speed.SIDES)
        assert all(len(s) == 2 and min(s) > 0 for s in row["seconds"].values())


@pytest.mark.parametrize("argv", [["--families", "no-such-family"], ["--min-rounds", "5", "--max-rounds", "2"],
                                  ["--hidden", "0"]])
def test_bad_input_is_refused_before_any_work(tmp_path, capsys, argv):
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exc:
        speed.main([*argv, "--out", str(out)])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and not out.exists()
