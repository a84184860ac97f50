"""Tasks: deterministic generation, the structure the papers define, and the baselines they quote."""

import math

import numpy as np
import pytest
import torch

import tasks
from tasks.adding import AddingConfig
from tasks.composed import MODELS, ComposedTask
from tasks.copy import CopyConfig


def splits(name, **cfg):
    cls = tasks.get(name)
    return cls(cls.Config(**cfg)).splits


def test_same_data_seed_same_data_other_seed_other_data():
    a, b = splits("adding", seq_len=20, n_train=50), splits("adding", seq_len=20, n_train=50)
    c = splits("adding", seq_len=20, n_train=50, data_seed=7)
    assert torch.equal(a.train.tensors[0], b.train.tensors[0])
    assert not torch.equal(a.train.tensors[0], c.train.tensors[0])
    assert not torch.equal(a.train.tensors[0][:10], a.val.tensors[0][:10])


def test_adding_markers_one_per_half_and_target_is_their_sum():
    x, y = splits("adding", seq_len=30, n_train=500).train.tensors
    marks = x[..., 1]
    assert (marks.sum(1) == 2).all()
    assert (marks[:, :15].sum(1) == 1).all() and (marks[:, 15:].sum(1) == 1).all()
    torch.testing.assert_close(y.squeeze(1), (x[..., 0] * marks).sum(1))


def test_adding_predict_one_baseline_is_one_sixth():
    task = tasks.get("adding")(AddingConfig(seq_len=10, n_test=20000))
    _, y = task.splits.test.tensors
    mse = task.loss(torch.ones_like(y), y).item()
    assert abs(mse - task.baseline) < 0.01 and task.baseline == pytest.approx(1 / 6)
    assert task.is_solved(1 / 700) and not task.is_solved(1 / 500)


def test_copy_layout_and_memoryless_baseline():
    task = tasks.get("copy")(CopyConfig(delay=12, copy_len=4, n_train=100))
    x, y = task.splits.train.tensors
    tokens = x.argmax(-1)
    assert x.shape == (100, 20, 10) and task.seq_len == 20
    assert ((tokens[:, :4] >= 1) & (tokens[:, :4] <= 8)).all()
    assert (tokens[:, 4:15] == 0).all() and (tokens[:, 15] == 9).all() and (tokens[:, 16:] == 0).all()
    assert (y[:, :16] == 0).all() and torch.equal(y[:, 16:], tokens[:, :4])
    # The memoryless model: certain blanks, then uniform over the 8 symbols.
    logits = torch.full((100, 20, 9), -1e9)
    logits[:, :16, 0] = 0
    logits[:, 16:, 1:] = 0
    assert task.loss(logits, y).item() == pytest.approx(task.baseline, rel=1e-5)
    assert task.baseline == pytest.approx(4 * math.log(8) / 20)


def test_copy_baseline_matches_the_paper_at_delay_1000():
    assert tasks.get("copy")(CopyConfig(delay=1000)).baseline == pytest.approx(0.0204, abs=5e-5)


def test_mnist1d_is_the_published_split_and_leaves_numpy_alone():
    np.random.seed(123)
    expected = np.random.rand()
    np.random.seed(123)
    s = splits("mnist1d")
    assert np.random.rand() == expected
    assert (len(s.train), len(s.val), len(s.test)) == (3500, 500, 1000)
    assert s.train.tensors[0].shape[1:] == (40, 1)
    assert set(s.test.tensors[1].tolist()) == set(range(10))


def test_registry_lists_names_on_typo():
    with pytest.raises(KeyError, match="valid: " + ", ".join(tasks.names())):
        tasks.get("addin")


@pytest.mark.parametrize("name", tasks.names())
def test_every_task_declares_its_contract(name):
    task = tasks.get(name)()
    info = task.describe()
    assert info["shape"] in tasks.SHAPES and info["mode"] in ("min", "max") and info["version"]
    assert math.isfinite(task.baseline)
    if isinstance(task, ComposedTask):  # sizes come from the data; the model is one the system builds
        assert info["model"] in MODELS and info["sizes"] and all(
            v > 0 for v in info["sizes"].values() if isinstance(v, int))
    else:
        assert task.input_size > 0 and task.output_size > 0


def test_charlm_batches_continue_each_stream_shifted_by_one():
    task = tasks.get("charlm")(tasks.get("charlm").Config(seq_len=20, tbptt=5, batch_size=4, max_chars=5000))
    train = task.splits.train
    (x0, y0), (x1, _) = train[0], train[1]
    assert x0.shape == y0.shape == (4, 20)
    assert torch.equal(x0[:, 1:], y0[:, :-1]) and torch.equal(y0[:, -1], x1[:, 0])  # batch 1 continues batch 0
    per_stream = train.x.shape[1]
    decoded = ["".join(task.vocab[i] for i in x0[s].tolist()) for s in range(4)]
    assert decoded == [task.text[s * per_stream: s * per_stream + 20] for s in range(4)]
    assert task.inputs(x0).shape == (4, 20, len(task.vocab))
    loader = list(task.train_dataloader())
    assert len(loader) == len(train) and torch.equal(loader[1][0], x1)  # in order, unshuffled, unbatched
    # evaluation scores every character of every stream, including a short last window
    val = task.splits.val
    assert sum(val[i][0].shape[1] for i in range(len(val))) == val.x.shape[1]
    px, py = task.probe_batch(3)  # probes span one truncation chunk
    assert px.shape == (3, 5) and torch.equal(px[1], val.x[0, 5:10]) and torch.equal(py[1], val.y[0, 5:10])
    assert 3.0 < task.baseline < math.log2(len(task.vocab))  # a unigram model beats uniform, not by miracles


def test_charlm_reads_a_local_file_and_a_datasets_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))
    text = "hello world, hello rnn. " * 40
    (tmp_path / "c.txt").write_text(text)
    small = {"seq_len": 8, "tbptt": 4, "batch_size": 2}
    from_file = tasks.get("charlm")(tasks.get("charlm").Config(corpus=str(tmp_path / "c.txt"), **small))
    assert from_file.text == text and from_file.vocab == sorted(set(text))
    folder = tmp_path / "ds"
    folder.mkdir()
    (folder / "train.txt").write_text(text)  # datasets' text builder reads a local folder with no network
    from_hf = tasks.get("charlm")(tasks.get("charlm").Config(corpus=f"hf:{folder}", **small))
    assert from_hf.text.strip() == text.strip() and len(from_hf.splits.train) > 0


def test_charlm_rejects_a_missing_corpus():
    from bench.run.config import resolve
    from options import ConfigError

    with pytest.raises(ConfigError, match="task.corpus 'no/such.txt' is not a file; valid: pydoc"):
        resolve({"task": "charlm", "arch": "gru", "task.corpus": "no/such.txt"})


@pytest.mark.parametrize("overrides, message", [
    ({"task.tbptt": 30}, r"task.tbptt must divide task.seq_len \(100\) or be 0, got 30; valid: 0, 1, 2, 4, 5"),
    ({"task.tbptt": 25, "train.val_every": 250},
     r"train.val_every \(250\) must be a multiple of 4, the optimizer steps per batch"),
])
def test_charlm_truncation_errors_name_the_valid_choices(overrides, message):
    from bench.run.config import resolve
    from options import ConfigError

    with pytest.raises(ConfigError, match=message):
        resolve({"task": "charlm", "arch": "gru", **overrides})
