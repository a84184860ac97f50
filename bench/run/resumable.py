"""A training DataLoader that a run killed mid-epoch resumes in the same order, through Lightning's own interface.

Lightning saves the loop and the optimizer in a checkpoint, not a DataLoader's position: a plain DataLoader
resumed mid-epoch replays another order (Lightning warns about it). Since Lightning PR #19475 a training
loader with ``state_dict`` / ``load_state_dict`` is resumable: its state goes into the checkpoint and comes back
before the loop iterates it again. That is all this wrapper adds to the task's DataLoader.

The suite's loaders shuffle by drawing from torch's global RNG when an epoch's iterator starts (seeded per run by
``seed_everything``), so an epoch's order is a function of the RNG state at that moment. The state holds that
RNG state, how many batches of the epoch were handed out, and the RNG state when the checkpoint was taken.
Resuming replays the epoch's draws from its saved RNG state, skips the batches already trained on, and puts
the RNG back where the checkpoint left it (dropout draws go on from there). A checkpoint at an epoch's end
resumes with the next epoch, drawn from the checkpoint's RNG state, as the uninterrupted run drew it.

Lightning does not prefetch from a loader with a length, so the batches handed out when a checkpoint is taken
are the batches trained on.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader


class ResumableLoader:
    """``loader``, iterated epoch after epoch as Lightning would, with a state that resumes it mid-epoch."""

    def __init__(self, loader: DataLoader):
        self.loader = loader
        self._epoch_rng: torch.Tensor | None = None  # the global RNG state when this epoch's iterator started
        self._given = 0  # batches of this epoch handed out
        self._resume: dict | None = None

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[Any]:
        resume, self._resume = self._resume, None
        skip, rng_after_draws = 0, None
        if resume is not None and resume["given"] < len(self):  # mid-epoch: this epoch's order again
            torch.set_rng_state(resume["epoch_rng"])
            skip, rng_after_draws = resume["given"], resume["rng"]
        elif resume is not None:  # the checkpoint closed an epoch: the next one draws from its RNG state
            torch.set_rng_state(resume["rng"])
        self._epoch_rng, self._given = torch.get_rng_state(), 0
        for index, batch in enumerate(self.loader):
            if index == 0 and rng_after_draws is not None:
                torch.set_rng_state(rng_after_draws)  # the epoch drew its order with its first batch
            if index < skip:
                continue
            self._given = index + 1
            yield batch

    def state_dict(self) -> dict:
        return {"epoch_rng": self._epoch_rng, "given": self._given, "rng": torch.get_rng_state()}

    def load_state_dict(self, state: dict) -> None:
        self._resume = state
