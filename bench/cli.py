"""Command line: ``rnnbench`` / ``python -m bench``.

    rnnbench run --task adding --arch lstm --seed 0 [--task.seq_len 50 --optim.lr 3e-3 ...]
    rnnbench sweep sweeps/default.yaml [--workers 2] [--out results-local] [--executor local|ray|wandb] [--dry-run]
    rnnbench leaderboard [--out results] [--reference results]
    rnnbench report [--out results] [--wandb [--entity E] [--project P]]
    rnnbench list
    rnnbench units charlm__lstm__s0 [--out results-local] [--units 3,17] [--length 2000] [--top 3] [--state c]

Every config field is a dotted flag (``run --help`` lists them all with defaults). Mistakes a user can make
(unknown name, unknown option, bad value, missing file) print one line naming the valid choices and exit 2
before any work starts.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from options import BOUNDS, MAX_BEAM, SEED_MAX, ConfigError, coerce, out_of_range

from .run.config import WANDB_MODES
from .sweeps.executors.base import names as executor_names

LOCAL_OUT = "results-local"
REFERENCE = "results"


class Parser(argparse.ArgumentParser):
    def error(self, message: str):
        sys.stderr.write(f"rnnbench: error: {message}\n")
        sys.exit(2)


def ranged(kind: type, **bounds):
    """An argparse type: ``kind`` within ``bounds`` (ge, gt, le, lt), declared as a config field declares its
    range and shown in ``--help`` (``ranged.span``); anything else is one line naming the option and the range."""
    span = " (" + "; ".join(f"{sign} {bounds[key]}" for key, sign in BOUNDS if key in bounds) + ")"

    def read(text: str):
        try:
            value = coerce(text, kind.__name__, "")
        except ConfigError:
            what = "a whole number" if kind is int else "a finite number"
            raise argparse.ArgumentTypeError(f"must be {what}{span}, got {text!r}") from None
        problem = out_of_range("", value, bounds)
        if problem:
            raise argparse.ArgumentTypeError(problem.strip())
        return value

    read.span = span
    return read


# The range of every number a command takes. Upper ends are where a value stops meaning anything here and
# starts costing (a thread count or a length that overflows or runs for hours is a typo, not a wish).
THREADS = ranged(int, ge=1, le=1024)
WORKERS = ranged(int, ge=1, le=256)
RUNS_PER_GPU = ranged(int, ge=1, le=64)
SEED = ranged(int, ge=0, le=SEED_MAX)  # numpy's and Lightning's range, as the run's seed (options.SEED_MAX)
TEMPERATURE = ranged(float, ge=0.01, le=100)  # lower: logits / T overflows to inf (NaN probabilities)
CHARACTERS = ranged(int, ge=1, le=100_000)
COUNT = ranged(int, ge=1, le=10_000)
INDEX = ranged(int, ge=0, le=1024)
BEAM = ranged(int, ge=1, le=MAX_BEAM)  # model.beam's range; decode.check holds a run to its own declaration


def _check_out(out: str | Path, cfg=None, sweep: bool = False) -> None:
    """Every folder a run (``cfg``) or a sweep writes under ``out`` must resolve and be writable, or be creatable:
    found after training, it would lose the run."""
    from .store import Store

    try:
        Store(out).check_writable(*((cfg.name, cfg.run_id) if cfg is not None else ()), sweep=sweep)
    except ConfigError as exc:
        raise ConfigError(f"--out {out}: {exc}") from None


def _fields_help() -> str:
    import architectures
    import tasks

    from .run.config import OptimConfig, TrainConfig, field_docs

    lines = ["config fields (pass as --section.field VALUE):"]

    def block(title: str, cls: type, defaults=None) -> None:
        lines.append(f"  {title}")
        for name, default, help_ in field_docs(cls):
            value = getattr(defaults, name) if defaults is not None else default
            lines.append(f"    {name:<16} {help_} [default: {value}]")

    block("optim.*", OptimConfig)
    block("train.*", TrainConfig)
    for name in tasks.names():
        block(f"task.* for --task {name}", tasks.get(name).Config)
    for name in architectures.names():
        e = architectures.entry(name)
        block(f"arch.* for --arch {name}", e.config, e.default_config())
    from .run.models import KINDS

    for kind, spec in KINDS.items():
        users = ", ".join(n for n in tasks.names() if getattr(tasks.get(n), "model", None) == kind)
        block(f"model.* for the {kind} model (--task {users or 'none yet'})", spec.Options)
    return "\n".join(lines)


def _parse_overrides(rest: list[str]) -> dict[str, str]:
    """``--a.b 1 --c=2`` -> {"a.b": "1", "c": "2"}; anything else is a one-line error."""
    out, i = {}, 0
    while i < len(rest):
        token = rest[i]
        if not token.startswith("--"):
            raise ConfigError(f"unexpected argument {token!r}; options look like --optim.lr 1e-3")
        key, eq, value = token[2:].partition("=")
        if not eq:
            if i + 1 >= len(rest):
                raise ConfigError(f"option --{key} needs a value")
            value, i = rest[i + 1], i + 1
        out[key] = value
        i += 1
    return out


def build_parser(run_epilog: str | None = None) -> Parser:
    p = Parser(prog="rnnbench", description="Reproducible benchmarks of recurrent networks.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=Parser)

    r = sub.add_parser("run", help="train one run and write its record", epilog=run_epilog,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    r.add_argument("--task", "--task.name", dest="task", required=True, help="task name (see `rnnbench list`)")
    r.add_argument("--arch", "--arch.name", dest="arch", required=True, help="architecture name")
    r.add_argument("--seed", type=SEED, default=0, help=f"training seed (init and batch order){SEED.span} [default: 0]")
    r.add_argument("--out", default=LOCAL_OUT, help=f"results folder [default: {LOCAL_OUT}]")
    r.add_argument("--wandb", default="auto", help="auto, online, offline, disabled [default: auto]")
    r.add_argument("--progress", action="store_true",
                   help="show Lightning's progress bar (a tick is a batch: several optimizer steps under "
                        "truncated BPTT)")
    r.add_argument("--threads", type=THREADS, default=1,
                   help=f"torch CPU threads{THREADS.span} [default: 1, as each sweep worker and the reference use: results are "
                        "bit-identical only for the same thread count]")

    s = sub.add_parser("sweep", help="run every run of a sweep file, skipping recorded ones")
    s.add_argument("spec", type=Path, help="sweep YAML (W&B sweep format, one or more documents)")
    s.add_argument("--out", type=Path, default=Path(LOCAL_OUT), help=f"results folder [default: {LOCAL_OUT}]")
    s.add_argument("--workers", type=WORKERS, default=None,
                   help=f"parallel runs{WORKERS.span} [default: one per --threads cores; with GPUs, every GPU slot]")
    s.add_argument("--wandb", default="auto", help="auto, online, offline, disabled [default: auto]")
    s.add_argument("--threads", type=THREADS, default=1,
                   help=f"torch threads per run{THREADS.span} [default: 1, as the reference: bit-identical results need it]")
    s.add_argument("--executor", choices=executor_names(), default="local",
                   help="how the runs train: local (a process pool over GPUs / CPU cores), ray (Ray Tune), wandb "
                        "(a W&B agent; needs a W&B server); one file each in bench/sweeps/executors [default: local]")
    s.add_argument("--address", default=None,
                   help="Ray cluster address for --executor ray [default: start a local Ray runtime]")
    s.add_argument("--runs-per-gpu", type=RUNS_PER_GPU, default=1,
                   help=f"small runs packed on each GPU, each worker pinned by CUDA_VISIBLE_DEVICES{RUNS_PER_GPU.span} "
                        "[default: 1]")
    s.add_argument("--retry-failed", action="store_true",
                   help="also rerun runs recorded as failed (diverged runs are results and stay)")
    s.add_argument("--reference", type=Path, default=Path(REFERENCE),
                   help=f"leaderboard to show beside yours [default: {REFERENCE}]")
    s.add_argument("--dry-run", action="store_true",
                   help="validate and plan, then list the runs --out lacks; trains and writes nothing (and, with "
                        "the plan cached in .cache/plans, imports no torch)")

    b = sub.add_parser("leaderboard", help="regenerate LEADERBOARD.md and leaderboard.csv from records")
    b.add_argument("--out", type=Path, default=Path(REFERENCE), help=f"results folder [default: {REFERENCE}]")
    b.add_argument("--reference", type=Path, default=None, help="another results folder to show beside it")
    b.add_argument("--readme", type=Path, default=None, help="also regenerate this README's leaderboard block")

    h = sub.add_parser("report", help="write a static HTML report (<out>/report/index.html) from records, "
                                      "or with --wandb a W&B report over their mirrored runs")
    h.add_argument("--out", type=Path, default=Path(REFERENCE), help=f"results folder [default: {REFERENCE}]")
    h.add_argument("--wandb", dest="to_wandb", action="store_true",
                   help="build and save a W&B report instead (wandb-workspaces; needs `wandb login` and the server)")
    h.add_argument("--entity", default=None, help="W&B entity for --wandb [default: your default entity]")
    h.add_argument("--project", default=None,
                   help="W&B project for --wandb [default: the one runs mirror to, rnnbench]")

    sub.add_parser("list", help="list registered tasks and architectures")

    g = sub.add_parser("sample", help="generate text from a trained char-LM run (greedy and/or sampled)")
    g.add_argument("run", help="run name (e.g. charlm__lstm__s0, optionally __<id>) or a record path")
    g.add_argument("--out", type=Path, default=Path(LOCAL_OUT), help=f"results folder [default: {LOCAL_OUT}]")
    g.add_argument("--temperature", type=TEMPERATURE, action="append", default=None,
                   help=f"softmax temperature{TEMPERATURE.span}; repeat for several samples [default: 1.0 unless --greedy alone]")
    g.add_argument("--greedy", action="store_true", help="also decode greedily (argmax at every step)")
    g.add_argument("--prime", default="The ", help="text read before generating [default: 'The ']")
    g.add_argument("--length", type=CHARACTERS, default=300,
                   help=f"characters to generate{CHARACTERS.span} [default: 300]")
    g.add_argument("--seed", type=SEED, default=0, help=f"seed of the sampling generator{SEED.span} [default: 0]")
    g.add_argument("--wandb", default="auto", help="auto, online, offline, disabled [default: auto]")

    d = sub.add_parser("decode", help="decode held-out examples with a trained composed run (translate, caption, "
                                      "vqa, sentiment, frames): source, reference, output, attention map")
    d.add_argument("run", help="run name (translate__gru__s0, optionally __<id>) or a record path")
    d.add_argument("--out", type=Path, default=Path(LOCAL_OUT), help=f"results folder [default: {LOCAL_OUT}]")
    d.add_argument("--n", type=COUNT, default=5, help=f"examples to decode{COUNT.span}, at most the split's [default: 5]")
    d.add_argument("--split", choices=("val", "test"), default="test", help="held-out split [default: test]")
    d.add_argument("--beam", type=BEAM, default=None,
                   help=f"beam width for decoders{BEAM.span}, within model.beam's declared range [default: the run's "
                        "model.beam; 1 is greedy]")

    u = sub.add_parser("units", help="rank a char-LM run's hidden units by the text features they track "
                                     "and colour them over held-out text (Karpathy et al. 2015)")
    u.add_argument("run", help="run name (charlm__lstm__s0, optionally __<id>) or a record path")
    u.add_argument("--out", type=Path, default=Path(LOCAL_OUT), help=f"results folder [default: {LOCAL_OUT}]")
    u.add_argument("--units", default="", help="unit indices to show besides the top ones, e.g. 3,17")
    u.add_argument("--length", type=CHARACTERS, default=2000, help=f"characters of sample{CHARACTERS.span} [default: 2000]")
    u.add_argument("--top", type=COUNT, default=3, help=f"units ranked per feature{COUNT.span} [default: 3]")
    u.add_argument("--state", choices=("h", "c"), default=None,
                   help="h, or c (through tanh) for cores with a cell state [default: c there, else h]")
    u.add_argument("--layer", type=INDEX, default=None, help=f"layer to read{INDEX.span} [default: the last]")
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    wants_fields = len(argv) >= 2 and argv[0] == "run" and any(a in ("-h", "--help") for a in argv)
    parser = build_parser(_fields_help() if wants_fields else None)
    args, rest = parser.parse_known_args(argv)
    try:
        if args.command != "run" and rest:
            raise ConfigError(f"unrecognized arguments: {' '.join(rest)}")
        if getattr(args, "wandb", "auto") not in WANDB_MODES:
            raise ConfigError(f"unknown --wandb {args.wandb!r}; valid: {', '.join(WANDB_MODES)}")
        return COMMANDS[args.command](args, rest)
    except ConfigError as exc:
        parser.error(str(exc))
    return 2


def cmd_run(args, rest) -> int:
    from .run.config import resolve

    cfg = resolve({"task.name": args.task, "arch.name": args.arch, "seed": args.seed, **_parse_overrides(rest)})
    _check_out(args.out, cfg)
    from .run.mirror_mode import checked_mode

    wandb = checked_mode(args.wandb)
    import torch

    from .run.train import train
    from .store import Store

    torch.set_num_threads(args.threads)
    store = Store(args.out)
    rec = train(cfg, store, wandb=wandb, progress=args.progress)
    m = rec["metric"]
    value = "—" if m["test"] is None else f"{m['test']:.4g}"
    solved = "" if m["solved"] is None else f", solved={m['solved']}"
    best = "—" if m["val_best"] is None else f"{m['val_best']:.4g}"
    diag = rec["diagnostics"] or {}
    flow = "" if diag.get("flow_ratio_final") is None else f" (flow ratio {diag['flow_ratio_final']:.2f})"
    spikes = (diag.get("events") or {}).get("spikes")
    verdict = (f"; gradient flow {diag['verdict']}{flow}" if diag.get("verdict") else "") + (
        f"; {spikes} gradient spike(s) over 1000x the median" if spikes else "")
    print(f"{rec['name']} [{rec['id']}]: {rec['status']} after {rec['steps']} steps in {rec['wall_time_s']:.1f}s; "
          f"test/{m['name']}={value} (baseline {m['baseline']:.4g}{solved}), val/{m['name']}_best={best}, "
          f"{rec['params']:,} params{verdict}")
    if rec["divergence"]:
        d = rec["divergence"]
        print(f"  diverged at step {d['step']}: {d['reason']}; last finite grad norm {d['last_finite_grad_norm']}")
    print(f"  record: {store.record_path(rec['name'], rec['id'])}")
    if rec["mirror_error"]:
        print(f"warning: the W&B mirror failed (the run did not): {rec['mirror_error']}", file=sys.stderr)
    return 0 if rec["status"] != "failed" else 1


def cmd_sweep(args, rest) -> int:
    from .sweeps import sweep

    _check_out(args.out, sweep=not args.dry_run)
    if args.dry_run:
        sweep.dry_run(args.spec, args.out, executor=args.executor, retry_failed=args.retry_failed,
                      address=args.address)
        return 0
    from .reports import leaderboard
    from .run.mirror_mode import checked_mode
    from .store import Store

    wandb = checked_mode(args.wandb)  # once, before planning: the workers mirror in the mode it settles
    results = sweep.run(args.spec, args.out, workers=args.workers, wandb=wandb, threads=args.threads,
                        executor=args.executor, address=args.address, runs_per_gpu=args.runs_per_gpu,
                        retry_failed=args.retry_failed)
    with Store(args.out).lock("leaderboard"):  # another sweep may write it too
        # the reference is only read: a read-only one (a fresh clone's results/) is no obstacle
        written = leaderboard.write(args.out, reference=args.reference if args.reference.is_dir() else None)
        text = written.md.read_text()
    print()
    print(text)
    print(f"leaderboard: {written.md} (the 'reference' column is {args.reference}/, the committed numbers)")
    _report_skipped(written.skipped)
    return sweep.exit_code(results) or (1 if written.skipped else 0)


def _report_skipped(skipped: list[str]) -> None:
    for line in skipped:
        print(f"skipped: {line}", file=sys.stderr)
    if skipped:
        print(f"rnnbench: {len(skipped)} file(s) could not be read and were left out (exit status 1)",
              file=sys.stderr)


def _check_writes(command: str, *folders: Path) -> None:
    """A command that must write refuses, in one line and before computing anything, a folder it could not
    write into (a read-only store): found afterwards, the work would be lost."""
    from .store import folder_problem

    for folder in folders:
        problem = folder_problem(folder)
        if problem is not None:
            raise ConfigError(f"{command} writes into {folder}: {problem}; nothing was computed")


def cmd_leaderboard(args, rest) -> int:
    from .reports import leaderboard, reproduction, tuned
    from .store import Store
    from .sweeps.spec import anchored

    for folder in (args.out, args.reference):
        if folder is not None and not (folder / "runs").is_dir():
            raise ConfigError(f"no run records under {folder}/runs; run a sweep first (make sweep)")
    if args.readme is not None and not args.readme.is_file():
        raise ConfigError(f"--readme {args.readme} not found")  # before anything is written
    _check_writes("leaderboard", args.out, *([args.readme.parent] if args.readme is not None else []))
    documents = anchored(Path(__file__).resolve().parents[1])  # a bad sweep file stops us before any write
    started = time.perf_counter()
    store = Store(args.out)  # one store: the damaged metrics files its readers meet are named once, at the end
    # one pass over the records for every table below; it keeps whole only the runs an anchor selects
    tables = leaderboard.read(store, wanted=reproduction.selector(documents))
    # Every output is made before the first is written, so a file that stops one leaves all as they were.
    texts, mine, skipped = leaderboard.outputs(store, reference=args.reference, tables=tables)
    made, lines = reproduction.compute(store, documents, mine.kept)
    texts[store.root / "REPRODUCTION.md"] = made
    if args.readme is not None:
        readme = args.readme.read_text()
        readme = leaderboard.readme_text(readme, store, mine)
        readme = reproduction.readme_text(readme, lines)
        texts[args.readme] = tuned.readme_text(readme, store)
    leaderboard.write_figures(store, mine)
    tuned_text = tuned.render(store, draw=True)  # None: no tuned study here
    if tuned_text is not None:
        texts[store.root / "TUNED.md"] = tuned_text
    readme_changed = args.readme is not None and texts[args.readme] != args.readme.read_text()
    store.write_texts({path: text for path, text in texts.items() if path != args.readme or readme_changed})
    md = store.root / "LEADERBOARD.md"
    print(f"wrote {md} and {md.with_name('leaderboard.csv')} from {mine.n_records} records "
          f"in {time.perf_counter() - started:.2f}s")
    print(f"wrote {store.root / 'REPRODUCTION.md'}: {reproduction.counts(lines)}")
    if tuned_text is not None:
        print(f"wrote {store.root / 'TUNED.md'} from {tuned.STUDIES} summaries")
    if args.readme is not None:
        print(f"{args.readme}: leaderboard and reproduction blocks {'updated' if readme_changed else 'unchanged'}")
    skipped += store.metrics.skipped
    _report_skipped(skipped)
    return 1 if skipped else 0


def cmd_report(args, rest) -> int:
    if not (args.out / "runs").is_dir():
        raise ConfigError(f"no run records under {args.out}/runs; run a sweep first (make sweep)")
    if not args.to_wandb and (args.entity or args.project):
        raise ConfigError("--entity and --project go with --wandb")
    if args.to_wandb:
        return _wandb_report(args)
    _check_out(args.out / "report")
    started = time.perf_counter()
    from .reports import html

    written = html.write(args.out)
    print(f"wrote {written.index} and {len(written.pngs)} learning-curve PNG(s) from {written.n_records} records "
          f"in {time.perf_counter() - started:.2f}s")
    _report_skipped(written.skipped)
    return 1 if written.skipped else 0


def _wandb_report(args) -> int:
    from .reports import wandb_report

    if not wandb_report.logged_in():
        raise ConfigError("the W&B report needs `wandb login` and the W&B server (no API key found); nothing written")
    from .run.mirror import PROJECT

    try:
        url = wandb_report.write(args.out, args.entity, args.project or PROJECT)
    except Exception as exc:  # the server refused or could not be reached: one line, not a traceback
        raise ConfigError(f"the W&B report was not saved: {(str(exc) or repr(exc)).splitlines()[0]}") from None
    print(f"W&B report: {url}")
    return 0


def cmd_units(args, rest) -> int:
    from .store import Store

    store = Store(args.out)
    record, _ = store.find(args.run)  # a mistyped run name is one line before torch loads
    _check_writes("units", store.units_path(record["name"], record["id"], ".html").parent)
    from .text import units

    chosen = units.parse_units(args.units)  # before loading anything
    report = units.run(args.run, store, units=chosen, length=args.length, top=args.top,
                       state=args.state, layer=args.layer)
    print(units.summary(report))
    return 0


def cmd_sample(args, rest) -> int:
    from .store import Store

    record, record_path = Store(args.out).find(args.run)  # a mistyped run name is one line before torch loads
    home = Store.of_record(record_path)  # the samples go beside the record, under its store's lock
    _check_writes("sample", home.samples_path(record["name"], record["id"]).parent, home.lock_path("any").parent)
    from .run import checkpoint
    from .run.mirror import wandb_mode
    from .run.train import quiet
    from .text import sample

    temperatures = args.temperature if args.temperature is not None else ([] if args.greedy else [1.0])
    record, record_path, _, task, system = checkpoint.load(args.run, Store(args.out))
    sample.check(task, args.prime, temperatures, args.length)
    quiet()
    samples = sample.sample_run(system, task, prime=args.prime, length=args.length, temperatures=temperatures,
                                greedy=args.greedy, seed=args.seed)
    for s in samples:
        print(f"--- {record['name']} [{record['id']}], {s.decoding}, seed {s.seed}, "
              f"distinct 4-grams {s.distinct_4grams:.2f}")
        print(s.prime + s.text)
    print(f"samples: {sample.save(samples, record, Store.of_record(record_path))}")
    wandb_id = sample.mirror(samples, record, wandb_mode(args.wandb))
    if wandb_id:
        print(f"W&B: run {wandb_id} in project rnnbench, group {record['task']}")
    return 0


def cmd_decode(args, rest) -> int:
    from .store import Store

    store = Store(args.out)
    record, record_path = store.find(args.run)  # a mistyped run name is one line before torch loads
    home = Store.of_record(record_path)  # the decoded rows and the attention map go into the record's store
    _check_writes("decode", home.decoded_path(record["name"], record["id"], ".decoded.jsonl").parent,
                  home.lock_path("any").parent)
    from .run import checkpoint
    from .run.train import quiet
    from .text import decode

    record, record_path, _, task, system = checkpoint.load(args.run, store)
    decode.check(task, system, args.n, args.split, args.beam)
    quiet()
    rows, attention = decode.decode(system, task, args.n, args.split, args.beam)
    home = Store.of_record(record_path)
    print(f"--- {record['name']} [{record['id']}], {args.split} split")
    for row in rows:
        print(f"source:    {row['source']}\nreference: {row['reference']}\n"
              f"output:    {row['output']}  {row['match']}\n")
    if attention is not None:
        png = decode.draw(attention, home.decoded_path(record["name"], record["id"], ".attention.png"),
                          f"{record['name']}: {attention['source'][:60]}")
        print(f"attention map: {png}")
    print(f"decoded: {decode.save(rows, record, home)}")
    return 0


def cmd_list(args, rest) -> int:
    from . import catalog  # the names from the sources: listing them imports no torch

    print("tasks:", ", ".join(catalog.task_names()))
    print("architectures:", ", ".join(catalog.architecture_names()))
    print("executors:", ", ".join(executor_names()))
    return 0


COMMANDS = {"run": cmd_run, "sweep": cmd_sweep, "leaderboard": cmd_leaderboard, "list": cmd_list,
            "units": cmd_units, "sample": cmd_sample, "decode": cmd_decode, "report": cmd_report}
