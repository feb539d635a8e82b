"""The spool: every session's records on local disk, written before the store sees them.

A session's records go to its own folder first, then to the tracking store (by the
background writer, or later by ``tracked sync``). A folder is removed once everything in it
reached the store; what remains is what the store has not seen::

    <spool>/<session id>/header.json        who wrote it: pid, host, store (URI masked), when
    <spool>/<session id>/entries.jsonl      one JSON line per entry: start_run, stage, end_run
    <spool>/<session id>/payloads.bin       the binary parts of the entries (models, artifacts,
                                            dataset samples), pickled with cloudpickle, one
                                            after the other; an entry names its [offset, size]
    <spool>/<session id>/progress.jsonl     what reached the store: one line per step done,
                                            with the run ids the store gave
    <spool>/<session id>/released           the writer is done with the folder: ``tracked
                                            sync`` may take it over
    <spool>/<session id>/incomplete         the spool could not take every record (a full
                                            disk): what follows is not here; the reason inside

Entries are appended with one ``write`` each, so a killed process leaves whole lines; a
session whose store is away is fsynced, so that a machine crash afterwards loses nothing.
Payloads are pickles: ``tracked sync`` loads them, so sync only reads folders that can only
be yours: the root and every session folder are created 0700 and their files 0600, whatever
the umask, and sync and status refuse (without reading it) a folder that another user owns,
that group or others may write, whose name is not a session id, or that holds a symbolic
link; files are opened with ``O_NOFOLLOW``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from attrs import define, field

SPOOL_ENV = "TRACKED_SPOOL_DIR"
HEADER = "header.json"
ENTRIES = "entries.jsonl"
PROGRESS = "progress.jsonl"
PAYLOADS = "payloads.bin"
#: Written by the writer once it is done with a folder it leaves for ``tracked sync``.
RELEASED = "released"
#: Written when the spool could not take a record (a full disk): the folder is kept, and
#: what came after it is not in it.
INCOMPLETE = "incomplete"
#: The names of session folders: ``tracked._session.new_local_id`` makes them.
SESSION_NAME = re.compile(r"local-[0-9a-f]{32}\Z")
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_PRIVATE_FILE = 0o600
_PRIVATE_DIR = 0o700


def spool_root() -> Path:
    """``TRACKED_SPOOL_DIR``, else the user cache directory's ``tracked/spool``."""
    configured = os.environ.get(SPOOL_ENV)
    if configured:
        return Path(configured).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("tracked")) / "spool"


def _dumps(document: dict[str, Any]) -> bytes:
    # NaN and infinities are kept (as JSON's common NaN/Infinity extension): metrics may be.
    return (json.dumps(document, separators=(",", ":"), allow_nan=True) + "\n").encode()


