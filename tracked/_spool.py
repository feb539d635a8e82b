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

Entries are appended with one ``write`` each, so a killed process leaves whole lines; a
session whose store is away is fsynced, so that a machine crash afterwards loses nothing.
Payloads are pickles: ``tracked sync`` loads them, so sync only spools you wrote yourself.
"""

from __future__ import annotations

import contextlib
import json
import os
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
        self.path.mkdir(parents=True, exist_ok=False)
        document = {**header, "pid": os.getpid(), "host": _hostname()}
        document.setdefault("created_ms", time.time_ns() // 1_000_000)
        (self.path / HEADER).write_bytes(_dumps(document))
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND
        self._entries = os.open(self.path / ENTRIES, flags, 0o644)
        self._progress = os.open(self.path / PROGRESS, flags, 0o644)
        self._payloads = os.open(self.path / PAYLOADS, flags, 0o644)
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
        (self.path / RELEASED).touch()
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
        data = path.read_bytes()
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
        with open(self.path / PAYLOADS, "rb") as handle:
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
        return sum(p.stat().st_size for p in self.path.rglob("*") if p.is_file())

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


def spooled_sessions(root: Path) -> Iterator[SpooledSession]:
    """The session folders under ``root``, oldest first."""
    if not root.is_dir():
        return
    folders = [p for p in root.iterdir() if p.is_dir() and (p / HEADER).exists()]
    folders.sort(key=lambda p: (p / HEADER).stat().st_mtime)
    for folder in folders:
        session = SpooledSession.read(folder)
        if session is not None:
            yield session
