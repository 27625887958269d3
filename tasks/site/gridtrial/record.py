"""One process's record: what the bootstrap saw and measured in it, as a JSON file in the trial's
records folder. The worker merges the records of every process of a trial into the row
(grid/trial/collect.py). The file is rewritten whole (temporary name, then rename) after each Keras
call, each explicit report and at exit, so a process killed later still leaves what it measured.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from typing import Any


def _plain(value: Any) -> Any:
    """numpy scalars and the like as JSON numbers; anything else JSON cannot hold as text."""
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    item = getattr(value, "item", None)  # numpy and framework scalars
    if callable(item):
        try:
            return _plain(item())
        except (TypeError, ValueError):
            pass
    return str(value)


class Record:
    def __init__(self, folder: str):
        os.makedirs(folder, exist_ok=True)
        self.path = os.path.join(folder, f"{os.getpid()}-{time.time_ns()}.json")
        self._lock = threading.Lock()
        self._worth_writing = False
        self.data: dict[str, Any] = {
            "pid": os.getpid(),
            "ppid": os.getppid(),
            "argv": list(getattr(sys, "argv", [])),
            "rank": os.environ.get("RANK"),
            "local_rank": os.environ.get("LOCAL_RANK"),
            "started": time.time(),
            "import_s": None,
            "versions": {},
            "caps": {},
            "memory": {},
            "fits": [],
            "evaluates": [],
            "predicts": [],
            "reports": {},
            "returned": None,
            "error": None,
        }

    def update(self, **fields: Any) -> None:
        with self._lock:
            self.data.update({k: _plain(v) for k, v in fields.items()})
            self._worth_writing = True

    def add(self, key: str, entry: dict) -> None:
        with self._lock:
            self.data[key].append(_plain(entry))
            self._worth_writing = True

    def merge(self, key: str, values: dict) -> None:
        with self._lock:
            self.data[key].update(_plain(values))
            self._worth_writing = True

    def write(self) -> None:
        """Rewrite the file whole if anything worth keeping happened in this process. Only the
        process it describes writes it: a forked child (a DDP rank forked from the trial process)
        keeps a record of its own (boot.start_in_fork)."""
        with self._lock:
            if not self._worth_writing or os.getpid() != self.data["pid"]:
                return
            self.data["argv"] = list(getattr(sys, "argv", []))
            self.data["updated"] = time.time()
            tmp = f"{self.path}.tmp"
            with open(tmp, "w") as f:
                json.dump(self.data, f, default=str)
            os.replace(tmp, self.path)
