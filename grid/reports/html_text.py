"""What every part of the report page writes with: text escaped as text, and a PNG as an inline
image (the page loads nothing from outside; its Content-Security-Policy allows `data:` images only)."""

from __future__ import annotations

import base64
import html
from pathlib import Path


def e(text: object) -> str:
    return html.escape(str(text), quote=True)


def data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")
