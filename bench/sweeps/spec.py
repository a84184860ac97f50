"""Sweep specs: W&B sweep YAML documents -> lists of dotted overrides, validated before any work starts.

    python -c "from bench.sweeps.spec import expand_file; print(len(expand_file('sweeps/default.yaml')))"

A sweep file holds one or more YAML documents, each a W&B sweep config with only W&B keys, so any one of them
also works with ``wandb sweep`` for users with a server. Parameters are keyed by dotted path (``optim.lr``).
The one exception is ``anchor``: the published result a document reproduces (bench/sweeps/anchor.py), which
the W&B executor drops before handing the document to W&B.

- ``method: grid``: every combination of each parameter's ``value`` / ``values``, in file order.
- ``method: random``: ``run_cap`` runs drawn as W&B draws them: ``values`` (uniform, or weighted by
  ``probabilities``), ``value``, or a ``distribution`` with ``min`` / ``max`` (uniform, log_uniform_values,
  int_uniform, q_uniform with ``q``, categorical with ``values``; ``min`` / ``max`` alone mean int_uniform
  for two integers, uniform otherwise).

Seeds are the exception to W&B in random search: a ``seed`` parameter with ``values`` is not sampled but
crossed with every sampled config, so every config runs every seed and comparisons across configs are fair.
``run_cap`` keeps its W&B meaning, the total number of runs: ``run_cap: 12`` with ``seed: {values: [0, 1, 2]}``
draws 4 configs and runs each over the 3 seeds (``wandb sweep`` on the same file also runs 12, seeds drawn).

Draws are deterministic: the random generator is seeded from a hash of the document, so planning the same file
again gives the same runs (resume depends on it) and editing the document gives a new draw.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import random
from pathlib import Path

import yaml

from options import ConfigError

from . import anchor as anchors

METHODS = ("grid", "random")  # a tuned file (tune.py) also takes bayes
DISTRIBUTIONS = ("categorical", "constant", "int_uniform", "log_uniform_values", "q_uniform", "uniform")
# Every top-level key a W&B sweep config may hold: anything else would make `wandb sweep` reject the file.
WANDB_KEYS = ("command", "description", "early_terminate", "entity", "method", "metric", "name", "parameters",
              "program", "project", "run_cap")
RNNBENCH_KEYS = ("anchor", "confirm")  # ours, dropped before a document goes to W&B (confirm: tune.py)
# run_cap's upper bound: every run is drawn and resolved before the first trains (1000 in a few seconds; a million
# took over a minute before a word), and 1000 is ten times the largest sweep or study here (90 runs).
RUN_CAP_MAX = 1000
PARAM_KEYS = ("distribution", "max", "min", "probabilities", "q", "value", "values")


def load_documents(path: Path) -> list[dict]:
    path = Path(path)
    if path.is_dir():
        raise ConfigError(f"sweep file {str(path)!r} is a folder; give a YAML file such as sweeps/default.yaml")
    if not path.is_file():
        raise ConfigError(f"sweep file {str(path)!r} not found")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"sweep file {path}: not UTF-8 text (byte {exc.start}); a sweep file is YAML text") from None
    except OSError as exc:
        raise ConfigError(f"sweep file {path}: cannot be read ({exc.strerror or exc})") from None
    try:
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as exc:
        raise ConfigError(f"sweep file {path}: invalid YAML ({str(exc).splitlines()[0]})") from None
    if not docs:
        raise ConfigError(f"sweep file {path} is empty")
    return docs


def expand(doc: dict, where: str) -> list[dict]:
    """One W&B sweep document -> the list of its override dicts, in a stable order."""
    if not isinstance(doc, dict) or not isinstance(doc.get("parameters"), dict) or not doc["parameters"]:
        raise ConfigError(f"{where}: needs a non-empty 'parameters' mapping")
    unknown = sorted(set(doc) - set(WANDB_KEYS) - set(RNNBENCH_KEYS))
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r} (not a W&B sweep key); "
                          f"valid: {', '.join(WANDB_KEYS + RNNBENCH_KEYS)}")
    method = doc.get("method", "grid")
    if method not in METHODS:
        raise ConfigError(f"{where}: method {method!r} is not supported yet; valid: {', '.join(METHODS)}")
    for key, spec in doc["parameters"].items():
        _check_param(spec, f"{where}: parameter {key!r}", method)
    if "anchor" in doc:
        _check_matches(anchors.parse(doc["anchor"], where), doc["parameters"], where)
    return _grid(doc["parameters"]) if method == "grid" else _random(doc, where)


def _check_matches(anchor: anchors.Anchor, params: dict, where: str) -> None:
    """Every row's ``match`` names a parameter of the document and a value it takes: a typo would match no run,
    and the row would drop out of REPRODUCTION.md without a word."""
    for i, row in enumerate(anchor.rows):
        for key, value in row.match.items():
            if key not in params:
                raise ConfigError(f"{where}: anchor row {i + 1} matches {key!r}, not a parameter of the "
                                  f"document; valid: {', '.join(params)}")
            spec = params[key]  # a mapping with a values list, a value or a range: _check_param saw to it
            taken = spec["values"] if "values" in spec else [spec["value"]] if "value" in spec else None
            if taken is not None and value not in taken:
                raise ConfigError(f"{where}: anchor row {i + 1} matches {key}: {value!r}, a value the document "
                                  f"never sets; valid: {', '.join(map(repr, taken))}")
            if taken is None and not (isinstance(value, (int, float)) and spec.get("min", value) <= value
                                      <= spec.get("max", value)):
                raise ConfigError(f"{where}: anchor row {i + 1} matches {key}: {value!r}, outside the "
                                  f"document's range {spec.get('min')}..{spec.get('max')}")


def _check_param(spec, where: str, method: str) -> None:
    if not isinstance(spec, dict):
        raise ConfigError(f"{where} needs 'value' or a non-empty 'values' list, e.g. {{values: [1, 2]}}")
    unknown = sorted(set(spec) - set(PARAM_KEYS))
    if unknown:
        raise ConfigError(f"{where}: unknown key {unknown[0]!r}; valid: {', '.join(PARAM_KEYS)}")
    if "values" in spec and (not isinstance(spec["values"], list) or not spec["values"]):
        raise ConfigError(f"{where} needs 'value' or a non-empty 'values' list")
    if method == "grid":
        if "value" not in spec and "values" not in spec:
            raise ConfigError(f"{where} needs 'value' or a non-empty 'values' list "
                              "(distributions need method random)")
        return
    dist = _distribution(spec)
    if dist is None:
        raise ConfigError(f"{where} needs 'value', 'values' or a 'distribution' with min and max")
    if dist not in DISTRIBUTIONS:
        raise ConfigError(f"{where}: unknown distribution {dist!r}; valid: {', '.join(DISTRIBUTIONS)}")
    if dist == "constant":
        if "value" not in spec:
            raise ConfigError(f"{where}: distribution constant needs 'value'")
        return
    if dist == "categorical":
        if "values" not in spec:
            raise ConfigError(f"{where}: distribution categorical needs 'values'")
        _check_probabilities(spec, where)
        return
    _check_range(spec, dist, where)


def _check_probabilities(spec: dict, where: str) -> None:
    p = spec.get("probabilities")
    if p is None:
        return
    if (not isinstance(p, list) or len(p) != len(spec["values"])
            or not all(isinstance(x, (int, float)) and x >= 0 for x in p) or not math.isclose(sum(p), 1.0)):
        raise ConfigError(f"{where}: 'probabilities' must be one number >= 0 per value, summing to 1")


def _check_range(spec: dict, dist: str, where: str) -> None:
    if "min" not in spec or "max" not in spec:
        raise ConfigError(f"{where}: distribution {dist} needs 'min' and 'max'")
    lo, hi = spec["min"], spec["max"]
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (lo, hi)):
        raise ConfigError(f"{where}: 'min' and 'max' must be numbers, got {lo!r} and {hi!r}")
    if lo > hi:
        raise ConfigError(f"{where}: min {lo} > max {hi}")
    if dist == "int_uniform" and not (float(lo).is_integer() and float(hi).is_integer()):
        raise ConfigError(f"{where}: distribution int_uniform needs whole-number min and max")
    if dist == "log_uniform_values" and lo <= 0:
        raise ConfigError(f"{where}: distribution log_uniform_values needs min > 0, got {lo}")
    q = spec.get("q", 1)
    if dist == "q_uniform" and (not isinstance(q, (int, float)) or q <= 0):
        raise ConfigError(f"{where}: 'q' must be a number > 0, got {q!r}")


def _distribution(spec: dict) -> str | None:
    """W&B's inference: an explicit distribution, else categorical for values, int_uniform / uniform for
    a min-max range (int_uniform when both ends are integers); ``value`` is a constant."""
    if "distribution" in spec:
        return spec["distribution"]
    if "value" in spec:
        return "constant"
    if "values" in spec:
        return "categorical"
    if "min" in spec or "max" in spec:
        ints = all(isinstance(spec.get(k), int) and not isinstance(spec.get(k), bool) for k in ("min", "max"))
        return "int_uniform" if ints else "uniform"
    return None


def _grid(params: dict) -> list[dict]:
    keys = list(params)
    choices = [spec["values"] if "values" in spec else [spec["value"]] for spec in params.values()]
    return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*choices)]


def _random(doc: dict, where: str) -> list[dict]:
    cap = doc.get("run_cap")
    if cap is None:
        raise ConfigError(f"{where}: method random needs a top-level run_cap (the number of runs to draw)")
    if not isinstance(cap, int) or isinstance(cap, bool) or not 1 <= cap <= RUN_CAP_MAX:
        raise ConfigError(f"{where}: run_cap must be a whole number >= 1 and <= {RUN_CAP_MAX}, got {cap!r}")
    params = dict(doc["parameters"])
    seed_spec = params.get("seed", {})
    seeds = seed_spec["values"] if "values" in seed_spec and "distribution" not in seed_spec else None
    if seeds is not None:
        del params["seed"]
        if cap < len(seeds):
            raise ConfigError(f"{where}: run_cap {cap} is less than the {len(seeds)} seeds every sampled config "
                              "runs (run_cap counts runs, as in W&B)")
    rng = random.Random(_doc_seed(doc))
    n_configs = cap // len(seeds) if seeds is not None else cap
    configs = [{key: _draw(spec, rng) for key, spec in params.items()} for _ in range(n_configs)]
    if seeds is None:
        return configs
    return [{**config, "seed": seed} for config in configs for seed in seeds]


def _doc_seed(doc: dict) -> int:
    text = json.dumps(doc, sort_keys=True, default=str)
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")


def _draw(spec: dict, rng: random.Random):
    dist = _distribution(spec)
    if dist == "constant":
        return spec["value"]
    if dist == "categorical":
        return rng.choices(spec["values"], weights=spec.get("probabilities"))[0]
    lo, hi = spec["min"], spec["max"]
    if dist == "int_uniform":
        return rng.randint(int(lo), int(hi))
    if dist == "log_uniform_values":
        return math.exp(rng.uniform(math.log(lo), math.log(hi)))
    value = rng.uniform(lo, hi)
    if dist == "q_uniform":
        q = spec.get("q", 1)
        value = round(value / q) * q
        return int(value) if isinstance(q, int) and float(value).is_integer() else value
    return value


def anchored_documents(path: Path) -> list[tuple[int, anchors.Anchor, list[dict]]]:
    """(document number, its anchor, its override dicts) for every document of ``path`` that declares one."""
    out = []
    for i, doc in enumerate(load_documents(path)):
        if isinstance(doc, dict) and "anchor" in doc:
            where = f"{path} document {i + 1}"
            out.append((i + 1, anchors.parse(doc["anchor"], where), expand(doc, where)))
    return out


def anchored(root: Path) -> list[tuple[str, anchors.Anchor, list[dict]]]:
    """(``sweeps/<file> #<document>``, anchor, override sets) of every anchored document under ``root/sweeps``,
    in file-name order: what results/REPRODUCTION.md sets beside the records."""
    return [(f"sweeps/{path.name} #{doc}", anchor, overrides)
            for path in sorted((Path(root) / "sweeps").glob("*.yaml"))
            for doc, anchor, overrides in anchored_documents(path)]


def wandb_document(doc: dict) -> dict:
    """The document as W&B accepts it: without rnnbench's own keys."""
    return {k: v for k, v in doc.items() if k not in RNNBENCH_KEYS}


def expand_file(path: Path) -> list[tuple[int, dict]]:
    """Every (document number, overrides) of a sweep file, before resolution."""
    docs = load_documents(path)
    if any(isinstance(doc, dict) and "confirm" in doc for doc in docs):
        raise ConfigError(f"{path} is a tuned file (its documents have 'confirm'): its runs are drawn as its "
                          "studies go (bench/sweeps/tune.py), not planned; run it with `rnnbench sweep`")
    return [(i + 1, overrides) for i, doc in enumerate(docs)
            for overrides in expand(doc, f"{path} document {i + 1}")]
