"""The diagnostics as a Lightning callback: probe every K steps, log, summarise into the run record.

Every ``every`` optimizer steps (and once after the last), on a fixed probe batch (the first ``probe_size``
validation sequences), it measures the gradient-flow profile, the recurrent Jacobian's spectral norm, the
recurrence's spectrum as its family declares it (bench/diag/spectra.py) and unit health, logs them under
``diag/`` and keeps them for the record. The probe runs the reference path in eval mode and uses
``torch.autograd.grad``: it draws no random numbers and writes no ``.grad``, so training follows exactly the
same trajectory with or without it (tested).

Cost (``make bench`` prints it): one probe is a step-by-step forward and backward over a small batch plus a
few dozen small Jacobians; at the default cadence of 10 probes per run it adds a few percent to a run.
"""

from __future__ import annotations

import math
import statistics

import lightning as L
import torch

from ..run.mirror import is_mirror
from . import health, spectra
from .verdict import spikes, verdict


def _round(x: float, digits: int = 4) -> float:
    return float(f"{x:.{digits}g}") if isinstance(x, float) and math.isfinite(x) else x


def _rounded(tree):
    if isinstance(tree, dict):
        return {k: _rounded(v) for k, v in tree.items()}
    if isinstance(tree, list):
        return [_rounded(v) for v in tree]
    return _round(tree) if isinstance(tree, float) else tree


def gradient_events(grad_history: list[float], clip: float, nonfinite: bool) -> dict:
    """Fraction of steps clipped, max pre-clip norm, its ratio to the median (spikes), non-finite gradients."""
    median = statistics.median(grad_history) if grad_history else None
    return {
        "clipped_fraction": (sum(g > clip for g in grad_history) / len(grad_history))
        if grad_history and clip > 0 else 0.0,
        "max_preclip_norm": max(grad_history) if grad_history else None,
        "spike": max(grad_history) / median if median else None,
        "spikes": spikes(grad_history),
        "nonfinite_gradients": int(nonfinite),
    }


def _to(batch, device):
    if isinstance(batch, dict):
        return {k: v.to(device) for k, v in batch.items()}
    return tuple(t.to(device) for t in batch)


def _measured(profile, jac, core, trace, units) -> dict:
    return {
        "flow": profile.norms,
        "ratio": {name: profile.ratio(i) for i, name in enumerate(profile.names)},
        "fall10": {name: profile.fall10(i) for i, name in enumerate(profile.names)},
        "jacobian": jac,
        "spectra": spectra.recurrence_spectra(core, trace),
        "health": units,
    }


def _core_summary(history: list[dict], steps: list[int]) -> dict:
    """One core's verdict, flow ratios, final measures and profiles over the probes."""
    ratio = history[-1]["ratio"].get("l0")
    return {"verdict": verdict(ratio), "flow_ratio_init": history[0]["ratio"].get("l0"),
            "flow_ratio_final": ratio, "final": {k: v for k, v in history[-1].items() if k != "flow"},
            "profiles": {"steps": steps, "flow": [h["flow"] for h in history]}}


