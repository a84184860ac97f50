"""``make bench``: what rnnbench costs, measured side by side in one process.

1. Training throughput of rnnbench against a hand-written PyTorch loop.
2. Train time with the default gradient diagnostics against without (goal <= 1.10).
3. One full diagnostics probe against one fused forward + backward of a training batch (goal <= 3).

    python -m bench.dev.perf [--steps 300] [--repeats 3]

``--threads`` (default 1, as every sweep run trains) is set for both sides. A breakdown follows: the same step
instrumented (callback hooks, a timed clip, Adam timed from the end of its closure), segment by segment, the
hand loop beside rnnbench.

Both train the same LSTM on the same adding-task batches (the default suite's adding settings): Adam, global
norm clipping at 1, batch 64. rnnbench's steps go through the Lightning Trainer with everything a real run
does (pre-clip norms per layer every step, CSV and W&B offline logging); the hand loop does forward, backward,
clip, step and nothing else, under the same deterministic-algorithms setting. Steps/s is timed from the end of
a warm-up to the last step, in alternating repeats. Other processes only ever slow a measurement down, so the
ratios use the best repeat of each side (as ``timeit`` does); medians are printed beside them. Diagnostics are
off for (1); (2) trains the suite's full 1000 steps, where the default cadence probes 11 times.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import lightning as L
import torch

import architectures

from ..diag import flow
from ..diag.callback import GradientDiagnostics
from ..run.config import resolve
from ..run.mirror import close, make_loggers
from ..run.records import provenance
from ..run.system import build
from ..run.train import no_gpu_no_nvml, quiet, trainer_for

SUITE = {"task": "adding", "arch": "lstm", "task.seq_len": 50, "arch.hidden_size": 64, "optim.lr": 3e-3}
WARMUP = 20


class StepTimer(L.Callback):
    """Steps/s from the end of the warm-up; with ``detail``, where each step's time goes (``Segments``)."""

    def __init__(self, warmup: int, detail: bool = False):
        self.warmup, self.start, self.end, self.steps = warmup, None, None, 0
        self.segments = Segments() if detail else None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if trainer.global_step == self.warmup:
            self.start = time.perf_counter()
            if self.segments is not None:
                self.segments.reset()
        if self.segments is not None:
            self.segments.mark("loop + data")  # since the previous step ended

    def on_before_backward(self, trainer, pl_module, loss):
        if self.segments is not None:
            self.segments.mark("forward + loss")

    def on_after_backward(self, trainer, pl_module):
        if self.segments is not None:
            self.segments.mark("backward")

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.end, self.steps = time.perf_counter(), trainer.global_step - self.warmup
        if self.segments is not None:
            self.segments.mark("optimizer step + Lightning")


class Segments:
    """Wall time between named marks, summed per name: ``mark(name)`` closes the segment begun at the last mark.
    ``within(name, fn)`` times calls of ``fn`` as ``name`` and takes them out of the segment they fall in."""

    def __init__(self):
        self.reset()

    def reset(self):
        self.totals, self.inner, self.last, self.open = {}, 0.0, time.perf_counter(), []

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
        """Milliseconds per step of each segment."""
        return {k: 1e3 * v / steps for k, v in self.totals.items()}


def rnnbench_rate(steps: int, wandb: str, detail: bool = False) -> float | tuple[float, dict[str, float]]:
    """rnnbench's steps/s; with ``detail`` also ms per step of each part (clipping, Adam, the pre-clip norms
    and the rows they log timed on their own)."""
    cfg = resolve({**SUITE, "train.max_steps": steps + WARMUP, "train.val_every": 10**9, "train.diag": False})
    L.seed_everything(0, verbose=False)
    task, system = build(cfg)
    timer = StepTimer(WARMUP, detail)
    if detail:
        seg = timer.segments
        system._write_row = seg.within("per-step rows (CSV, W&B)", system._write_row)
        measure = system._measure_gradients
        system._measure_gradients = seg.within("pre-clip norms", lambda: measure())
        system.configure_gradient_clipping = seg.within("clip", system.configure_gradient_clipping)
    with tempfile.TemporaryDirectory() as tmp:
        loggers = make_loggers(cfg, tmp, wandb, provenance())
        trainer = trainer_for(cfg, loggers)
        trainer.callbacks.append(timer)
        if detail:
            configure = system.configure_optimizers

            def timed_optimizers():  # Adam's update runs inside step(), after the closure (forward, backward)
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
        trainer.fit(system, datamodule=task)
        close(loggers)
    rate = timer.steps / (timer.end - timer.start)
    return (rate, timer.segments.per_step(timer.steps)) if detail else rate


