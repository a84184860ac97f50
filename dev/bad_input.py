"""Every class of bad input a user can give the suite, each run as the user would run it, in a table.

    python -m dev.bad_input [--markdown] [--jobs 3] [--only WORD] [--keep DIR]

Each case writes its files into a fresh folder, runs ``python -m bench ...`` there as a subprocess (W&B
disabled) and records the exit status, stderr and whether anything in the folder changed (a listing of every
file with its size and modification time, before and after; a refused ``--out`` folder must not even appear).
The promise being checked: bad input is one line on stderr naming what is wrong and the valid choices, exit
status 2, before any work, with nothing written. Two cases are not refused, by design: a leaderboard over a
folder holding one unreadable record (truncated, or edited into another shape) names it on a ``skipped:`` line,
leaves it out, writes the rest and exits 1.

Cases that need a trained run (sample, units, leaderboard) copy one of two tiny runs trained once at the start
(a char-LM and an adding run, a few seconds each), then break what they test. Prints one row per case and
exits 1 when any case breaks the promise.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUN = ["run", "--wandb", "disabled", "--out", "{out}"]
ADDING = [*RUN, "--task", "adding", "--arch", "gru"]
CHARLM = [*RUN, "--task", "charlm", "--arch", "lstm"]
SMALL_LM = ["--task.max_chars", "4000", "--task.seq_len", "12", "--task.tbptt", "6", "--task.batch_size", "4",
            "--arch.hidden_size", "8", "--train.max_steps", "4", "--train.val_every", "2"]
SMALL_ADDING = ["--task.seq_len", "6", "--task.n_train", "64", "--task.n_val", "16", "--task.n_test", "16",
                "--task.batch_size", "16", "--arch.hidden_size", "4", "--train.max_steps", "4",
                "--train.val_every", "2"]
TRAINED = {"lm": [*CHARLM, *SMALL_LM], "adding": [*ADDING, *SMALL_ADDING]}
LM_RUN, ADDING_RUN = "charlm__lstm__s0", "adding__gru__s0"
SWEEP = ["sweep", "{dir}/s.yaml", "--wandb", "disabled", "--out", "{out}"]
GRID = "method: grid\nparameters:\n  task.name: {value: adding}\n  arch.name: {value: gru}\n"
RANDOM = "method: random\nrun_cap: 2\nparameters:\n  task.name: {value: adding}\n  arch.name: {value: gru}\n"


@dataclass
class Case:
    what: str
    argv: list[str]
    files: dict[str, str | bytes] = field(default_factory=dict)  # relative to the case folder
    trained: str | None = None  # copy this trained run folder to {out} first ("lm", "adding" or "both")
    prepare: Callable[[Path], None] | None = None  # break something in the case folder
    exit: int = 2
    writes: bool = False  # by design: a leaderboard names and skips an unreadable record, writes the rest


def _sweep(what: str, text: str | bytes, *extra: str) -> Case:
    return Case(what, [*SWEEP, *extra], {"s.yaml": text})


def _first(folder: Path, pattern: str) -> Path:
    return sorted(folder.glob(pattern))[0]


def _cut(pattern: str, keep: float = 0.5) -> Callable[[Path], None]:
    def cut(case_dir: Path) -> None:
        path = _first(case_dir / "out", pattern)
        data = path.read_bytes()
        path.write_bytes(data[: int(len(data) * keep)])
    return cut


def _remove(pattern: str) -> Callable[[Path], None]:
    return lambda case_dir: _first(case_dir / "out", pattern).unlink()


CASES = [
    # ---- names and options -----------------------------------------------------------------------------------
    Case("unknown task", [*RUN, "--task", "addng", "--arch", "gru"]),
    Case("unknown architecture", [*RUN, "--task", "adding", "--arch", "lstmm"]),
    Case("unknown section", [*ADDING, "--model.size", "3"]),
    Case("unknown option in a section", [*ADDING, "--optim.lrr", "1"]),
    Case("option without a value", [*ADDING, "--optim.lr"]),
    Case("stray positional argument", [*ADDING, "extra"]),
    Case("--arch missing", [*RUN, "--task", "adding"]),
    # ---- values of every kind --------------------------------------------------------------------------------
    Case("int field: true (bool for int)", [*ADDING, "--arch.hidden_size", "true"]),
    Case("int field: 8.5 (float for int)", [*ADDING, "--arch.hidden_size", "8.5"]),
    Case("int field: 0 (task.seq_len)", [*ADDING, "--task.seq_len", "0"]),
    Case("int field: negative (task.seq_len -5)", [*CHARLM, "--task.seq_len", "-5"]),
    Case("float field: nan (optim.lr)", [*ADDING, "--optim.lr", "nan"]),
    Case("float field: inf (optim.clip)", [*ADDING, "--optim.clip", "inf"]),
    Case("float field: out of range (arch.dropout 1.5)", [*ADDING, "--arch.dropout", "1.5"]),
    Case("bool field: maybe (train.diag)", [*ADDING, "--train.diag", "maybe"]),
    Case("str choice: optimizer adagrad", [*ADDING, "--optim.name", "adagrad"]),
    Case("str choice: accelerator tpu", [*ADDING, "--train.accelerator", "tpu"]),
    Case("str choice: strategy fsdp", [*ADDING, "--train.strategy", "fsdp"]),
    Case("seed not a number", [*ADDING, "--seed", "x"]),
    Case("seed too large for numpy (2**32)", [*ADDING, "--seed", "4294967296"]),
    Case("data seed too large (task.data_seed 1e20)", [*ADDING, "--task.data_seed", "100000000000000000000"]),
    Case("--threads -1", [*ADDING, "--threads", "-1"]),
    Case("--wandb bogus (run)", [*ADDING, "--wandb", "bogus"]),
    # ---- values that span fields -----------------------------------------------------------------------------
    Case("tbptt does not divide seq_len", [*CHARLM, "--task.tbptt", "30"]),
    Case("val_every not a multiple under TBPTT", [*CHARLM, "--task.tbptt", "25", "--train.val_every", "250"]),
    Case("batch larger than the training set", [*ADDING, "--task.n_train", "10"]),
    Case("sdigits hold-out larger than the data", [*RUN, "--task", "sdigits", "--arch", "gru",
                                                    "--task.n_val", "1000", "--task.n_test", "1000"]),
    Case("corpus too short for one window", [*CHARLM, "--task.max_chars", "500"]),
    Case("hidden size that cannot fit in memory", [*ADDING, "--arch.hidden_size", "2000000"]),
    Case("more GPUs than this machine has", [*ADDING, "--train.accelerator", "gpu", "--train.devices", "64"]),
    Case("--out is a file (run)", [*ADDING[:4], "{dir}/f", *ADDING[5:]], {"f": "a file"}),
    Case("model.* options on a sequence task", [*ADDING, "--model.attention", "none"]),
    Case("unknown attention type", [*RUN, "--task", "translate", "--arch", "gru", "--model.attention", "dot"]),
    Case("beam of width 0", [*RUN, "--task", "translate", "--arch", "gru", "--model.beam", "0"]),
    Case("image backbone torchvision lacks", [*RUN, "--task", "caption", "--arch", "gru",
                                              "--model.image_encoder", "resnet7"]),
    Case("pretrained weights not in the torch cache", [*RUN, "--task", "caption", "--arch", "gru",
                                                       "--model.image_encoder", "resnet18", "--model.pretrained",
                                                       "true"]),
    # ---- files a run reads -----------------------------------------------------------------------------------
    Case("corpus missing", [*CHARLM, "--task.corpus", "{dir}/no_such.txt"]),
    Case("corpus not UTF-8 (binary)", [*CHARLM, "--task.corpus", "{dir}/c.bin"], {"c.bin": bytes(range(256)) * 64}),
    Case("corpus empty", [*CHARLM, "--task.corpus", "{dir}/c.txt"], {"c.txt": ""}),
    Case("COCO captions: no folder given", [*RUN, "--task", "caption", "--arch", "gru", "--task.source", "coco"]),
    Case("COCO captions: files missing", [*RUN, "--task", "caption", "--arch", "gru", "--task.source", "coco",
                                          "--task.coco_root", "{dir}/coco", "--task.coco_annotations",
                                          "{dir}/coco/captions.json"]),
    Case("Flickr8k local folder missing", [*RUN, "--task", "caption", "--arch", "gru", "--task.source",
                                           "flickr8k", "--task.hf_path", "{dir}/flickr8k"]),
    Case("sentiment dataset folder missing", [*RUN, "--task", "sentiment", "--arch", "gru", "--task.source", "hf",
                                              "--task.hf_path", "{dir}/rt"]),
    Case("MNIST missing, task.download false", [*RUN, "--task", "smnist", "--arch", "gru", "--task.root",
                                                "{dir}/mnist", "--task.download", "false"]),
    # ---- sweep files -----------------------------------------------------------------------------------------
    Case("sweep file missing", [*SWEEP]),
    Case("sweep file is a folder", ["sweep", "{dir}", "--out", "{out}"]),
    _sweep("sweep file not UTF-8", b"method: grid\nparameters:\n  task.name: {value: \xff\xfe}\n"),
    _sweep("sweep file binary (a PNG header)", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(64)),
    _sweep("sweep file invalid YAML", "method: grid\nparameters: [unclosed\n"),
    _sweep("sweep file empty", ""),
    _sweep("sweep document not a mapping", "- task.name\n- arch.name\n"),
    _sweep("sweep document without parameters", "method: grid\n"),
    _sweep("unknown top-level key", GRID + "count: 3\n"),
    _sweep("unknown method", GRID.replace("grid", "bayes")),
    _sweep("parameter spec not a mapping", GRID + "  seed: 3\n"),
    _sweep("parameter spec with an unknown key", GRID + "  seed: {mean: 3}\n"),
    _sweep("empty values list", GRID + "  seed: {values: []}\n"),
    _sweep("unknown distribution", RANDOM + "  optim.lr: {distribution: loguniform, min: 0.001, max: 0.1}\n"),
    _sweep("distribution min > max", RANDOM + "  optim.lr: {min: 0.1, max: 0.01}\n"),
    _sweep("distribution min not a number", RANDOM + "  optim.lr: {min: low, max: 0.01}\n"),
    _sweep("random without run_cap", RANDOM.replace("run_cap: 2\n", "")),
    _sweep("run_cap 0", RANDOM.replace("run_cap: 2", "run_cap: 0")),
    _sweep("run_cap not a number", RANDOM.replace("run_cap: 2", "run_cap: many")),
    _sweep("value true for an int (arch.hidden_size)", GRID + "  arch.hidden_size: {value: true}\n"),
    _sweep("value out of range in a document", GRID + "  task.seq_len: {values: [10, 0]}\n"),
    _sweep("unknown option in a document", GRID + "  task.delay: {value: 3}\n"),
    _sweep("second document with an unknown task", GRID + "---\n" + GRID.replace("adding", "addng")),
    _sweep("unknown anchor key", GRID + "anchor: {name: a, source: b, setting: c, rows: [{published: 0.9}], "
                                        "paper: x}\n"),
    _sweep("anchor row with both published and expect", GRID + "anchor: {name: a, source: b, setting: c, "
                                                               "rows: [{published: 0.9, expect: solved}]}\n"),
    # ---- sweep flags -----------------------------------------------------------------------------------------
    _sweep("--workers 0", GRID, "--workers", "0"),
    _sweep("--threads -1 (sweep)", GRID, "--threads", "-1"),
    _sweep("--executor slurm", GRID, "--executor", "slurm"),
    _sweep("--address with the local executor", GRID, "--address", "head:6379"),
    _sweep("--runs-per-gpu 0", GRID, "--runs-per-gpu", "0"),
    _sweep("--wandb bogus (sweep)", GRID, "--wandb", "bogus"),
    _sweep("unrecognized sweep flag", GRID, "--fast"),
    Case("--out under a file (sweep)", ["sweep", "{dir}/s.yaml", "--out", "{dir}/f/out"], {"s.yaml": GRID, "f": "x"}),
    # ---- leaderboard -----------------------------------------------------------------------------------------
    Case("leaderboard: no runs folder", ["leaderboard", "--out", "{out}"]),
    Case("leaderboard: --reference without runs", ["leaderboard", "--out", "{out}", "--reference", "{dir}/ref"],
         trained="adding"),
    Case("leaderboard: --readme missing", ["leaderboard", "--out", "{out}", "--readme", "{dir}/README.md"],
         trained="adding"),
    Case("leaderboard: a record edited into the wrong shape (named, skipped)", ["leaderboard", "--out", "{out}"],
         trained="both", prepare=lambda d: _edit_record(d, '"metric": {', '"metric": 3, "was": {'), exit=1,
         writes=True),
    Case("leaderboard: one truncated record (named, skipped; the rest written)", ["leaderboard", "--out", "{out}"],
         trained="both", prepare=_cut("runs/charlm*.json"), exit=1, writes=True),
    # ---- sample and units ------------------------------------------------------------------------------------
    Case("sample: unknown run", ["sample", "nosuch__lstm__s0", "--out", "{out}"], trained="lm"),
    Case("sample: run of a non-LM task", ["sample", ADDING_RUN, "--out", "{out}"], trained="adding"),
    Case("sample: --temperature nan", ["sample", LM_RUN, "--out", "{out}", "--temperature", "nan"], trained="lm"),
    Case("sample: empty --prime", ["sample", LM_RUN, "--out", "{out}", "--prime", ""], trained="lm"),
    Case("sample: --prime outside the vocabulary", ["sample", LM_RUN, "--out", "{out}", "--prime", "\u00e9\u00e9"],
         trained="lm"),
    Case("sample: --length 0", ["sample", LM_RUN, "--out", "{out}", "--length", "0"], trained="lm"),
    Case("sample: checkpoint missing", ["sample", LM_RUN, "--out", "{out}"], trained="lm",
         prepare=_remove("checkpoints/*/best.ckpt")),
    Case("sample: checkpoint truncated", ["sample", LM_RUN, "--out", "{out}"], trained="lm",
         prepare=_cut("checkpoints/*/best.ckpt")),
    Case("units: --units out of range", ["units", LM_RUN, "--out", "{out}", "--units", "99"], trained="lm"),
    Case("units: --state x", ["units", LM_RUN, "--out", "{out}", "--state", "x"], trained="lm"),
    Case("units: checkpoint not a checkpoint", ["units", LM_RUN, "--out", "{out}"], trained="lm",
         prepare=lambda d: _first(d / "out", "checkpoints/*/best.ckpt").write_text("hello")),
    Case("units: checkpoint a zip that torch cannot read", ["units", LM_RUN, "--out", "{out}"], trained="lm",
         prepare=lambda d: _write_zip(_first(d / "out", "checkpoints/*/best.ckpt"))),
    Case("units: record truncated", ["units", LM_RUN, "--out", "{out}"], trained="lm", prepare=_cut("runs/*.json")),
    Case("units: record of an unknown task", ["units", LM_RUN, "--out", "{out}"], trained="lm",
         prepare=lambda d: _edit_record(d, '"task": "charlm"', '"task": "charlm2"')),
    Case("units: record's corpus gone", ["units", LM_RUN, "--out", "{out}"], trained="lm",
         prepare=lambda d: _edit_record(d, '"corpus": "pydoc"', '"corpus": "gone.txt"')),
    Case("unknown command", ["train", "--task", "adding"]),
]


def _write_zip(path: Path) -> None:
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("x/data.pkl", "garbage")


def _edit_record(case_dir: Path, old: str, new: str) -> None:
    path = _first(case_dir / "out", "runs/*.json")
    path.write_text(path.read_text().replace(old, new))


def _env() -> dict[str, str]:
    # an empty torch cache, so "pretrained weights not in the torch cache" holds on any machine
    empty = os.path.join(tempfile.gettempdir(), "rnnbench-bad-input-torch-home")
    return {**os.environ, "WANDB_MODE": "disabled", "TORCH_HOME": empty}


def listing(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``folder`` with its size and modification time (ns): what a case may not change."""
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in folder.rglob("*") if p.is_file() or p.is_symlink()} if folder.exists() else {}


