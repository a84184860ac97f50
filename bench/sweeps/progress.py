"""Sweep feedback: one line per finished run and a done / running / failed / total status with an ETA.

    [3/10] adding   gru      s0  test/mse=0.0123    ok       healthy   12s | running 2 · failed 0 · ETA 1m24s

On a terminal the status is a bar redrawn in place under the run lines; piped to a file or CI log (stdout not
a TTY) there is no carriage-return redrawing: the status rides on each finished run's line instead. The ETA is
the mean wall time of the runs finished so far x the runs left / the workers. Every executor reports through
``Progress.result``, so local, Ray and W&B sweeps read the same.
"""

from __future__ import annotations

import shutil
import statistics
import sys
import time

BAR = 24


def summary_line(rec: dict, done: int, total: int) -> str:
    m = rec["metric"]
    value = "—" if m["test"] is None else f"{m['test']:.4g}"
    verdict = (rec.get("diagnostics") or {}).get("verdict") or "—"
    return (f"[{done}/{total}] {rec['task']:<8} {rec['arch_label']:<8} s{rec['seed']}  "
            f"test/{m['name']}={value:<9} {rec['status']:<8} {verdict:<9} {rec['wall_time_s']:.0f}s")


def duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class Progress:
    def __init__(self, total: int, workers: int, stream=None, tty: bool | None = None):
        self.stream = stream or sys.stdout
        self.tty = self.stream.isatty() if tty is None else tty
        self.total, self.workers = total, max(1, workers)
        self.done = self.failed = self.skipped = 0
        self.times: list[float] = []
        self.started = time.time()

    @property
    def left(self) -> int:
        return self.total - self.done - self.skipped

    @property
    def running(self) -> int:
        return min(self.workers, self.left)

    def eta(self) -> float | None:
        if not self.times:
            return None
        return statistics.fmean(self.times) * self.left / self.workers

    def status(self) -> str:
        eta = self.eta()
        text = (f"running {self.running} · failed {self.failed}"
                + (f" · skipped {self.skipped}" if self.skipped else "")
                + f" · ETA {'—' if eta is None else duration(eta)}")
        return text

    def bar(self) -> str:
        filled = BAR * (self.done + self.skipped) // max(1, self.total)
        text = (f"[{'#' * filled}{'.' * (BAR - filled)}] {self.done}/{self.total} done · {self.status()}"
                f" · {duration(time.time() - self.started)} elapsed")
        return text[:shutil.get_terminal_size().columns - 1]  # a wrapped line cannot be redrawn with \r

    def result(self, rec: dict) -> dict:
        """Report one finished (or skipped) run; returns it, so executors can pass it along."""
        if rec.get("status") == "skipped":
            self.skipped += 1
            line = f"skip {rec['name']} [{rec['id']}]: {rec['reason']}"
        else:
            self.done += 1
            self.failed += rec["status"] == "failed"
            self.times.append(rec["wall_time_s"])
            line = summary_line(rec, self.done, self.total)
        self._print(line)
        return rec

    def tick(self) -> None:
        """Redraw the bar (elapsed time moves between results); nothing when piped."""
        if self.tty and self.total:
            self.stream.write(f"\r\033[K{self.bar()}")
            self.stream.flush()

    def close(self) -> None:
        if self.tty and self.total:
            self.stream.write("\r\033[K")
            self.stream.flush()

    def _print(self, line: str) -> None:
        if self.tty:
            self.stream.write(f"\r\033[K{line}\n{self.bar()}")
        else:
            self.stream.write(f"{line} | {self.status()}\n")
        self.stream.flush()
