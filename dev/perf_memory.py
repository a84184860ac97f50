"""Peak training memory of truncated BPTT against full BPTT as the stream window grows (part of ``make bench``).

    python -m dev.perf_memory [--windows 500 2000] [--tbptt 50] [--arch gru] [--hidden 256]

Each configuration trains a few real charlm steps through the suite (``bench.run.train``, W&B off, no
diagnostics) in a fresh process, and reports two peaks:
- ``saved``: the largest autograd graph of any backward pass, i.e. the bytes of the tensors saved for it
  (``torch.autograd.graph.saved_tensors_hooks``, storages counted once). This is what BPTT must hold, exact
  and free of allocator noise.
- ``rss``: the process's peak resident memory over the training steps minus before them (``ru_maxrss``, read
  when training first hands over to validation), i.e. what the operating system saw, allocator slack included. On a GPU, ``cuda`` is ``torch.cuda.max_memory_allocated``.
Truncated BPTT backpropagates through ``tbptt`` steps whatever the window, so its peaks stay flat; full BPTT
holds the whole window's graph, so its peaks grow with it.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

import lightning as L


class SavedTensorPeak(L.Callback):
    """The bytes saved for backward by each graph, measured when its backward starts; keeps the maximum."""

    def __init__(self):
        self.current, self.peak, self._seen = 0, 0, set()
        self.rss_trained = None  # ru_maxrss when training first hands over to validation (KB)

    def pack(self, tensor):
        storage = tensor.untyped_storage()
        key = (storage.data_ptr(), storage.nbytes())
        if key not in self._seen:
            self._seen.add(key)
            self.current += storage.nbytes()
        return tensor

    def on_before_backward(self, trainer, pl_module, loss):
        self.peak = max(self.peak, self.current)
        self.current, self._seen = 0, set()

    def on_validation_start(self, trainer, pl_module):
        # Evaluation reads whole windows without a graph; its buffers are not what BPTT costs.
        if self.rss_trained is None:
            self.rss_trained = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def measure(window: int, tbptt: int, arch: str, hidden: int, batch: int) -> dict:
    """Runs in a fresh process (``--child``) so the RSS peak is this configuration's own."""
    import torch

    import tasks
    from bench.run.config import resolve
    from bench.run.train import train

    torch.set_num_threads(1)
    per_batch = window // tbptt if tbptt else 1
    cfg = resolve({"task": "charlm", "arch": arch, "arch.hidden_size": hidden, "task.batch_size": batch,
                   "task.seq_len": window, "task.tbptt": tbptt, "train.max_steps": 2 * per_batch,
                   "train.val_every": 2 * per_batch, "train.diag": False})
    peak = SavedTensorPeak()
    tasks_text = tasks.get("charlm")(cfg.task).text  # load the corpus before the baseline reading
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with tempfile.TemporaryDirectory() as out, torch.autograd.graph.saved_tensors_hooks(peak.pack, lambda t: t):
        record = train(cfg, Path(out), wandb="disabled", callbacks=(peak,))
    return {"window": window, "tbptt": tbptt or window, "mode": "truncated" if tbptt else "full",
            "status": record["status"], "chars": len(tasks_text), "saved_mb": peak.peak / 2**20,
            "rss_mb": (peak.rss_trained - before) / 1024,
            "cuda_mb": torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None}


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--windows", type=int, nargs="+", default=[500, 2000], help="stream windows (steps per batch)")
    p.add_argument("--tbptt", type=int, default=50, help="truncation length k")
    p.add_argument("--arch", default="gru")
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--child", type=int, nargs=2, metavar=("WINDOW", "TBPTT"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        print(json.dumps(measure(*args.child, args.arch, args.hidden, args.batch)))
        return []
    rows = []
    print(f"peak training memory, charlm, {args.arch} H={args.hidden}, {args.batch} streams, CPU, 1 thread")
    print(f"{'window':>7} {'backprop':>9} {'saved for backward':>19} {'process peak (rss)':>19}")
    for window in args.windows:
        for tbptt in (args.tbptt, 0):
            cmd = [sys.executable, "-m", "dev.perf_memory", "--child", str(window), str(tbptt),
                   "--arch", args.arch, "--hidden", str(args.hidden), "--batch", str(args.batch)]
            row = json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.splitlines()[-1])
            rows.append(row)
            label = f"k={row['tbptt']}" if row["mode"] == "truncated" else "full"
            print(f"{window:>7} {label:>9} {row['saved_mb']:>16.1f} MB {row['rss_mb']:>16.1f} MB", flush=True)
    for mode in ("truncated", "full"):
        mine = [r for r in rows if r["mode"] == mode]
        if len(mine) >= 2:
            print(f"{mode:>9}: saved-for-backward peak x{mine[-1]['saved_mb'] / mine[0]['saved_mb']:.2f} "
                  f"when the window grows x{mine[-1]['window'] / mine[0]['window']:.0f}")
    return rows


if __name__ == "__main__":
    main()
