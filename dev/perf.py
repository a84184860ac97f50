"""``make bench``: what rnnbench costs, measured side by side.

1. Training throughput of rnnbench against a bare PyTorch loop, and of rnnbench with one update a Lightning
   batch, Lightning alone (a minimal LightningModule) and a second plain loop (the method's control), each
   against the same bare loop.
2. Train time with the default gradient diagnostics against without (goal <= 1.10).
3. One full diagnostics probe against one fused forward + backward of a training batch (goal <= 3).

    python -m dev.perf [--rounds 5] [--repeats 9]

``--threads`` (default 1, as every sweep run trains) is set for every side.

All sides train the suite's adding LSTM (T = 50, H = 64, batch 64): Adam, global norm clipping at 1. rnnbench
goes through the Lightning Trainer with everything a real run does (pre-clip norms per layer every step, CSV
and W&B offline logging, ``GROUP`` = 25 updates a Lightning batch as the suite's run of this model trains:
bench/run/groups.py); the bare loop does forward, backward, clip, step and nothing else.

How (1) is timed. This VM's speed drifts by 10-15 % within seconds (the same bare loop: 9.6 to 16 ms a step
in one minute), and two model instances of the same shape train a few % apart (where their tensors sit), so
separate timed runs could not resolve a 5 % gap: their best and their median disagreed by 5 points. So the two
sides alternate in one process, in blocks of ``GROUP`` steps, on the same tensors: after every block of a side
a callback runs as many bare-loop steps on the side's own core and head (its own Adam at learning rate 0, the
same arithmetic, and its own shuffle of the same data: the side's run is left as it would be, tested). A
side's block is timed from the end of the bare block before it to its last step, so Lightning's work between
steps is in it. Each side's block is compared with the mean of the bare blocks on either side; a process's
ratio is the median of those; the ratio reported is the median over ``--rounds`` processes per side.

What the method can say. ``HandLoop`` against itself as the side gave 0.99-1.01 (6 processes), but a second
plain loop written apart from it (``plain loop (control)``: no Lightning, the module's own Adam, the task's
loader) gave 0.86-1.01 a process, median 0.91. The cause was glibc's heap, not the loops: that loop kept its
last batch, output and loss alive through the bare block, and which tensors live across a switch moves where
glibc trims its heap and which large tensors it maps afresh, so that one side faults in fresh pages (about
3 us each here) where the other reuses them. With those three deleted before the bare block it read
0.993-0.996 (3 processes); left alive, but with glibc's trim and mmap thresholds fixed, 0.991-1.000 (3). So
every paired process fixes both before any side trains, with the call rnnbench's own training processes make
(bench/run/train.py ``keep_heap``: with glibc's defaults, a run of this model took 7-241 page faults a step,
up to 0.7 ms). The control still runs as a side, and the sides are also printed over it.

Then the harness's own time: rnnbench and the control the same paired way on an LSTM too small to matter
(T = 2, H = 4), where side minus bare is Python and dispatch alone. Set beside the full model's bare step, it
gives the ratio a harness that cost that much would have there (``make bench-instructions`` counts the same
extra in instructions). It misses Python slowed by the full model's kernels (caches): on the full model,
Lightning's work around a ``training_step`` measured 0.3-0.8 ms, on the tiny one 0.06-0.12 ms.

A breakdown follows: the same step instrumented (where each update begins and ends, Lightning's backward hooks,
a timed clip, Adam timed from the end of its closure), segment by segment, the bare loop beside rnnbench, in
separate runs (median of alternating repeats), with the process's page faults a step.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time

import lightning as L
import torch

import architectures
from bench.diag import flow
from bench.diag.callback import GradientDiagnostics
from bench.run.config import resolve
from bench.run.mirror import close, make_loggers
from bench.run.records import provenance
from bench.run.system import build
from bench.run.train import fit, group_of, keep_heap, no_gpu_no_nvml, quiet, trainer_for

SUITE = {"task": "adding", "arch": "lstm", "task.seq_len": 50, "arch.hidden_size": 64, "optim.lr": 3e-3}
TINY = {"task.seq_len": 2, "arch.hidden_size": 4}  # a model too small to matter: a step is the harness and dispatch
# The suite's LSTM run (1000 steps, validation every 250, a probe every 100) trains 25 updates a Lightning batch
# (bench/run/groups.py); the paired sides run their blocks in that size, and the rnnbench sides with those groups.
GROUP = group_of(resolve(SUITE))
WARMUP = GROUP  # steps before timing; whole groups, so that the breakdown's runs validate only at their end


class StepTimer(L.Callback):
    """Where each step's time goes after the warm-up (``Segments``), marked where the system's ``_update`` (one
    optimizer step) begins and ends and at Lightning's backward hooks. What Lightning does between updates (its
    loop and hooks, once a group) falls in "loop + data" with the next batch's fetch."""

    def __init__(self, warmup: int):
        self.warmup, self.steps, self.segments = warmup, 0, Segments()

    def timed(self, update):
        def timed_update(batch):
            if self.trainer.global_step == self.warmup:
                self.segments.reset()
            self.segments.mark("loop + data")  # since the previous update ended
            try:
                return update(batch)
            finally:
                self.steps = self.trainer.global_step - self.warmup
                self.segments.mark("optimizer step + Lightning")
        return timed_update

    def setup(self, trainer, pl_module, stage=None):
        self.trainer = trainer

    def on_before_backward(self, trainer, pl_module, loss):
        self.segments.mark("forward + loss")

    def on_after_backward(self, trainer, pl_module):
        self.segments.mark("backward")


