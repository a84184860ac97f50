"""``make bench``: what rnnbench costs, measured side by side.

1. Training throughput of rnnbench against a bare PyTorch loop, beside Lightning alone (a minimal LightningModule
   with the Trainer's clipping), Lightning doing the same work as rnnbench through its documented parts (per-step
   pre-clip norms from ``grad_norm`` into a ``CSVLogger``, a validation, best and last ``ModelCheckpoint``) and
   a second plain loop (the method's control), each against the same bare loop.
2. Train time with the default gradient diagnostics against without (goal <= 1.10).
3. One full diagnostics probe against one fused forward + backward of a training batch (goal <= 3).

    python -m dev.perf [--rounds 5] [--repeats 9]

``--threads`` (default 1, as every sweep run trains) is set for every side.

All sides train the suite's adding LSTM (T = 50, H = 64, batch 64): Adam, global norm clipping at 1. rnnbench is
``bench.run.train.train``, exactly what ``rnnbench run`` does (pre-clip norms every step to the loggers,
validation through ``self.log``, the CSV log, W&B offline or disabled, checkpoints at its validation); the bare
loop does forward, backward, clip, step and nothing else. The goal: rnnbench at least Lightning alone's ratio,
i.e. the suite adds nothing measurable over Lightning itself.

How (1) is timed. This VM's speed drifts by 10-15 % within seconds, and two model instances of the same shape
train a few % apart (where their tensors sit), so separate timed runs cannot resolve a 5 % gap. So the two
sides alternate in one process, in blocks of ``BLOCK`` steps, on the same tensors: after every block of a side a
callback runs as many bare-loop steps on the side's own core and head (its own Adam at learning rate 0, the
same arithmetic, and its own shuffle of the same data: the side's run is left as it would be, tested). A side's
block is timed from the end of the bare block before it to its last step, so Lightning's work between steps is
in it. Each side's block is compared with the mean of the bare blocks on either side; a process's ratio is the
median of those; the ratio reported is the median over ``--rounds`` processes per side.

What the method can say: a second plain loop written apart from the bare one (``plain loop (control)``) is a
side with nothing to find, so its ratio is the method's own bias. Which tensors live across a switch between
sides moves where glibc trims its heap and which large tensors it maps afresh, so that one side faults in fresh
pages (about 3 us each here) where the other reuses them: the control read 0.86-1.01 a process that way. Every
paired process therefore fixes glibc's trim and mmap thresholds before any side trains (``steady_heap``; a
measurement setting of this harness, not of rnnbench's runs), which brought the control to 0.99-1.00.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.utilities import grad_norm

from bench.diag import flow
from bench.diag.callback import GradientDiagnostics
from bench.run.config import resolve
from bench.run.records import provenance
from bench.run.system import build
from bench.run.train import quiet, train

SUITE = {"task": "adding", "arch": "lstm", "task.seq_len": 50, "arch.hidden_size": 64, "optim.lr": 3e-3}
BLOCK = 25  # steps a side trains between two bare blocks
WARMUP = BLOCK  # the bare loop's own steps before timing


def steady_heap() -> None:
    """Fix glibc's trim and mmap thresholds (both: the trim threshold alone fixes the mmap one at 128 KB), so that
    which tensors live across a switch of sides does not decide who faults in fresh pages (module docstring)."""
    if platform.libc_ver()[0] != "glibc":
        return
    libc = ctypes.CDLL(None)
    libc.mallopt(-3, 32 << 20)  # M_MMAP_THRESHOLD: the cap of glibc's own adaptive threshold on 64-bit
    libc.mallopt(-1, 1 << 30)  # M_TRIM_THRESHOLD


class HandLoop:
    """The bare loop on a core and a linear head: next batch, forward, loss, zero_grad, backward, clip, Adam, and
    nothing else."""

    def __init__(self, core, head, task, lr: float, clip: float):
        self.core, self.head, self.task, self.clip = core, head, task, clip
        self.params = [*core.parameters(), *head.parameters()]
        self.opt = torch.optim.Adam(self.params, lr=lr)
        self.shuffle = torch.Generator().manual_seed(1)
        self.batches = self._epoch()

    def _epoch(self):
        # Its own shuffle, and the loader's base seed drawn without touching the global RNG: a Trainer this loop
        # runs beside draws the same shuffles as it would alone.
        loader = self.task.train_dataloader()
        if hasattr(loader.sampler, "generator"):
            loader.sampler.generator = self.shuffle
        with torch.random.fork_rng(devices=[]):
            return iter(loader)

    def step(self) -> None:
        try:
            x, y = next(self.batches)
        except StopIteration:
            self.batches = self._epoch()
            x, y = next(self.batches)
        out, _ = self.core(x)
        loss = torch.nn.functional.mse_loss(self.head(out[:, -1]), y)
        self.opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.params, self.clip)
        self.opt.step()


class Alternate(L.Callback):
    """After every ``block`` Trainer steps (from ``warmup`` on), ``block`` steps of a ``HandLoop`` on the Trainer's
    own core and head, timed: ``ours[i]`` is Trainer block i (from the end of the bare block before it to its
    last step), ``bare[i]`` the bare block before it."""

    def __init__(self, clip: float, block: int, warmup: int):
        self.clip, self.block, self.warmup = clip, block, warmup
        self.ours, self.bare, self.since, self.loop = [], [], None, None

    def on_train_start(self, trainer, pl_module):
        # lr 0: Adam's arithmetic all the same, the Trainer's model left as its own optimizer makes it
        self.loop = HandLoop(pl_module.core, pl_module.head, pl_module.task, lr=0.0, clip=self.clip)
        for _ in range(WARMUP):
            self.loop.step()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        step = trainer.global_step
        if step < self.warmup or (step - self.warmup) % self.block:
            return
        now = time.perf_counter()
        if self.since is not None:
            self.ours.append(now - self.since)
        with torch.enable_grad():
            for _ in range(self.block):
                self.loop.step()
        self.since = time.perf_counter()
        self.bare.append(self.since - now)

    def ratio(self) -> float:
        """Median over Trainer blocks of (mean of the bare blocks either side) / (the Trainer block)."""
        pairs = [((self.bare[i] + self.bare[i + 1]) / 2) / ours for i, ours in enumerate(self.ours)]
        return statistics.median(pairs)


class LightningAlone(L.LightningModule):
    """The least a LightningModule can be for this loop: forward and loss, Adam, the Trainer's norm clipping."""

    def __init__(self, core, head, task, lr: float):
        super().__init__()
        self.core, self.head, self.task, self.lr = core, head, task, lr

    def training_step(self, batch, batch_idx):
        x, y = batch
        out, _ = self.core(x)
        return torch.nn.functional.mse_loss(self.head(out[:, -1]), y)

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.lr)


