"""dev/perf.py: the bare loop that ``make bench`` times rnnbench against, in alternating blocks."""

import lightning as L
import torch

from bench.run.config import resolve
from bench.run.mirror import make_loggers
from bench.run.records import provenance
from bench.run.system import build
from bench.run.train import fit, trainer_for
from dev.perf import SUITE, Alternate, LightningAlone


def _fit(tmp_path, blocks: int | None) -> tuple[list[torch.Tensor], Alternate | None]:
    cfg = resolve({**SUITE, "task.seq_len": 8, "task.n_train": 256, "train.max_steps": 12, "train.val_every": 10**9,
                   "train.diag": False})
    L.seed_everything(0, verbose=False)
    task, system = build(cfg)
    alternate = Alternate(task, cfg.optim.clip, block=3, warmup=3) if blocks else None
    # in groups of 3 updates, as make bench's rnnbench sides (in groups of 25) train
    trainer = trainer_for(cfg, make_loggers(cfg, str(tmp_path), "disabled", provenance()),
                          callbacks=[alternate] if alternate else [], group=3)
    fit(trainer, system, task, cfg, group=3)
    return [p.detach().clone() for p in system.parameters()], alternate


def test_the_bare_blocks_time_the_same_tensors_and_leave_the_run_as_it_would_be(tmp_path):
    # 12 steps in groups of 3, 4 of them epochs' ends (256 / 64): the bare loop's shuffles must not move the Trainer's
    alone, _ = _fit(tmp_path / "a", None)
    paired, alternate = _fit(tmp_path / "b", 3)
    assert all(torch.equal(a, b) for a, b in zip(alone, paired, strict=True))
    assert len(alternate.ours) == 3 and len(alternate.bare) == 4  # a bare block either side of every Trainer block
    assert alternate.loop.params[0] is next(iter(alternate.loop.core.parameters()))
    assert 0 < alternate.ratio() < 10


def test_lightning_alone_trains_the_same_core_and_head():
    cfg = resolve(SUITE)
    task, system = build(cfg)
    model = LightningAlone(system.core, system.head, 1e-3)
    assert [id(p) for p in model.parameters()] == [id(p) for p in (*system.core.parameters(),
                                                                      *system.head.parameters())]
