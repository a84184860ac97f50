"""Interpretable units (Karpathy, Johnson & Fei-Fei 2015, "Visualizing and Understanding Recurrent Networks"):
which hidden units of a trained character language model track simple features of the text, and what they
look like over held-out text.

    rnnbench units charlm__lstm__s0 --out results-local [--units 3,17] [--length 2000] [--top 3]
                                                        [--state h|c] [--layer L]

The run's core reads a sample of held-out text (the test portion, where every feature varies: see
``sample_text``) from a zero state; every unit's
activation is correlated (Pearson r over the characters) with three features, and units are ranked by |r| per
feature. Activations are the paper's: tanh(c) of an LSTM's cell (``--state c``, the default for cores with a
cell state), else the hidden state h; ``--layer`` defaults to the last. Written to ``<out>/units/<name>__<id>``:

- ``.html``: self-contained page, every character coloured by the unit's activation (red -1, white 0, blue +1,
  the paper's scheme), one block per shown unit (the top ``--top`` per feature, then ``--units``), and a table
  of the top units per feature;
- ``.png``: for the top unit of each feature, the 8 rows of the sample where that feature varies most (small,
  for a note or a README);
- ``.json``: every unit's r per feature, the rankings (unit, feature, r, state, layer) and the sample itself.

Features, per character, describe what is known *after reading it* (what the state at that step can know):

- ``quotes``: 1 inside a "..." span, its opening quote included, its closing quote not. Only ``"`` delimits:
  in the default corpus (pydoc_data) "..." marks inline code and Python strings, English apostrophes are
  typographic (’, never '), ``'`` occurs only inside code (often inside "..." spans, as in "['a', 'b']") and
  the backtick not at all; counting ``'`` would nest one quote kind in the other for little gain, and on
  ordinary prose (tiny-shakespeare's "I'll") it would open spans that never close.
- ``brackets``: nesting depth of (), [] and {} (all kinds together, inside quotes too: there they are code),
  clipped at 0 so a stray closer, such as a list's "1)", does not push the depth negative.
- ``line_pos``: characters since the last newline (the newline itself is 0, the first character of a line 1).

A blank line ends a paragraph and resets ``quotes`` and ``brackets``: no span in the default corpus crosses
one, while 3 of its 2,608 paragraphs hold an odd number of ``"`` (text *about* quote characters) whose
unclosed span would otherwise invert the feature for the rest of the sample. The sample starts at a paragraph
break of the test portion (else after its first newline), so all three are exact from the
first character, and it never spans the network's training text.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

import torch

from options import ConfigError

from ..store import Store

FEATURES = {"quotes": "inside quotes", "brackets": "bracket depth", "line_pos": "position in line"}
OPEN, CLOSE = "([{", ")]}"
NEWLINE_GLYPH = "↵"
LEVELS = 20  # colour steps of the HTML page: 21 CSS classes keep a 2000-character block small


# ---- features and statistics -------------------------------------------------------------------------------
def features(text: str) -> torch.Tensor:
    """(T, 3) float64, columns in ``FEATURES`` order, per character of ``text`` (rules in the module docstring)."""
    rows, inside, depth, col, blank = [], False, 0, 0, True  # blank: this line is only whitespace so far
    for ch in text:
        if ch == "\n":
            if blank:  # a blank line: paragraph break
                inside, depth = False, 0
            col, blank = 0, True
        else:
            col, blank = col + 1, blank and ch.isspace()
            if ch == '"':
                inside = not inside
            elif ch in OPEN:
                depth += 1
            elif ch in CLOSE:
                depth = max(0, depth - 1)
        rows.append((float(inside), float(depth), float(col)))
    return torch.tensor(rows, dtype=torch.float64).reshape(len(text), len(FEATURES))


def correlations(acts: torch.Tensor, feats: torch.Tensor) -> torch.Tensor:
    """Pearson r of every unit (columns of acts, (T, H)) with every feature ((T, K)) -> (H, K).

    A constant unit or feature (a dead unit, a sample without quotes) has no linear relation to measure: r = 0.
    """
    a = acts.double() - acts.double().mean(0)
    f = feats.double() - feats.double().mean(0)
    scale = a.norm(dim=0)[:, None] * f.norm(dim=0)[None, :]
    flat = (a.std(0, correction=0) < 1e-9)[:, None] | (f.std(0, correction=0) < 1e-9)[None, :]
    return torch.where(flat, 0.0, (a.T @ f) / scale.clamp_min(1e-300))


def rank(r: torch.Tensor, top: int) -> dict[str, list[int]]:
    """The ``top`` units per feature by |r|, ties to the lower unit index."""
    return {name: sorted(range(r.shape[0]), key=lambda u, k=k: (-abs(float(r[u, k])), u))[:top]
            for k, name in enumerate(FEATURES)}


# ---- the run's text and activations -------------------------------------------------------------------------
def parse_units(text: str) -> list[int]:
    """``"3,17"`` -> [3, 17]; anything else is a one-line error."""
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if not all(p.isdigit() for p in parts):
        raise ConfigError(f"--units takes unit indices separated by commas, e.g. 3,17; got {text!r}")
    return list(dict.fromkeys(int(p) for p in parts))


def check_task(task_cls, name: str) -> None:
    """Units are read against character text: the task must be a text task (``is_text``)."""
    if not task_cls.is_text:
        raise ConfigError(f"units need a character language-model run such as charlm (a task with a character "
                          f"vocab and text); {name} is a run of task {task_cls.name}")


def sample_text(task, length: int) -> tuple[str, int]:
    """``length`` characters of the test portion where every feature varies; (sample, offset).

    Candidate windows start at the test portion's paragraph breaks (else at its first newline); each is scored by
    the feature that varies least in it, as a fraction of that feature's spread over the whole test portion, and
    the best window wins (ties: the earliest). A window of plain prose without a quote or a bracket scores 0, so
    the page always shows text over which a quote or bracket unit can be seen to track something."""
    text = task.text
    start = len(text) - int(len(text) * task.config.test_frac)
    index = set(task.vocab)
    held_out = "".join(ch for ch in text[start:] if ch in index)  # the vocab is the corpus's: all in it
    if len(held_out) < 2:
        raise ConfigError(f"the run's test text holds {len(held_out)} characters; units need at least 2")
    starts = [i + 2 for i in _finds(held_out, "\n\n") if i + 2 < len(held_out)]
    if not starts:
        first = held_out.find("\n")
        starts = [first + 1 if 0 <= first < len(held_out) // 2 else 0]
    spread = features(held_out).std(0).clamp_min(1e-12)
    fitting = [i for i in starts if i + length <= len(held_out)] or starts[:1]
    best = max(fitting, key=lambda i: (float((features(held_out[i:i + length]).std(0) / spread).min()), -i))
    return held_out[best:best + length], start + best


def _finds(text: str, mark: str) -> list[int]:
    out, i = [], text.find(mark)
    while i >= 0:
        out.append(i)
        i = text.find(mark, i + 1)
    return out


@torch.no_grad()
def activations(system, task, text: str, state: str, layer: int) -> torch.Tensor:
    """(T, H) activations of ``layer`` after each character: tanh(c) for ``state`` c (as the paper), else h."""
    index = {ch: i for i, ch in enumerate(task.vocab)}
    ids = torch.tensor([[index[ch] for ch in text]], dtype=torch.long)
    _, _, trace = system.core.forward_reference(task.inputs(ids))
    steps = trace.c[layer] if state == "c" else trace.h[layer]
    acts = torch.stack(steps, dim=1)[0].double()
    return acts.tanh() if state == "c" else acts


def choose_view(core, state: str | None, layer: int | None, units: list[int]) -> tuple[str, int]:
    """Defaults (c where the core has a cell state, the last layer) and one-line errors for bad choices."""
    state = state or ("c" if core.has_cell_state else "h")
    if state not in ("h", "c"):
        raise ConfigError(f"unknown --state {state!r}; valid: h, c")
    if state == "c" and not core.has_cell_state:
        raise ConfigError(f"--state c needs a core with a cell state (an LSTM); this {type(core).__name__} has "
                          f"only h: use --state h")
    layer = core.layers - 1 if layer is None else layer
    if not 0 <= layer < core.layers:
        raise ConfigError(f"--layer {layer} out of range; valid: 0..{core.layers - 1}")
    bad = [u for u in units if u >= core.hidden_size]
    if bad:
        raise ConfigError(f"--units {bad[0]} out of range; valid: 0..{core.hidden_size - 1}")
    return state, layer


# ---- the command -------------------------------------------------------------------------------------------
def run(run_name: str, store: Store, units: list[int] | None = None, length: int = 2000, top: int = 3,
        state: str | None = None, layer: int | None = None) -> dict:
    """Compute, write ``<out>/units/<name>__<id>.{html,png,json}`` and return the report (the JSON's content)."""
    import tasks

    from ..run import checkpoint

    record, path = store.find(run_name)
    if record["task"] not in tasks.names():
        raise ConfigError(f"record {path}: unknown task {record['task']!r}; valid: {', '.join(tasks.names())}")
    check_task(tasks.get(record["task"]), record["name"])  # before loading any weights
    record, _, cfg, task, system = checkpoint.load(run_name, store)
    units = list(units or [])
    state, layer = choose_view(system.core, state, layer, units)
    if not all(isinstance(v, str) and len(v) == 1 for v in task.vocab):
        raise ConfigError(f"units need a character vocabulary; {record['name']}'s task has tokens of other kinds")
    sample, offset = sample_text(task, length)
    acts = activations(system, task, sample, state, layer)
    feats = features(sample)
    r = correlations(acts, feats)
    constant = [f for k, f in enumerate(FEATURES) if not feats[:, k].std() > 0]
    report = make_report(record, state, layer, sample, offset, r, rank(r, top), constant, units, length)
    write_outputs(store, report, acts)
    return report


def make_report(record, state, layer, sample, offset, r, ranks, constant, chosen, length) -> dict:
    """The JSON's content. A feature constant over the sample (no bracket in it) is listed, not ranked."""
    rankings = [{"feature": f, "rank": i + 1, "unit": u, "r": round(float(r[u, k]), 6), "state": state,
                 "layer": layer} for k, f in enumerate(FEATURES) if f not in constant for i, u in enumerate(ranks[f])]
    return {
        "run": record["name"], "id": record["id"], "state": state, "layer": layer, "units": r.shape[0],
        "activation": "tanh(c)" if state == "c" else "h", "features": FEATURES, "rankings": rankings,
        "chosen": chosen, "constant_features": constant,
        "r": {f: [round(float(v), 6) for v in r[:, k]] for k, f in enumerate(FEATURES)},
        "sample": {"offset": offset, "chars": len(sample), "requested": length, "text": sample},
    }


def write_outputs(store: Store, report: dict, acts: torch.Tensor) -> dict[str, Path]:
    paths = {ext: store.units_path(report["run"], report["id"], f".{ext}") for ext in ("html", "png", "json")}
    report["files"] = {ext: str(p) for ext, p in paths.items()}
    store.write_text(paths["html"], html_page(report, acts))  # a reader never sees half a page
    with store.atomic(paths["png"]) as tmp:
        tmp.write_bytes(png_bytes(report["sample"]["text"], acts, _panels(report)))
    store.write_text(paths["json"], json.dumps(report, indent=2) + "\n")
    return paths


def summary(report: dict) -> str:
    """The short ranking table the command prints."""
    lines = [f"{report['run']} [{report['id']}]: layer {report['layer']} {report['activation']}, "
             f"{report['units']} units, {report['sample']['chars']} held-out characters",
             f"  {'feature':<18}{'rank':>5}{'unit':>6}{'r':>9}"]
    for x in report["rankings"]:
        lines.append(f"  {FEATURES[x['feature']]:<18}{x['rank']:>5}{x['unit']:>6}{x['r']:>+9.3f}")
    for f in report["constant_features"]:
        lines.append(f"  note: {FEATURES[f]} is constant over this sample (r = 0 for every unit): not ranked")
    if report["sample"]["chars"] < report["sample"]["requested"]:
        lines.append(f"  note: the run's held-out text gave {report['sample']['chars']} characters, "
                     f"not {report['sample']['requested']}")
    for u in report["chosen"]:
        rs = ", ".join(f"{f} {report['r'][f][u]:+.3f}" for f in FEATURES)
        lines.append(f"  unit {u} (chosen): {rs}")
    files = report["files"]
    lines.append(f"  wrote {files['html']}, {Path(files['png']).name}, {Path(files['json']).name}")
    return "\n".join(lines)


# ---- the page ----------------------------------------------------------------------------------------------
def colour(v: float) -> tuple[float, float, float]:
    """RGB in [0, 1]: white at 0, towards red at -1 and blue at +1 (the paper's scheme), clipped outside."""
    v = max(-1.0, min(1.0, v))
    end = (0.84, 0.15, 0.16) if v < 0 else (0.13, 0.40, 0.80)
    return tuple(1.0 + abs(v) * (e - 1.0) for e in end)


def ink(v: float) -> str:
    return "#fff" if abs(v) > 0.6 else "#000"  # dark backgrounds take white text


def scale_of(column: torch.Tensor) -> float:
    """Colour scale: 1 for bounded activations (tanh), the unit's max |a| for unbounded ones (a ReLU's h)."""
    return max(1.0, float(column.abs().max()))


def _css() -> str:
    rules = []
    for level in range(LEVELS + 1):
        v = 2 * level / LEVELS - 1
        rgb = "".join(f"{round(255 * x):02x}" for x in colour(v))
        rules.append(f".v{level}{{background:#{rgb};color:{ink(v)}}}")
    return ("body{font-family:sans-serif;margin:2em;max-width:70em}"
            ".text{font-family:DejaVu Sans Mono,monospace;font-size:13px;white-space:pre-wrap;line-height:1.5;"
            "border:1px solid #ccc;padding:.5em}td,th{padding:2px 10px;text-align:right}" + "".join(rules))


def _block(text: str, column: torch.Tensor) -> str:
    s, spans = scale_of(column), []
    for ch, v in zip(text, column.tolist(), strict=True):
        level = round((max(-1.0, min(1.0, v / s)) + 1) / 2 * LEVELS)
        shown = NEWLINE_GLYPH + "\n" if ch == "\n" else html.escape(ch)
        spans.append(f'<span class="v{level}">{shown}</span>')
    return f'<div class="text">{"".join(spans)}</div>'


def _shown(report: dict) -> list[tuple[int, str]]:
    """Each shown unit once, with why: its ranks per feature, or 'chosen'."""
    why: dict[int, list[str]] = {}
    for x in report["rankings"]:
        why.setdefault(x["unit"], []).append(f"{FEATURES[x['feature']]} #{x['rank']}, r = {x['r']:+.3f}")
    for u in report["chosen"]:
        why.setdefault(u, []).append("chosen: " + ", ".join(f"{FEATURES[f]} r = {report['r'][f][u]:+.3f}"
                                                            for f in FEATURES))
    return [(u, "; ".join(reasons)) for u, reasons in why.items()]


def html_page(report: dict, acts: torch.Tensor) -> str:
    title = f"{report['run']}: interpretable units"
    rows = "".join(f"<tr><td style='text-align:left'>{FEATURES[x['feature']]}</td><td>{x['rank']}</td>"
                   f"<td>{x['unit']}</td><td>{x['r']:+.3f}</td></tr>" for x in report["rankings"])
    text = report["sample"]["text"]
    blocks = []
    for u, why in _shown(report):
        s = scale_of(acts[:, u])
        note = "" if s == 1.0 else f" (colours scaled to ±{s:.3g})"
        blocks.append(f"<h3>unit {u}: {html.escape(why)}{note}</h3>{_block(text, acts[:, u])}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{_css()}</style></head><body><h1>{html.escape(title)}</h1>"
            f"<p>Run {report['run']} [{report['id']}], layer {report['layer']}, activation {report['activation']} "
            f"of {report['units']} units over {report['sample']['chars']} held-out characters (offset "
            f"{report['sample']['offset']} of the corpus), read from a zero state. Colour: "
            f"<span class='v0'>&nbsp;-1&nbsp;</span><span class='v10'>&nbsp;0&nbsp;</span>"
            f"<span class='v20'>&nbsp;+1&nbsp;</span> (Karpathy, Johnson &amp; Fei-Fei 2015). "
            f"Units ranked by |Pearson r| with each feature.</p>"
            f"<table><tr><th>feature</th><th>rank</th><th>unit</th><th>r</th></tr>{rows}</table>"
            f"{''.join(blocks)}</body></html>\n")


# ---- the picture -------------------------------------------------------------------------------------------
def _wrap(text: str, width: int) -> list[list[tuple[int, str]]]:
    """Every display row of ``text``, lines wrapped at ``width``: (character index, glyph)."""
    grid, row = [], []
    for i, ch in enumerate(text):
        row.append((i, NEWLINE_GLYPH if ch == "\n" else ch))
        if ch == "\n" or len(row) == width:
            grid.append(row)
            row = []
    return grid + ([row] if row else [])


def _window(grid: list, column: torch.Tensor | None, rows: int) -> list:
    """The ``rows`` consecutive display rows over which ``column`` (a feature per character) varies most;
    the first rows when there is no feature to follow."""
    if column is None or len(grid) <= rows:
        return grid[:rows]

    def spread(r: int) -> float:
        chars = [i for row in grid[r:r + rows] for i, _ in row]
        return float(column[chars].std()) if len(chars) > 1 else 0.0

    best = max(range(len(grid) - rows + 1), key=lambda r: (spread(r), -r))
    return grid[best:best + rows]


def _panels(report: dict) -> list[tuple[int, str, str | None]]:
    """(unit, title, feature) of the picture: the top unit of each ranked feature, else the chosen units, else
    unit 0 (no feature: the sample's first rows)."""
    act = report["activation"]
    top = [(x["unit"], f"{FEATURES[x['feature']]}: unit {x['unit']} (layer {x['layer']}, {act}), r = {x['r']:+.3f}",
            x["feature"]) for x in report["rankings"] if x["rank"] == 1]
    return top or [(u, f"unit {u} (layer {report['layer']}, {act})", None) for u in report["chosen"] or [0]]


def png_bytes(text: str, acts: torch.Tensor, panels: list[tuple[int, str, str | None]], width: int = 100,
              rows: int = 8) -> bytes:
    """One panel per (unit, title, feature): the ``rows`` display rows of the sample where that feature varies
    most (so a quote unit is shown over quotes), each character on the unit's colour."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    all_rows, feats = _wrap(text, width), features(text)
    grids = [_window(all_rows, None if f is None else feats[:, list(FEATURES).index(f)], rows) for _, _, f in panels]
    grid_rows = max(len(g) for g in grids)
    fig, axes = plt.subplots(len(panels), 1, squeeze=False,
                             figsize=(width * 0.085 + 0.3, len(panels) * (grid_rows * 0.18 + 0.4)))
    for ax, (unit, title, _), grid in zip(axes[:, 0], panels, grids, strict=True):
        column = acts[:, unit]
        s = scale_of(column)
        image = torch.ones(grid_rows, width, 3)
        for r, row in enumerate(grid):
            for c, (i, glyph) in enumerate(row):
                v = float(column[i]) / s
                image[r, c] = torch.tensor(colour(v))
                if not glyph.isspace():  # parse_math off: a "$" in the text is a dollar, not mathtext
                    ax.text(c, r, glyph, ha="center", va="center", fontsize=7.5, family="DejaVu Sans Mono",
                            color=ink(v), parse_math=False)
        ax.imshow(image.numpy(), aspect="auto", interpolation="nearest")
        ax.set_axis_off()
        ax.set_title(title, fontsize=9, loc="left")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()
