"""Decode held-out examples with a trained composed run: source, reference and what the model wrote.

    rnnbench decode translate__gru__s0 --out results-local --n 5 --beam 4

Decoders (translate, caption) decode greedily, or by beam search with ``--beam`` (default: the run's
``model.beam``); the other composed tasks print their predicted answer or label. For decoders the attention
the model paid while writing is drawn for the first example (teacher forcing on its own output reproduces the
decoding states exactly) into ``<out>/decode/<name>__<id>.attention.png``, and every printed example is
appended to ``<name>__<id>.decoded.jsonl`` beside it.
"""

from __future__ import annotations

import json
import time
from dataclasses import fields, replace
from pathlib import Path

import torch

from options import ConfigError, out_of_range
from tasks.composed import END, START, ComposedTask

from ..run.system import ComposedSystem
from ..store import Store


def check(task, system, n: int, split: str, beam: int | None) -> None:
    """One line for a run this tool cannot decode, before any work."""
    if not isinstance(task, ComposedTask) or not isinstance(system, ComposedSystem):
        raise ConfigError(f"rnnbench decode reads composed tasks ({', '.join(_composed_names())}); task "
                          f"{task.name} is a sequence task (for charlm use rnnbench sample)")
    if beam is not None and not hasattr(system.options, "beam"):
        raise ConfigError(f"--beam applies to decoders (translate, caption); {task.name} predicts one answer")
    if beam is not None:  # the range model.beam declares: a wider beam costs minutes and decodes nothing new
        declared = next(f for f in fields(system.options) if f.name == "beam").metadata
        problem = out_of_range("--beam", beam, declared)
        if problem:
            raise ConfigError(f"{problem} (model.beam's declared range)")
    size = len(getattr(task.splits, split))
    if not 1 <= n <= size:
        raise ConfigError(f"--n must be in 1..{size} (the {split} split), got {n}")


def _composed_names() -> list[str]:
    import tasks

    return [n for n in tasks.names() if issubclass(tasks.get(n), ComposedTask)]


def _text(task, ids) -> str:
    return task.decode_text(ids) if hasattr(task, "decode_text") else " ".join(map(str, ids))


@torch.no_grad()
def decode(system: ComposedSystem, task: ComposedTask, n: int, split: str = "test", beam: int | None = None
           ) -> tuple[list[dict], dict | None]:
    """(examples as {source, reference, output}, the first example's attention while decoding or None)."""
    batch = getattr(task.splits, split)[torch.arange(n)]
    options = system.options if beam is None else replace(system.options, beam=beam)
    tokens = system.kind.decode(system.model, batch, options, system.max_len)
    _, scored, _ = system.kind.forward(system.model, batch)
    rows = []
    for i in range(n):
        shown = task.describe_example(batch, i)
        output = _text(task, tokens[i].tolist()) if tokens is not None else task.prediction_text(scored.logits[i])
        reference = shown.get("reference", "")
        rows.append({"source": shown.get("source", ""), "reference": reference, "output": output,
                     "match": task.compare(reference, output)})
    attention = None
    if tokens is not None:
        written = tokens[0].tolist()
        written = written[: written.index(END) + 1] if END in written else written  # up to END, kept
        own = torch.tensor([[START, *written]], device=tokens.device)
        _, mine, _ = system.kind.forward(system.model, {**{k: v[:1] for k, v in batch.items()}, "tgt": own})
        if mine.weights is not None:
            attention = {"weights": mine.weights[0].tolist(),
                         "source": rows[0]["source"], "output": rows[0]["output"], "grid": mine.grid}
    return rows, attention


def draw(attention: dict, path: Path, title: str) -> Path:
    from ..diag.plots import attention_panel, pyplot

    plt = pyplot()  # the Agg backend
    fig, ax = plt.subplots(figsize=(5, 4), dpi=100, layout="constrained")
    attention_panel(ax, attention["weights"], attention["source"], attention["output"], attention["grid"], title)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, metadata={"Software": None})
    plt.close(fig)
    return path


def save(rows: list[dict], record: dict, store: Store) -> Path:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
    lines = [json.dumps({**r, "run": record["id"], "created": stamp}, ensure_ascii=False) for r in rows]
    return store.append_lines(store.decoded_path(record["name"], record["id"], ".decoded.jsonl"), lines)
