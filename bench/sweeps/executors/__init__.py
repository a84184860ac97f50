"""Sweep executors, one file each: ``local`` (a process pool over CPU cores or GPU slots, offline), ``ray``
(Ray Tune, on this machine or a cluster) and ``wandb`` (a W&B agent; needs a server). The contract and the
registry are in ``base.py``; a new executor is one new file here; the tests find it by its name."""
