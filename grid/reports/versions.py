"""Rows of trials that the sweep's latest run no longer makes: an earlier command or an edited
script (a misspelled program's `error` rows, fixed since). They are shown apart as earlier
versions, not counted as this sweep's trials or errors; their rows stay in the results.

The current version is what the sweep's most recently started trial ran: its workload, target
(the command with its placeholders, or the function) and script hash.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any


def version(row: dict[str, Any]) -> tuple:
    return (row.get("workload"), row.get("target"), row.get("script_sha256"))


def split_versions(rows: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(the current version's rows, earlier versions' rows), each trial's latest attempt in."""
    if not rows:
        return [], []
    floor = datetime.min

    def started(row: dict[str, Any]) -> Any:
        at = row.get("started_at")
        return at.replace(tzinfo=None) if isinstance(at, datetime) else floor

    current = version(max(rows, key=started))
    return [r for r in rows if version(r) == current], [r for r in rows if version(r) != current]


def earlier_text(sweep: str, earlier: list[dict[str, Any]]) -> str:
    targets = sorted({str(r.get("target") or r.get("workload") or "?") for r in earlier})
    statuses: dict[str, int] = {}
    for row in earlier:
        statuses[str(row.get("status"))] = statuses.get(str(row.get("status")), 0) + 1
    counts = ", ".join(f"{n} {s}" for s, n in sorted(statuses.items()))
    return (
        f"sweep {sweep}: {len(earlier)} trial(s) of earlier versions ({counts}; ran {'; '.join(targets)}, "
        f"an earlier command or script) are not counted; their rows stay in the results"
    )