class LightningSameWork(LightningAlone):
    """Lightning alone plus what the issue asks of every run, written the documented way by a user who wants it
    without rnnbench: the pre-clip norms (``grad_norm``: per parameter and total; rnnbench also sums them per
    layer) and the loss every step in a ``CSVLogger``
    (through ``log_metrics``, as rnnbench writes its per-step row: ``self.log`` costs ~1 ms a call), a
    validation, and ``ModelCheckpoint`` keeping the best and the last. rnnbench over this side is what the
    suite itself adds; this side over Lightning alone is what those features cost in Lightning."""

    def training_step(self, batch, batch_idx):
        self.train_loss = super().training_step(batch, batch_idx)
        return self.train_loss

    def on_before_optimizer_step(self, optimizer):
        norms = grad_norm(self, norm_type=2)
        row = {"train/loss": self.train_loss.item(), **{k: float(v) for k, v in norms.items()}}
        self.logger.log_metrics(row, step=self.global_step)

    def validation_step(self, batch, batch_idx):
        x, y = batch
        out, _ = self.core(x)
        self.log("val/mse", torch.nn.functional.mse_loss(self.head(out[:, -1]), y))


def plain_loop(cfg, task, model: LightningAlone, alternate: L.Callback) -> None:
    """A second plain PyTorch loop, no Lightning, written apart from ``HandLoop`` (the module's own Adam, the
    task's loader): a side with no harness overhead to find, so its ratio is what the method itself gives."""
    from types import SimpleNamespace

    opt, params = model.configure_optimizers(), list(model.parameters())
    alternate.on_train_start(None, model)
    batches, step = iter(task.train_dataloader()), 0
    while step < cfg.train.max_steps:
        try:
            x, y = next(batches)
        except StopIteration:
            batches = iter(task.train_dataloader())
            x, y = next(batches)
        out, _ = model.core(x)
        loss = torch.nn.functional.mse_loss(model.head(out[:, -1]), y)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, cfg.optim.clip)
        opt.step()
        step += 1
        alternate.on_train_batch_end(SimpleNamespace(global_step=step), model, None, None, step)


PAIRED = ("rnnbench (W&B offline)", "rnnbench (W&B disabled)", "Lightning, same work", "Lightning alone",
          "plain loop (control)")