def _fill(argv: list[str], case_dir: Path) -> list[str]:
    return [a.replace("{dir}", str(case_dir)).replace("{out}", str(case_dir / "out")) for a in argv]


def train_once(base: Path) -> dict[str, Path]:
    """The two tiny runs the sample, units and leaderboard cases copy."""
    def one(kind: str) -> Path:
        folder = base / f"trained-{kind}"
        argv = _fill(TRAINED[kind], folder)
        out = subprocess.run([sys.executable, "-m", "bench", *argv], cwd=ROOT, env=_env(), capture_output=True,
                             text=True)
        if out.returncode != 0:
            raise SystemExit(f"training the {kind} run failed:\n{out.stderr[-2000:]}")
        return folder / "out"

    with ThreadPoolExecutor(2) as pool:
        return dict(zip(TRAINED, pool.map(one, TRAINED), strict=True))


@dataclass
class Result:
    case: Case
    code: int
    lines: list[str]
    written: list[str]

    @property
    def ok(self) -> bool:
        one_line = len(self.lines) == 1 and self.lines[0].startswith("rnnbench: error: ")
        if self.case.writes:  # the leaderboard skip: named on stderr, summary line last, the rest written
            return self.code == self.case.exit and any("skipped: " in s for s in self.lines)
        return self.code == self.case.exit and one_line and not self.written