class Segments:
    """Wall time between named marks, summed per name: ``mark(name)`` closes the segment begun at the last mark.
    ``within(name, fn)`` times calls of ``fn`` as ``name`` and takes them out of the segment they fall in."""

    def __init__(self):
        self.reset()

    def reset(self):
        self.totals, self.inner, self.last, self.open = {}, 0.0, time.perf_counter(), []
        self.faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt

    def mark(self, name: str) -> None:
        now = time.perf_counter()
        self.totals[name] = self.totals.get(name, 0.0) + (now - self.last) - self.inner
        self.inner, self.last = 0.0, now

    def add(self, name: str, spent: float) -> None:
        """``spent`` seconds as ``name``, taken out of the segment (or the timed call) they fell in."""
        self.totals[name] = self.totals.get(name, 0.0) + spent
        if self.open:
            self.open[-1] += spent
        else:
            self.inner += spent

    def within(self, name: str, fn):
        def timed(*args, **kwargs):
            start = time.perf_counter()
            self.open.append(0.0)  # what calls timed inside this one take
            try:
                return fn(*args, **kwargs)
            finally:
                nested = self.open.pop()
                self.add(name, time.perf_counter() - start - nested)
                self.inner += nested if not self.open else 0.0
                if self.open:
                    self.open[-1] += nested
        return timed

    def per_step(self, steps: int) -> dict[str, float]:
        """Milliseconds per step of each segment, and the process's page faults a step since ``reset``."""
        faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - self.faults
        return {**{k: 1e3 * v / steps for k, v in self.totals.items()}, "page faults": faults / steps}


def rnnbench_segments(steps: int) -> dict[str, float]:
    """ms per step of each part of rnnbench's step (W&B offline; clipping, Adam, the pre-clip norms and the rows
    they log timed on their own)."""
    cfg = side_config(steps + WARMUP)
    L.seed_everything(0, verbose=False)
    task, system = build(cfg)
    timer = StepTimer(WARMUP)
    seg = timer.segments
    system._update = timer.timed(system._update)
    system._write_row = seg.within("per-step rows (CSV, W&B)", system._write_row)
    measure = system._measure_gradients
    system._measure_gradients = seg.within("pre-clip norms", lambda: measure())
    system.configure_gradient_clipping = seg.within("clip", system.configure_gradient_clipping)
    configure = system.configure_optimizers

    def timed_optimizers():  # Adam's update runs inside step(), after Lightning's closure
        opt = configure()
        step, closed = opt.step, [0.0]

        def timed_step(closure=None, **kwargs):
            def timed_closure():
                loss = closure()
                closed[0] = time.perf_counter()
                return loss
            out = step(closure=timed_closure, **kwargs)
            seg.add("Adam", time.perf_counter() - closed[0])
            return out
        opt.step = timed_step
        return opt
    system.configure_optimizers = timed_optimizers
    with tempfile.TemporaryDirectory() as tmp:
        loggers = make_loggers(cfg, tmp, "offline", provenance())
        trainer = trainer_for(cfg, loggers, callbacks=[timer], group=GROUP)
        fit(trainer, system, task, cfg, GROUP)
        close(loggers)
    return seg.per_step(timer.steps)


