"""The leaderboard at scale: thousands of generated records (never committed) give the rows a small exact
computation expects, in one section per task setting and one row per setting, with every figure one panel per
family; reading summaries instead of whole records changes nothing."""

import json
import random
import statistics

from bench.reports import leaderboard, tables
from bench.store import PACK, Store
from dev.perf_leaderboard import bases, generate

CONFIGS, SEEDS = 600, 5


def test_thousands_of_records_give_the_rows_a_small_exact_computation_expects(tmp_path):
    adding = [r for r in bases("adding__*__s0__*.json") if r["config"]["task"]["seq_len"] == 50][:5]
    expected = generate(tmp_path, CONFIGS, SEEDS, adding, short_profiles=True)
    written = leaderboard.write(tmp_path)
    assert written.n_records == CONFIGS * SEEDS and not written.skipped
    rows = leaderboard.build_rows(leaderboard.load(tmp_path)[0])
    assert len(rows) == len(expected) == CONFIGS
    for row in rows:
        lr = json.loads(row.key)["optim"]["lr"]  # the label leaves out a setting at its default (lr 1e-3)
        values = expected[("adding", row.label.split(" ")[0], lr)]
        assert row.n_ok == SEEDS and row.mean == statistics.fmean(values)
        assert row.std == statistics.stdev(values)
    assert (tmp_path / "LEADERBOARD.md").read_text() == leaderboard.render(leaderboard.load(tmp_path)[0],
                                                                          store=Store(tmp_path))
    assert (tmp_path / "LEADERBOARD.md").read_text().count("\n| ") == CONFIGS + 1  # header + one line per row
    from PIL import Image

    with Image.open(tmp_path / "flow_adding.png") as im:  # one panel per family, not 600
        assert im.size[0] < 3000


def test_the_one_pass_gives_the_tables_of_whole_records(tmp_path):
    generate(tmp_path, 120, 3, bases(), short_profiles=True, rng=random.Random(1))
    whole = leaderboard.load(tmp_path)[0]
    made, skipped = tables.stream(Store(tmp_path))
    assert not skipped and made.n_records == len(whole) == 360
    assert leaderboard.render(made) == leaderboard.render(whole)
    assert leaderboard.render_csv(made) == leaderboard.render_csv(whole)
    label_of = made.label_of()
    assert made.length_curves(label_of) == tables.Tables.of(whole).length_curves(label_of)
    for kind in ("flow", "attention"):  # the same runs, though only the records' summaries went past
        picked = {t: {f: p[:2] for f, p in c.items()} for t, c in made.figures[kind].pick(label_of).items()}
        assert picked == {t: {f: p[:2] for f, p in c.items()}
                          for t, c in tables.Tables.of(whole).figures[kind].pick(label_of).items()}
    assert picked  # the generated tasks include one with attention maps


def test_a_summary_never_speaks_for_a_record_it_was_not_made_from(tmp_path):
    base = bases("adding__gru__s0__*.json")[0]
    generate(tmp_path, 1, 2, [base])
    store = Store(tmp_path)
    path = store.record_path(f"adding__{base['arch_label']}__s1", f"{1:010x}")
    assert store.summary_path(*path.stem.rsplit("__", 1)).is_file()  # written beside the record
    rec = json.loads(path.read_text())
    rec["metric"]["test"] = 123.0  # the record changes after its summary was made
    path.write_text(json.dumps(rec))
    other = json.loads(store.record_path(f"adding__{base['arch_label']}__s0", f"{0:010x}").read_text())
    (row,) = leaderboard.read(tmp_path)[0].rows()
    assert row.n_ok == 2 and row.mean == statistics.fmean([other["metric"]["test"], 123.0])
    path.write_text(path.read_text()[:100])  # cut short: named and left out, whatever its summary says
    tables_, skipped = leaderboard.read(tmp_path)
    assert tables_.n_records == 1 and len(skipped) == 1 and "cut short" in skipped[0]


def test_the_fast_stdev_is_statistics_stdev_to_the_last_bit():
    rng = random.Random(0)
    for _ in range(3000):
        scale = 10 ** rng.uniform(-12, 12)
        values = [rng.choice([rng.uniform(0, 1) * scale, rng.gauss(5, 1e-9), float(rng.randint(0, 3)),
                              -rng.random() * scale, 1e300 * rng.random()]) for _ in range(rng.randint(2, 12))]
        values = [values[0]] * len(values) if rng.random() < 0.1 else values  # no spread at all
        assert tables.stdev(values) == statistics.stdev(values)


def test_the_pack_of_summaries_follows_the_records(tmp_path):
    generate(tmp_path, 30, 2, bases(), short_profiles=True, rng=random.Random(2))
    store, pack = Store(tmp_path), tmp_path / "index" / PACK
    first = leaderboard.render(leaderboard.read(tmp_path)[0])
    assert pack.is_file() and len(pack.read_bytes().splitlines()) == 60
    for summary in (tmp_path / "index").glob("*.json"):  # the pack alone now answers
        summary.unlink()
    assert leaderboard.render(leaderboard.read(tmp_path)[0]) == first
    assert not list((tmp_path / "index").glob("*.json"))
    files = store.record_names()
    gone, edited = store.runs / files[0], store.runs / files[-1]
    gone.unlink()
    rec = json.loads(edited.read_text())
    rec["metric"]["test"] = 7.0
    edited.write_text(json.dumps(rec))
    pack.write_bytes(pack.read_bytes()[:-10])  # and the pack cut short, as a kill would leave it
    made, skipped = leaderboard.read(tmp_path)
    assert not skipped and made.n_records == 59
    assert leaderboard.render(made) == leaderboard.render(leaderboard.load(tmp_path)[0])
    lines = pack.read_bytes().splitlines()
    assert len(lines) == 59 and lines[0].split(b"\t")[0] == files[1].encode()
    assert json.loads(lines[-1].split(b"\t", 3)[3])["metric"]["test"] == 7.0
    before = pack.stat().st_mtime_ns
    leaderboard.read(tmp_path)
    assert pack.stat().st_mtime_ns == before  # nothing changed: not rewritten