def side_config(steps: int):
    """The suite's LSTM config for a paired process: ``steps`` Trainer steps, validation (and its checkpoint) at
    the end only, no probes."""
    return resolve({**SUITE, "train.max_steps": steps, "train.val_every": steps, "train.diag": False})


def run_side(side: str, cfg, callback: L.Callback) -> None:
    """Train ``side`` (one of ``PAIRED``), with ``callback`` called as a Trainer calls it (``on_train_start``,
    ``on_train_batch_end``), whatever the side."""
    with tempfile.TemporaryDirectory() as tmp:
        if side.startswith("rnnbench"):
            train(cfg, tmp, wandb="disabled" if "disabled" in side else "offline", callbacks=(callback,))
            return
        L.seed_everything(0, verbose=False)
        task, system = build(cfg)
        task.setup()
        model = LightningAlone(system.core, system.head, task, cfg.optim.lr)
        if side == "plain loop (control)":
            torch.use_deterministic_algorithms(True)  # as the Trainer's deterministic=True does for the others
            plain_loop(cfg, task, model, callback)
            return
        if side == "Lightning, same work":
            model = LightningSameWork(system.core, system.head, task, cfg.optim.lr)
            kept = dict(dirpath=tmp, enable_version_counter=False)
            trainer = L.Trainer(max_steps=cfg.train.max_steps, gradient_clip_val=cfg.optim.clip,
                                deterministic=True, logger=CSVLogger(tmp), log_every_n_steps=1,
                                val_check_interval=cfg.train.val_every, check_val_every_n_epoch=None,
                                callbacks=[callback, ModelCheckpoint(filename="best", monitor="val/mse", **kept),
                                           ModelCheckpoint(filename="last", **kept)],
                                enable_model_summary=False, enable_progress_bar=False, num_sanity_val_steps=0)
            trainer.fit(model, train_dataloaders=task.train_dataloader(), val_dataloaders=task.val_dataloader())
            return
        trainer = L.Trainer(max_steps=cfg.train.max_steps, gradient_clip_val=cfg.optim.clip, deterministic=True,
                            logger=False, enable_checkpointing=False, enable_model_summary=False,
                            enable_progress_bar=False, num_sanity_val_steps=0, limit_val_batches=0,
                            callbacks=[callback])
        trainer.fit(model, train_dataloaders=task.train_dataloader())


def paired(side: str, blocks: int, block: int = BLOCK) -> dict:
    """One process's ratio of ``side`` to the bare loop on the same tensors, in alternating blocks."""
    steady_heap()
    warmup = 2 * block
    cfg = side_config(warmup + block * blocks)
    alternate = Alternate(cfg.optim.clip, block, warmup)
    run_side(side, cfg, alternate)
    bare = statistics.median(alternate.bare) / block
    return {"side": side, "ratio": alternate.ratio(), "blocks": len(alternate.ours), "bare_ms": 1e3 * bare,
            "ours_ms": 1e3 * statistics.median(alternate.ours) / block}


