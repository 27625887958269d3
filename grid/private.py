"""This machine's folders that only the user running gpu-grid may enter: a trial's log and the
copy of its folder before they go to remote results, the GPU locks, the co-tenancy records.

They live in one folder per user under the temporary folder (`$TMPDIR/gpu-grid-<uid>`), made
with mode 0700. A fixed name in a folder every user writes to can be made first by someone else
(to read what is written there, or to swap a file for a link before it is read): a folder of that
name that is a link or is another user's is refused, naming it, never used.
"""

from __future__ import annotations

import os
import stat
import tempfile

from grid.errors import UnsafeFolderError


def temp_root() -> str:
    """The machine's temporary folder, as `TMPDIR` says when the call is made."""
    return os.environ.get("TMPDIR") or tempfile.gettempdir()


def user_folder(*parts: str) -> str:
    """`$TMPDIR/gpu-grid-<uid>/<parts...>`: the user's private folder (checked at each call), and
    the folders under it, made if missing."""
    base = private_folder(os.path.join(temp_root(), f"gpu-grid-{os.geteuid()}"))
    path = os.path.join(base, *parts)
    os.makedirs(path, mode=0o700, exist_ok=True)
    return path


def private_folder(path: str) -> str:
    """`path` made with mode 0700, or found there as a folder of this user's (a wider mode is
    narrowed to 0700). A link, a file, or another user's folder is refused with UnsafeFolderError."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError as exc:
        raise UnsafeFolderError(
            f"{path} is not a folder of its own (a link or a file is there: {exc.strerror}); gpu-grid keeps "
            f"its private files there and will not follow it. Remove it, or set TMPDIR to a folder of yours"
        ) from None
    try:
        st = os.fstat(fd)
        if st.st_uid != os.geteuid():
            raise UnsafeFolderError(
                f"{path} belongs to another user (uid {st.st_uid}, mode {stat.filemode(st.st_mode)}): gpu-grid "
                f"keeps logs, trial files and locks only in folders of its own user. Remove it (as its owner or "
                f"root), or set TMPDIR to a folder of yours"
            )
        if st.st_mode & 0o077:
            os.fchmod(fd, 0o700)
    finally:
        os.close(fd)
    return path
