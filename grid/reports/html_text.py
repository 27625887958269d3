"""What every part of the report page writes with: text escaped as text, a table, and a PNG as an
inline image (the page loads nothing from outside; its Content-Security-Policy allows `data:` images
only)."""

from __future__ import annotations

import base64
import html
from pathlib import Path

from grid.reports.table import Cell, TableView


def e(text: object) -> str:
    return html.escape(str(text), quote=True)


def table(view: TableView) -> str:
    """A table under its title; each cell's kind is its class (none where it has no kind)."""
    head = "".join(f"<th>{e(h)}</th>" for h in view.headers)
    body = "".join("<tr>" + "".join(_cell(c) for c in row) + "</tr>" for row in view.rows)
    caption = f"<caption>{e('; '.join(view.notes))}</caption>" if view.notes else ""
    return f"<h3>{e(view.title)}</h3><table>{caption}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _cell(cell: Cell) -> str:
    kind = f' class="{e(cell.kind)}"' if cell.kind else ""
    return f"<td{kind}>{e(cell.text)}</td>"


def data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")
