"""Interpretable units: exact features on hand-written text, a planted unit ranked first, the `units` command
end to end on a tiny trained charlm run, and its one-line errors."""

import json

import pytest
import torch
from conftest import small

import architectures
from bench.cli import main
from bench.run.config import resolve
from bench.run.train import train
from bench.text import units
from options import ConfigError

TINY = {"train.max_steps": 4, "train.val_every": 4}


def test_features_quotes_brackets_line_position():
    text = 'a "b(c" [x]\n(y\n\n)z'
    f = units.features(text)
    assert f.shape == (len(text), 3)
    # quotes: the opening quote is inside, the closing one is not
    assert f[:, 0].tolist() == [0, 0, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
    # brackets: a newline keeps the depth, a blank line resets it, a stray closer stays at 0
    assert f[:, 1].tolist() == [0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 1, 1, 2, 2, 2, 0, 0, 0]
    assert f[:, 2].tolist() == [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 0, 1, 2, 0, 0, 1, 2]


def test_features_nesting_paragraphs_and_other_quote_marks():
    assert units.features("{[()]}")[:, 1].tolist() == [1, 2, 3, 2, 1, 0]
    assert units.features('"ab\n\nc')[:, 0].tolist() == [1, 1, 1, 1, 0, 0]  # an unclosed span ends at a blank line
    assert units.features('"a\n b"c')[:, 0].tolist() == [1, 1, 1, 1, 1, 0, 0]  # but crosses a line break
    assert units.features("it's `x` 'y'")[:, 0].sum() == 0  # only " delimits
    assert units.features("x \n  \n(")[:, 1].tolist() == [0, 0, 0, 0, 0, 0, 1]  # whitespace-only line is blank


def test_planted_units_rank_first():
    g = torch.Generator().manual_seed(0)
    text = "".join("([{)]}\nab\""[i] for i in torch.randint(0, 10, (600,), generator=g).tolist())
    feats = units.features(text)
    acts = torch.randn(len(text), 16, generator=g, dtype=torch.float64)
    acts[:, 11] = feats[:, 1] + 0.1 * torch.randn(len(text), generator=g, dtype=torch.float64)
    acts[:, 5] = -feats[:, 2]  # anti-correlated: ranked by |r|
    acts[:, 7] = 0.3  # a dead unit: r = 0, not NaN
    r = units.correlations(acts, feats)
    ranks = units.rank(r, top=3)
    assert ranks["brackets"][0] == 11 and r[11, 1] > 0.95
    assert ranks["line_pos"][0] == 5 and r[5, 2] == pytest.approx(-1.0)
    assert r[7].tolist() == [0.0, 0.0, 0.0]
    torch.testing.assert_close(r[3, 0], torch.corrcoef(torch.stack([acts[:, 3], feats[:, 0]]))[0, 1])


def test_cell_state_needs_a_cell_and_layers_are_checked():
    gru = architectures.build("gru", 5, None)
    with pytest.raises(ConfigError, match="--state c needs a core with a cell state"):
        units.choose_view(gru, "c", None, [])
    assert units.choose_view(gru, None, None, []) == ("h", 0)
    assert units.choose_view(architectures.build("lstm", 5, None), None, None, []) == ("c", 0)
    with pytest.raises(ConfigError, match=r"--layer 2 out of range; valid: 0\.\.0"):
        units.choose_view(gru, None, 2, [])
    with pytest.raises(ConfigError, match="--units 128 out of range"):
        units.choose_view(gru, None, None, [1, 128])
    with pytest.raises(ConfigError, match="separated by commas"):
        units.parse_units("3,x")
    assert units.parse_units("3, 17,3") == [3, 17]


@pytest.fixture(scope="module")
def charlm_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("units")
    # 10,000 characters: the first 300 held-out ones hold quotes and brackets, so every feature varies
    cfg = resolve(small("charlm", "lstm", **{"task.max_chars": 10000, **TINY}))
    assert train(cfg, out, wandb="disabled")["status"] == "ok"
    return out, cfg


def test_units_command_writes_page_picture_and_rankings(charlm_run, capsys):
    out, cfg = charlm_run
    assert main(["units", cfg.name, "--out", str(out), "--length", "300", "--units", "1"]) == 0
    stdout = capsys.readouterr().out
    stem = out / "units" / f"{cfg.name}__{cfg.run_id}"
    page, png, report = (stem.with_suffix(ext) for ext in (".html", ".png", ".json"))
    assert page.is_file() and png.is_file() and report.is_file()
    assert 0 < png.stat().st_size < 1_000_000 and png.read_bytes()[:4] == b"\x89PNG"
    data = json.loads(report.read_text())
    assert data["state"] == "c" and data["layer"] == 0 and data["sample"]["chars"] == 300
    assert data["constant_features"] == []
    for feature in units.FEATURES:  # every feature ranked, top 3 by |r|
        rows = [x for x in data["rankings"] if x["feature"] == feature]
        assert [x["rank"] for x in rows] == [1, 2, 3]
        assert all(x["state"] == "c" and x["layer"] == 0 for x in rows)
        assert [abs(x["r"]) for x in rows] == sorted((abs(x["r"]) for x in rows), reverse=True)
        assert max(abs(v) for v in data["r"][feature]) == pytest.approx(abs(rows[0]["r"]))
    html = page.read_text()
    assert "unit 1: " in html and "chosen" in html and html.count('class="text"') >= 2
    assert "bracket depth" in stdout and "unit 1 (chosen)" in stdout and str(page) in stdout
    assert not list((out / "units").glob("*.tmp*"))


def test_units_of_a_non_text_run_is_one_line_exit_2(tmp_path, capsys):
    cfg = resolve(small("adding", "gru", **{"train.max_steps": 2, "train.val_every": 2}))
    train(cfg, tmp_path, wandb="disabled")
    with pytest.raises(SystemExit) as exc:
        main(["units", cfg.name, "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and err.count("\n") == 1
    assert "units need a character language-model run such as charlm" in err and cfg.name in err
    assert not (tmp_path / "units").exists()


def test_units_of_a_missing_run_is_one_line_exit_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["units", "charlm__lstm__s0", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and err.count("\n") == 1 and "no run record 'charlm__lstm__s0'" in err


class _HeldOut:
    """A task's text, vocab and test fraction: what ``sample_text`` reads."""

    def __init__(self, text: str, test_frac: float):
        self.text, self.vocab = text, sorted(set(text))
        self.config = type("C", (), {"test_frac": test_frac})()


def test_the_sample_is_held_out_text_where_every_feature_varies():
    prose = "plain words and more plain words\n" * 3
    code = 'call f("x", [1, (2)])\nthen "y" and {z}\n'
    train_part = 'training text "q" (b)\n\n' * 20
    test_part = "\n\n".join([prose, prose, code + prose, prose])
    task = _HeldOut(train_part + test_part, len(test_part) / len(train_part + test_part))
    sample, offset = units.sample_text(task, len(code) + 20)
    assert offset >= len(train_part)  # never the training text
    assert sample.startswith(code) and task.text[offset:offset + len(sample)] == sample
    f = units.features(sample)
    assert bool((f.std(0) > 0).all())  # quotes, brackets and line position all vary in it


def test_the_picture_shows_the_rows_where_its_feature_varies():
    text = "".join(f"line {i} plain\n" for i in range(20)) + 'a "quoted" (one)\n' + "tail\n" * 5
    grid = units._wrap(text, 40)
    quotes = units.features(text)[:, 0]
    rows = units._window(grid, quotes, 3)
    assert any('"' in g for row in rows for _, g in row)
    assert units._window(grid, None, 3) == grid[:3]
