"""Config errors: one line naming the valid choices, exit code 2, nothing written."""

import subprocess
import sys

import pytest

import architectures
import tasks
from bench.cli import main
from bench.run.config import resolve
from options import ConfigError


def run_main(capsys, *argv):
    with pytest.raises(SystemExit) as exc:
        main(list(argv))
    err = capsys.readouterr().err
    return exc.value.code, err


@pytest.mark.parametrize("argv, message", [
    (["run", "--task", "adding", "--arch", "lstmm"],
     f"unknown architecture 'lstmm'; valid: {', '.join(architectures.names())}"),
    (["run", "--task", "addng", "--arch", "lstm"], f"unknown task 'addng'; valid: {', '.join(tasks.names())}"),
    (["run", "--task", "adding", "--arch", "lstm", "--optim.lrr", "1"], "unknown option optim.lrr; valid:"),
    (["run", "--task", "adding", "--arch", "lstm", "--task.delay", "3"], "unknown option task.delay; valid:"),
    (["run", "--task", "adding", "--arch", "lstm", "--arch.hidden_size", "x"], "cannot read 'x'"),
    (["run", "--task", "adding", "--arch", "lstm", "--optim.lr", "-1"], "optim.lr must be > 0"),
    (["run", "--task", "adding", "--arch", "lstm", "--optim.name", "adagrad"], "valid: adam, rmsprop, sgd"),
    (["run", "--task", "adding", "--arch", "lstm", "--wandb", "maybe"], "valid: auto, online, offline, disabled"),
    (["sweep", "no/such.yaml"], "sweep file 'no/such.yaml' not found"),
    (["sweep", "sweeps/tiny.yaml", "--workers", "0"], "--workers: must be >= 1 and <= 256, got 0"),
    (["run", "--task", "adding", "--arch", "gru", "--threads", "x"], "--threads: must be a whole number (>= 1; <= 1024), got 'x'"),
    (["run", "--task", "smnist", "--arch", "gru", "--task.root", "/no/such", "--task.download", "false"],
     "MNIST not found under /no/such/MNIST/raw (missing train-images-idx3-ubyte) and task.download is false"),
])
def test_bad_input_is_one_line_and_exit_2(capsys, tmp_path, argv, message):
    code, err = run_main(capsys, *argv, *(["--out", str(tmp_path / "out")]))
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("rnnbench: error: ") and message in err
    assert not (tmp_path / "out").exists()


def test_bad_sweep_document_fails_before_any_run(capsys, tmp_path):
    spec = tmp_path / "s.yaml"
    spec.write_text("method: grid\nparameters:\n  task.name: {value: adding}\n"
                    "  arch.name: {values: [gru, lstmm]}\n  seed: {values: [0]}\n")
    code, err = run_main(capsys, "sweep", str(spec), "--out", str(tmp_path / "out"))
    assert code == 2 and "document 1: unknown architecture 'lstmm'" in err
    assert not (tmp_path / "out").exists()


def test_sweep_method_and_parameter_errors(tmp_path):
    from bench.sweeps.plan import plan

    spec = tmp_path / "s.yaml"
    spec.write_text("method: bayes\nparameters:\n  task.name: {value: adding}\n")
    with pytest.raises(ConfigError, match="method 'bayes' is not supported yet; valid: grid"):
        plan(spec)
    spec.write_text("parameters:\n  task.name: adding\n")
    with pytest.raises(ConfigError, match="needs 'value' or a non-empty 'values' list"):
        plan(spec)


def test_short_and_dotted_names_resolve_to_the_same_run():
    a = resolve({"task": "adding", "arch": "gru", "optim.lr": "0.003", "seed": "1"})
    b = resolve({"task.name": "adding", "arch.name": "gru", "optim.lr": 0.003, "seed": 1})
    assert a == b and a.run_id == b.run_id and a.name == "adding__gru__s1"
    assert resolve({"task": "adding", "arch": "gru", "arch.layers": 2}).name == "adding__gru-2l__s0"


def test_help_documents_every_field():
    out = subprocess.run([sys.executable, "-m", "bench", "run", "--help"], capture_output=True, text=True)
    assert out.returncode == 0
    for field in ("optim.*", "train.*", "task.* for --task copy", "arch.* for --arch lstm", "forget_bias",
                  "copy_len", "max_steps", "recurrent_init"):
        assert field in out.stdout


def test_cli_process_exits_2_with_one_line():
    out = subprocess.run([sys.executable, "-m", "bench", "run", "--task", "adding", "--arch", "lstmm"],
                         capture_output=True, text=True)
    assert out.returncode == 2
    valid = ", ".join(architectures.names())
    assert out.stderr == f"rnnbench: error: unknown architecture 'lstmm'; valid: {valid}\n"
