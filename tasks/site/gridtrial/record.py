"""One process's record: what the bootstrap saw and measured in it, a ProcessRecord of the protocol
(grid/protocol.py) kept as a JSON file in the trial's records folder. The worker merges the records
of every process of a trial into the row (grid/trial/collect.py). The file is rewritten whole
(temporary name, then rename) after each Keras call, each explicit report and at exit, so a process
killed later still leaves what it measured.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
import time
from collections.abc import Iterator

from gridtrial.protocol import ProcessRecord, StartedAs


class Record:
    def __init__(self, folder: str, started_as: StartedAs = StartedAs.FRESH):
        os.makedirs(folder, exist_ok=True)
        self.path = os.path.join(folder, f"{os.getpid()}-{time.time_ns()}.json")
        self._lock = threading.Lock()
        self._worth_writing = False
        self.data = ProcessRecord(
            pid=os.getpid(),
            ppid=os.getppid(),
            started=time.time(),
            argv=list(getattr(sys, "argv", [])),
            rank=os.environ.get("RANK"),  # as torch's launchers set them
            local_rank=os.environ.get("LOCAL_RANK"),
            started_as=started_as,
        )

    @contextlib.contextmanager
    def edit(self, worth_writing: bool = True) -> Iterator[ProcessRecord]:
        """Change the record (`with record.edit() as r: r.reports.update(...)`), under its lock;
        a record changed once is worth writing (unless the change alone is not: `worth_writing`,
        so that a process that did nothing of note leaves no record)."""
        with self._lock:
            yield self.data
            self._worth_writing = self._worth_writing or worth_writing

    def write(self) -> None:
        """Rewrite the file whole if anything worth keeping happened in this process. Only the
        process it describes writes it: a forked child (a DDP rank forked from the trial process)
        keeps a record of its own (boot.start_in_fork)."""
        with self._lock:
            if not self._worth_writing or os.getpid() != self.data.pid:
                return
            self.data.argv = list(getattr(sys, "argv", []))
            self.data.updated = time.time()
            text = json.dumps(self.data.to_dict(), default=str)
            tmp = f"{self.path}.tmp"
            with open(tmp, "w") as f:
                f.write(text)
            os.replace(tmp, self.path)