class GradientDiagnostics(L.Callback):
    def __init__(self, every: int, probe_size: int = 64, jacobian_samples: int = 4, jacobian_steps: int = 4):
        if every < 1:
            raise ValueError(f"diagnostics cadence must be >= 1 step, got {every}")
        self.every, self.probe_size = every, probe_size
        self.jacobian_samples, self.jacobian_steps = jacobian_samples, jacobian_steps
        self.history: list[dict] = []
        self._probe_batch = None
        self._due = 0  # the next step at which a probe is due
        self.attention: dict | None = None  # a composed model's attention map of one probe example
        self._resumed: dict | None = None

    def state_dict(self) -> dict:
        # what a run resumed from a checkpoint needs to carry on probing where the interrupted one was
        return {"history": self.history, "due": self._due}

    def load_state_dict(self, state_dict: dict) -> None:
        self._resumed = state_dict  # taken up when training starts: testing a checkpoint keeps this run's probes

    def on_train_start(self, trainer, pl_module):
        if self._resumed is not None:
            self.history, self._due = list(self._resumed["history"]), self._resumed["due"]
            self._resumed = None

    def setup(self, trainer, pl_module, stage=None):
        pl_module.task.setup(stage)
        self._probe_batch = pl_module.probe_batch(self.probe_size)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        # ">=" rather than "% every == 0": under truncated BPTT a batch takes several optimizer steps.
        step = trainer.global_step
        if step >= self._due and not self._probed(step):
            self.probe(pl_module, step)
            self._due = (step // self.every + 1) * self.every

    def on_train_end(self, trainer, pl_module):
        if not self._probed(trainer.global_step):
            self.probe(pl_module, trainer.global_step)
        self.attention = pl_module.attention_example(_to(self._probe_batch, pl_module.device))
        events = gradient_events(pl_module.grad_history, pl_module.optim.clip,
                                 pl_module.divergence is not None)
        row = {f"diag/{k}": float(v) for k, v in events.items() if v is not None}
        for logger in pl_module.loggers:
            logger.log_metrics(row, step=trainer.global_step)
        self._mirror_pictures(pl_module)

    # ---- measuring ------------------------------------------------------------------------------------
    def measure(self, pl_module) -> dict | None:
        """The probes of the system's recurrent cores: the main one's at the top level (the sequence systems'
        only core; a composed model's encoder), and every core by role under ``cores`` when there are several
        roles. None for a model without a recurrent core."""
        batch = _to(self._probe_batch, pl_module.device)
        module = pl_module.probed
        was_training = module.training
        module.eval()  # no dropout draws: the probe must not move the RNG
        try:
            with torch.enable_grad():
                probed = pl_module.probe(batch)
                jacs = [spectra.jacobian_norms(core, trace, self.jacobian_samples, self.jacobian_steps)
                        for _, core, _, trace in probed]
            units = [health.unit_health(core, trace) for _, core, _, trace in probed]
        finally:
            module.train(was_training)
        if not probed:
            return None
        each = {role: _measured(profile, jac, core, trace, unit)
                for (role, core, profile, trace), jac, unit in zip(probed, jacs, units, strict=True)}
        main = each[probed[0][0]]
        return main if list(each) == ["core"] else {**main, "role": probed[0][0], "cores": each}

    def probe(self, pl_module, step: int) -> dict | None:
        measured = self.measure(pl_module)
        if measured is None:
            return None
        m = {"step": step, **measured}
        self.history.append(m)
        row = {f"diag/flow_ratio/{k}": v for k, v in m["ratio"].items()}
        row.update({f"diag/fall10/{k}": v for k, v in m["fall10"].items() if v is not None})
        row.update({f"diag/jacobian/{k}": v for k, v in m["jacobian"].items()})
        for block, s in m["spectra"].items():  # sigma_max, radius and what the block's kind adds (drift, ...)
            row.update({f"diag/{field}/{block}": v for field, v in s.items()
                        if isinstance(v, float) and math.isfinite(v)})
        for kind in ("saturation", "dead_units", "gate_saturation"):
            row.update({f"diag/{kind}/{k}": v for k, v in m["health"][kind].items()})
        row.update({f"diag/gate/{k}": v for k, v in m["health"]["gates"].items()})
        for role, c in m.get("cores", {}).items():
            row.update({f"diag/{role}/flow_ratio/{k}": v for k, v in c["ratio"].items()})
        for logger in pl_module.loggers:
            logger.log_metrics(row, step=step)
        return m

    def _probed(self, step: int) -> bool:
        return bool(self.history) and self.history[-1]["step"] == step

    # ---- reporting ------------------------------------------------------------------------------------
    def summary(self, grad_history: list[float], clip: float, nonfinite: bool) -> dict:
        """The record's ``diagnostics`` section: probe history, final values, gradient events, verdict; for a
        composed model also the same per core (``cores``) and one attention map (``attention``)."""
        first, last = (self.history[0], self.history[-1]) if self.history else ({}, {})
        ratio = last.get("ratio", {}).get("l0")
        events = gradient_events(grad_history, clip, nonfinite)
        extra = {}
        if "cores" in last:
            extra["role"] = last["role"]
            extra["cores"] = {role: _core_summary([h["cores"][role] for h in self.history],
                                                  [h["step"] for h in self.history])
                              for role in last["cores"]}
        if self.attention is not None:
            extra["attention"] = self.attention
        return _rounded({
            "every": self.every, "probe_size": self.probe_size, "loss": "last output step (see diag/flow.py)",
            "verdict": verdict(ratio),
            "flow_ratio_init": first.get("ratio", {}).get("l0"), "flow_ratio_final": ratio,
            "final": {k: v for k, v in last.items() if k not in ("flow", "cores", "role")},
            "events": events,
            "profiles": {"steps": [h["step"] for h in self.history], "flow": [h["flow"] for h in self.history]},
            **extra,
        })

    def _mirror_pictures(self, pl_module) -> None:
        """The flow heatmap, a few line profiles and the attention map to the W&B mirror, if the run has one."""
        mirrors = [lg for lg in pl_module.loggers if is_mirror(lg)]
        if mirrors and self.attention is not None:
            self._mirror_attention(mirrors)
        if not mirrors or not self.history:
            return
        import wandb

        from .plots import heatmap_figure, pyplot

        steps = [h["step"] for h in self.history]
        fig = heatmap_figure(steps, [h["flow"][0] for h in self.history], title="||dL/dh_t||, layer 0")
        picks = sorted({0, len(steps) // 2, len(steps) - 1})
        T = len(self.history[0]["flow"][0])
        lines = wandb.plot.line_series(
            xs=list(range(T)), ys=[[math.log10(max(v, 1e-30)) for v in self.history[i]["flow"][0]] for i in picks],
            keys=[f"step {steps[i]}" for i in picks], title="log10 ||dL/dh_t|| (layer 0)", xname="timestep t")
        for lg in mirrors:
            _log_now(lg, {"diag/flow_heatmap": wandb.Image(fig), "diag/flow_profiles": lines})
        pyplot().close(fig)

    def _mirror_attention(self, mirrors) -> None:
        import wandb

        from .plots import attention_panel, pyplot

        a = self.attention
        plt = pyplot()
        fig, ax = plt.subplots(figsize=(4, 3.2), dpi=100, layout="constrained")
        attention_panel(ax, a["weights"], a.get("source", ""), a.get("reference", ""), a.get("grid"),
                        a.get("reference", "")[:50])
        for lg in mirrors:
            _log_now(lg, {"diag/attention": wandb.Image(fig)})
        plt.close(fig)


def _log_now(logger, row: dict) -> None:
    """``row`` (pictures) straight to a W&B logger's run (which keeps a failure as the mirror's)."""
    logger.log_now(row)
