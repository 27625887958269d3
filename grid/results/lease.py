"""One driver per sweep: a lease held in the results store while the sweep runs.

A second `grid run` of the same sweep is refused with the holder's host, pid and start time, so
two drivers never run the same trials or replace each other's rows. On a local (or shared POSIX)
results folder the lease is an exclusive `flock` held for the sweep: the kernel releases it the
moment the holder dies, so a killed driver's sweep is taken over at once. On S3 it is an object
created with If-None-Match and refreshed with If-Match every third of its time to live: a holder
that died stops refreshing, its lease expires after `ttl_s`, and the next driver takes it over.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import time
import uuid
from datetime import datetime, timezone
from typing import Any

import pyarrow.fs as pafs

from grid.errors import BusyError
from grid.results import s3
from grid.results.store import ResultStore, durable_write
from grid.shared import hostname

log = logging.getLogger("grid")
TTL_S = 60.0  # on S3: how long a dead driver's lease holds before another may take it over


def _holder_text(holder: dict[str, Any] | None) -> str:
    if not holder:
        return "another driver (it left no details)"
    since = datetime.fromtimestamp(holder.get("since", 0), tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    return f"host {holder.get('host')}, pid {holder.get('pid')}, since {since}"


class Lease:
    def __init__(self, store: ResultStore, sweep: str, ttl_s: float = TTL_S):
        self.store, self.sweep, self.ttl_s = store, sweep, ttl_s
        self.path = f"{store.sweep_dir(sweep)}/_lease.json"
        self.token = uuid.uuid4().hex
        self.since = time.time()
        self._fd: int | None = None
        self._made: list[str] = []  # folders the lease had to create
        self._etag: str | None = None
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
            f"{'at once' if self.store.is_local else f'within {self.ttl_s:.0f} s'})"
        )

    # -- local (POSIX) folders: flock
    def _acquire_local(self) -> None:
        folder = self.store.sweep_dir(self.sweep)
        self._made = [p for p in (self.store.root, folder) if not os.path.isdir(p)]
        os.makedirs(folder, exist_ok=True)
        fd = os.open(f"{folder}/_lease", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise self._busy(self._read_local()) from None
        self._fd = fd
        durable_write(self.path, self._doc())

    def _read_local(self) -> dict[str, Any] | None:
        try:
            with open(self.path) as f:
                return dict(json.load(f))
        except (OSError, ValueError):
            return None

    # -- S3: conditional create and replace
    def _acquire_s3(self) -> None:
        region = getattr(self.store.fs, "region", None)
        etag = s3.put(self.store.uri, region, self.path, self._doc())
        if etag is None:
            found = s3.get(self.store.uri, region, self.path)
            holder = json.loads(found[0]) if found else None
            if found and holder and holder.get("expires", 0) < time.time():
                log.warning(
                    "[grid] the lease of sweep %r expired (%s); taking it over", self.sweep, _holder_text(holder)
                )
                etag = s3.put(self.store.uri, region, self.path, self._doc(), if_match=found[1])
            if etag is None:
                raise self._busy(holder)
        self._etag = etag

    def acquire(self) -> Lease:
        if self.store.is_local:
            self._acquire_local()
        elif isinstance(self.store.fs, pafs.S3FileSystem) and s3.has_boto3():
            self._acquire_s3()
        else:
            log.warning(
                "[grid] %s offers no lock: a second driver of sweep %r would not be refused", self.store.uri, self.sweep
            )
        self._refreshed = time.monotonic()
        return self

    def refresh(self) -> None:
        """Keep the lease (S3: every third of its time to live); lost to another driver: BusyError."""
        if self._etag is None or time.monotonic() - self._refreshed < self.ttl_s / 3:
            return
        region = getattr(self.store.fs, "region", None)
        etag = s3.put(self.store.uri, region, self.path, self._doc(), if_match=self._etag)
        if etag is None:
            found = s3.get(self.store.uri, region, self.path)
            raise self._busy(json.loads(found[0]) if found else None)
        self._etag, self._refreshed = etag, time.monotonic()

    def _remove_if_unused(self) -> None:
        """A run that wrote nothing (refused before any trial) leaves no folder it made behind."""
        folder = self.store.sweep_dir(self.sweep)
        with contextlib.suppress(OSError):
            if os.listdir(folder) == ["_lease"]:
                os.unlink(f"{folder}/_lease")
                for path in reversed(self._made):
                    os.rmdir(path)

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.unlink(self.path)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None
            self._remove_if_unused()
        if self._etag is not None:
            region = getattr(self.store.fs, "region", None)
            with contextlib.suppress(Exception):  # best effort: an expired lease frees itself
                found = s3.get(self.store.uri, region, self.path)
                if found and json.loads(found[0]).get("token") == self.token:
                    s3.delete(self.store.uri, region, self.path)
            self._etag = None
