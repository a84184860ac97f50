"""Gradient diagnostics: per-timestep gradient flow, recurrent Jacobians and spectra, unit health, verdicts.

The measurements are plain functions of a core (``flow``, ``spectra``, ``health``); ``callback`` runs them
as a Lightning callback at a cadence on a fixed probe batch; ``verdict`` turns the flow profile into one word per run and
counts gradient spikes beside it;
``plots`` draws them from run records.
"""
