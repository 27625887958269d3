"""matplotlib, imported when a figure is drawn (Agg: no display needed), not when a report module
is: its import is a third of a second or more, and most reports of a large sweep draw no plot."""

from __future__ import annotations

from types import ModuleType


def pyplot() -> ModuleType:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
