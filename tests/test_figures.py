"""Pictures at any size: one panel per family chosen by a documented rule, and no drawing when nothing changed."""

import shutil
from pathlib import Path

from PIL import Image

from bench.diag import plots
from bench.reports import leaderboard

ROOT = Path(__file__).resolve().parent.parent


def rec(arch: str, label: str, seed: int, test: float, seq_len: int = 50, mode: str = "min") -> dict:
    return {"task": "adding", "arch": arch, "arch_label": label, "seed": seed, "name": f"adding__{label}__s{seed}",
            "id": f"{label}{seed}{seq_len}", "status": "ok", "config": {"task": {"name": "adding", "seq_len": seq_len}},
            "metric": {"test": test, "mode": mode}, "diagnostics": {"profiles": {"flow": [[[1.0]]], "steps": [0]}}}


def test_one_panel_per_family_its_best_row_in_the_main_section():
    # 200 learning-rate variants of the GRU, two LSTM rows, and a vanilla row at another length
    records = [rec("gru", f"gru lr{i}", s, 0.5 - i / 1000) for i in range(200) for s in (1, 0)]
    records += [rec("lstm", "lstm", s, 0.2) for s in (0, 1)] + [rec("lstm", "lstm-2l", 0, 0.1)]
    records += [rec("vanilla", "vanilla", 0, 0.01, seq_len=200)]  # not in the main section (seq_len 50)
    chosen = plots.best_per_family(records, lambda r: r["arch_label"], lambda r: True)["adding"]
    assert sorted(chosen) == ["gru", "lstm"]  # one panel per family, never one per row
    assert chosen["gru"]["arch_label"] == "gru lr199" and chosen["gru"]["seed"] == 0  # best mean, lowest seed
    assert chosen["lstm"]["arch_label"] == "lstm-2l"


def test_a_figure_is_drawn_only_when_its_inputs_change(tmp_path):
    drawn = []

    def draw():
        import matplotlib.pyplot as plt

        drawn.append(1)
        fig, ax = plt.subplots(figsize=(1, 1))
        ax.plot([0, 1])
        return fig

    path = tmp_path / "f.png"
    assert plots.save_unless_unchanged(path, "k1", draw) and len(drawn) == 1
    with Image.open(path) as im:
        assert im.text[plots.INPUTS_KEY] == "k1"
    assert not plots.save_unless_unchanged(path, "k1", draw) and len(drawn) == 1
    assert plots.save_unless_unchanged(path, "k2", draw) and len(drawn) == 2
    path.write_bytes(b"not a png")
    assert plots.save_unless_unchanged(path, "k2", draw) and len(drawn) == 3
    assert plots.inputs_hash("a", [1, 2]) == plots.inputs_hash("a", [1, 2]) != plots.inputs_hash("a", [2, 1])


def test_regenerating_an_unchanged_leaderboard_draws_nothing(tmp_path, monkeypatch):
    runs = tmp_path / "runs"
    runs.mkdir()
    for pattern in ("adding__gru__s0__be99a9d07e*", "adding__vanilla__s0__b79a06a4d5*", "translate__gru__s0__*"):
        for path in (ROOT / "results" / "runs").glob(pattern):
            shutil.copy(path, runs)
    leaderboard.write(tmp_path)
    pngs = {p.name: p.read_bytes() for p in tmp_path.glob("*.png")}
    assert {"flow_adding.png", "flow_translate.png", "attention_translate.png"} <= set(pngs)
    import matplotlib.pyplot as plt

    def no_drawing(*args, **kwargs):
        raise AssertionError("a figure was drawn although its inputs did not change")

    monkeypatch.setattr(plt, "subplots", no_drawing)
    leaderboard.write(tmp_path)
    assert {p.name: p.read_bytes() for p in tmp_path.glob("*.png")} == pngs