class SessionSpool:
    """The folder of one session, written by the process that runs it."""

    def __init__(self, root: Path, session_id: str, header: dict[str, Any]) -> None:
        self.path = root / session_id
        make_private_root(root)
        os.mkdir(self.path, _PRIVATE_DIR)
        os.chmod(self.path, _PRIVATE_DIR)  # whatever the umask
        document = {**header, "pid": os.getpid(), "host": _hostname()}
        document.setdefault("created_ms", time.time_ns() // 1_000_000)
        write_private(self.path / HEADER, _dumps(document))
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND
        self._entries = open_private(self.path / ENTRIES, flags)
        self._progress = open_private(self.path / PROGRESS, flags)
        self._payloads = open_private(self.path / PAYLOADS, flags)
        self._payload_size = 0

    def append(self, entry: dict[str, Any], payload: bytes | None) -> None:
        """Add an entry (and its payload, written first so that the line never dangles)."""
        if payload is not None:
            entry = {**entry, "payload": [self._payload_size, len(payload)]}
            _write_all(self._payloads, payload)
            self._payload_size += len(payload)
        os.write(self._entries, _dumps(entry))

    def progress(self, event: dict[str, Any]) -> None:
        """Note that a step reached the store."""
        os.write(self._progress, _dumps(event))

    def make_durable(self) -> None:
        """fsync everything written so far: the session's records stay here for a while."""
        for fd in (self._payloads, self._entries, self._progress):
            with contextlib.suppress(OSError):
                os.fsync(fd)
        for folder in (self.path, self.path.parent):
            _fsync_directory(folder)

    def release(self) -> None:
        """The writer is done with this folder: it is ``tracked sync``'s now."""
        self.close()
        write_private(self.path / RELEASED, b"")
        _fsync_directory(self.path)

    def mark_incomplete(self, reason: str) -> None:
        """The spool cannot take more records: keep what it has, and say that it is not all
        (best effort: the disk that refused a record may refuse this too; sync then sees
        the folder without its end, as a run whose process died)."""
        self.close()
        with contextlib.suppress(OSError):
            write_private(self.path / INCOMPLETE, reason.encode())
        _fsync_directory(self.path)

    def close(self) -> None:
        for fd in (self._entries, self._progress, self._payloads):
            with contextlib.suppress(OSError):
                os.close(fd)
        self._entries = self._progress = self._payloads = -1

    def remove(self) -> None:
        """Everything reached the store: the folder goes."""
        import shutil

        self.close()
        shutil.rmtree(self.path, ignore_errors=True)


def make_private_root(root: Path) -> None:
    """Create the spool root 0700 (its parents as usual), whatever the umask."""
    if root.is_dir():
        return
    try:
        os.mkdir(root, _PRIVATE_DIR)
    except FileNotFoundError:
        root.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.mkdir(root, _PRIVATE_DIR)
        except FileExistsError:  # another process was first
            return
    except FileExistsError:
        return
    os.chmod(root, _PRIVATE_DIR)  # whatever the umask


def open_private(path: Path, flags: int) -> int:
    """``os.open`` of a spool file: 0600 when created, never through a symbolic link."""
    fd = os.open(path, flags | _NOFOLLOW, _PRIVATE_FILE)
    if flags & os.O_CREAT:
        try:
            os.fchmod(fd, _PRIVATE_FILE)  # whatever the umask
        except OSError:
            os.close(fd)
            raise
    return fd


def write_private(path: Path, data: bytes) -> None:
    """Write a small spool file (0600, no symbolic link followed)."""
    fd = open_private(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    try:
        _write_all(fd, data)
    finally:
        os.close(fd)


def read_private(path: Path) -> bytes:
    """The bytes of a spool file, never through a symbolic link."""
    fd = os.open(path, os.O_RDONLY | _NOFOLLOW)
    with os.fdopen(fd, "rb") as handle:
        return handle.read()


def _unsafe(path: Path, what: str, st: os.stat_result) -> str | None:
    """Why a folder (the root or a session's) cannot be trusted, or None."""
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
        return _unsafe(root, "the spool", os.lstat(root))
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
        why = _unsafe(folder, "the session folder", os.lstat(folder))
        if why is not None:
            return why
        for child in os.scandir(folder):
            if child.is_symlink():
                return (
                    f"{Path(child.path)} is a symbolic link, which a spool never holds: "
                    f"remove it (`rm {Path(child.path)}`), or the folder"
                )
    except OSError as exc:
        return f"the session folder {folder} cannot be read ({exc.strerror})"
    return None


def _hostname() -> str:
    return os.uname().nodename if hasattr(os, "uname") else os.environ.get("COMPUTERNAME", "")


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _fsync_directory(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _read_lines(path: Path) -> list[dict[str, Any]]:
    """The whole JSON lines of a file; a torn last line (a killed writer) is ignored."""
    try:
        data = read_private(path)
    except FileNotFoundError:
        return []
    lines = []
    for raw in data.splitlines():
        with contextlib.suppress(ValueError):
            lines.append(json.loads(raw))
    return lines


@define
class SpooledSession:
    """A session folder as ``tracked sync`` and ``tracked status`` read it."""

    path: Path
    header: dict[str, Any]
    entries: list[dict[str, Any]]
    progress: list[dict[str, Any]] = field(factory=list)

    def progress_for(self, name: str) -> list[dict[str, Any]]:
        """The progress noted in ``name`` (another store's file: see ``tracked._sync``)."""
        return self.progress if name == PROGRESS else _read_lines(self.path / name)

    @classmethod
    def read(cls, path: Path) -> SpooledSession | None:
        header = _read_lines(path / HEADER)
        if not header:
            return None
        return cls(path, header[0], _read_lines(path / ENTRIES), _read_lines(path / PROGRESS))

    @property
    def session_id(self) -> str:
        return self.path.name

    def payload(self, entry: dict[str, Any]) -> Any:
        """The unpickled payload of ``entry``, or None if it has none."""
        where = entry.get("payload")
        if not where:
            return None
        import cloudpickle

        offset, size = where
        fd = os.open(self.path / PAYLOADS, os.O_RDONLY | _NOFOLLOW)
        with os.fdopen(fd, "rb") as handle:
            handle.seek(offset)
            return cloudpickle.loads(handle.read(size))

    @property
    def closed(self) -> bool:
        """Whether the session ended (its last entry ends the parent run, or it was attached
        to another session's run and said it was done)."""
        return any(entry["kind"] in ("end_run", "detach") for entry in self.entries)

    @property
    def released(self) -> bool:
        """Whether its writer is done with it (see ``SessionSpool.release``)."""
        return (self.path / RELEASED).exists()

    @property
    def incomplete(self) -> str | None:
        """Why the spool could not take all of its records (see ``SessionSpool.mark_incomplete``),
        or None when it holds them all."""
        try:
            return read_private(self.path / INCOMPLETE).decode(errors="replace") or "incomplete"
        except FileNotFoundError:
            return None
        except OSError as exc:
            return f"incomplete ({exc.strerror})"

    def writer_alive(self) -> bool:
        """Whether the process that writes this session is still running on this host."""
        if self.header.get("host") != _hostname():
            return True  # cannot tell: assume it is, and leave its runs alone
        pid = self.header.get("pid")
        if not isinstance(pid, int):
            return False
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return not _is_zombie(pid)

    def size_bytes(self) -> int:
        return sum(p.lstat().st_size for p in self.path.iterdir() if p.is_file())

    def remove(self) -> None:
        import shutil

        shutil.rmtree(self.path, ignore_errors=True)


def _is_zombie(pid: int) -> bool:
    """A killed child not yet reaped by its parent still answers ``kill(pid, 0)``."""
    try:
        status = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return status.rsplit(")", 1)[-1].split()[0] == "Z"


def spooled_sessions(root: Path, refused: dict[str, str] | None = None) -> Iterator[SpooledSession]:
    """The session folders under ``root``, oldest first.

    A folder that fails the checks of ``folder_refusal`` (or every folder, when the root
    fails them) is not read: it goes into ``refused`` (its path -> why and what to do).
    """
    refused = {} if refused is None else refused
    if not root.is_dir():
        return
    why = root_refusal(root)
    if why is not None:
        refused[str(root)] = why
        return
    folders = []
    for path in sorted(root.iterdir()):
        if not path.is_symlink() and not path.is_dir():
            continue  # a stray file is no session, and is not read
        why = folder_refusal(path)
        if why is not None:
            refused[str(path)] = why
            continue
        with contextlib.suppress(FileNotFoundError):
            folders.append((os.lstat(path / HEADER).st_mtime, path))
    folders.sort(key=lambda item: item[0])
    for _, folder in folders:
        session = SpooledSession.read(folder)
        if session is not None:
            yield session
