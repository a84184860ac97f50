"""Anchors: what a sweep document reproduces, declared beside its runs (``results/REPRODUCTION.md`` reads them).

A document of a sweep file may carry one ``anchor`` mapping, the only key of a document that is not W&B's (the
W&B executor drops it before handing the document to ``wandb.sweep``):

    anchor:
      name: MNIST-1D, the paper's GRU                      # the row's title
      source: Greydanus & Kobak 2020 (arXiv 2011.14439 v4), Table 1
      setting: bidirectional GRU, hidden 6, ... Adam 1e-2, batch 100, 6000 steps   # the published setting
      ours: the same model, optimiser, batch and steps                             # what we ran, if different
      needs: gpu                                           # optional: gpu or network; pending until run
      metric: bleu                                         # optional: one of the task's extra metrics (higher
                                                           # is better) instead of its main metric
      reference: our corpus is not Penn Treebank           # optional: how our setting differs (see below)
      rows:                                                # one published number per row of the document
        - match: {arch.name: gru}                          # dotted settings a row's runs share ({} = all)
          published: 0.91                                  # in the task metric's units
          spread: 0.02                                     # the published +- (optional)
          source: TCN, Table 1                             # optional, overrides the anchor's
        - match: {arch.name: vanilla}
          expect: baseline                                 # or `solved`: a published claim, not a number
          reference: another table and protocol            # optional, this row only

A published number gets a verdict only where our data, model class and budget match the source's. Where one of
them differs, the anchor (every row) or the row says how in ``reference`` (text, required to be non-empty): the
row is then a *reference* line, shown beside ours with that reason and no verdict, and counted apart from the
verdicts. A row's own ``reference`` replaces the anchor's.

Verdicts, for the rows that have them. ``published`` compares our mean over the seeds that finished ok: within
the published spread (or, with none, 2 points on a 0..1 accuracy and 2 % of the value otherwise) is
*reproduced*, better is *beaten*, worse is *short*. The claims are judged per seed: ``expect: solved`` is
reproduced when a strict majority of the seeds run (a diverged one did not solve) pass the task's solved
threshold, else short; ``expect: baseline`` (the source reports the family stuck at the memoryless baseline) is
reproduced when a strict majority of the seeds that finished ok end within 5 % of the task's baseline,
*beaten* when a strict majority end further than that on its better side, and short otherwise. The rules live
in ``bench/reports/reproduction.py``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from options import ConfigError

ANCHOR_KEYS = ("metric", "name", "needs", "ours", "reference", "rows", "setting", "source")
ROW_KEYS = ("expect", "match", "published", "reference", "source", "spread")
EXPECTS = ("baseline", "solved")
NEEDS = ("gpu", "network")


@dataclass(frozen=True)
class AnchorRow:
    match: dict
    published: float | None = None
    spread: float | None = None
    expect: str | None = None
    source: str | None = None
    reference: str | None = None  # how our setting differs from the source's (the row's, else the anchor's)

    def matches(self, dotted: dict) -> bool:
        return all(dotted.get(k) == v for k, v in self.match.items())


@dataclass(frozen=True)
class Anchor:
    name: str
    source: str
    setting: str
    ours: str = ""
    needs: str | None = None
    metric: str | None = None
    reference: str | None = None  # how our setting differs, for every row that does not say its own
    rows: tuple[AnchorRow, ...] = field(default_factory=tuple)


def _number(value, what: str, low: float = -math.inf) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) or value < low:
        raise ConfigError(f"{what} must be a finite number" + (f" >= {low:g}" if low > -math.inf else "")
                          + f", got {value!r}")
    return float(value)


def _reference(value, where: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{where}: 'reference' must say how our setting differs from the source's (text), "
                          f"e.g. reference: another corpus (the Python manual, not Penn Treebank)")
    return " ".join(value.split())


def _row(spec, where: str, reference: str | None) -> AnchorRow:
    if not isinstance(spec, dict):
        raise ConfigError(f"{where} must be a mapping with 'published' or 'expect'")
    unknown = sorted(set(spec) - set(ROW_KEYS))
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r}; valid: {', '.join(ROW_KEYS)}")
    if ("published" in spec) == ("expect" in spec):
        raise ConfigError(f"{where} needs exactly one of 'published' (a number) or 'expect' "
                          f"({' or '.join(EXPECTS)})")
    if "expect" in spec and spec["expect"] not in EXPECTS:
        raise ConfigError(f"{where}: expect {spec['expect']!r}; valid: {', '.join(EXPECTS)}")
    match = spec.get("match", {})
    if not isinstance(match, dict):
        raise ConfigError(f"{where}: 'match' must map dotted settings to values, e.g. {{arch.name: gru}}")
    spread = spec.get("spread")
    return AnchorRow(
        match=match, expect=spec.get("expect"), source=spec.get("source"),
        reference=_reference(spec.get("reference"), where) or reference,
        published=None if "published" not in spec else _number(spec["published"], f"{where}: published"),
        spread=None if spread is None else _number(spread, f"{where}: spread", low=0.0))


def parse(spec, where: str) -> Anchor:
    """A document's ``anchor`` mapping -> Anchor; every problem is one line naming what is valid."""
    if not isinstance(spec, dict):
        raise ConfigError(f"{where}: 'anchor' must be a mapping with {', '.join(ANCHOR_KEYS)}")
    unknown = sorted(set(spec) - set(ANCHOR_KEYS))
    if unknown:
        raise ConfigError(f"{where}: unknown anchor key {unknown[0]!r}; valid: {', '.join(ANCHOR_KEYS)}")
    for key in ("name", "source", "setting"):
        if not isinstance(spec.get(key), str) or not spec[key].strip():
            raise ConfigError(f"{where}: anchor needs a '{key}' (text)")
    if spec.get("metric") is not None and not (isinstance(spec["metric"], str) and spec["metric"].isidentifier()):
        raise ConfigError(f"{where}: anchor metric must be the name of one of the task's extra metrics, e.g. bleu")
    if spec.get("needs") is not None and spec["needs"] not in NEEDS:
        raise ConfigError(f"{where}: anchor needs {spec['needs']!r}; valid: {', '.join(NEEDS)}")
    reference = _reference(spec.get("reference"), where)
    rows = spec.get("rows")
    if not isinstance(rows, list) or not rows:
        raise ConfigError(f"{where}: anchor needs a non-empty 'rows' list (one published number or claim each)")
    return Anchor(name=spec["name"].strip(), source=spec["source"].strip(), setting=spec["setting"].strip(),
                  ours=str(spec.get("ours", "")).strip(), needs=spec.get("needs"), metric=spec.get("metric"),
                  reference=reference,
                  rows=tuple(_row(r, f"{where}: anchor row {i + 1}", reference) for i, r in enumerate(rows)))
