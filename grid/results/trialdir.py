"""A trial's own folder (GRID_TRIAL_DIR, `{trial_dir}`), kept beside its results:

    <results>/sweep=<name>/_trials/<trial_id>/

One per trial and the same for each of its attempts, so that a script which checkpoints there
resumes when its trial runs again (after Ctrl-C, a lost node, `--retry-failed`): Keras
`BackupAndRestore`, Lightning's `ckpt_path="last"`, Hugging Face's `resume_from_checkpoint`, with
no change. The workdir, by contrast, is shared by every trial.

With the results on a local (or shared) disk the trial writes into the folder itself. With remote
results (S3, or any store not on this machine's disk) an attempt works in a copy on its machine:
what earlier attempts kept is downloaded before it starts and the copy is mirrored back when it
ends (files it deleted are deleted there too); a copy that an attempt cut off on this machine left
behind (Ctrl-C) is mirrored back first. While the trial runs, its new or changed files go up every
GRID_TRIAL_DIR_SYNC_S seconds (60 by default; read when the attempt starts) once they have stopped
changing (the same size and time at two looks in a row: a checkpoint being written is not sent
half-written), so a node that dies mid-trial leaves its last settled checkpoint in the store.

Only the folder's own regular files leave it: a link in it is never followed (to a file or a
folder, by the sync or the final mirror; each file is opened without following a link on the way,
so a file swapped for a link after the walk is not read either), pipes and sockets are skipped, and
the row's notes name each link and where it pointed. Clean-ups remove links, never their targets.

The folder never costs a trial its run: where the store cannot give or take it (down, full,
read-only), the attempt works in a folder on its machine, which is kept there, and the row's
notes say so. Files kept in the store are only deleted by mirroring a copy that started from them.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import stat
import threading
from collections.abc import Callable, Iterator

from grid.protocol import knob_seconds
from grid.results.backend.base import local_tree
from grid.results.store import ResultStore

Stamps = dict[str, tuple[int, int]]  # relative path -> (mtime_ns, size)
_LINKS_NAMED = 50  # a row's notes name this many of a folder's links, then count the rest


def _files(folder: str) -> list[str]:
    return local_tree(folder)[0]


def _stamps(folder: str) -> Stamps:
    found: Stamps = {}
    for name in _files(folder):
        try:
            st = os.lstat(os.path.join(folder, name))
        except OSError:  # deleted since the walk
            continue
        if stat.S_ISREG(st.st_mode):
            found[name] = (st.st_mtime_ns, st.st_size)
    return found


@contextlib.contextmanager
def _inside(folder: str, name: str) -> Iterator[str | None]:
    """A path that reads the regular file `name` under `folder` as it is now, every part of the
    way opened without following a link (a file swapped for a link since the walk, or a folder on
    the way swapped for one, is not read: None)."""
    parts = name.split(os.sep)
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for part in parts[:-1]:
            inner = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            os.close(fd)
            fd = inner
        opened = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=fd)
    except OSError:
        opened = -1
    finally:
        os.close(fd)
    if opened < 0:
        yield None
        return
    try:
        yield f"/proc/self/fd/{opened}" if stat.S_ISREG(os.fstat(opened).st_mode) else None
    finally:
        os.close(opened)


class TrialFolder:
    def __init__(self, store: ResultStore, sweep: str, trial_id: str, attempt: int):
        self.store, self.sweep, self.trial_id, self.attempt = store, sweep, trial_id, attempt
        self.backend = store.backend
        self.kept = store.layout.trial_folder(sweep, trial_id)  # in the store
        self.notes: list[str] = []
        self._here = self.backend.local_path(self.kept)  # the folder itself, where the store is on this disk
        self._copy = self._here is None  # the attempt works in a copy on this machine
        self._from_store = False  # the copy started as what the store kept: its deletions may go back
        self.links: dict[str, str] = {}  # links seen in the folder (relative path -> target): never followed

    def _copy_of(self, attempt: int) -> str:
        return os.path.join(self.backend.staging("trials", self.sweep), f"{self.trial_id}-{attempt}")

    def open(self) -> tuple[str, int]:
        """The folder this attempt writes into, on this machine, and how many files earlier
        attempts left in it."""
        if self._here is not None:
            try:
                self.backend.make_folder(self.kept)
                return self._here, self._held(self._here)
            except OSError as exc:
                self._copy = True
                self.notes.append(f"its folder could not be made in {self.kept} ({exc}); it wrote on its machine")
        local = self._copy_of(self.attempt)
        shutil.rmtree(local, ignore_errors=True)
        os.makedirs(local)
        if self._here is None:
            try:
                self._mirror_cut_off_copies()
                if self._remote_files():
                    self.backend.copy_down(self.kept, local)
                self._from_store = True
            except Exception as exc:  # the store is down: run without what earlier attempts kept
                shutil.rmtree(local, ignore_errors=True)
                os.makedirs(local)
                self.notes.append(f"its folder's earlier files could not be read from {self._shown()} ({exc})")
        return local, self._held(local)

    def _held(self, folder: str) -> int:
        """How many files earlier attempts left in the folder (said in the row's notes)."""
        held = len(_files(folder))
        if held:
            self.notes.append(
                f"its folder held {held} file(s) of earlier attempts when it started (a script that "
                f"checkpoints there resumes from them)"
            )
        return held

    def close(self, local: str, keep: Callable[[str], str] | None = None) -> str | None:
        """Keep what the attempt left; where it is (a URI for remote results, a path on this
        machine where the store could not take it), or None when it holds no file. `keep`: where
        a copy the store would not take goes to wait for it (the spool), named in the notes."""
        left, links = local_tree(local)
        self.links.update(links)
        self._note_links()
        if not self._copy:
            if not left and not links:
                shutil.rmtree(local, ignore_errors=True)  # never follows a link: only the folder goes
            return self._here if left or links else None
        if self._here is None and (left or self._from_store):
            try:
                self._mirror(local, left, deletions=self._from_store)
                shutil.rmtree(local, ignore_errors=True)
                return self._shown() if left else None
            except Exception as exc:
                if keep is not None and left:  # sent later by copy_up, which never follows a link
                    kept = keep(local)
                    self.notes.append(
                        f"its folder could not be written to {self._shown()} ({exc}); its {len(left)} file(s) are "
                        f"kept on {socket.gethostname()} at {kept} until a `grid run` of the sweep writes them there"
                    )
                    return self._shown()
                self.notes.append(f"its folder could not be written to {self._shown()} ({exc})")
        if not left:
            shutil.rmtree(local, ignore_errors=True)
            return None
        self.notes.append(f"its folder's {len(left)} file(s) are kept on {socket.gethostname()} at {local}")
        return local

    @contextlib.contextmanager
    def syncing(self, local: str, every_s: float | None = None) -> Iterator[None]:
        """While the block runs, send the copy's settled new or changed files up every `every_s`
        seconds (GRID_TRIAL_DIR_SYNC_S by default; remote results only; nothing is deleted before
        the attempt ends)."""
        if self._here is not None:
            yield
            return
        every = knob_seconds("GRID_TRIAL_DIR_SYNC_S") if every_s is None else every_s
        stop = threading.Event()
        sent = _stamps(local) if self._from_store else {}  # what the store holds of the copy

        def loop() -> None:
            seen: Stamps = {}
            while not stop.wait(every):
                seen = self._send_settled(local, seen, sent)

        thread = threading.Thread(target=loop, name=f"gpu-grid-sync-{self.trial_id}", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()

    def _send_settled(self, local: str, seen: Stamps, sent: Stamps) -> Stamps:
        """Upload the files whose stamp is what the last look saw and not what was sent; returns
        this look's stamps. A file gone meanwhile, or a store that is down, waits for the next look
        or the attempt's end."""
        now = _stamps(local)
        self.links.update(local_tree(local)[1])
        for name, stamp in now.items():
            if seen.get(name) != stamp or sent.get(name) == stamp:
                continue
            try:
                if self._upload(local, name):
                    sent[name] = stamp
            except Exception:
                continue
        return now

    def _upload(self, local: str, name: str) -> bool:
        """Send one regular file of the copy, opened without following a link; False if it is
        not one now."""
        with _inside(local, name) as path:
            if path is not None:
                self.backend.upload(path, f"{self.kept}/{name}")
            return path is not None

    def _note_links(self) -> None:
        if not self.links:
            return
        named = [f"{name} -> {target}" for name, target in sorted(self.links.items())[:_LINKS_NAMED]]
        more = len(self.links) - len(named)
        what = (
            "not uploaded (a link is never followed out of the trial's folder)"
            if self._here is None
            else "left as links, never followed"
        )
        self.notes.append(
            f"its folder held {len(self.links)} link(s), {what}: {', '.join(named)}"
            + (f" and {more} more" if more else "")
        )

    def _shown(self) -> str:
        return self.backend.show(self.kept)

    def _remote_files(self) -> list[str]:
        return [
            os.path.relpath(e.path, self.kept) for e in self.backend.entries(self.kept, recursive=True) if e.is_file
        ]

    def _mirror(self, local: str, left: list[str], deletions: bool) -> None:
        """The remote folder made what the local copy holds: uploads, then (if allowed) deletions."""
        for name in left:
            self._upload(local, name)
        if deletions:
            for gone in set(self._remote_files()) - set(left):
                self.backend.delete(f"{self.kept}/{gone}")

    def _mirror_cut_off_copies(self) -> None:
        """The previous attempt of this trial ended on this machine before its upload (Ctrl-C) and
        left its copy: that is the latest state of the folder, so it goes up. Copies of older
        attempts are not (a later attempt elsewhere may have kept newer files); all are removed."""
        previous = self._copy_of(self.attempt - 1)
        if self.attempt and os.path.isdir(previous):
            self._mirror(previous, _files(previous), deletions=False)
        for attempt in range(self.attempt):
            shutil.rmtree(self._copy_of(attempt), ignore_errors=True)
