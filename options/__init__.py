"""Declared config fields: every option of a task, an architecture or a run says here what it is.

    from options import opt
    seq_len: int = opt(100, "sequence length T", ge=2)
    tbptt: int = opt(50, "truncated BPTT chunk (0: full)", ge=0, divides="seq_len")
    accelerator: str = opt("auto", "Lightning accelerator", choices=("auto", "cpu", "gpu"), identity=False)

One declaration carries everything the suite needs to know about a field, so nothing is listed twice:

- ``help``: its line of ``rnnbench run --help``;
- its range: ``ge`` / ``gt`` / ``le`` / ``lt``, ``choices``, and ``divides`` (the name of a sibling field this
  value must divide; 0 is exempt, meaning "off", when ``ge=0`` allows it); checked by ``check`` for the CLI
  and sweep files alike, with one line naming the field, the value and what is valid;
- ``identity``: whether it is part of a run's identity (its run id). Where a run executes (accelerator,
  strategy) does not change what it computes;
- ``question``: whether it is part of the question a leaderboard row answers (default: same as identity);
- ``omit_default``: the field was added after records existed: a config shows it only when it differs from its
  default, so older records keep their run ids and leaderboard rows.

Values are read by ``coerce`` from CLI strings or YAML values. A bool is not an integer here (YAML ``true``
where a size is expected is an error), and non-finite floats are refused. Plain dataclasses and the standard
library only: tasks, architectures and the leaderboard all import this without torch.
"""

from __future__ import annotations

import math
from dataclasses import MISSING, Field, field, fields
from typing import Any

RANGE_KEYS = ("ge", "gt", "le", "lt", "choices", "divides")
SEED_MAX = 2**32 - 1  # numpy's and Lightning's seed range: a larger seed fails only when the run starts
# the widest beam a decoder declares (model.beam, bench/run/models.py): here, without torch, so that the command
# line refuses a wider --beam before a checkpoint loads
MAX_BEAM = 64


class ConfigError(ValueError):
    """A user-caused configuration problem; the CLI prints it as one line and exits 2."""


def opt(default, help: str, *, identity: bool = True, question: bool | None = None,  # noqa: A002
        omit_default: bool = False, **checks: Any):
    """A dataclass field with its help line, range and role (see the module docstring)."""
    unknown = sorted(set(checks) - set(RANGE_KEYS))
    if unknown:
        raise TypeError(f"opt() got unknown check {unknown[0]!r}; valid: {', '.join(RANGE_KEYS)}")
    meta = {"help": help, "identity": identity, "question": identity if question is None else question,
            "omit_default": omit_default, **checks}
    return field(default=default, metadata=meta)


def role(f: Field, key: str) -> bool:
    """``identity``, ``question`` or ``omit_default`` of a field (fields declared without opt: the defaults)."""
    defaults = {"identity": True, "question": f.metadata.get("identity", True), "omit_default": False}
    return f.metadata.get(key, defaults[key])


def default_of(f: Field) -> Any:
    return f.default if f.default is not MISSING else None


def _kinds(annotation: Any) -> tuple[list[str], bool]:
    """``"int"``, ``"float | None"`` ... -> (["int"], False), (["float"], True)."""
    parts = [a.strip() for a in str(annotation).split("|")]
    return [a for a in parts if a in ("int", "float", "str", "bool")], "None" in parts


def _as(kind: str, value: Any) -> Any:
    """``value`` as ``kind``, or raise ValueError. Bools are never numbers and numbers never bools."""
    if kind == "bool":
        if isinstance(value, bool):
            return value
        text = str(value).lower() if isinstance(value, str) else None
        if text in ("true", "yes", "1"):
            return True
        if text in ("false", "no", "0"):
            return False
        raise ValueError
    if isinstance(value, bool) or (kind != "str" and not isinstance(value, (int, float, str))):
        raise ValueError
    if kind == "str":
        if not isinstance(value, str):
            raise ValueError
        return value
    if kind == "int":
        if isinstance(value, float):
            if not value.is_integer():
                raise ValueError
            return int(value)
        text = str(value).strip()
        if not text.lstrip("+-").isdigit():
            raise ValueError
        return int(text)
    number = float(value)
    if not math.isfinite(number):
        raise ValueError
    return number


def coerce(value: Any, annotation: Any, path: str) -> Any:
    """Convert a CLI/YAML value to the field's type (its annotation as a string); one line if it cannot."""
    kinds, optional = _kinds(annotation)
    if optional and (value is None or (isinstance(value, str) and value.lower() in ("none", "null"))):
        return None
    for kind in kinds:
        try:
            return _as(kind, value)
        except (TypeError, ValueError, OverflowError):
            continue
    what = " or ".join(kinds + (["none"] if optional else []))
    numeric = {"int", "float"} & set(kinds)
    raise ConfigError(f"{path}: cannot read {value!r} as {what}{_hint(value) if numeric else ''}")


def _hint(value: Any) -> str:
    """Why a value that looks like a number is not one here (YAML true, a CLI 'true', nan, inf)."""
    text = str(value).strip().lower()
    if isinstance(value, bool) or text in ("true", "false"):
        return " (true/false are not numbers)"
    try:
        return "" if math.isfinite(float(text)) else " (not a finite number)"
    except ValueError:
        return ""


BOUNDS = (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<"))
_HOLDS = {"ge": lambda v, b: v >= b, "gt": lambda v, b: v > b, "le": lambda v, b: v <= b, "lt": lambda v, b: v < b}


def out_of_range(name: str, value: Any, bounds: dict) -> str | None:
    """``<name> must be >= 1 and <= 64, got 0`` when ``value`` is outside ``bounds`` (any of ge, gt, le, lt:
    a field's metadata, or a command-line option's declared range), else None."""
    if all(_HOLDS[key](value, bounds[key]) for key, _ in BOUNDS if key in bounds):
        return None
    return f"{name} must be {' and '.join(f'{sign} {bounds[key]}' for key, sign in BOUNDS if key in bounds)}, got {value}"


def _problem(f: Field, value: Any, sibling: dict[str, Any], section: str) -> str | None:
    m = f.metadata
    if value is None:
        return None
    if "choices" in m and value not in m["choices"]:
        return f"unknown {section}.{f.name} {value!r}; valid: {', '.join(map(str, m['choices']))}"
    problem = out_of_range(f"{section}.{f.name}", value, m)
    if problem:
        return problem
    if "divides" in m and value != 0:
        whole = sibling[m["divides"]]
        if whole % value:
            zero = m.get("ge") == 0
            divisors = ([0] if zero else []) + [k for k in range(1, whole + 1) if whole % k == 0]
            return (f"{section}.{f.name} must divide {section}.{m['divides']} ({whole}){' or be 0' if zero else ''}, got {value}; "
                    f"valid: {', '.join(map(str, divisors))}")
    return None


def check(instance: Any, section: str) -> None:
    """Every declared range of a config dataclass instance; the first violation is one line."""
    values = {f.name: getattr(instance, f.name) for f in fields(instance)}
    for f in fields(instance):
        problem = _problem(f, values[f.name], values, section)
        if problem:
            raise ConfigError(problem)


def describe_range(f: Field) -> str:
    """`` (>= 1)``, `` (one of: a, b)``: the declared range, for ``--help``."""
    m = f.metadata
    parts = [f"{sign} {m[key]}" for key, sign in BOUNDS if key in m]
    if "choices" in m:
        parts.append("one of: " + ", ".join(map(str, m["choices"])))
    if "divides" in m:
        parts.append(f"divides {m['divides']}")
    return f" ({'; '.join(parts)})" if parts else ""
