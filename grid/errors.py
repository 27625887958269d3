"""One exception root; the CLI turns these into a message and an exit code, never a traceback."""


class GridError(Exception):
    """Base of every error gpu-grid raises on purpose."""

    exit_code = 1


class SpecError(GridError):
    """The grid spec or a command-line override is invalid. Nothing has run."""

    exit_code = 2

    def __init__(self, problems: list[str], source: str = "spec"):
        self.problems = list(problems)
        self.source = source
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"invalid {source} ({len(self.problems)} problem(s)):\n{lines}")


class UsageError(GridError):
    """A command was called with arguments that cannot work."""

    exit_code = 2


class ResultsError(GridError):
    """The results dataset cannot be read or written."""

    exit_code = 2


class ClusterError(GridError):
    """Ray could not be started or reached, or offers nothing to run on."""

    exit_code = 3


class StorageError(GridError):
    """The results store refused rows that had to be written; they are kept locally."""

    exit_code = 4


class UnsafeFolderError(GridError):
    """A temporary or lock folder gpu-grid must keep private is another user's (or a link)."""

    exit_code = 2


class StoreDown(StorageError):
    """The results store kept failing with faults that pass (connection, timeouts, 5xx, throttling)
    for the whole of its retry time (--store-retry)."""


class BusyError(GridError):
    """Another driver holds the sweep's lease."""

    exit_code = 5
