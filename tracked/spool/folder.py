"""A session's folder as the process that runs the session writes it."""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

import attrs

from tracked.core.names import SPOOL_DROPPED_TAG
from tracked.spool import codec
from tracked.spool.entries import (
    Entry,
    Header,
    PayloadRef,
    Progress,
    StageEntry,
    StagePayload,
)
from tracked.spool.format import (
    ENTRIES,
    HEADER,
    INCOMPLETE,
    LOCK,
    NOFOLLOW,
    PAYLOADS,
    PRIVATE_DIR,
    PROGRESS,
    RELEASED,
    make_private_dir,
    max_bytes,
    open_private,
    spool_usage,
    unsafe,
    write_all,
    write_private,
)
from tracked.spool.key import fingerprint, writer_key
from tracked.spool.lock import unlock

#: How a folder of the spool is opened: a folder, never through a symbolic link.
DIRECTORY_FLAGS = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | NOFOLLOW


class SpoolRefused(OSError):
    """The spool's folder is not the user's own (another user's, writable by others, a
    link): nothing is written there. The message is the one ``tracked status`` gives."""


def open_folder(path: Path, what: str) -> int:
    """A handle of the folder ``path`` (never through a link), checked as ``tracked
    status`` checks it: the user's own, and no one else may write it.

    Raises:
        SpoolRefused: it is not (the same words as ``tracked status``).
    """
    try:
        fd = os.open(path, DIRECTORY_FLAGS)
    except OSError as exc:
        why = unsafe(path, what, os.lstat(path))  # a link or a file: said as status says it
        if why is not None:
            raise SpoolRefused(why) from None
        raise exc from None
    why = unsafe(path, what, os.fstat(fd))
    if why is not None:
        os.close(fd)
        raise SpoolRefused(why)
    return fd


