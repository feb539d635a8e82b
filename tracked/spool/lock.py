"""Advisory locks (``flock``) on a session folder and on the whole spool.

The process that writes a session folder holds its ``lock`` from the folder's creation until
it is done with it (or dies: the kernel drops the lock). ``tracked sync`` takes the same lock
without waiting before it reads a folder, and skips one whose lock is held: a folder is never
replayed by two processes, nor while its writer may still append to it. ``tracked sync`` also
locks the spool's folder itself while it works (waiting for another sync to finish): runs
created by one session are known when a later one refers to them, and counts are right.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
from pathlib import Path

from tracked.spool.format import NOFOLLOW, open_private


def try_lock(path: Path) -> int | None:
    """The file descriptor holding an exclusive lock on ``path`` (a file created 0600 if
    missing, or a folder), or None when another process holds it. Close it to unlock."""
    if path.is_dir() and not path.is_symlink():
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | NOFOLLOW)
    else:
        fd = open_private(path, os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    except BaseException:
        os.close(fd)
        raise
    return fd


def lock_waiting(path: Path, timeout: float, on_wait=None) -> int | None:
    """Like ``try_lock``, waiting up to ``timeout`` s (``on_wait()`` called once when it
    has to wait); None when the lock is still held then."""
    deadline = time.monotonic() + timeout
    told = False
    while True:
        fd = try_lock(path)
        if fd is not None or time.monotonic() >= deadline:
            return fd
        if not told and on_wait is not None:
            on_wait()
            told = True
        time.sleep(0.05)


def is_locked(path: Path) -> bool:
    """Whether another process holds the lock on ``path`` (a missing file is not locked).
    Reads only: nothing is created."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        with contextlib.suppress(OSError):
            os.close(fd)
    return False


def unlock(fd: int | None) -> None:
    if fd is not None and fd >= 0:
        with contextlib.suppress(OSError):
            os.close(fd)
