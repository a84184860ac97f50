"""Truncated BPTT: carried and detached state, one optimizer step per chunk, steps that mean updates."""

import csv

import lightning as L
import pytest
import torch
from conftest import as_float32, small

from bench.run.config import resolve
from bench.run.system import build, detach_state
from bench.run.train import train
from bench.store import open_metrics


def _rows(record, out):
    with open_metrics(out / "runs" / record["metrics_file"]) as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("state", [
    torch.randn(1, 2, 3, requires_grad=True) * 2,  # RNN / GRU: one tensor
    (torch.randn(1, 2, 3, requires_grad=True) * 2, torch.randn(1, 2, 3, requires_grad=True) * 2),  # LSTM (h, c)
], ids=["tensor", "lstm-tuple"])
def test_detach_state_cuts_the_graph_of_either_state_kind(state):
    cut = detach_state(state)
    assert type(cut) is type(state)
    for before, after in zip(state if isinstance(state, tuple) else (state,),
                             cut if isinstance(cut, tuple) else (cut,), strict=True):
        assert before.grad_fn is not None and after.grad_fn is None and not after.requires_grad
        assert torch.equal(before, after)
    assert detach_state(None) is None


@pytest.mark.parametrize("arch", ["lstm", "gru"])
def test_truncated_training_equals_a_hand_written_tbptt_loop(arch, tmp_path):
    """The system's losses and pre-clip norms equal a plain loop: split(k), carry, detach, clip, step."""
    overrides = small("charlm", arch, **{"train.max_steps": 8, "train.val_every": 8, "train.diag": False,
                                         "optim.clip": 0.1})
    cfg = resolve(overrides)
    rows = [r for r in _rows(train(cfg, tmp_path, wandb="disabled"), tmp_path) if r["train/loss"]]

    L.seed_everything(cfg.seed, workers=True, verbose=False)
    task, system = build(cfg)
    task.setup("fit")
    opt, k, state, expected = system.configure_optimizers(), cfg.task.tbptt, None, []
    for x, y in task.train_dataloader():
        for xs, ys in zip(x.split(k, dim=1), y.split(k, dim=1), strict=True):
            pred, state = system(xs, state)
            loss = task.loss(pred, ys)
            opt.zero_grad()
            loss.backward()
            norm = torch.nn.utils.clip_grad_norm_(system.parameters(), cfg.optim.clip)
            opt.step()
            state = detach_state(state)
            expected.append((loss.item(), norm.item()))
        if len(expected) >= cfg.train.max_steps:
            break
    assert [int(r["step"]) for r in rows] == list(range(8))  # one row per optimizer step, i.e. per chunk
    assert [(as_float32(r["train/loss"]), as_float32(r["grad/total"])) for r in rows] == expected
    assert min(n for _, n in expected) > cfg.optim.clip  # the logged norms are the pre-clip ones


def test_steps_count_updates_not_batches(tmp_path):
    # seq_len 12 / tbptt 6: two optimizer steps per batch. max_steps 12 is six batches.
    rec = train(resolve(small("charlm", "gru", **{"train.max_steps": 12, "train.val_every": 6})), tmp_path,
                wandb="disabled")
    rows = _rows(rec, tmp_path)
    assert rec["steps"] == 12 and rec["grad_norm_preclip"]["steps"] == 12
    assert [int(r["step"]) for r in rows if r["val/bpc"]] == [6, 12]  # val rows sit at the optimizer step
    assert [int(r["step"]) for r in rows if r["test/bpc"]] == [12]
    assert rec["diagnostics"]["profiles"]["steps"][0] == 0 and rec["diagnostics"]["profiles"]["steps"][-1] == 12
    extra = rec["metric"]["extra"]
    assert extra["test/ppl"] == pytest.approx(2 ** rec["metric"]["test"], rel=1e-4)  # ppl = 2^bpc per char


def test_full_bptt_is_one_step_per_window(tmp_path):
    rec = train(resolve(small("charlm", "lstm", **{"task.tbptt": 0, "train.max_steps": 5, "train.val_every": 5})),
                tmp_path, wandb="disabled")
    rows = [r for r in _rows(rec, tmp_path) if r["train/loss"]]
    assert rec["status"] == "ok" and rec["steps"] == 5 and len(rows) == 5


@pytest.mark.filterwarnings("ignore:You are trying to `self.log")  # validation_step outside a Trainer
def test_evaluation_carries_the_state_through_the_stream():
    """Validating window by window (the system's carried state) scores each stream as if read whole."""
    import math

    L.seed_everything(0, verbose=False)
    task, system = build(resolve(small("charlm", "gru")))
    task.setup("fit")
    system.eval()
    val = task.splits.val
    assert len(val) > 1
    with torch.no_grad():
        whole, _ = system(val.x)
        expected = task.loss(whole, val.y).item() / math.log(2)
        system.on_validation_epoch_start()
        for i, batch in enumerate(task.val_dataloader()):
            system.validation_step(batch, i)
    assert system.metrics["val"].compute().item() == pytest.approx(expected, rel=1e-5)
