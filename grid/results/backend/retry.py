"""One retry policy for the results store: every call to it (rows, logs, trial folders, the lease,
the spool's flush, the reads a worker needs) goes through `Retry.call`, which retries transient
faults (connection refused or reset, timeouts, 5xx, throttling) with backoff for `retry_s` seconds
(`--store-retry`, RETRY_S by default), then raises StoreDown (a StorageError: exit 4) with the
last one. Anything else (a full disk, a refusal of access, a missing file) is raised at once, as it is.

`Retrying` wraps a backend so that each of its operations goes through the policy; the store
opens its backend that way. A call made while the same thread is already inside `Retry.call`
(the spool's delivery of a row wraps the store's write) runs once: the outermost call owns the
deadline, so retries never multiply.
"""

from __future__ import annotations

import errno
import logging
import re
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from grid.errors import StoreDown
from grid.results.backend.base import Backend, Claim, Entry, Lock

log = logging.getLogger("grid")
T = TypeVar("T")

RETRY_S = 60.0  # how long a store that refuses is retried (--store-retry) before the sweep stops
FIRST_DELAY_S = 0.5
MAX_DELAY_S = 15.0

_TRANSIENT_ERRNOS = {
    errno.ECONNREFUSED,
    errno.ECONNRESET,
    errno.ECONNABORTED,
    errno.ETIMEDOUT,
    errno.EHOSTUNREACH,
    errno.ENETUNREACH,
    errno.ENETDOWN,
    errno.EPIPE,
}
# What pyarrow's filesystems say of a fault that passes (the AWS SDK's error names, curl's, HTTP's).
_TRANSIENT_TEXT = re.compile(
    r"AWS Error (NETWORK_CONNECTION|SLOW_DOWN|THROTTLING|SERVICE_UNAVAILABLE|INTERNAL_FAILURE|REQUEST_TIMEOUT|"
    r"REQUEST_LIMIT_EXCEEDED)|curlCode|HTTP status (5\d\d|429)|Connection (refused|reset)|timed out|"
    r"Could not connect|Too Many Requests|Service ?Unavailable|SlowDown|Throttl",
    re.IGNORECASE,
)
_THROTTLING = {"Throttling", "ThrottlingException", "SlowDown", "RequestLimitExceeded", "TooManyRequests"}


def transient(exc: BaseException) -> bool:
    """Whether a store's error is one that passes by itself: worth waiting for, not worth failing over."""
    if isinstance(exc, (ConnectionError, TimeoutError)):
        return True
    if isinstance(exc, OSError) and exc.errno in _TRANSIENT_ERRNOS:
        return True
    if _botocore_transient(exc):
        return True
    return isinstance(exc, OSError) and bool(_TRANSIENT_TEXT.search(str(exc)))


def _botocore_transient(exc: BaseException) -> bool:
    try:
        from botocore import exceptions as bx
    except ImportError:
        return False
    if isinstance(exc, (bx.ConnectionError, bx.HTTPClientError)):
        return True
    if isinstance(exc, bx.ClientError):
        meta = exc.response.get("ResponseMetadata", {})
        code = exc.response.get("Error", {}).get("Code", "")
        status = meta.get("HTTPStatusCode") or 0
        return status >= 500 or status == 429 or code in _THROTTLING
    return False


def describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


