"""One driver per sweep: a lease held in the results store while the sweep runs.

A second `grid run` of the same sweep is refused with the holder's host, pid and start time, so
two drivers never run the same trials or replace each other's rows. The lease is its backend's
lock (backend/): on a local (or shared POSIX) results folder an exclusive `flock` held for the
sweep, which the kernel releases the moment the holder dies, so a killed driver's sweep is taken
over at once; on S3 an object created with If-None-Match and refreshed with If-Match every third
of its time to live: a holder that died stops refreshing, its lease expires after `ttl_s`, and
the next driver takes it over.
"""

from __future__ import annotations

import json
import logging
import os
import time
import uuid
from datetime import datetime, timezone
from typing import Any

from grid.errors import BusyError
from grid.results.store import ResultStore
from grid.shared import hostname

log = logging.getLogger("grid")
TTL_S = 60.0  # on S3: how long a dead driver's lease holds before another may take it over


def _holder(doc: bytes | None) -> dict[str, Any] | None:
    try:
        found = json.loads(doc) if doc else None
    except ValueError:
        return None
    return found if isinstance(found, dict) else None


def _holder_text(holder: dict[str, Any] | None) -> str:
    if not holder:
        return "another driver (it left no details)"
    since = datetime.fromtimestamp(holder.get("since", 0), tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    return f"host {holder.get('host')}, pid {holder.get('pid')}, since {since}"


def _expired(doc: bytes) -> bool:
    holder = _holder(doc)
    if not holder:
        return False
    return bool(holder.get("expires", 0) < time.time())


class Lease:
    def __init__(self, store: ResultStore, sweep: str, ttl_s: float = TTL_S):
        self.store, self.sweep, self.ttl_s = store, sweep, ttl_s
        self.path = store.layout.lease(sweep)
        self.token = uuid.uuid4().hex
        self.since = time.time()
        self._lock = store.backend.lock(self.path, store.layout.lease_lock(sweep))
        self._held = False
        self._refreshed = 0.0

    def _doc(self) -> bytes:
        return json.dumps(
            {
                "host": hostname(),
                "pid": os.getpid(),
                "since": self.since,
                "expires": time.time() + self.ttl_s,
                "token": self.token,
            }
        ).encode()

    def _busy(self, holder: dict[str, Any] | None) -> BusyError:
        return BusyError(
            f"sweep {self.sweep!r} in {self.store.uri} is being run by another driver ({_holder_text(holder)}); "
            f"wait for it to end, or stop it (a driver that died frees the sweep "
            f"{'at once' if self._lock.frees_at_once else f'within {self.ttl_s:.0f} s'})"
        )

    def _mine(self, doc: bytes) -> bool:
        return (_holder(doc) or {}).get("token") == self.token

    def acquire(self) -> Lease:
        if not self._lock.exclusive:
            log.warning(
                "[grid] %s offers no lock: a second driver of sweep %r would not be refused", self.store.uri, self.sweep
            )
        claim = self._lock.acquire(self._doc(), _expired)
        if not claim.won:
            raise self._busy(_holder(claim.holder))
        if claim.holder is not None:
            log.warning(
                "[grid] the lease of sweep %r expired (%s); taking it over",
                self.sweep,
                _holder_text(_holder(claim.holder)),
            )
        self._held = True
        self._refreshed = time.monotonic()
        return self

    def refresh(self) -> None:
        """Keep the lease (every third of its time to live); lost to another driver: BusyError."""
        if not self._held or time.monotonic() - self._refreshed < self.ttl_s / 3:
            return
        claim = self._lock.refresh(self._doc())
        if not claim.won:
            raise self._busy(_holder(claim.holder))
        self._refreshed = time.monotonic()

    def release(self) -> None:
        if self._held:
            self._lock.release(self._mine)
            self._held = False
