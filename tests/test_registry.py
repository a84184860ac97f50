"""One registry mechanism (options/registry.py) behind every plug-in point, and the declarations it checks.

A task or an architecture that forgets a declaration is refused when it registers, with one line naming what
is missing, rather than failing later inside a run with a bare NotImplementedError.
"""

import subprocess
import sys

import pytest
import torch
from torch import nn

import architectures
import tasks
from architectures.attention import ATTENTION
from architectures.base import RecurrentCore
from architectures.config import CoreConfig
from architectures.registry import ARCHITECTURES, DECLARES, register
from architectures.vision import IMAGE_ENCODERS
from bench.run.models import KINDS
from bench.sweeps.executors import base as executors
from options import ConfigError
from options.registry import Registry, UnknownName
from tasks.base import TASKS, Task
from tasks.composed import ComposedTask


def test_one_mechanism_serves_every_plug_in_point():
    for registry in (TASKS, ARCHITECTURES, ATTENTION, IMAGE_ENCODERS, executors.EXECUTORS, KINDS):
        assert isinstance(registry, Registry) and registry.names()
    assert tasks.names() == TASKS.names() and architectures.names() == ARCHITECTURES.names()


def test_every_composed_task_names_a_registered_model_kind():
    for name in tasks.names():
        model = getattr(tasks.get(name), "model", None)
        assert model is None or model in KINDS, name
    used = {getattr(tasks.get(n), "model", None) for n in tasks.names()}
    assert set(KINDS.names()) <= used, "a model kind no task uses"


def test_duplicates_are_refused_and_a_typo_is_one_line_listing_the_names():
    r = Registry("widget")
    r.register("b")(int)
    r.add("a", float)
    with pytest.raises(ValueError, match="^widget 'a' is already registered$"):
        r.add("a", str)
    with pytest.raises(UnknownName) as e:
        r.get("c")
    assert str(e.value) == "unknown widget 'c'; valid: a, b"
    assert isinstance(e.value, KeyError) and isinstance(e.value, ConfigError)  # the CLI prints it as one line
    assert r["b"] is int and "a" in r and r.items() == [("a", float), ("b", int)]


def test_names_found_before_import_are_loaded_on_first_use():
    loaded = []
    r = Registry("plug-in", find=lambda: ["lazy"], load=lambda name: loaded.append(r.add(name, name.upper())))
    assert r.names() == ["lazy"] and loaded == []
    assert r.get("lazy") == "LAZY" and loaded == ["LAZY"]


def test_the_registry_imports_no_torch():
    code = "import sys, options.registry; print(sorted(m for m in ('torch', 'lightning') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# ---- architectures: version, gate_names and cell ------------------------------------------------------------
def _core(without: str) -> type:
    body = {"fused_cls": nn.RNN, "version": "1", "gate_names": ("",),
            "cell": lambda self, layer, x_proj, h, direction=0: torch.tanh(x_proj)}
    return type("Probe", (RecurrentCore,), {k: v for k, v in body.items() if k != without})


@pytest.mark.parametrize("missing", DECLARES)
def test_an_architecture_without_a_declaration_is_refused_when_it_registers(missing):
    with pytest.raises(ValueError) as e:
        register("probe", _core(without=missing), CoreConfig)
    assert str(e.value) == f"architecture 'probe' does not declare {missing}"
    assert "probe" not in architectures.names()


def test_every_architecture_declares_its_version():
    for name in architectures.names():
        assert isinstance(architectures.entry(name).core.version, str), name


# ---- tasks: what each contract lists in ``declares`` ----------------------------------------------------------
def _task(contract: type, without: str) -> type:
    body = {"name": "probe", "version": "1", "shape": "many-to-one", "metric_name": "acc", "metric_mode": "max",
            "model": "classify", "input_size": 1, "output_size": 2, "seq_len": 3, "baseline": 0.5}
    methods = ("loss", "make_metric", "make_splits", "sizes", "score")
    body |= {m: lambda self, *a: None for m in methods}
    return type("Probe", (contract,), {k: v for k, v in body.items() if k != without})


@pytest.mark.parametrize(("contract", "missing"), [(c, m) for c in (Task, ComposedTask) for m in c.declares])
def test_a_task_without_a_declaration_is_refused_when_it_registers(contract, missing):
    with pytest.raises(ValueError) as e:
        tasks.register(_task(contract, without=missing))
    label = "Probe" if missing == "name" else "probe"
    assert str(e.value) == f"task {label!r} does not declare {missing}"
    assert "probe" not in tasks.names()


def test_a_task_with_an_unknown_metric_direction_is_refused():
    cls = _task(Task, without="")
    cls.metric_mode = "up"
    with pytest.raises(ValueError, match="^task 'probe' has metric_mode 'up'; valid: min, max$"):
        tasks.register(cls)
    assert "probe" not in tasks.names()
