"""Any pyarrow.fs filesystem (GCS, Azure, HDFS, ...): what pyarrow offers, and no more. A file is
written under a temporary name and moved into place; a create looks, then writes, which two
writers can race; there is no lock. The local and S3 backends build on this one."""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
from collections.abc import Callable
from typing import IO, Any

import pyarrow.fs as pafs

from grid.results.backend.base import Claim, Entry, Lock, local_tree, staging, temporary

log = logging.getLogger("grid")
_CHUNK = 1 << 20
_warned: set[str] = set()

Fill = Callable[[Any], object]  # writes a file's bytes into an open output stream


class NoLock:
    """A store that cannot refuse a second holder: every caller holds it."""

    exclusive = False
    frees_at_once = True

    def acquire(self, doc: bytes, expired: Callable[[bytes], bool]) -> Claim:
        return Claim(True)

    def refresh(self, doc: bytes) -> Claim:
        return Claim(True)

    def release(self, mine: Callable[[bytes], bool]) -> None:
        pass


class ArrowBackend:
    atomic_create = False

    def __init__(self, uri: str, fs: pafs.FileSystem, root: str):
        self.uri, self.fs, self.root = uri, fs, root

    # -- writing
    def write(self, path: str, data: bytes) -> None:
        self._whole(path, lambda out: out.write(data))

    def upload(self, local_file: str, path: str) -> None:
        with open(local_file, "rb") as src:
            self._whole(path, lambda out: _copy(src, out))

    def _whole(self, path: str, fill: Fill) -> None:
        """Written under a temporary name, then moved: readers never see a part of it."""
        tmp = temporary(path)
        try:
            with self._output(tmp) as out:
                fill(out)
            self.fs.move(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                self.fs.delete_file(tmp)
            raise

    def _output(self, path: str) -> Any:
        try:
            return self.fs.open_output_stream(path)
        except FileNotFoundError:  # a filesystem that wants the folder made first
            self.make_folder(path.rsplit("/", 1)[0])
            return self.fs.open_output_stream(path)

    def create(self, path: str, data: bytes) -> bool:
        if self.uri not in _warned:
            _warned.add(self.uri)
            log.warning(
                "[grid] %s cannot create a file only if it is absent: two writers racing for one "
                "(a driver's `lost` row and a late worker's, an attempt number) could both write it",
                self.uri,
            )
        if self.exists(path):
            return False
        self.write(path, data)
        return True

    # -- reading
    def read(self, path: str) -> bytes:
        with self.fs.open_input_file(path) as f:
            return bytes(f.read())

    def exists(self, path: str) -> bool:
        return bool(self.fs.get_file_info(path).type != pafs.FileType.NotFound)

    def entries(self, folder: str, recursive: bool = False) -> list[Entry]:
        selector = pafs.FileSelector(folder, recursive=recursive, allow_not_found=True)
        return [
            Entry(i.path, i.base_name, i.type == pafs.FileType.File, i.mtime.timestamp() if i.mtime else None)
            for i in self.fs.get_file_info(selector)
        ]

    # -- removing, folders
    def delete(self, path: str) -> None:
        self.fs.delete_file(path)

    def delete_folder(self, folder: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.fs.delete_dir(folder)

    def make_folder(self, folder: str) -> None:
        self.fs.create_dir(folder, recursive=True)

    # -- this machine
    def copy_up(self, local_folder: str, folder: str) -> None:
        """The folder's regular files only: a link is never followed out of it."""
        for rel in local_tree(local_folder)[0]:
            self.upload(os.path.join(local_folder, rel), f"{folder}/{rel}")

    def copy_down(self, folder: str, local_folder: str) -> None:
        """Every file under `folder`, written only inside `local_folder`: a key whose relative path
        climbs out of it (`..`, an absolute part), as a crafted bucket may hold, is skipped with a warning."""
        base = os.path.realpath(local_folder)
        for info in self.fs.get_file_info(pafs.FileSelector(folder, recursive=True, allow_not_found=True)):
            if info.type != pafs.FileType.File:
                continue
            rel = info.path.lstrip("/")[len(folder.lstrip("/")) :].lstrip("/")
            target = os.path.realpath(os.path.join(base, rel))
            if not rel or os.path.isabs(rel) or ".." in rel.split("/") or not target.startswith(base + os.sep):
                log.warning("[grid] skipped %s: its name would be written outside %s", info.path, local_folder)
                continue
            os.makedirs(os.path.dirname(target), exist_ok=True)
            with self.fs.open_input_stream(info.path) as src, open(target, "wb") as out:
                shutil.copyfileobj(src, out, _CHUNK)

    def lock(self, doc: str, lock_file: str) -> Lock:
        return NoLock()

    def local_path(self, path: str) -> str | None:
        return None

    def staging(self, kind: str, sweep: str) -> str:
        return staging(kind, sweep)

    def show(self, path: str) -> str:
        return f"{self.uri.split('://', 1)[0]}://{path}"


def _copy(src: IO[bytes], out: Any) -> None:
    shutil.copyfileobj(src, out, _CHUNK)
