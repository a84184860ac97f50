"""dev/perf.py: the bare loop that ``make bench`` times rnnbench against, in alternating blocks."""

import torch

from bench.run.config import resolve
from bench.run.system import build
from bench.run.train import train
from dev.perf import SUITE, Alternate, LightningAlone


class Weights(Alternate):
    """Keeps the trained weights of the run it alternates with."""

    def on_train_end(self, trainer, pl_module):
        self.weights = [p.detach().clone() for p in pl_module.parameters()]


def _train(tmp_path, block: int | None) -> Weights:
    cfg = resolve({**SUITE, "task.seq_len": 8, "task.n_train": 256, "train.max_steps": 12, "train.val_every": 12,
                   "train.diag": False})
    alternate = Weights(cfg.optim.clip, block=block or 1, warmup=3 if block else 10**9)  # no block: never alternates
    train(cfg, tmp_path, wandb="disabled", callbacks=(alternate,))
    return alternate


def test_the_bare_blocks_time_the_same_tensors_and_leave_the_run_as_it_would_be(tmp_path):
    # 12 steps, 3 of them epochs' ends (256 / 64): the bare loop's shuffles must not move the Trainer's
    alone = _train(tmp_path / "a", None)
    paired = _train(tmp_path / "b", 3)
    assert all(torch.equal(a, b) for a, b in zip(alone.weights, paired.weights, strict=True))
    assert len(paired.ours) == 3 and len(paired.bare) == 4  # a bare block either side of every Trainer block
    assert paired.loop.params[0] is next(iter(paired.loop.core.parameters()))
    assert 0 < paired.ratio() < 10


def test_lightning_alone_trains_the_same_core_and_head():
    cfg = resolve(SUITE)
    task, system = build(cfg)
    model = LightningAlone(system.core, system.head, task, 1e-3)
    assert [id(p) for p in model.parameters()] == [id(p) for p in (*system.core.parameters(),
                                                                      *system.head.parameters())]
