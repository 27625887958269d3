"""One driver per sweep: a lease held in the results store while the sweep runs.

A second `grid run` of the same sweep is refused with the holder's host, pid and start time, so
two drivers never run the same trials or replace each other's rows. The lease is its backend's
lock (backend/): on a local (or shared POSIX) results folder an exclusive `flock` held for the
sweep, which the kernel releases the moment the holder dies, so a killed driver's sweep is taken
over at once; on S3 an object created with If-None-Match and refreshed with If-Match every third
of its time to live: a holder that died stops refreshing, its lease expires after `ttl_s`, and
the next driver takes it over. A holder on this host whose process is gone (killed, crashed) is
taken over at once, whatever its lease says, and the next driver says so; a holder that still
runs, or one on another host, keeps the sweep. Every call to the store goes through its retry
policy (backend/retry.py): a store that blinks costs the lease a pause, not the sweep.
"""

from __future__ import annotations

import json
import logging
import os
import time
import uuid
from datetime import datetime, timezone
from typing import Any

import psutil

from grid.errors import BusyError
from grid.processes import living
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


def _dead_here(holder: dict[str, Any]) -> bool:
    """A holder on this host whose process no longer runs (its pid gone, or reused by another)."""
    pid, created = holder.get("pid"), holder.get("created")
    if holder.get("host") != hostname() or not isinstance(pid, int):
        return False
    return living(pid, created if isinstance(created, float) else None) is None


def _expired(doc: bytes) -> bool:
    holder = _holder(doc)
    if not holder:
        return False
    return bool(holder.get("expires", 0) < time.time()) or _dead_here(holder)


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
                "created": psutil.Process().create_time(),
                "since": self.since,
                "expires": time.time() + self.ttl_s,
                "token": self.token,
            }
        ).encode()

    def _busy(self, holder: dict[str, Any] | None) -> BusyError:
        frees = "at once" if self._lock.frees_at_once else f"at once on its host, within {self.ttl_s:.0f} s elsewhere"
        return BusyError(
            f"sweep {self.sweep!r} in {self.store.uri} is being run by another driver ({_holder_text(holder)}); "
            f"wait for it to end, or stop it (a driver that died frees the sweep "
            f"{frees})"
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
        before = _holder(claim.holder)
        if before is not None:
            why = "its driver on this host is no longer running" if _dead_here(before) else "it expired"
            log.warning("[grid] the lease of sweep %r: %s (%s); taking it over", self.sweep, why, _holder_text(before))
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
