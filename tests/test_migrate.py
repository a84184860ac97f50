"""dev/migrate.py on a store written before metrics were gzipped: each plain metrics CSV becomes its deterministic
gzip, the record changes only in ``metrics_file``, and a second pass (or one after a killed pass) finishes the
job without changing anything else."""

import gzip
import json
from pathlib import Path

import pytest

from bench.store import OLDER_METRICS, Store, open_metrics
from dev import migrate

# As Lightning's CSVLogger writes it (csv module: \r\n line ends), with a character outside ASCII
CSV = "step,train/loss,val/mse,note\r\n0,0.5,,\r\n0,,0.25,é\r\n".encode()
NAME, RUN_ID = "adding__gru__s0", "0123456789"
ROOT = Path(__file__).resolve().parents[1]


def old_store(root) -> tuple[Store, dict]:
    """A store as the suite wrote it before compression: a committed record (every field the record schema
    asks for) renamed, naming a plain metrics CSV."""
    store = Store(root)
    committed = sorted((ROOT / "results" / "runs").glob(f"{NAME}__*.json"))[0]
    rec = {**json.loads(committed.read_text()), "id": RUN_ID, "name": NAME,
           "metrics_file": f"{NAME}__{RUN_ID}.metrics.csv"}
    store.write_record(rec)
    (store.runs / rec["metrics_file"]).write_bytes(CSV)
    return store, rec


def files(store: Store) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(store.runs.iterdir())}


def test_migration_gzips_metrics_losslessly_and_changes_the_record_in_one_field(tmp_path, capsys):
    store, rec = old_store(tmp_path)
    before = files(store)
    with open_metrics(store.runs / rec["metrics_file"]) as f:  # an older store's plain CSV is still read
        rows = f.read()
    assert migrate.main([str(tmp_path), "--check"]) == 0 and files(store) == before
    assert "would upgrade 1 file(s)" in capsys.readouterr().out

    assert migrate.main([str(tmp_path)]) == 0
    plain, packed = rec["metrics_file"], rec["metrics_file"] + ".gz"
    after = files(store)
    assert sorted(after) == [f"{NAME}__{RUN_ID}.json", packed]
    assert packed.endswith(OLDER_METRICS[0])  # Lightning's bytes gzipped, which the store reads beside its xz
    assert gzip.decompress(after[packed]) == CSV
    assert after[packed][3] == 0 and after[packed][4:8] == bytes(4)  # no file name, time 0: same input, same bytes
    (tmp_path / "again.csv").write_bytes(CSV)
    assert migrate.gzip_in(store, tmp_path / "again.csv", tmp_path / "again.csv.gz").read_bytes() == after[packed]
    # the record's bytes differ by the file name alone, in the store's own formatting
    record = after[f"{NAME}__{RUN_ID}.json"].decode()
    assert record == before[f"{NAME}__{RUN_ID}.json"].decode().replace(f'"{plain}"', f'"{packed}"')
    assert json.loads(record) == {**rec, "metrics_file": packed} == store.read_record(store.record_path(NAME, RUN_ID))
    with open_metrics(store.runs / packed) as f:
        assert f.read() == rows

    assert migrate.main([str(tmp_path)]) == 0 and files(store) == after  # twice: nothing more to do
    assert "upgraded 0 file(s)" in capsys.readouterr().out.splitlines()[-1]


def test_a_migration_killed_before_removing_the_csv_is_finished_by_the_next(tmp_path):
    store, rec = old_store(tmp_path)
    migrate.main([str(tmp_path)])
    done = files(store)
    (store.runs / rec["metrics_file"]).write_bytes(CSV)  # record rewritten, plain CSV not yet removed
    migrate.main([str(tmp_path)])
    assert files(store) == done


def test_a_journal_loses_its_repeated_create_study_lines_and_replays_the_same(tmp_path, capsys):
    """Before the tuned driver loaded its studies, each reopening (create_study with load_if_exists) appended a
    create-study line; the migration drops those after each study's first, checked by replaying both."""
    import optuna
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    store = Store(tmp_path)
    journal = tmp_path / "studies" / "tuned.journal"
    journal.parent.mkdir()
    # a study deleted and made again: its second create-study line is not a repeat
    optuna.create_study(study_name="gru-1", storage=JournalStorage(JournalFileBackend(str(journal))))
    optuna.delete_study(study_name="gru-1", storage=JournalStorage(JournalFileBackend(str(journal))))
    for name in ("gru-1", "lstm-2"):
        study = optuna.create_study(study_name=name, storage=JournalStorage(JournalFileBackend(str(journal))))
        study.enqueue_trial({"x": 1.0})
        study.optimize(lambda trial: trial.suggest_float("x", 0, 2) ** 2, n_trials=2)
    for _ in range(3):  # the summary reopening each study after each run, as the driver did
        for name in ("gru-1", "lstm-2"):
            optuna.create_study(study_name=name, storage=JournalStorage(JournalFileBackend(str(journal))),
                                load_if_exists=True)
    before, lines = migrate.replayed(journal), len(journal.read_bytes().splitlines())
    with store.run_lock("0123456789"):  # a run training: its journal is left alone, and nothing is written
        with pytest.raises(SystemExit, match="1 run\\(s\\) are training"):
            migrate.main([str(tmp_path)])
    assert len(journal.read_bytes().splitlines()) == lines
    assert migrate.main([str(tmp_path)]) == 0
    assert len(journal.read_bytes().splitlines()) == lines - 6 and migrate.replayed(journal) == before
    assert migrate.main([str(tmp_path), "--check"]) == 0 and "would upgrade 0 file(s)" in capsys.readouterr().out
