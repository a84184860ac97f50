"""Several optimizer updates per Lightning batch: Lightning's per-batch work paid once for k of the task's batches.

Lightning's loop costs about 0.3-0.8 ms around every ``training_step`` on this 2-core CPU (fetch, batch hooks,
progress, logger connector), 3-8 % of the suite's LSTM step. ``make bench`` (5 processes a side, alternating
blocks against a bare loop) measured rnnbench at a median 0.930 of the bare loop with one update a Lightning
batch and 0.955 in groups of 25; on a model too small to matter, the harness's own time a step fell from
+0.50 ms to +0.17 ms. So a single-device run hands Lightning ``UpdateGroups``: each Lightning batch is a
``Group`` that the system trains batch by batch, pulling each of the task's batches from its DataLoader only
when it trains on it.

What stays exactly as it was (tested: records, probes and metrics CSVs are identical with and without groups):
- the batches and their order: one DataLoader, iterated epoch after epoch as Lightning would, each epoch's
  ``iter`` (and its shuffle's draws from the global RNG) at the first update of the epoch, after the last
  update and any validation of the one before;
- every optimizer step: ``trainer.global_step`` counts updates, never groups;
- validation and the diagnostics probes at the same steps: ``k`` divides both cadences, in updates, so a
  group ends where a validation is due and starts where a probe is (``group_size``); the last group of a run
  stops at ``max_steps``;
- the task's data epochs: a carried state (``carries_state`` tasks) is reset at each epoch's first batch.

Lightning sees one long epoch of ``len(groups)`` batches. A multi-device run keeps one update per Lightning
batch: DDP's distributed sampler is Lightning's to put into a DataLoader, which ``UpdateGroups`` is not.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any

MAX_GROUP = 32  # more saves little (0.8 ms a batch over 32 steps of 10 ms is 0.25 %) and coarsens batch hooks


def group_size(val_every: int, max_steps: int, diag_every: int | None, per_batch: int) -> int:
    """The largest k <= ``MAX_GROUP`` whose k * ``per_batch`` updates divide the validation cadence (validation at
    ``min(val_every, max_steps)`` and its multiples) and the diagnostics cadence (None: no probes)."""
    cadences = [min(val_every, max_steps)] + ([diag_every] if diag_every else [])
    updates = math.gcd(*cadences)
    if updates % per_batch:
        return 1
    span = updates // per_batch
    return max(k for k in range(1, min(MAX_GROUP, span) + 1) if span % k == 0)


class UpdateGroups:
    """What Lightning iterates as the training data: ``ceil(batches / k)`` ``Group``s, where ``batches`` is the
    number of the task's batches the run trains on. ``loader`` makes the task's training DataLoader (called once);
    ``on_epoch`` runs before the first batch of each of its epochs."""

    def __init__(self, loader: Callable[[], Any], k: int, batches: int, on_epoch: Callable[[], None]):
        if k < 1 or batches < 1:
            raise ValueError(f"groups need k >= 1 and batches >= 1, got k={k}, batches={batches}")
        self.k, self.batches, self.on_epoch = k, batches, on_epoch
        self._make, self._loader, self._batches = loader, None, None

    def __len__(self) -> int:
        return math.ceil(self.batches / self.k)

    def __iter__(self) -> Iterator[Group]:
        for start in range(0, self.batches, self.k):
            yield Group(self, min(self.k, self.batches - start))

    def pull(self):
        """The task's next training batch; a new epoch of its DataLoader where the last one ended."""
        if self._batches is not None:
            batch = next(self._batches, _END)
            if batch is not _END:
                return batch
        if self._loader is None:
            self._loader = self._make()
        self.on_epoch()
        self._batches = iter(self._loader)
        batch = next(self._batches, _END)
        if batch is _END:
            raise RuntimeError("the task's training DataLoader yields no batch")
        return batch


class Group:
    """One Lightning batch: ``size`` of the task's batches, pulled one at a time as the system trains on them.
    Not a sequence, so Lightning's batch hooks (which walk lists and dicts for tensors) pass it through as is."""

    def __init__(self, source: UpdateGroups, size: int):
        self.source, self.size = source, size

    def __iter__(self):
        for _ in range(self.size):
            yield self.source.pull()

    def __repr__(self) -> str:
        return f"Group({self.size} batches)"


_END = object()
