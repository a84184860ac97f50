"""The leaderboard at scale: thousands of generated records (never committed) give the rows a small exact
computation expects, in one section per task setting and one row per setting, with every figure one panel per
family."""

import json
import random
import statistics
from pathlib import Path

from bench.reports import leaderboard

ROOT = Path(__file__).resolve().parent.parent
CONFIGS, SEEDS = 600, 5


def generate(out: Path) -> dict[tuple[str, float], list[float]]:
    """CONFIGS learning-rate variants x SEEDS seeds cloned from committed adding records (their diagnostics'
    profiles kept short); returns what each row must average: (arch label, lr) -> test values."""
    bases = [json.loads(p.read_text()) for p in sorted((ROOT / "results" / "runs").glob("adding__*__s0__*.json"))
             if json.loads(p.read_text())["config"]["task"]["seq_len"] == 50][:5]
    rng, expected, runs = random.Random(0), {}, out / "runs"
    runs.mkdir(parents=True)
    for i in range(CONFIGS):
        base = bases[i % len(bases)]
        lr = round(1e-4 * (i + 1), 6)
        for seed in range(SEEDS):
            rec = json.loads(json.dumps(base))
            rec["config"]["optim"]["lr"], rec["seed"], rec["config"]["seed"] = lr, seed, seed
            rec["id"] = f"{i * SEEDS + seed:010x}"
            rec["name"] = f"adding__{rec['arch_label']}__s{seed}"
            rec["metric"]["test"] = rng.uniform(0.0, 0.2)
            rec["diagnostics"]["profiles"] = {"steps": [0], "flow": [[[1.0, 0.5]]]}
            expected.setdefault((rec["arch_label"], lr), []).append(rec["metric"]["test"])
            (runs / f"{rec['name']}__{rec['id']}.json").write_text(json.dumps(rec))
    return expected


def test_thousands_of_records_give_the_rows_a_small_exact_computation_expects(tmp_path):
    expected = generate(tmp_path)
    written = leaderboard.write(tmp_path)
    assert written.n_records == CONFIGS * SEEDS and not written.skipped
    rows = leaderboard.build_rows(leaderboard.load(tmp_path)[0])
    assert len(rows) == len(expected) == CONFIGS
    for row in rows:
        lr = json.loads(row.key)["optim"]["lr"]  # the label leaves out a setting at its default (lr 1e-3)
        values = expected[(row.label.split(" ")[0], lr)]
        assert row.n_ok == SEEDS and row.mean == statistics.fmean(values)
        assert row.std == statistics.stdev(values)
    assert (tmp_path / "LEADERBOARD.md").read_text().count("\n| ") == CONFIGS + 1  # header + one line per row
    from PIL import Image

    with Image.open(tmp_path / "flow_adding.png") as im:  # one panel per family, not 600
        assert im.size[0] < 3000
