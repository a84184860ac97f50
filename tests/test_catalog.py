"""`rnnbench list` reads the registered names from the sources: the same names the imported registries hold."""

import subprocess
import sys

import architectures
import tasks
from bench import catalog


def test_the_catalog_names_what_the_registries_hold():
    assert catalog.task_names() == tasks.names()
    assert catalog.architecture_names() == architectures.names()


def test_list_imports_neither_torch_nor_lightning():
    code = ("import sys; from bench.cli import main; main(['list']); "
            "print('heavy:', sorted(m for m in ('torch', 'lightning') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert f"tasks: {', '.join(tasks.names())}\n" in out
    assert f"architectures: {', '.join(architectures.names())}\n" in out
    assert "heavy: []" in out
