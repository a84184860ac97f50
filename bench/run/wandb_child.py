"""The W&B mirror's own process (bench/run/mirror.py's ``WandbProcess``): it owns the W&B run, so W&B's client
(its event-loop thread, its socket to wandb-core, ``run.log``'s Python) never takes the training process's GIL.

Run as a script (``python wandb_child.py``), it imports W&B and nothing of rnnbench. It reads pickled
``(op, payload)`` messages from stdin, in order:

- ``("init", kwargs)``: ``wandb.init(**kwargs)``; must come first;
- ``("log", row)``: ``run.log(row)``;
- ``("flush", None)``: reply ``None``, or the first error since the last flush (the rows after it were dropped);
- ``("finish", exit_code)``: ``run.finish(exit_code)``, reply as ``flush`` does, and exit.

Replies (pickled) go to the file descriptor that was stdout when it started; its own stdout is sent to stderr, so
nothing W&B prints can garble them. End of input without ``finish`` (the trainer died) finishes the run as
failed (exit code 1).
"""

from __future__ import annotations

import os
import pickle
import sys
import traceback


def main() -> None:
    replies = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    commands = sys.stdin.buffer
    run, error = None, None
    while True:
        try:
            op, payload = pickle.load(commands)
        except EOFError:
            op, payload = "finish", 1
        if op in ("flush", "finish"):
            if op == "finish" and run is not None:
                try:
                    run.finish(exit_code=payload)
                except Exception:  # noqa: BLE001 - handed to the trainer with the reply
                    error = error or traceback.format_exc(limit=3)
            try:
                pickle.dump(error, replies)
                replies.flush()
            except OSError:  # the trainer is gone: nobody to tell
                return
            error = None
            if op == "finish":
                return
        elif error is None:  # after a failure the rest are dropped; the next flush reports it
            try:
                if op == "init":
                    import wandb

                    run = wandb.init(**payload)
                else:
                    run.log(payload)
            except Exception:  # noqa: BLE001 - handed to the trainer at the next flush
                error = traceback.format_exc(limit=3)


if __name__ == "__main__":
    main()
