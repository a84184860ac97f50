"""Bad input of every kind (CLI values, sweep files, files on disk): one line, exit 2, nothing written.

In-process through ``bench.cli.main``, so each case costs milliseconds; ``python -m dev.bad_input`` runs the
full table as real processes. Cases already in test_cli.py and test_sweep.py are not repeated here.
"""

import os
import shutil
import zipfile
from pathlib import Path

import pytest
import torch

import tasks
from architectures.attention import ATTENTION
from architectures.vision import IMAGE_ENCODERS, RESNETS
from bench import cli
from bench.run.config import resolve
from options import ConfigError

ADDING = ["run", "--task", "adding", "--arch", "gru", "--wandb", "disabled"]
CHARLM = ["run", "--task", "charlm", "--arch", "lstm", "--wandb", "disabled"]
TRANSLATE = ["run", "--task", "translate", "--arch", "gru", "--wandb", "disabled"]
CAPTION = ["run", "--task", "caption", "--arch", "gru", "--wandb", "disabled"]  # grey digit strips by default
VQA = ["run", "--task", "vqa", "--arch", "gru", "--wandb", "disabled"]  # RGB images
SEVEN = resolve({"task.name": "adding", "arch.name": "gru", "seed": 7})  # ADDING's run at --seed 7
RUN = f"{SEVEN.name}__{SEVEN.run_id}"  # its checkpoint folder
GRID = "method: grid\nparameters:\n  task.name: {value: adding}\n  arch.name: {value: gru}\n"
ANCHOR = "anchor: {{name: A, source: S, setting: X, {metric}rows: [{{match: {match}, published: 0.5}}]}}\n"


def refused(capsys, argv: list[str]) -> str:
    """The one stderr line of a refused command (exit 2)."""
    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    err = capsys.readouterr().err
    assert exc.value.code == 2, err
    assert err.count("\n") == 1 and err.startswith("rnnbench: error: "), err
    return err


