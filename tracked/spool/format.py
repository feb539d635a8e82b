"""The spool's folders and files, and the checks made before anything in them is read.

::

    <spool>/<session id>/header.json     who wrote it: the format number, the session's
                                         store (URI masked), experiment, pid, host, when
    <spool>/<session id>/entries.jsonl   one line per entry: start_run, stage, end_run, detach
    <spool>/<session id>/payloads.bin    the binary parts of stage entries (models, artifacts,
                                         pictures, dataset samples), one after the other
    <spool>/<session id>/progress.jsonl  what reached the session's store: one line per step
    <spool>/<session id>/lock            held (flock) by the process writing the folder, and
                                         by the ``tracked sync`` replaying it
    <spool>/<session id>/released        the writer is done with the folder
    <spool>/<session id>/incomplete      the spool could not take every record (a full
                                         disk): what follows is not here; the reason inside
    <spool>                              itself locked (flock) by the ``tracked sync`` at work

The root and every session folder are created 0700 and their files 0600, whatever the
umask; sync and status refuse (without reading it) a folder that another user owns, that
group or others may write, whose name is not a session id, or that holds a symbolic link;
files are opened with ``O_NOFOLLOW``.
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
import threading
import time
import warnings
from pathlib import Path

from tracked.core.config import MAX_BYTES_ENV, SPOOL_ENV, env_text
from tracked.core.errors import TrackingWarning
from tracked.core.homes import own_place

#: The cap on the spool's size in bytes (see ``tracked.spool.folder.SessionSpool``).
DEFAULT_MAX_BYTES = 1 << 30
HEADER = "header.json"
ENTRIES = "entries.jsonl"
PROGRESS = "progress.jsonl"
PAYLOADS = "payloads.bin"
LOCK = "lock"
#: Written by the writer once it is done with a folder it leaves for ``tracked sync``.
RELEASED = "released"
#: Written when the spool could not take a record (a full disk): the folder is kept, and
#: what came after it is not in it.
INCOMPLETE = "incomplete"
#: The names of session folders: ``tracked._session.new_local_id`` makes them.
SESSION_NAME = re.compile(r"local-[0-9a-f]{32}\Z")
NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
#: The bounds a reader holds a session folder to: past them the folder (or the line) is
#: refused alone, never read whole into memory. A header is a few hundred bytes; an entry
#: line holds a stage's params, tags and metrics (a search's candidates: a few MiB at most).
MAX_HEADER_BYTES = 1 << 16
MAX_LINE_BYTES = 1 << 23
#: entries.jsonl and each progress file: past this the folder is refused (its payloads,
#: in payloads.bin, are read by offset and size and have no bound of their own).
MAX_LOG_BYTES = 1 << 28
PRIVATE_FILE = 0o600
PRIVATE_DIR = 0o700


def spool_root() -> Path:
    """``TRACKED_SPOOL_DIR``, else the user cache directory's ``tracked/spool``, else (no
    home folder, or one that cannot be written) ``<tmp>/tracked-<uid>/spool``."""
    configured = env_text(SPOOL_ENV)
    if configured:
        return Path(configured).expanduser()
    import platformdirs

    def cache() -> Path:
        return Path(platformdirs.user_cache_dir("tracked")) / "spool"

    return own_place(cache, "spool")


def max_bytes() -> int:
    """``TRACKED_SPOOL_MAX_BYTES`` (default 1 GiB); a value that is no size warns once and
    counts as the default."""
    text = env_text(MAX_BYTES_ENV) or ""
    if not text:
        return DEFAULT_MAX_BYTES
    try:
        value = int(text)
        if value < 0:
            raise ValueError(text)
    except ValueError:
        warnings.warn(
            f"{MAX_BYTES_ENV}={text!r} is not a size in bytes (a whole number, e.g. "
            f"1073741824): the default, {DEFAULT_MAX_BYTES} (1 GiB), applies",
            TrackingWarning,
            stacklevel=2,
        )
        return DEFAULT_MAX_BYTES
    return value


def spool_size(root: Path) -> int:
    """The bytes held by the files of the session folders under ``root`` (links not followed)."""
    total = 0
    with contextlib.suppress(OSError):
        for folder in os.scandir(root):
            if not folder.is_dir(follow_symlinks=False):
                continue
            with contextlib.suppress(OSError):
                for child in os.scandir(folder.path):
                    if child.is_file(follow_symlinks=False):
                        total += child.stat(follow_symlinks=False).st_size
    return total


class SpoolUsage:
    """A running count of the bytes in one spool, for its size cap: what this process wrote
    and removed, on top of what a scan found. The scan (``spool_size``) runs on a thread of
    its own, never on the caller's: a spool of 100,000 folders takes seconds to walk, and a
    stage call must not wait for it. Until the first scan is done only this process's bytes
    count (the cap then errs on the generous side); a scan runs again at most every
    ``RESCAN_S`` seconds, when the count is read, to see what other processes wrote or
    `tracked sync` removed."""

    RESCAN_S = 60.0

    def __init__(self, root: Path) -> None:
        self.root = root
        self._lock = threading.Lock()
        self._scanned = 0
        #: This process's bytes since the scan in use began.
        self._own = 0
        self._own_at_scan = 0
        self._scanning = False
        self._scanned_at = -self.RESCAN_S

    @property
    def total(self) -> int:
        """The bytes in the spool, as known now (never waits)."""
        with self._lock:
            stale = time.monotonic() - self._scanned_at >= self.RESCAN_S
            if stale and not self._scanning:
                self._scanning = True
                self._own_at_scan = self._own
                threading.Thread(target=self._scan, name="tracked-spool-size", daemon=True).start()
            return self._scanned + self._own

    def add(self, count: int) -> None:
        """This process wrote ``count`` bytes (negative: removed them)."""
        with self._lock:
            self._own += count

    def _scan(self) -> None:
        found = spool_size(self.root)
        with self._lock:
            # The scan saw what this process wrote before it began; what came after is kept.
            self._scanned = found
            self._own -= self._own_at_scan
            self._scanning = False
            self._scanned_at = time.monotonic()


# The usage of each spool root this process writes to (one shared count per root).
_usages: dict[Path, SpoolUsage] = {}
_usages_lock = threading.Lock()


def spool_usage(root: Path) -> SpoolUsage:
    """The running count of ``root``'s bytes, shared by this process's sessions."""
    global _fork_hook_installed
    with _usages_lock:
        if not _fork_hook_installed and hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=_fresh_locks_in_child)
            _fork_hook_installed = True
        usage = _usages.get(root)
        if usage is None:
            usage = _usages[root] = SpoolUsage(root)
        return usage


_fork_hook_installed = False


def _fresh_locks_in_child() -> None:
    # A forked child inherits the locks as they were at the fork: one the writer thread or a
    # scan held then would stay held for good (the child's first spooled record hung). The
    # child gets fresh ones, and no scan thread came along with it.
    global _usages_lock
    _usages_lock = threading.Lock()
    for usage in _usages.values():
        usage._lock = threading.Lock()
        usage._scanning = False


def make_private_dir(folder: Path) -> None:
    """Create ``folder`` 0700 (its parents as usual), whatever the umask."""
    if folder.is_dir():
        return
    try:
        os.mkdir(folder, PRIVATE_DIR)
    except FileNotFoundError:
        folder.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.mkdir(folder, PRIVATE_DIR)
        except FileExistsError:  # another process was first
            return
    except FileExistsError:
        return
    os.chmod(folder, PRIVATE_DIR)  # whatever the umask


class LinkedFile(OSError):
    """A spool file with more than one name (a hard link): never written."""


def open_private(path: Path | str, flags: int, *, dir_fd: int | None = None) -> int:
    """``os.open`` of a spool file: 0600 when created, never through a symbolic link, never
    a file that has another name elsewhere (a hard link: what is written would land in the
    other file too; checked before anything is truncated or written). ``path`` is relative
    to the open folder ``dir_fd`` when given.

    Raises:
        LinkedFile: the file has more than one link.
    """
    fd = os.open(path, (flags & ~os.O_TRUNC) | NOFOLLOW, PRIVATE_FILE, dir_fd=dir_fd)
    try:
        st = os.fstat(fd)
        if stat.S_ISREG(st.st_mode) and st.st_nlink > 1:
            msg = (
                f"the spool file {path} has {st.st_nlink} names (a hard link to a file "
                "elsewhere), which a spool never makes: it is not written; remove it"
            )
            raise LinkedFile(msg)
        if flags & os.O_CREAT:
            os.fchmod(fd, PRIVATE_FILE)  # whatever the umask
        if flags & os.O_TRUNC:
            os.ftruncate(fd, 0)
    except BaseException:
        os.close(fd)
        raise
    return fd


def write_private(path: Path | str, data: bytes, *, dir_fd: int | None = None) -> None:
    """Write a small spool file (0600, no symbolic link followed, no hard link written)."""
    fd = open_private(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, dir_fd=dir_fd)
    try:
        write_all(fd, data)
    finally:
        os.close(fd)


def read_private(path: Path) -> bytes:
    """The bytes of a spool file, never through a symbolic link."""
    fd = os.open(path, os.O_RDONLY | NOFOLLOW)
    with os.fdopen(fd, "rb") as handle:
        return handle.read()


def read_range(path: Path, offset: int, size: int) -> bytes:
    """``size`` bytes of a spool file from ``offset`` (fewer when the file is shorter)."""
    fd = os.open(path, os.O_RDONLY | NOFOLLOW)
    with os.fdopen(fd, "rb") as handle:
        handle.seek(offset)
        return handle.read(size)


#: fallocate(2)'s flags: free a file's blocks in a range, its size and offsets unchanged.
_PUNCH_HOLE = 0x02 | 0x01  # FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE


def punch_hole(path: Path, offset: int, size: int) -> bool:
    """Give the disk blocks of ``size`` bytes of ``path`` from ``offset`` back to the file
    system (they read as zeros after), keeping the file's size and every other offset; False
    where the system or file system cannot (then nothing is freed). A sync on a full disk
    frees the payloads it delivered this way, to make room for its progress notes."""
    try:  # ctypes only on a full disk, not for every process that imports tracked
        import ctypes
        import ctypes.util

        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        fallocate = libc.fallocate
    except (OSError, AttributeError):
        return False
    fallocate.argtypes = (ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64)
    try:
        fd = os.open(path, os.O_WRONLY | NOFOLLOW)
    except OSError:
        return False
    try:
        return fallocate(fd, _PUNCH_HOLE, offset, size) == 0
    finally:
        os.close(fd)


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def fsync_directory(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def hostname() -> str:
    return os.uname().nodename if hasattr(os, "uname") else os.environ.get("COMPUTERNAME", "")


def unsafe(path: Path, what: str, st: os.stat_result) -> str | None:
    """Why a folder (the root, a session's, the key's) cannot be trusted, or None."""
    if stat.S_ISLNK(st.st_mode):
        return f"{what} {path} is a symbolic link: point the spool at the real folder"
    if not stat.S_ISDIR(st.st_mode):
        return f"{what} {path} is not a folder: remove it"
    uid = os.geteuid() if hasattr(os, "geteuid") else st.st_uid
    if st.st_uid != uid:
        return (
            f"{what} {path} belongs to user id {st.st_uid}, not to you ({uid}): another "
            "user's spool is never read; remove it (or sync it as its owner)"
        )
    if st.st_mode & 0o022:
        return (
            f"{what} {path} may be written by others (mode {stat.filemode(st.st_mode)}): "
            f"check what is in it, then `chmod 700 {path}`"
        )
    return None


def root_refusal(root: Path) -> str | None:
    """Why the spool root cannot be read (another user's, writable by others), or None."""
    try:
        return unsafe(root, "the spool", os.lstat(root))
    except FileNotFoundError:
        return None
    except OSError as exc:
        return f"the spool {root} cannot be read ({exc.strerror})"


def folder_refusal(folder: Path) -> str | None:
    """Why a session folder cannot be read, or None: checked before anything in it is."""
    if not SESSION_NAME.match(folder.name):
        return (
            f"{folder} is not a session folder (their names are local- and 32 hex digits): "
            "move it out of the spool"
        )
    try:
        why = unsafe(folder, "the session folder", os.lstat(folder))
        if why is not None:
            return why
        for child in os.scandir(folder):
            if child.is_symlink():
                return (
                    f"{Path(child.path)} is a symbolic link, which a spool never holds: "
                    f"remove it (`rm {Path(child.path)}`), or the folder"
                )
            if not (child.is_file(follow_symlinks=False) or child.is_dir(follow_symlinks=False)):
                return (
                    f"{Path(child.path)} is not a plain file (a pipe, a socket, a device), "
                    "which a spool never holds: remove it, or the folder"
                )
    except OSError as exc:
        return f"the session folder {folder} cannot be read ({exc.strerror})"
    return None


def session_folders(root: Path, refused: dict[str, str]) -> list[Path]:
    """The session folders under ``root`` that pass the checks, oldest first; the others
    (every one, when the root fails them) go into ``refused`` (path -> why, what to do)."""
    if not root.is_dir():
        return []
    why = root_refusal(root)
    if why is not None:
        refused[str(root)] = why
        return []
    folders = []
    try:
        # One listing (no stat per name: the kind of entry comes with it), names compared
        # as strings: a spool of 100,000 folders is listed in well under a second.
        listed = sorted((entry.name, entry) for entry in os.scandir(root))
    except OSError as exc:
        refused[str(root)] = f"the spool {root} cannot be read ({exc.strerror})"
        return []
    for name, entry in listed:
        try:
            if not entry.is_symlink() and not entry.is_dir():
                continue  # a stray file is no session, and is not read
        except OSError:
            continue
        path = root / name
        why = folder_refusal(path)
        if why is not None:
            refused[str(path)] = why
            continue
        for stamped in (path / HEADER, path):  # a folder without a header is read too
            with contextlib.suppress(OSError):
                folders.append((os.lstat(stamped).st_mtime, path))
                break
    folders.sort(key=lambda item: item[0])
    return [folder for _, folder in folders]