class HandLoop:
    """The bare loop on a core and a linear head: next batch, forward, loss, zero_grad, backward, clip, Adam, and
    nothing else. ``mark(name)`` (a ``Segments.mark``) closes each part."""

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

    def step(self, mark=lambda name: None) -> None:
        try:
            x, y = next(self.batches)
        except StopIteration:
            self.batches = self._epoch()
            x, y = next(self.batches)
        mark("loop + data")
        out, _ = self.core(x)
        loss = torch.nn.functional.mse_loss(self.head(out[:, -1]), y)
        self.opt.zero_grad()
        mark("forward + loss")
        loss.backward()
        mark("backward")
        torch.nn.utils.clip_grad_norm_(self.params, self.clip)
        mark("clip")
        self.opt.step()
        mark("Adam")


def hand_segments(steps: int) -> dict[str, float]:
    """ms per step of each part of the bare loop's step, on a model of its own."""
    cfg = resolve(SUITE)
    L.seed_everything(0, verbose=False)
    torch.use_deterministic_algorithms(True)  # what Trainer(deterministic=True) does for rnnbench
    task, _ = build(cfg)
    task.setup()
    core = architectures.build(cfg.arch_name, task.input_size, cfg.arch)
    loop = HandLoop(core, torch.nn.Linear(core.output_size, task.output_size), task, cfg.optim.lr, cfg.optim.clip)
    seg = Segments()
    for step in range(steps + WARMUP):
        if step == WARMUP:
            seg.reset()
        loop.step(seg.mark)
    return seg.per_step(steps)


class Alternate(L.Callback):
    """After every ``block`` Trainer steps (from ``warmup`` on), ``block`` steps of a ``HandLoop`` on the Trainer's
    own core and head, timed: ``ours[i]`` is Trainer block i (from the end of the bare block before it to its
    last step), ``bare[i]`` the bare block before it."""

    def __init__(self, task, clip: float, block: int, warmup: int):
        self.task, self.clip, self.block, self.warmup = task, clip, block, warmup
        self.ours, self.bare, self.since, self.loop = [], [], None, None

    def on_train_start(self, trainer, pl_module):
        # lr 0: Adam's arithmetic all the same, the Trainer's model left as its own optimizer makes it
        self.loop = HandLoop(pl_module.core, pl_module.head, self.task, lr=0.0, clip=self.clip)
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

    def __init__(self, core, head, lr: float):
        super().__init__()
        self.core, self.head, self.lr = core, head, lr

    def training_step(self, batch, batch_idx):
        x, y = batch
        out, _ = self.core(x)
        return torch.nn.functional.mse_loss(self.head(out[:, -1]), y)

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.lr)


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


PAIRED = ("rnnbench (W&B offline)", "rnnbench (W&B disabled)", "rnnbench, 1 update a batch", "Lightning alone",
          "plain loop (control)")


def side_config(steps: int, tiny: bool = False):
    """The suite's LSTM config for a paired process (``TINY``'s model with ``tiny``): ``steps`` Trainer steps, no
    validation, no probes."""
    return resolve({**SUITE, **(TINY if tiny else {}), "train.max_steps": steps, "train.val_every": 10**9,
                    "train.diag": False})


def run_side(side: str, cfg, task, system, callback: L.Callback, group: int = GROUP) -> None:
    """Train ``side`` (one of ``PAIRED``) on ``system``'s core and head, with ``callback`` called as a Trainer
    calls it (``on_train_start``, ``on_train_batch_end``), whatever the side; rnnbench's sides ``group`` updates
    a Lightning batch (bench/run/groups.py), except the one that says 1, which is W&B offline too."""
    with tempfile.TemporaryDirectory() as tmp:
        if side == "plain loop (control)":
            task.setup()
            torch.use_deterministic_algorithms(True)  # as the Trainer's deterministic=True does for the others
            plain_loop(cfg, task, LightningAlone(system.core, system.head, cfg.optim.lr), callback)
        elif side == "Lightning alone":
            task.setup()
            model = LightningAlone(system.core, system.head, cfg.optim.lr)
            trainer = L.Trainer(max_steps=cfg.train.max_steps, gradient_clip_val=cfg.optim.clip, deterministic=True,
                                logger=False, enable_checkpointing=False, enable_model_summary=False,
                                enable_progress_bar=False, num_sanity_val_steps=0, limit_val_batches=0,
                                callbacks=[callback])
            trainer.fit(model, train_dataloaders=task.train_dataloader())
        else:
            group = 1 if "1 update" in side else group
            loggers = make_loggers(cfg, tmp, "disabled" if "disabled" in side else "offline", provenance())
            trainer = trainer_for(cfg, loggers, callbacks=[callback], group=group)
            fit(trainer, system, task, cfg, group)
            close(loggers)


