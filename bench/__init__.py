"""rnnbench's system side, one room per role:

- ``run/``: one run: config, the LightningModule, training, the record, checkpoint, W&B mirror;
- ``diag/``: gradient diagnostics (measures as pure functions, a thin callback, verdicts, pictures);
- ``sweeps/``: the spec language, planning, progress, and ``executors/`` (local, ray, wandb: plug-ins);
- ``reports/``: what people read, from records alone (leaderboard);
- ``text/``: tools for text-task runs (sample, units);
- ``dev/``: benchmarks, chaos and migrations, never imported by a run;
- ``store.py``: the one owner of a results folder's layout and atomic writes; ``cli.py``: ``rnnbench``.
"""
