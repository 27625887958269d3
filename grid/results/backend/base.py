"""The storage interface: what the store, the trial folders, the lease, the spool and the storage
check ask of wherever the results live, and nothing else does.

Paths are `/`-separated strings as pyarrow.fs names them (`bucket/prefix/...` on S3), under the
backend's `root`. The contract, checked on every backend by tests/test_store_conformance.py:

- `write` and `upload` put a file whole or not at all: a reader sees the old file, none, or the
  new one, never a part of it. Where a file can be seen while it is written, it is written under
  a temporary name (TEMP_PREFIX, never ending in `.parquet`, so globbing readers skip it) and moved.
- `create` writes a file only if none is there and says whether it did. Where `atomic_create`,
  exactly one of any number of racing writers, on any machine, wins; elsewhere it looks, then
  writes, and two writers can both win (said once in a warning).
- a `Lock` has at most one holder, whose document anyone can read; a holder that dies frees it at
  once (`frees_at_once`) or once its document says it expired. Where not `exclusive`, it holds nothing.
- `read` and `delete` raise FileNotFoundError when there is no file; `entries` of a folder that
  is not there is empty, as is `delete_folder` of one; `make_folder` does nothing on object stores.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from grid.private import user_folder

TEMP_PREFIX = ".tmp-"


def temporary(path: str) -> str:
    """A name beside `path` for a file being written: hidden, and not a `.parquet` name."""
    return f"{path.rsplit('/', 1)[0]}/{TEMP_PREFIX}{uuid.uuid4().hex}"


def staging(kind: str, sweep: str) -> str:
    """This machine's folder for what an attempt writes before it goes to a store elsewhere: under
    the user's private folder (grid/private.py), never a shared one that another user could have made."""
    return user_folder(kind, sweep)


@dataclass(frozen=True)
class Entry:
    path: str
    name: str
    is_file: bool  # else a folder
    mtime: float | None  # seconds since the epoch, where the store keeps it


@dataclass(frozen=True)
class Claim:
    """What a lock said: whether this caller holds it, and the other holder's document: the one
    that refused it, or the expired one it was taken over from."""

    won: bool
    holder: bytes | None = None


class Lock(Protocol):
    exclusive: bool
    frees_at_once: bool

    def acquire(self, doc: bytes, expired: Callable[[bytes], bool]) -> Claim:
        """Hold it with `doc` as its document; `expired` says whether a holder's document is stale."""
        ...

    def refresh(self, doc: bytes) -> Claim:
        """Still held (its document may be rewritten), or who took it."""
        ...

    def release(self, mine: Callable[[bytes], bool]) -> None:
        """Let go; the document is removed only if `mine` says it is this holder's."""
        ...


class Backend(Protocol):
    uri: str
    root: str
    atomic_create: bool

    def write(self, path: str, data: bytes) -> None: ...

    def upload(self, local_file: str, path: str) -> None:
        """`write` from a file on this machine, streamed (a checkpoint may not fit in memory)."""
        ...

    def create(self, path: str, data: bytes) -> bool: ...

    def read(self, path: str) -> bytes: ...

    def exists(self, path: str) -> bool: ...

    def entries(self, folder: str, recursive: bool = False) -> list[Entry]: ...

    def delete(self, path: str) -> None: ...

    def delete_folder(self, folder: str) -> None: ...

    def make_folder(self, folder: str) -> None: ...

    def copy_up(self, local_folder: str, folder: str) -> None:
        """Every file under a folder on this machine written under `folder`, at the same relative path."""
        ...

    def copy_down(self, folder: str, local_folder: str) -> None: ...

    def lock(self, doc: str, lock_file: str) -> Lock:
        """The lock whose holder's document is at `doc`; `lock_file` is where a filesystem keeps the lock itself."""
        ...

    def local_path(self, path: str) -> str | None:
        """`path` on this machine's filesystem, or None where the store is elsewhere."""
        ...

    def staging(self, kind: str, sweep: str) -> str: ...

    def show(self, path: str) -> str:
        """`path` as the user names it: a path on this machine, else a URI."""
        ...


def local_tree(folder: str) -> tuple[list[str], dict[str, str]]:
    """The regular files under a local folder, relative to it, and its links (relative path ->
    where each points). A link is never followed, to a file or to a folder: what it points to is
    not the trial's folder. Other things (pipes, sockets, devices) are neither files nor links."""
    files: list[str] = []
    links: dict[str, str] = {}
    stack = [""]
    while stack:
        rel = stack.pop()
        try:
            entries = list(os.scandir(os.path.join(folder, rel) if rel else folder))
        except OSError:  # deleted since, or not a folder any more
            continue
        for entry in entries:
            name = os.path.join(rel, entry.name) if rel else entry.name
            try:
                if entry.is_symlink():
                    links[name] = os.readlink(entry.path)
                elif entry.is_dir(follow_symlinks=False):
                    stack.append(name)
                elif entry.is_file(follow_symlinks=False):
                    files.append(name)
            except OSError:
                continue
    return sorted(files), links