def paired_rounds(rounds: int, blocks: int, threads: int, sides: tuple[str, ...] = PAIRED) -> dict[str, list[dict]]:
    """``rounds`` fresh processes per side (the sides' order rotated each round): a process's memory layout
    moves its speed by a few %, so no single process speaks for a side."""
    out: dict[str, list[dict]] = {side: [] for side in sides}
    for r in range(rounds):
        for side in sides[r % len(sides):] + sides[:r % len(sides)]:
            cmd = [sys.executable, "-m", "dev.perf", "--paired", side, "--blocks", str(blocks),
                   "--threads", str(threads)]
            done = subprocess.run(cmd, capture_output=True, text=True)
            if done.returncode:
                raise SystemExit(f"perf: the {side!r} process failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
            out[side].append(json.loads(done.stdout.strip().splitlines()[-1]))
    return out


def fit_seconds(steps: int, diag: bool) -> float:
    """Wall time of a whole run (W&B off), with the default diagnostics cadence or none."""
    cfg = resolve({**SUITE, "train.max_steps": steps, "train.val_every": steps, "train.diag": diag})
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        train(cfg, tmp, wandb="disabled")
        return time.perf_counter() - start


def probe_vs_step(repeats: int = 20) -> tuple[float, float, float]:
    """Best seconds of: one fused forward+backward, one flow profile, one full probe (all diagnostics)."""
    cfg = resolve(SUITE)
    L.seed_everything(0, verbose=False)
    task, system = build(cfg)
    task.setup()
    diag = GradientDiagnostics(cfg.train.diag_cadence)
    diag.setup(None, system)
    x, y = next(iter(task.train_dataloader()))

    def fused():
        pred, _ = system(x)
        task.loss(pred, y).backward()

    def flow_only():
        flow.profile(system.core, system.head, task, *diag._probe_batch)

    timings = []
    for fn in (fused, flow_only, lambda: diag.measure(system)):
        fn()  # warm-up
        samples = []
        for _ in range(repeats):
            start = time.perf_counter()
            fn()
            samples.append(time.perf_counter() - start)
        timings.append(min(samples))
    return tuple(timings)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=6, help="alternating repeats of the diagnostics cost")
    parser.add_argument("--rounds", type=int, default=5, help="processes per side for the throughput ratios")
    parser.add_argument("--blocks", type=int, default=20, help=f"Trainer blocks of {BLOCK} steps per process")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads [default: 1, as every sweep run and the reference train]")
    parser.add_argument("--fit-steps", type=int, default=1000, help="run length for the diagnostics cost")
    parser.add_argument("--paired", choices=PAIRED, help=argparse.SUPPRESS)  # one process of paired_rounds
    args = parser.parse_args()
    quiet()
    torch.set_num_threads(args.threads)
    if args.paired:
        print(json.dumps(paired(args.paired, args.blocks)))
        return
    p = provenance()
    print(f"LSTM on adding (T={SUITE['task.seq_len']}, H={SUITE['arch.hidden_size']}, batch 64); torch {p['torch']}, "
          f"{torch.get_num_threads()} thread(s), {p['cpu']}")
    print(f"throughput / a bare PyTorch loop on the same tensors, in alternating blocks of {BLOCK} steps "
          f"({args.blocks} blocks a process, {args.rounds} processes a side):")
    results = paired_rounds(args.rounds, args.blocks, args.threads)
    print(f"  {'side':<26} {'median':>7} {'min':>6} {'max':>6}  per process (bare loop, side: ms a step)")
    for side, runs in results.items():
        ratios = [r["ratio"] for r in runs]
        each = ", ".join(f"{r['ratio']:.3f} ({r['bare_ms']:.1f}, {r['ours_ms']:.1f})" for r in runs)
        print(f"  {side:<26} {statistics.median(ratios):7.3f} {min(ratios):6.3f} {max(ratios):6.3f}  {each}")
    median = {side: statistics.median(r["ratio"] for r in runs) for side, runs in results.items()}
    ours, alone, control = (median[s] for s in ("rnnbench (W&B offline)", "Lightning alone", "plain loop (control)"))
    print(f"ratio rnnbench (W&B offline) / bare loop = {ours:.3f}, Lightning alone = {alone:.3f}: rnnbench / "
          f"Lightning alone = {ours / alone:.3f}  (goal >= 1 within the control's spread: the suite adds nothing "
          "measurable over Lightning)")
    same = median["Lightning, same work"]
    print(f"ratio Lightning, same work / bare loop = {same:.3f}: the per-step norms and CSV row, a validation and two "
          f"ModelCheckpoints cost Lightning itself {1 - same / alone:.1%}; rnnbench / Lightning, same work = "
          f"{ours / same:.3f} (what the suite adds beyond those features)")
    print(f"ratio plain loop (control) / bare loop = {control:.3f}: another plain PyTorch loop, with no overhead "
          "to find; where it is below 1, the method is, and the sides' ratios are only as good as its spread")

    with_diag, without = [], []
    for _ in range(max(3, args.repeats // 2)):
        without.append(fit_seconds(args.fit_steps, diag=False))
        with_diag.append(fit_seconds(args.fit_steps, diag=True))
    on, off = min(with_diag), min(without)
    print(f"train {args.fit_steps} steps: best {on:.2f}s with default diagnostics (a probe every "
          f"{max(1, args.fit_steps // 10)} steps, 11 in all) vs {off:.2f}s without "
          f"(medians {statistics.median(with_diag):.2f}s / {statistics.median(without):.2f}s)")
    print(f"ratio train time with diagnostics / without = {on / off:.3f}  (goal <= 1.10)")
    fused, flow_s, full = probe_vs_step()
    print(f"one fused forward+backward (batch 64): {fused * 1e3:.1f} ms; flow profile, every timestep and layer "
          f"(probe batch 64): {flow_s * 1e3:.1f} ms; all diagnostics of a probe: {full * 1e3:.1f} ms")
    print(f"ratio one flow-profile probe / one fused forward+backward = {flow_s / fused:.2f}  (goal <= 3); "
          f"with Jacobians, spectra and unit health too = {full / fused:.2f}")


if __name__ == "__main__":
    main()