def paired(side: str, blocks: int, block: int = GROUP, tiny: bool = False) -> dict:
    """One process's ratio of ``side`` to the bare loop on the same tensors, in alternating blocks (a multiple of
    ``GROUP`` steps, so that a block ends where a Lightning batch does)."""
    keep_heap()  # every side, the plain loops too, with the heap an rnnbench run keeps (module docstring)
    warmup = 2 * block
    cfg = side_config(warmup + block * blocks, tiny)
    L.seed_everything(0, verbose=False)
    task, system = build(cfg)
    alternate = Alternate(task, cfg.optim.clip, block, warmup)
    run_side(side, cfg, task, system, alternate)
    bare = statistics.median(alternate.bare) / block
    return {"side": side, "ratio": alternate.ratio(), "blocks": len(alternate.ours), "bare_ms": 1e3 * bare,
            "ours_ms": 1e3 * statistics.median(alternate.ours) / block}


def paired_rounds(rounds: int, blocks: int, threads: int, sides: tuple[str, ...] = PAIRED,
                  tiny: bool = False) -> dict[str, list[dict]]:
    """``rounds`` fresh processes per side (the sides' order rotated each round): a process's memory layout
    moves its speed by a few %, so no single process speaks for a side."""
    out: dict[str, list[dict]] = {side: [] for side in sides}
    for r in range(rounds):
        for side in sides[r % len(sides):] + sides[:r % len(sides)]:
            cmd = [sys.executable, "-m", "dev.perf", "--paired", side, "--blocks", str(blocks),
                   "--threads", str(threads), *(["--tiny"] if tiny else [])]
            done = subprocess.run(cmd, capture_output=True, text=True)
            if done.returncode:
                raise SystemExit(f"perf: the {side!r} process failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
            out[side].append(json.loads(done.stdout.strip().splitlines()[-1]))
    return out


def harness_cost(full: dict[str, list[dict]], rounds: int, blocks: int, threads: int) -> None:
    """The harness's own milliseconds a step, measured where the model costs next to nothing (``TINY``), the same
    paired way; set beside the full model's bare step, they give the ratio a harness that cost that much would
    have there. What it leaves out: Python slowed by the full model's kernels (caches), which callgrind's
    simulation puts near zero (``make bench-instructions``)."""
    sides = ("rnnbench (W&B offline)", "rnnbench (W&B disabled)", "rnnbench, 1 update a batch", "plain loop (control)")
    tiny = paired_rounds(rounds, blocks, threads, sides, tiny=True)
    bare_full = statistics.median(r["bare_ms"] for runs in full.values() for r in runs)
    print(f"the harness's own time: the same sides on an LSTM too small to matter (T={TINY['task.seq_len']}, "
          f"H={TINY['arch.hidden_size']}), ms a step (median over {rounds} processes of side - bare loop):")
    for side, runs in tiny.items():
        extra = statistics.median(r["ours_ms"] - r["bare_ms"] for r in runs)
        each = ", ".join(f"{r['ours_ms'] - r['bare_ms']:+.3f}" for r in runs)
        print(f"  {side:<26} {extra:+.3f} ms over a {statistics.median(r['bare_ms'] for r in runs):.3f} ms bare "
              f"step ({each}); beside the full model's bare step ({bare_full:.2f} ms): ratio "
              f"{bare_full / (bare_full + max(extra, 0.0)):.3f}")


def fit_seconds(steps: int, diag: bool) -> float:
    """Wall time of a whole ``trainer.fit`` (W&B off), with the default diagnostics cadence or none."""
    cfg = resolve({**SUITE, "train.max_steps": steps, "train.val_every": 10**9, "train.diag": diag})
    L.seed_everything(0, verbose=False)
    task, system = build(cfg)
    callbacks = [GradientDiagnostics(cfg.train.diag_cadence)] if diag else []
    with tempfile.TemporaryDirectory() as tmp:
        trainer = trainer_for(cfg, make_loggers(cfg, tmp, "disabled", provenance()), callbacks=callbacks)
        start = time.perf_counter()
        fit(trainer, system, task, cfg)
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


SEGMENTS = ("loop + data", "forward + loss", "backward", "pre-clip norms", "per-step rows (CSV, W&B)", "clip",
            "Adam", "optimizer step + Lightning")


def breakdown(steps: int, repeats: int) -> None:
    """Where a step's time goes, hand loop beside rnnbench with default logging (the median of each segment
    over ``repeats`` instrumented runs; the instrumentation adds a few microseconds a step)."""
    runs: dict[str, list[dict[str, float]]] = {"hand loop": [], "rnnbench": []}
    for _ in range(repeats):
        runs["hand loop"].append(hand_segments(steps))
        runs["rnnbench"].append(rnnbench_segments(steps))
    median = {side: {k: statistics.median(r.get(k, 0.0) for r in rs) for k in SEGMENTS} for side, rs in runs.items()}
    print(f"where a step goes, ms (median of {repeats} instrumented runs; rnnbench with W&B offline, the default):")
    print(f"  {'segment':<28} {'hand loop':>9} {'rnnbench':>9} {'extra':>7}")
    for k in SEGMENTS:
        hand, ours = median["hand loop"][k], median["rnnbench"][k]
        print(f"  {k:<28} {hand:9.3f} {ours:9.3f} {ours - hand:+7.3f}")
    hand, ours = sum(median["hand loop"].values()), sum(median["rnnbench"].values())
    print(f"  {'step':<28} {hand:9.3f} {ours:9.3f} {ours - hand:+7.3f}")
    faults = {side: statistics.median(r["page faults"] for r in rs) for side, rs in runs.items()}
    print(f"  page faults a step (the process's minor faults, ~3 us each on this VM): hand loop "
          f"{faults['hand loop']:.1f}, rnnbench {faults['rnnbench']:.1f} (train.keep_heap)")
    print("  (the hand loop's clip takes the total norm itself; rnnbench takes it with the per-layer norms and clips "
          "with it. 'optimizer step + Lightning' is Lightning's optimizer wrapper and bookkeeping after the update; "
          f"Lightning's loop and batch hooks, once every {GROUP} updates, sit in 'loop + data', its backward hooks in "
          "'forward + loss' and 'backward')")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200, help="timed steps per run of the breakdown")
    parser.add_argument("--repeats", type=int, default=9,
                        help="alternating repeats of the breakdown and the diagnostics cost (half of it)")
    parser.add_argument("--rounds", type=int, default=5, help="processes per side for the throughput ratios")
    parser.add_argument("--blocks", type=int, default=20, help=f"Trainer blocks of {GROUP} steps per process")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads [default: 1, as every sweep run and the reference train]")
    parser.add_argument("--fit-steps", type=int, default=1000, help="run length for the diagnostics cost")
    parser.add_argument("--paired", choices=PAIRED, help=argparse.SUPPRESS)  # one process of paired_rounds
    parser.add_argument("--tiny", action="store_true", help=argparse.SUPPRESS)  # ... on TINY's model
    args = parser.parse_args()
    quiet()
    no_gpu_no_nvml()  # what trainer_for does, done first so that the hand loop, a bare PyTorch loop, runs alike
    torch.set_num_threads(args.threads)
    if args.paired:
        print(json.dumps(paired(args.paired, args.blocks, tiny=args.tiny)))
        return
    p = provenance()
    print(f"LSTM on adding (T={SUITE['task.seq_len']}, H={SUITE['arch.hidden_size']}, batch 64); torch {p['torch']}, "
          f"{torch.get_num_threads()} thread(s), {p['cpu']}")
    print(f"rnnbench trains {GROUP} updates a Lightning batch here (bench/run/groups.py; the side '1 update a batch' "
          "does not)")
    print(f"throughput / a bare PyTorch loop on the same tensors, in alternating blocks of {GROUP} steps ({args.blocks} "
          f"blocks a process, {args.rounds} processes a side):")
    results = paired_rounds(args.rounds, args.blocks, args.threads)
    print(f"  {'side':<26} {'median':>7} {'min':>6} {'max':>6}  per process (bare loop, side: ms a step)")
    for side, runs in results.items():
        ratios = [r["ratio"] for r in runs]
        each = ", ".join(f"{r['ratio']:.3f} ({r['bare_ms']:.1f}, {r['ours_ms']:.1f})" for r in runs)
        print(f"  {side:<26} {statistics.median(ratios):7.3f} {min(ratios):6.3f} {max(ratios):6.3f}  {each}")
    median = {side: statistics.median(r["ratio"] for r in runs) for side, runs in results.items()}
    control = median["plain loop (control)"]
    print(f"ratio rnnbench (W&B offline) / bare loop = {median['rnnbench (W&B offline)']:.3f}  "
          "(goal >= 0.95 with W&B offline, the default)")
    print(f"ratio plain loop (control) / bare loop = {control:.3f}: another plain PyTorch loop, with no overhead "
          "to find; where it is below 1, the method is, and the sides' ratios are only as good as its spread")
    print("  over the control: " + ", ".join(f"{side} {median[side] / control:.3f}" for side in PAIRED[:4]))
    harness_cost(results, args.rounds, args.blocks, args.threads)
    breakdown(-(-args.steps // GROUP) * GROUP, max(3, args.repeats // 2))  # whole groups, as WARMUP

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