def run_case(case: Case, base: Path, index: int, trained: dict[str, Path]) -> Result:
    case_dir = base / f"case{index:02d}"
    case_dir.mkdir()
    for name, content in case.files.items():
        path = case_dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
    for kind in (("lm", "adding") if case.trained == "both" else (case.trained,) if case.trained else ()):
        shutil.copytree(trained[kind], case_dir / "out", dirs_exist_ok=True)
    if case.prepare:
        case.prepare(case_dir)
    before = listing(case_dir)
    out = subprocess.run([sys.executable, "-m", "bench", *_fill(case.argv, case_dir)], cwd=ROOT, env=_env(),
                         capture_output=True, text=True, errors="replace")
    after = listing(case_dir)
    written = sorted(k for k in after if before.get(k) != after[k]) + sorted(f"-{k}" for k in before if k not in after)
    lines = out.stderr.splitlines()
    return Result(case, out.returncode, lines, written)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def table(results: list[Result], base: Path, markdown: bool) -> str:
    rows = []
    for i, r in enumerate(results, 1):
        lines = [s.replace(str(base), "$TMP") for s in r.lines]
        message = lines[0] if lines else "(nothing on stderr)"
        if len(lines) > 1:  # the leaderboard skip: the record named, then the summary; else a broken promise
            message += f" / {lines[-1]}" if r.case.writes else f" [+{len(lines) - 1} more lines]"
        written = ", ".join(r.written[:3]) + (" ..." if len(r.written) > 3 else "") if r.written else "nothing"
        mark = "" if r.ok else " **FAIL**"
        rows.append((str(i), r.case.what, message, f"{r.code}{mark}", written))
    if markdown:
        out = ["| # | bad input | message (the one line) | exit | written |", "|---|---|---|---|---|"]
        out += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
        return "\n".join(out)
    return "\n".join(f"{a:>3}  {e:<7} {w:<10.10} {b}\n       {c}" for a, b, c, e, w in rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m dev.bad_input", description=__doc__.split("\n")[0])
    p.add_argument("--markdown", action="store_true", help="print a markdown table")
    p.add_argument("--jobs", type=int, default=3, help="cases run at once [default: 3]")
    p.add_argument("--only", default="", help="only cases whose description contains this")
    p.add_argument("--keep", type=Path, default=None, help="work in this folder and keep it")
    args = p.parse_args(argv)
    cases = [c for c in CASES if args.only in c.what]
    base = Path(tempfile.mkdtemp(prefix="rnnbench-bad-input-", dir=args.keep))
    started = time.time()
    try:
        trained = train_once(base) if any(c.trained for c in cases) else {}
        with ThreadPoolExecutor(args.jobs) as pool:
            results = list(pool.map(lambda ic: run_case(ic[1], base, ic[0], trained), enumerate(cases, 1)))
        print(table(results, base, args.markdown))
    finally:
        if args.keep is None:
            shutil.rmtree(base, ignore_errors=True)
    bad = [r for r in results if not r.ok]
    print(f"\n{len(results)} cases in {time.time() - started:.0f}s: {len(results) - len(bad)} as promised"
          + (f", {len(bad)} not: " + "; ".join(r.case.what for r in bad) if bad else ""))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
