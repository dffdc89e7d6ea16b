"""``report.html``: the sweep report as one self-contained page, figures embedded as base64 PNGs.

MLflow's artifact viewer renders an .html artifact in an iframe but cannot follow a markdown file's
relative image links, so this page carries everything itself: no file beside it is needed.
"""

from __future__ import annotations

import base64
import re
from html import escape
from pathlib import Path

STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
table { border-collapse: collapse; font-size: 0.9em; margin: 0.5em 0; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
th { background: #f2f2f2; }
figure { margin: 1.5em 0; }
figcaption { font-weight: 600; margin-bottom: 0.3em; }
img { max-width: 100%; height: auto; }
code { background: #f4f4f4; padding: 0 0.2em; }
tr.best td { background: #e6f4e6; font-weight: 600; }
section.verdict { border-left: 4px solid #2e7d32; padding: 0.2em 1em; background: #f7fbf7; }
"""


def html_report(
    title: str,
    verdict: str,
    intro: str,
    table: tuple[list[str], list[list[str]]],
    legend: list[tuple[str, str]],
    notes: list[str],
    stability: list[tuple[str, str]],
    figures: list[tuple[str, Path]],
) -> str:
    """The page: title, the verdict (markdown), intro line, the summary table and its metric legend, stability
    figures, then each figure."""
    header, rows = table
    parts = [f"<h1>{escape(title)}</h1>", _verdict(verdict), f"<p>{escape(intro)}</p>", _table(header, rows)]
    if legend:
        items = "".join(f"<li><code>{escape(metric)}</code>: {escape(meaning)}</li>" for metric, meaning in legend)
        parts.append(f"<ul>{items}</ul>")
    parts += [f"<p>{_inline(note)}</p>" for note in notes]
    if stability:
        parts += ["<h2>Numerical stability (D2L 5.4)</h2>", _table(["quantity", "value"], [list(r) for r in stability])]
    for caption, path in figures:
        data = base64.b64encode(path.read_bytes()).decode("ascii")
        parts.append(
            f'<figure><figcaption>{escape(caption)}</figcaption><img src="data:image/png;base64,{data}" '
            f'alt="{escape(caption)}"></figure>'
        )
    body = "\n".join(parts)
    return (
        f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>{escape(title)}</title>\n'
        f"<style>{STYLE}</style>\n</head>\n<body>\n{body}\n</body>\n</html>\n"
    )


def _table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{escape(cell)}</th>" for cell in header)
    body = "".join(
        ('<tr class="best">' if row and row[0].startswith("★") else "<tr>")
        + "".join(f"<td>{escape(cell)}</td>" for cell in row)
        + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _verdict(markdown: str) -> str:
    """The verdict's few markdown forms (a heading, paragraphs, bullets, **bold**, `code`) as HTML."""
    html, items = [], []
    for line in [*markdown.splitlines(), ""]:
        text = _inline(line)
        if line.startswith("- "):
            items.append(f"<li>{text[2:]}</li>")
            continue
        if items:
            html.append(f"<ul>{''.join(items)}</ul>")
            items = []
        if line.startswith("## "):
            html.append(f"<h2>{text[3:]}</h2>")
        elif line.strip():
            html.append(f"<p>{text}</p>")
    return f'<section class="verdict">{"".join(html)}</section>'


def _inline(line: str) -> str:
    """A markdown line's **bold** and `code` as HTML (the rest escaped)."""
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", re.sub(r"\*\*([^*]+)\*\*", r"<strong>\1</strong>", escape(line)))