class SessionSpool:
    """The folder of one session, written by the process that runs it.

    It holds the folder's lock from its creation until ``release`` or ``remove`` (or its
    process ends): ``tracked sync`` never takes a folder that is still being written.

    The spool is capped (``TRACKED_SPOOL_MAX_BYTES``, counted by a running count of the
    spool's bytes, ``SpoolUsage``: never a scan on the caller's thread): past the cap, a
    stage entry is kept with its light payload only (the scores its metrics are computed
    from), tagged ``tracked.spool_dropped``; ``dropped`` counts them.
    """

    def __init__(self, root: Path, header: Header) -> None:
        make_private_dir(root)
        # Every file is opened relative to handles of the root and of the session folder
        # held open (no symbolic link followed at any step): renaming or swapping a folder
        # on the way (its parent's owner may, in a sticky folder) changes nothing of what
        # this writes, nor where.
        self.session = header.session
        self.path = root / header.session
        self._dir = self._lock = self._entries = self._progress = self._payloads = -1
        self._root = open_folder(root, "the spool")
        try:
            key = self._key = writer_key(root)
            os.mkdir(header.session, PRIVATE_DIR, dir_fd=self._root)
            self._dir = os.open(header.session, DIRECTORY_FLAGS, dir_fd=self._root)
            os.fchmod(self._dir, PRIVATE_DIR)  # whatever the umask
            self._lock = self._open(LOCK, os.O_RDWR | os.O_CREAT)
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # a new folder: never held
            header = attrs.evolve(header, key_id=fingerprint(key))
            write_private(HEADER, codec.encode_header(header, key), dir_fd=self._dir)
            flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND
            self._entries = self._open(ENTRIES, flags)
            self._progress = self._open(PROGRESS, flags)
            self._payloads = self._open(PAYLOADS, flags)
        except BaseException:
            self.close()  # no descriptor kept by a folder that never opened
            self._unlock()
            raise
        self._payload_size = 0
        self.max_bytes = max_bytes()
        self._usage = spool_usage(root)
        #: The bytes this folder's records take (given back to the count when it goes).
        self._written = 0
        #: Stage entries kept without their heavy parts (the cap was reached).
        self.dropped = 0

    def _open(self, name: str, flags: int) -> int:
        return open_private(name, flags, dir_fd=self._dir)

    def append(self, entry: Entry, payload: StagePayload | None, data: bytes | None) -> None:
        """Add an entry, with its payload (``data``: its pickle) written first, so that the
        line never names bytes that are not there."""
        ref = None
        if data is not None and payload is not None:
            if self._usage.total + len(data) > self.max_bytes and payload.parts():
                entry = self._without_heavy(entry, payload)
                data = codec.encode_payload(payload.light())
            mac = codec.payload_mac(data, self._key, self.session, entry.seq)
            ref = PayloadRef(offset=self._payload_size, size=len(data), mac=mac)
            write_all(self._payloads, data)
            self._payload_size += len(data)
            self._count(len(data))
        line = codec.encode_entry(entry, ref, self._key, self.session)
        write_all(self._entries, line)
        self._count(len(line))

    def _count(self, size: int) -> None:
        self._written += size
        self._usage.add(size)

    def _without_heavy(self, entry: Entry, payload: StagePayload) -> Entry:
        self.dropped += 1
        if not isinstance(entry, StageEntry):
            return entry
        what = ", ".join(payload.parts())
        note = f"{what} not kept: the spool passed TRACKED_SPOOL_MAX_BYTES={self.max_bytes}"
        return attrs.evolve(entry, tags={**entry.tags, SPOOL_DROPPED_TAG: note})

    def progress(self, event: Progress) -> None:
        """Note that a step reached the store."""
        write_all(self._progress, codec.encode_progress(event, self._key, self.session))

    def make_durable(self) -> None:
        """fsync everything written so far: the session's records stay here for a while."""
        for fd in (self._payloads, self._entries, self._progress, self._dir, self._root):
            with contextlib.suppress(OSError):
                os.fsync(fd)

    def release(self) -> None:
        """The writer is done with this folder: it is ``tracked sync``'s now."""
        self.close()
        with contextlib.suppress(OSError):
            write_private(RELEASED, b"", dir_fd=self._dir)
        with contextlib.suppress(OSError):
            os.fsync(self._dir)
        self._unlock()

    def mark_incomplete(self, reason: str) -> None:
        """The spool cannot take more records: keep what it has, and say that it is not all
        (best effort: the disk that refused a record may refuse this too; sync then sees
        the folder without its end, as a run whose process died). The lock stays held until
        ``release`` or ``remove``: the process still writes the run to the store."""
        self.close()
        with contextlib.suppress(OSError):
            write_private(INCOMPLETE, reason.encode(), dir_fd=self._dir)
        with contextlib.suppress(OSError):
            os.fsync(self._dir)

    def close(self) -> None:
        """Close the files written (the lock stays held)."""
        for fd in (self._entries, self._progress, self._payloads):
            with contextlib.suppress(OSError):
                os.close(fd)
        self._entries = self._progress = self._payloads = -1

    def forget(self) -> None:
        """In a forked child: close the inherited descriptors, leaving the parent's lock."""
        self.close()
        with contextlib.suppress(OSError):
            os.close(self._lock)  # the parent's descriptor keeps the lock
        self._lock = -1
        self._close_folders()

    def remove(self) -> None:
        """Everything reached the store: the folder goes (this session's folder, found by
        its handle: whatever now has its name elsewhere is left alone)."""
        self.close()
        with contextlib.suppress(OSError):
            for child in os.scandir(self._dir):
                if not child.is_dir(follow_symlinks=False):
                    with contextlib.suppress(OSError):
                        os.unlink(child.name, dir_fd=self._dir)
            mine = os.fstat(self._dir)
            named = os.stat(self.session, dir_fd=self._root, follow_symlinks=False)
            if (mine.st_dev, mine.st_ino) == (named.st_dev, named.st_ino):
                os.rmdir(self.session, dir_fd=self._root)
        self._usage.add(-self._written)
        self._written = 0
        self._unlock()

    def _unlock(self) -> None:
        unlock(self._lock)
        self._lock = -1
        self._close_folders()

    def _close_folders(self) -> None:
        for fd in (self._dir, self._root):
            with contextlib.suppress(OSError):
                os.close(fd)
        self._dir = self._root = -1