def listing(folder):
    return {p: (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")}


@pytest.mark.parametrize("argv, message", [
    ([*ADDING, "--arch.hidden_size", "true"], "arch.hidden_size: cannot read 'true' as int (true/false are not numbers)"),
    ([*ADDING, "--arch.hidden_size", "8.5"], "arch.hidden_size: cannot read '8.5' as int"),
    ([*ADDING, "--task.seq_len", "0"], "task.seq_len must be >= 2, got 0"),
    ([*CHARLM, "--task.seq_len", "-5"], "task.seq_len must be >= 1, got -5"),
    ([*ADDING, "--optim.lr", "nan"], "optim.lr: cannot read 'nan' as float (not a finite number)"),
    ([*ADDING, "--optim.clip", "inf"], "optim.clip: cannot read 'inf' as float (not a finite number)"),
    ([*ADDING, "--arch.dropout", "1.5"], "arch.dropout must be >= 0 and < 1, got 1.5"),
    ([*ADDING, "--train.diag", "maybe"], "train.diag: cannot read 'maybe' as bool"),
    ([*ADDING, "--train.accelerator", "tpu"], "unknown train.accelerator 'tpu'; valid: auto, cpu, cuda, gpu"),
    ([*ADDING, "--train.strategy", "fsdp"], "unknown train.strategy 'fsdp'; valid: auto, ddp, ddp_spawn"),
    ([*ADDING, "--seed", "4294967296"], "argument --seed: must be >= 0 and <= 4294967295, got 4294967296"),
    ([*ADDING, "--threads", "100000000000000000000"],
     "argument --threads: must be >= 1 and <= 1024, got 100000000000000000000"),
    ([*ADDING, "--threads", "two"], "argument --threads: must be a whole number (>= 1; <= 1024), got 'two'"),
    (["sweep", "sweeps/tiny.yaml", "--workers", "0"], "argument --workers: must be >= 1 and <= 256, got 0"),
    (["sweep", "sweeps/tiny.yaml", "--runs-per-gpu", "65"], "argument --runs-per-gpu: must be >= 1 and <= 64, got 65"),
    (["sample", "x", "--temperature", "1e-300"], "argument --temperature: must be >= 0.01 and <= 100, got 1e-300"),
    (["sample", "x", "--temperature", "nan"],
     "argument --temperature: must be a finite number (>= 0.01; <= 100), got 'nan'"),
    (["sample", "x", "--seed", "-1"], "argument --seed: must be >= 0 and <= 4294967295, got -1"),
    (["sample", "x", "--seed", str(2**64)], f"argument --seed: must be >= 0 and <= 4294967295, got {2**64}"),
    (["sample", "x", "--length", "1000000000"], "argument --length: must be >= 1 and <= 100000, got 1000000000"),
    (["decode", "x", "--n", "0"], "argument --n: must be >= 1 and <= 10000, got 0"),
    (["decode", "x", "--beam", "0"], "argument --beam: must be >= 1 and <= 64, got 0"),
    (["decode", "x", "--beam", "100000"], "argument --beam: must be >= 1 and <= 64, got 100000"),  # before a load
    (["units", "x", "--layer", "-1"], "argument --layer: must be >= 0 and <= 1024, got -1"),
    (["units", "x", "--top", "0"], "argument --top: must be >= 1 and <= 10000, got 0"),
    ([*ADDING, "--task.data_seed", "100000000000000000000"], "task.data_seed must be >= 0 and <= 4294967295"),
    ([*ADDING, "--task.n_train", "10"], "task.batch_size (64) is larger than the 10 training examples"),
    (["run", "--task", "sdigits", "--arch", "gru", "--task.n_val", "1000", "--task.n_test", "1000"],
     "task.n_val + task.n_test must be < 1797 (the images scikit-learn ships), got 1000 + 1000"),
    ([*ADDING, "--arch.hidden_size", "2000000"], "needs about"),
    ([*ADDING, "--train.accelerator", "gpu", "--train.devices", "64"], "train.devices 64: this machine has"),
    ([*CHARLM, "--task.max_chars", "500"], "task.corpus pydoc: 500 characters (task.max_chars) are too few"),
    ([*ADDING, "--model.size", "3"], "unknown option model.size: task adding trains a core and a linear head"),
    (["run", "--task", "bogus", "--arch", "gru"], f"unknown task 'bogus'; valid: {', '.join(tasks.names())}"),
    ([*TRANSLATE, "--model.attention", "dot"], f"unknown model.attention 'dot'; valid: {', '.join(ATTENTION.names())}"),
    ([*TRANSLATE, "--model.beam", "0"], "model.beam must be >= 1 and <= 64, got 0"),
    ([*CAPTION, "--model.image_encoder", "resnet7"],
     f"unknown model.image_encoder 'resnet7'; valid: {', '.join(IMAGE_ENCODERS.names())}"),
    ([*CAPTION, "--model.image_encoder", "cnn", "--model.pretrained", "true"],
     "model.pretrained: image encoder 'cnn' is trained from scratch; pretrained weights exist for: resnet18"),
    ([*CAPTION, "--task.source", "coco"], "task.coco_root is empty; task.source coco needs the COCO"),
    ([*CAPTION, "--task.source", "coco", "--task.coco_root", "/nowhere", "--task.coco_annotations", "/nowhere.json"],
     "task.coco_root '/nowhere' is not a"),
    ([*CAPTION, "--task.source", "flickr8k", "--task.hf_path", "/nowhere/flickr8k"],
     "task.hf_path '/nowhere/flickr8k' does not exist"),
    (["run", "--task", "sentiment", "--arch", "gru", "--task.source", "hf", "--task.hf_path", "./missing"],
     "task.hf_path './missing' does not exist"),
    ([*ADDING, "--optim.lr"], "option --optim.lr needs a value"),
    ([*ADDING, "extra"], "unexpected argument 'extra'"),
    (["sweep", "sweeps/tiny.yaml", "--fast"], "unrecognized arguments: --fast"),
    (["leaderboard"], "no run records under"),
])
def test_bad_values_and_flags(capsys, tmp_path, argv, message):
    err = refused(capsys, [*argv, "--out", str(tmp_path / "out")])
    assert message in err
    assert not (tmp_path / "out").exists()


def test_every_number_a_command_takes_declares_its_range_in_its_help():
    parser = cli.build_parser()
    commands = next(a for a in parser._actions if a.dest == "command").choices
    numbers = 0
    for name, command in commands.items():
        for action in command._actions:
            if action.type is not None and action.type not in (str, cli.Path):
                numbers += 1
                assert hasattr(action.type, "span") and action.type.span in action.help, (name, action.dest)
    assert numbers >= 12


@pytest.mark.parametrize("content, message", [
    (bytes(range(256)) * 8, "not UTF-8 text"),
    (b"", "empty file"),
])
def test_a_corpus_that_is_not_text_is_refused_before_any_work(capsys, tmp_path, content, message):
    corpus = tmp_path / "corpus.txt"
    corpus.write_bytes(content)
    err = refused(capsys, [*CHARLM, "--task.corpus", str(corpus), "--out", str(tmp_path / "out")])
    assert f"task.corpus {corpus}: {message}" in err
    assert not (tmp_path / "out").exists()


def test_an_out_folder_that_is_a_file_is_refused_before_training(capsys, tmp_path):
    (tmp_path / "f").write_text("a file")
    err = refused(capsys, [*ADDING, "--out", str(tmp_path / "f")])
    assert f"{tmp_path / 'f'} is a file, not a folder" in err
    err = refused(capsys, ["sweep", "sweeps/tiny.yaml", "--out", str(tmp_path / "f" / "out")])
    assert "is a file, not a folder" in err


def read_only(monkeypatch, name: str) -> None:
    """Folders called ``name`` read as read-only (chmod alone cannot show it: tests may run as root)."""
    real = os.access
    monkeypatch.setattr(os, "access", lambda path, mode: Path(path).name != name and real(path, mode))


@pytest.mark.parametrize("damage, message", [
    (lambda out, mp: (out / "runs").symlink_to("runs"), "{out}/runs does not resolve (a symlink loop)"),
    (lambda out, mp: (out / "checkpoints").symlink_to(out / "gone"), "{out}/checkpoints is a broken link"),
    (lambda out, mp: (out / "runs").mkdir() or read_only(mp, "runs"), "cannot write in {out}/runs"),
    (lambda out, mp: (out / "checkpoints").mkdir() or (out / "checkpoints" / RUN).write_text(""),
     "{out}/checkpoints/" + RUN + " is a file, not a folder"),
])
def test_a_folder_a_run_writes_that_cannot_take_it_is_refused_before_training(capsys, tmp_path, monkeypatch,
                                                                              damage, message):
    out = tmp_path / "out"
    out.mkdir()
    damage(out, monkeypatch)
    before = {p: p.lstat().st_mtime_ns for p in out.rglob("*")}  # lstat: links as they are
    err = refused(capsys, [*ADDING, "--out", str(out), "--seed", "7"])
    assert f"--out {out}: {message.format(out=out)}" in err
    assert {p: p.lstat().st_mtime_ns for p in out.rglob("*")} == before  # nothing trained, nothing half-written


def test_a_sweep_checks_its_folders_once_before_planning(capsys, tmp_path, monkeypatch):
    out = tmp_path / "out"
    (out / "locks").mkdir(parents=True)
    read_only(monkeypatch, "locks")
    err = refused(capsys, ["sweep", "sweeps/tiny.yaml", "--out", str(out), "--wandb", "disabled"])
    assert f"--out {out}: cannot write in {out}/locks" in err
    assert sorted(p.name for p in out.iterdir()) == ["locks"]


@pytest.mark.parametrize("text, message", [
    (b"method: grid\nparameters:\n  task.name: {value: \xff}\n", "not UTF-8 text (byte 46)"),
    ("method: grid\nparameters: [unclosed\n", "invalid YAML"),
    ("", "is empty"),
    ("- task.name\n- arch.name\n", "document 1: needs a non-empty 'parameters' mapping"),
    (GRID + "  arch.hidden_size: {value: true}\n",
     "document 1: arch.hidden_size: cannot read True as int (true/false are not numbers)"),
    (GRID + "  task.seq_len: {values: [10, 0]}\n", "document 1: task.seq_len must be >= 2, got 0"),
    (GRID + "---\n" + GRID.replace("adding", "addng"), f"document 2: unknown task 'addng'; valid: {', '.join(tasks.names())}"),
    (GRID.replace("grid", "random") + "run_cap: many\n", "run_cap must be a whole number >= 1 and <= 1000, got 'many'"),
    (GRID.replace("grid", "random") + "run_cap: 1000000\n", "run_cap must be a whole number >= 1 and <= 1000, got 1000000"),
    (GRID + ANCHOR.format(metric="", match="{arch.name: gur}"),
     "document 1: anchor row 1 matches arch.name: 'gur', a value the document never sets; valid: 'gru'"),
    (GRID + ANCHOR.format(metric="metric: bleu, ", match="{}"),
     "document 1: anchor metric 'bleu' is not one task adding reports; valid: none (or leave it out for the "
     "task's metric, mse)"),
])
def test_bad_sweep_files(capsys, tmp_path, text, message):
    spec = tmp_path / "s.yaml"
    spec.write_bytes(text if isinstance(text, bytes) else text.encode())
    err = refused(capsys, ["sweep", str(spec), "--out", str(tmp_path / "out")])
    assert message in err and str(spec) in err
    assert not (tmp_path / "out").exists()


def test_a_folder_is_not_a_sweep_file(capsys, tmp_path):
    assert "is a folder" in refused(capsys, ["sweep", str(tmp_path), "--out", str(tmp_path / "out")])


def _cut(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _zip(path):  # a complete zip archive that torch cannot read
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("x/data.pkl", "garbage")


def _nan(path):  # what flipped bytes inside an intact zip load as: a readable checkpoint with NaN weights
    saved = torch.load(path, map_location="cpu", weights_only=False)
    weight = next(k for k, v in saved["state_dict"].items() if v.is_floating_point())
    saved["state_dict"][weight][0] = float("nan")
    torch.save(saved, path)


def _edit(path, old, new):
    path.write_text(path.read_text().replace(old, new))


@pytest.mark.parametrize("command, extra, damage, message", [
    ("sample", ["--temperature", "0"], None, "argument --temperature: must be >= 0.01 and <= 100, got 0.0"),
    ("sample", ["--prime", ""], None, "--prime must not be empty"),
    ("sample", [], lambda r, c: _cut(c), "cut short, or not a checkpoint"),
    ("units", [], lambda r, c: c.write_text("hello"), "cut short, or not a checkpoint"),
    ("units", [], lambda r, c: _zip(c), "damaged, not a readable checkpoint (RuntimeError: "),
    ("units", [], lambda r, c: _nan(c), "holds non-finite values (NaN or inf)"),
    ("sample", [], lambda r, c: _nan(c), "holds non-finite values (NaN or inf)"),
    ("units", [], lambda r, c: _cut(r), "cut short (line"),
    ("units", [], lambda r, c: _edit(r, '"task": "charlm"', '"task": "charlm2"'), "unknown task 'charlm2'; valid:"),
    ("units", [], lambda r, c: _edit(r, '"corpus": "pydoc"', '"corpus": "gone.txt"'),
     "its config no longer resolves: task.corpus 'gone.txt' is not a file"),
    ("sample", [], lambda r, c: _edit(r, '"metric": {', '"metric": 3, "was": {'),
     "'metric' should hold a mapping, not 3"),
])
def test_damaged_runs_and_bad_text_options(capsys, tmp_path, lm_run, command, extra, damage, message):
    rec, source = lm_run
    out = tmp_path / "out"
    shutil.copytree(source, out)
    record, ckpt = out / "runs" / f"{rec['name']}__{rec['id']}.json", out / rec["checkpoint"]
    if damage:
        damage(record, ckpt)
        named = ckpt if "checkpoint" in message or "non-finite" in message else record
    before = listing(out)
    err = refused(capsys, [command, rec["name"], "--out", str(out), *extra])  # W&B: off in conftest
    assert message in err and (damage is None or str(named) in err)
    assert listing(out) == before


def test_pretrained_weights_missing_from_the_torch_cache_are_one_line(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    err = refused(capsys, [*VQA, "--model.image_encoder", "resnet18", "--model.pretrained", "true",
                           "--out", str(tmp_path / "out")])
    assert "model.pretrained: pretrained resnet18 weights are not in the torch cache: " in err
    assert str(tmp_path / "torch") in err and not (tmp_path / "out").exists()


def test_damaged_pretrained_weights_are_one_line_and_a_question_only_model_needs_none(capsys, tmp_path,
                                                                                      monkeypatch):
    from torchvision import models

    from architectures.vision import _cache_path

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    vqa = ["run", "--task", "vqa", "--arch", "gru", "--wandb", "disabled", "--model.image_encoder", "resnet18",
           "--model.pretrained", "true", "--out", str(tmp_path / "out")]
    path = _cache_path(models.get_model_weights("resnet18").DEFAULT.url)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"PK\x03\x04 not the weights")
    err = refused(capsys, vqa)
    assert f"model.pretrained: pretrained resnet18 weights in the torch cache are damaged: {path}" in err
    path.unlink()
    cfg = resolve({"task": "vqa", "arch": "gru", "model.image_encoder": "resnet18", "model.pretrained": True,
                   "model.image": False}, check_machine=False)
    assert cfg.model.pretrained and not cfg.model.image  # no weights cached, and none asked for


@pytest.mark.parametrize("depth", RESNETS)
def test_a_pretrained_rgb_backbone_on_grey_images_is_one_line_before_any_work(capsys, tmp_path, monkeypatch, depth):
    """Refused before the weights are even looked for: fetching them would not help."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    err = refused(capsys, [*CAPTION, "--model.image_encoder", f"resnet{depth}", "--model.pretrained", "true",
                           "--out", str(tmp_path / "out")])
    assert (f"model.pretrained: pretrained resnet{depth} reads 3-channel (RGB) images, but this task's images have 1;"
            f" leave pretrained off (a random resnet{depth} reads 1) or use RGB images") in err
    assert not (tmp_path / "out").exists()
    grey = resolve({"task": "caption", "arch": "gru", "model.image_encoder": f"resnet{depth}"}, check_machine=False)
    assert not grey.model.pretrained  # a random backbone takes the grey strips


def test_cached_pretrained_weights_on_rgb_images_pass_the_checks(tmp_path, monkeypatch):
    from torchvision import models

    from architectures.vision import _cache_path

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    path = _cache_path(models.get_model_weights("resnet18").DEFAULT.url)
    path.parent.mkdir(parents=True)
    torch.save(models.resnet18(weights=None).state_dict(), path)  # what the cache holds, less the training
    cfg = resolve({"task": "vqa", "arch": "gru", "model.image_encoder": "resnet18", "model.pretrained": True},
                  check_machine=False)
    assert cfg.model.pretrained
    with pytest.raises(ConfigError, match="but this task's images have 1"):  # the same cache, grey images
        resolve({"task": "caption", "arch": "gru", "model.image_encoder": "resnet18", "model.pretrained": True},
                check_machine=False)
