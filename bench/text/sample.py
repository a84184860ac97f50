"""Sample text from a trained character-level language model, feeding each sample back as the next input.

    rnnbench sample charlm__lstm__s0 --out results-local --temperature 0.5 --temperature 1.0 --greedy

The prime is read first to set the hidden state; then each step either takes the top-scoring character
(``--greedy``) or draws from softmax(logits / T). Greedy decoding is deterministic, so once the state comes
back to where it was, the text loops; sampling keeps it varied, and T trades coherence (low T) for variety
(high T). Each sample is printed with the share of its 4-grams that are distinct, which makes the loops
measurable. Samples are appended to ``<name>__<id>.samples.jsonl`` (one JSON object a line) beside the run record and, unless W&B is
disabled, logged as a table to a W&B run in the run's group (job type ``sample``).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from options import ConfigError

from ..store import Store


@dataclass
class Sample:
    decoding: str  # "greedy" or "T=<temperature>"
    temperature: float | None
    prime: str
    text: str
    seed: int
    distinct_4grams: float


def distinct_ngrams(text: str, n: int = 4) -> float:
    """Distinct n-grams / all n-grams: near 1 for varied text, low for text caught in a loop."""
    grams = [text[i : i + n] for i in range(len(text) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 1.0


def encode(task, text: str) -> torch.Tensor:
    index = {ch: i for i, ch in enumerate(task.vocab)}
    unknown = sorted(set(text) - set(index))
    if unknown:
        raise ConfigError(f"--prime has characters outside the model's vocabulary: {''.join(unknown)!r}")
    return torch.tensor([[index[ch] for ch in text]], dtype=torch.long)


@torch.no_grad()
def generate(system, task, prime: str, length: int, temperature: float | None, seed: int) -> str:
    """``length`` characters after ``prime``; ``temperature`` None means greedy argmax."""
    generator = torch.Generator().manual_seed(seed)
    logits, state = system(encode(task, prime))
    out = []
    for _ in range(length):
        last = logits[0, -1]
        if temperature is None:
            nxt = int(last.argmax())
        else:
            nxt = int(torch.multinomial(torch.softmax(last / temperature, dim=-1), 1, generator=generator))
        out.append(task.vocab[nxt])
        logits, state = system(torch.tensor([[nxt]]), state)
    return "".join(out)


def check(task, prime: str, temperatures: list[float], length: int) -> None:
    if not task.is_text:
        raise ConfigError(f"task {task.name!r} is not a character language model; sampling needs a run of one "
                          f"(e.g. charlm)")
    if not prime:
        raise ConfigError("--prime must not be empty: the model needs at least one character to start from")
    bad = [t for t in temperatures if not (0 < t < math.inf)]  # nan too: it fails every comparison
    if bad:
        raise ConfigError(f"--temperature must be > 0 and finite, got {bad[0]}; use --greedy for argmax")
    if length < 1:
        raise ConfigError(f"--length must be >= 1, got {length}")
    encode(task, prime)


def sample_run(system, task, *, prime: str, length: int, temperatures: list[float], greedy: bool,
               seed: int) -> list[Sample]:
    settings = [None] * greedy + list(temperatures)
    samples = []
    for t in settings:
        text = generate(system, task, prime, length, t, seed)
        samples.append(Sample("greedy" if t is None else f"T={t:g}", t, prime, text, seed, distinct_ngrams(text)))
    return samples


def save(samples: list[Sample], record: dict, store: Store) -> Path:
    """Append to the samples file beside the record (written whole, then renamed: never half a file)."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
    lines = [json.dumps({**asdict(s), "run": record["id"], "created": stamp}, ensure_ascii=False) for s in samples]
    return store.append_lines(store.samples_path(record["name"], record["id"]), lines)


def mirror(samples: list[Sample], record: dict, mode: str) -> str | None:
    """Log the samples as a W&B table in the run's project and group; returns the W&B run id."""
    if mode == "disabled":
        return None
    import wandb

    from ..run.mirror import start_run

    run = start_run(mode, group=record["task"], name=f"{record['name']}-samples", job_type="sample",
                    config={"run": record["id"], **record["config"]}, tags=[record["arch_label"], "sample"])
    table = wandb.Table(columns=["decoding", "temperature", "prime", "text", "distinct_4grams"])
    for s in samples:
        table.add_data(s.decoding, s.temperature, s.prime, s.text, s.distinct_4grams)
    run.log({"samples": table})
    run.finish()
    return run.id
