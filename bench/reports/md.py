"""The Markdown the suite generates (LEADERBOARD.md, REPRODUCTION.md) as HTML, for the static report.

    md.to_html("## adding\\n\\n| a | b |\\n|---|---|\\n| 1 | 2 |", shift=1)  # <h3>, then a <table>

Only what those files use: ``#`` headings, paragraphs, pipe tables, ``-`` lists, and inline ``code``,
**bold** and ``![alt](picture.png)`` (TUNED.md's figures); everything else is escaped text. The ``markdown`` package is not a dependency, and these few rules
keep the report's bytes under the suite's control.
"""

from __future__ import annotations

import html
import re

HEADING = re.compile(r"^(#{1,6})\s+(.*)$")
RULE = re.compile(r"^\|?\s*:?-{3,}:?\s*(\|\s*:?-{3,}:?\s*)*\|?\s*$")  # a table's |---|---| line
INLINE = re.compile(r"`([^`]+)`|\*\*(.+?)\*\*|!\[([^\]]*)\]\(([^)\s]+)\)")


def inline(text: str, base: str = "") -> str:
    """Escaped text with `code`, **bold** and pictures (``base``: what their paths are relative to)."""
    out, last = [], 0
    for m in INLINE.finditer(text):
        out.append(html.escape(text[last:m.start()]))
        if m.group(1) is not None:
            out.append(f"<code>{html.escape(m.group(1))}</code>")
        elif m.group(2) is not None:
            out.append(f"<strong>{inline(m.group(2), base)}</strong>")
        else:
            out.append(f'<img alt="{html.escape(m.group(3))}" src="{html.escape(base + m.group(4))}">')
        last = m.end()
    return "".join(out) + html.escape(text[last:])


def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().removeprefix("|").removesuffix("|").split("|")]


def _table(lines: list[str]) -> str:
    head, body = lines[0], [ln for ln in lines[1:] if not RULE.match(ln)]
    rows = ["<tr>" + "".join(f"<th>{inline(c)}</th>" for c in _cells(head)) + "</tr>"]
    rows += ["<tr>" + "".join(f"<td>{inline(c)}</td>" for c in _cells(ln)) + "</tr>" for ln in body]
    return "<table>\n" + "\n".join(rows) + "\n</table>"


def to_html(text: str, shift: int = 0, base: str = "") -> str:
    """HTML for ``text``; ``shift`` demotes every heading (``#`` becomes ``<h2>`` with shift 1); pictures' paths
    are relative to ``base``."""
    out: list[str] = []
    block: list[str] = []  # consecutive lines of one kind: "p", "table" or "ul"
    kind = None

    def flush() -> None:
        if block:
            if kind == "table":
                out.append(_table(block))
            elif kind == "ul":
                items = "\n".join(f"<li>{inline(ln[2:].strip())}</li>" for ln in block)
                out.append(f"<ul>\n{items}\n</ul>")
            else:
                out.append(f"<p>{inline(' '.join(ln.strip() for ln in block), base)}</p>")
            block.clear()

    for line in text.splitlines():
        heading = HEADING.match(line)
        this = None if not line.strip() or heading else (
            "table" if line.lstrip().startswith("|") else "ul" if line.startswith(("- ", "* ")) else "p")
        if this != kind or this is None:
            flush()
        kind = this
        if heading:
            level = min(len(heading.group(1)) + shift, 6)
            out.append(f"<h{level}>{inline(heading.group(2).strip())}</h{level}>")
        elif this is not None:
            block.append(line)
    flush()
    return "\n".join(out)
