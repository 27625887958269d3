"""A folder on this machine's disk (or a shared POSIX filesystem mounted at the same path).

Files are written durably: under a temporary name, fsynced, renamed into place, the folder
fsynced, so a row the store took survives a power cut; a create is a hard link, which the kernel
lets exactly one writer make; the lock is an exclusive `flock` held by this process, which the
kernel drops the moment the process dies."""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Callable

import pyarrow.fs as pafs

from grid.results.backend.arrow import ArrowBackend, Fill
from grid.results.backend.base import Claim, Lock, temporary


def fsync_path(path: str) -> None:
    """Make a file's bytes, or a rename or link in a folder, durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def _write_synced(path: str, fill: Fill) -> None:
    """`path` filled and fsynced; removed if any step fails."""
    try:
        with open(path, "wb") as f:
            fill(f)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        _remove(path)
        raise


def durable(path: str, fill: Fill) -> None:
    """`path` filled whole or not at all, and durably: a temporary file fsynced, renamed into
    place, the folder fsynced; nothing is left behind when any step fails."""
    folder = os.path.dirname(path)
    os.makedirs(folder, exist_ok=True)
    tmp = temporary(path)
    _write_synced(tmp, fill)
    try:
        os.replace(tmp, path)
        fsync_path(folder)
    except BaseException:
        _remove(tmp)
        raise


def durable_write(path: str, data: bytes) -> None:
    durable(path, lambda f: f.write(data))


class LocalBackend(ArrowBackend):
    atomic_create = True

    def __init__(self, uri: str, root: str | None = None):
        super().__init__(uri, pafs.LocalFileSystem(), root or os.path.abspath(uri))

    def _whole(self, path: str, fill: Fill) -> None:
        durable(path, fill)

    def create(self, path: str, data: bytes) -> bool:
        folder = os.path.dirname(path)
        os.makedirs(folder, exist_ok=True)
        tmp = temporary(path)
        try:
            _write_synced(tmp, lambda f: f.write(data))
            os.link(tmp, path)  # fails if `path` exists: one writer wins
            fsync_path(folder)
            return True
        except FileExistsError:
            return False
        finally:
            _remove(tmp)

    def read(self, path: str) -> bytes:
        with open(path, "rb") as f:
            return f.read()

    def make_folder(self, folder: str) -> None:
        os.makedirs(folder, exist_ok=True)

    def lock(self, doc: str, lock_file: str) -> Lock:
        return FlockLock(doc, lock_file)

    def local_path(self, path: str) -> str | None:
        return path

    def show(self, path: str) -> str:
        return path


class FlockLock:
    """The lock file held with flock; the holder's document written beside it."""

    exclusive = True
    frees_at_once = True

    def __init__(self, doc: str, lock_file: str):
        self.doc, self.lock_file = doc, lock_file
        self._fd: int | None = None
        self._made: list[str] = []  # folders the lock had to make, innermost first

    def acquire(self, doc: bytes, expired: Callable[[bytes], bool]) -> Claim:
        folder = os.path.dirname(self.lock_file)
        self._made = _missing(folder)
        os.makedirs(folder, exist_ok=True)
        fd = os.open(self.lock_file, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return Claim(False, self._holder())
        self._fd = fd
        durable_write(self.doc, doc)
        return Claim(True)

    def _holder(self) -> bytes | None:
        try:
            with open(self.doc, "rb") as f:
                return f.read()
        except OSError:
            return None

    def refresh(self, doc: bytes) -> Claim:
        return Claim(True)  # held as long as this process lives

    def release(self, mine: Callable[[bytes], bool]) -> None:
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            os.unlink(self.doc)
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)
        self._fd = None
        self._remove_if_unused()

    def _remove_if_unused(self) -> None:
        """A holder that wrote nothing (refused before any trial) leaves no folder it made behind."""
        folder = os.path.dirname(self.lock_file)
        with contextlib.suppress(OSError):
            if os.listdir(folder) == [os.path.basename(self.lock_file)]:
                os.unlink(self.lock_file)
                for path in self._made:
                    os.rmdir(path)


def _missing(folder: str) -> list[str]:
    """`folder` and those of its parents that do not exist, innermost first."""
    out = []
    while folder and not os.path.isdir(folder):
        out.append(folder)
        parent = os.path.dirname(folder)
        if parent == folder:
            break
        folder = parent
    return out