def hand_rate(steps: int, detail: bool = False) -> float | tuple[float, dict[str, float]]:
    cfg = resolve(SUITE)
    L.seed_everything(0, verbose=False)
    torch.use_deterministic_algorithms(True)  # what Trainer(deterministic=True) does for rnnbench
    task, _ = build(cfg)
    task.setup()
    core = architectures.build(cfg.arch_name, task.input_size, cfg.arch)
    head = torch.nn.Linear(core.output_size, task.output_size)
    params = [*core.parameters(), *head.parameters()]
    opt = torch.optim.Adam(params, lr=cfg.optim.lr)
    batches = iter(task.train_dataloader())
    seg = Segments()
    mark = seg.mark if detail else (lambda name: None)
    start = None
    for step in range(steps + WARMUP):
        if step == WARMUP:
            start = time.perf_counter()
            seg.reset()
        try:
            x, y = next(batches)
        except StopIteration:
            batches = iter(task.train_dataloader())
            x, y = next(batches)
        mark("loop + data")
        out, _ = core(x)
        loss = torch.nn.functional.mse_loss(head(out[:, -1]), y)
        opt.zero_grad()
        mark("forward + loss")
        loss.backward()
        mark("backward")
        torch.nn.utils.clip_grad_norm_(params, cfg.optim.clip)
        mark("clip")
        opt.step()
        mark("Adam")
    rate = steps / (time.perf_counter() - start)
    return (rate, seg.per_step(steps)) if detail else rate


def fit_seconds(steps: int, diag: bool) -> float:
    """Wall time of a whole ``trainer.fit`` (W&B off), with the default diagnostics cadence or none."""
    cfg = resolve({**SUITE, "train.max_steps": steps, "train.val_every": 10**9, "train.diag": diag})
    L.seed_everything(0, verbose=False)
    task, system = build(cfg)
    callbacks = [GradientDiagnostics(cfg.train.diag_cadence)] if diag else []
    with tempfile.TemporaryDirectory() as tmp:
        trainer = trainer_for(cfg, make_loggers(cfg, tmp, "disabled", provenance()), callbacks=callbacks)
        start = time.perf_counter()
        trainer.fit(system, datamodule=task)
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
        runs["hand loop"].append(hand_rate(steps, detail=True)[1])
        runs["rnnbench"].append(rnnbench_rate(steps, "offline", detail=True)[1])
    median = {side: {k: statistics.median(r.get(k, 0.0) for r in rs) for k in SEGMENTS} for side, rs in runs.items()}
    print(f"where a step goes, ms (median of {repeats} instrumented runs; rnnbench with W&B offline, the default):")
    print(f"  {'segment':<28} {'hand loop':>9} {'rnnbench':>9} {'extra':>7}")
    for k in SEGMENTS:
        hand, ours = median["hand loop"][k], median["rnnbench"][k]
        print(f"  {k:<28} {hand:9.3f} {ours:9.3f} {ours - hand:+7.3f}")
    hand, ours = sum(median["hand loop"].values()), sum(median["rnnbench"].values())
    print(f"  {'step':<28} {hand:9.3f} {ours:9.3f} {ours - hand:+7.3f}")
    print("  (the hand loop's clip takes the total norm itself; rnnbench takes it with the per-layer norms and clips "
          "with it. 'optimizer step + Lightning' is Lightning's own bookkeeping after the update; Lightning's "
          "loop and closure also sit in 'loop + data' and 'forward + loss')")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200, help="timed steps per measurement")
    parser.add_argument("--repeats", type=int, default=9, help="alternating repeats; the best are compared")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads [default: 1, as every sweep run and the reference train]")
    parser.add_argument("--fit-steps", type=int, default=1000, help="run length for the diagnostics cost")
    args = parser.parse_args()
    quiet()
    no_gpu_no_nvml()  # what trainer_for does, done first so that the hand loop, a bare PyTorch loop, runs alike
    torch.set_num_threads(args.threads)
    p = provenance()
    print(f"LSTM on adding (T={SUITE['task.seq_len']}, H={SUITE['arch.hidden_size']}, batch 64), "
          f"{args.steps} timed steps x {args.repeats} repeats; torch {p['torch']}, {torch.get_num_threads()} "
          f"thread(s), {p['cpu']}")
    rates: dict[str, list[float]] = {"hand loop": [], "rnnbench (W&B offline)": [], "rnnbench (W&B disabled)": []}
    for _ in range(args.repeats):
        rates["hand loop"].append(hand_rate(args.steps))
        rates["rnnbench (W&B offline)"].append(rnnbench_rate(args.steps, "offline"))
        rates["rnnbench (W&B disabled)"].append(rnnbench_rate(args.steps, "disabled"))
    best = {k: max(v) for k, v in rates.items()}
    for name, values in rates.items():
        print(f"  {name:<26} best {best[name]:6.1f} steps/s, median {statistics.median(values):6.1f} "
              f"(runs: {', '.join(f'{v:.1f}' for v in values)})")
    for name in ("rnnbench (W&B offline)", "rnnbench (W&B disabled)"):
        median = statistics.median(rates[name]) / statistics.median(rates["hand loop"])
        print(f"ratio {name} / hand loop = {best[name] / best['hand loop']:.3f} best, {median:.3f} median  "
              "(goal >= 0.95 with W&B offline, the default)")
    breakdown(args.steps, max(3, args.repeats // 2))

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
