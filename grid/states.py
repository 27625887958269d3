"""Trial outcomes. A failed trial is a record with a state, not a crash of the sweep."""

from __future__ import annotations

import enum


class TrialStatus(str, enum.Enum):
    OK = "ok"
    OOM = "oom"
    TIMEOUT = "timeout"
    ERROR = "error"
    KILLED = "killed"
    # The worker or node running the attempt was lost: infrastructure, not the trial's doing.
    LOST = "lost"

    @property
    def is_terminal(self) -> bool:
        """A terminal attempt is not re-run by a resumed sweep."""
        return self is not TrialStatus.LOST

    @property
    def is_failure(self) -> bool:
        return self is not TrialStatus.OK

    @property
    def is_retryable(self) -> bool:
        """What `--retry-failed` runs again (an OOM is a finding, not a failure to retry)."""
        return self in (TrialStatus.ERROR, TrialStatus.TIMEOUT, TrialStatus.KILLED, TrialStatus.LOST)


STATUS_VALUES = tuple(s.value for s in TrialStatus)
