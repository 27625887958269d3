"""Where the results live, behind one interface (base.py): a folder on this machine (local.py),
S3 (s3.py), or any other pyarrow.fs filesystem (arrow.py). The backend is chosen once, from the
results URI; nothing outside this package asks which one it is."""

from __future__ import annotations

import os
import urllib.parse

import pyarrow as pa
import pyarrow.fs as pafs

from grid.errors import ResultsError
from grid.results.backend.arrow import ArrowBackend
from grid.results.backend.base import TEMP_PREFIX, Backend, Claim, Entry, Lock
from grid.results.backend.local import LocalBackend
from grid.results.backend.s3 import S3Backend

__all__ = ["TEMP_PREFIX", "Backend", "Claim", "Entry", "Lock", "open_backend"]


def open_backend(uri: str) -> Backend:
    """The backend of a results URI: a path or file://, s3://, or any URI pyarrow.fs opens."""
    if "://" not in uri:
        uri = os.path.abspath(uri)
    elif urllib.parse.urlsplit(uri).password:
        raise ResultsError(
            "the results URI carries credentials (user:secret@); they would end up in logs and "
            "reports. Drop them from the URI and give them the standard way: AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY in the environment, ~/.aws/credentials or an instance role"
        )
    try:
        fs, root = pafs.FileSystem.from_uri(uri)
    except (pa.ArrowInvalid, OSError) as exc:
        raise ResultsError(f"cannot open results location {uri!r}: {exc}") from None
    if isinstance(fs, pafs.LocalFileSystem):
        return LocalBackend(uri, root)
    if isinstance(fs, pafs.S3FileSystem):
        return S3Backend(uri, fs, root)
    return ArrowBackend(uri, fs, root)