class Retry:
    """Transient faults retried with backoff (0.5 s, doubling, at most 15 s apart) for `retry_s` seconds."""

    _inside = threading.local()

    def __init__(self, retry_s: float = RETRY_S, sleep: Callable[[float], None] = time.sleep):
        self.retry_s, self.sleep = retry_s, sleep

    def call(self, fn: Callable[[], T], what: str, retry: Callable[[BaseException], bool] = transient) -> T:
        """`fn()`, retried while `retry` says its error passes and time is left; else its error."""
        if getattr(self._inside, "active", False):
            return fn()  # an outer call owns the deadline
        self._inside.active = True
        try:
            return self._loop(fn, what, retry)
        finally:
            self._inside.active = False

    def _loop(self, fn: Callable[[], T], what: str, retry: Callable[[BaseException], bool]) -> T:
        deadline, delay = time.monotonic() + self.retry_s, FIRST_DELAY_S
        while True:
            try:
                return fn()
            except Exception as exc:
                if not retry(exc):
                    raise
                if time.monotonic() + delay > deadline:
                    if transient(exc):
                        raise StoreDown(
                            f"the results store did not answer ({what}) for {self.retry_s:.0f} s "
                            f"(--store-retry): {describe(exc)}"
                        ) from exc
                    raise
                log.warning("[grid] results store refused %s (%s); retrying in %.1f s", what, describe(exc), delay)
            self.sleep(delay)
            delay = min(delay * 2, MAX_DELAY_S)


class Retrying:
    """A backend whose every operation goes through one `Retry`."""

    def __init__(self, inner: Backend, policy: Retry):
        self.inner, self.policy = inner, policy
        self.uri, self.root, self.atomic_create = inner.uri, inner.root, inner.atomic_create

    def __getattr__(self, name: str) -> Any:  # what a particular backend has beside the interface
        return getattr(self.inner, name)

    def _call(self, fn: Callable[[], T], what: str) -> T:
        return self.policy.call(fn, what)

    def write(self, path: str, data: bytes) -> None:
        self._call(lambda: self.inner.write(path, data), f"writing {path}")

    def upload(self, local_file: str, path: str) -> None:
        self._call(lambda: self.inner.upload(local_file, path), f"writing {path}")

    def create(self, path: str, data: bytes) -> bool:
        return self._call(lambda: self.inner.create(path, data), f"writing {path}")

    def read(self, path: str) -> bytes:
        return self._call(lambda: self.inner.read(path), f"reading {path}")

    def exists(self, path: str) -> bool:
        return self._call(lambda: self.inner.exists(path), f"reading {path}")

    def entries(self, folder: str, recursive: bool = False) -> list[Entry]:
        return self._call(lambda: self.inner.entries(folder, recursive), f"listing {folder}")

    def delete(self, path: str) -> None:
        self._call(lambda: self.inner.delete(path), f"deleting {path}")

    def delete_folder(self, folder: str) -> None:
        self._call(lambda: self.inner.delete_folder(folder), f"deleting {folder}")

    def make_folder(self, folder: str) -> None:
        self._call(lambda: self.inner.make_folder(folder), f"making {folder}")

    def copy_up(self, local_folder: str, folder: str) -> None:
        self._call(lambda: self.inner.copy_up(local_folder, folder), f"writing {folder}")

    def copy_down(self, folder: str, local_folder: str) -> None:
        self._call(lambda: self.inner.copy_down(folder, local_folder), f"reading {folder}")

    def lock(self, doc: str, lock_file: str) -> Lock:
        return RetryingLock(self.inner.lock(doc, lock_file), self.policy, doc)

    def local_path(self, path: str) -> str | None:
        return self.inner.local_path(path)

    def staging(self, kind: str, sweep: str) -> str:
        return self.inner.staging(kind, sweep)

    def show(self, path: str) -> str:
        return self.inner.show(path)


class RetryingLock:
    def __init__(self, inner: Lock, policy: Retry, doc: str):
        self.inner, self.policy, self.doc = inner, policy, doc
        self.exclusive, self.frees_at_once = inner.exclusive, inner.frees_at_once

    def acquire(self, doc: bytes, expired: Callable[[bytes], bool]) -> Claim:
        return self.policy.call(lambda: self.inner.acquire(doc, expired), f"the lease {self.doc}")

    def refresh(self, doc: bytes) -> Claim:
        return self.policy.call(lambda: self.inner.refresh(doc), f"the lease {self.doc}")

    def release(self, mine: Callable[[bytes], bool]) -> None:
        self.policy.call(lambda: self.inner.release(mine), f"the lease {self.doc}")
