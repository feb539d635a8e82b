"""A session folder as ``tracked sync`` and ``tracked status`` read it: every line verified,
every damaged one said in words (which line, which run it claims), none of them trusted."""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

from attrs import define, field

from tracked.spool import codec
from tracked.spool.codec import Damaged
from tracked.spool.format import (
    ENTRIES,
    HEADER,
    INCOMPLETE,
    LOCK,
    PAYLOADS,
    PROGRESS,
    RELEASED,
    hostname,
    read_private,
    read_range,
)
from tracked.spool.lock import is_locked
from tracked.spool.records import Entry, Header, PayloadRef, Progress, StagePayload


def _lines(path: Path) -> list[bytes]:
    """The lines of a spool file, each with its newline (a cut last one without)."""
    try:
        data = read_private(path)
    except FileNotFoundError:
        return []
    return data.splitlines(keepends=True)


@define
class SpooledSession:
    """A session folder: its header, the entries and progress notes that verify, and the
    damage found (one sentence per bad line)."""

    path: Path
    header: Header
    entries: list[Entry] = field(factory=list)
    payloads: dict[int, PayloadRef] = field(factory=dict)
    progress: list[Progress] = field(factory=list)
    damage: list[str] = field(factory=list)
    _key: bytes = b""

    @classmethod
    def read(cls, path: Path, key: bytes) -> SpooledSession:
        """Raises: Unreadable (another format), Damaged (no header that verifies)."""
        try:
            raw = read_private(path / HEADER)
        except FileNotFoundError:
            raise Damaged("it has no header.json") from None
        header = codec.decode_header(raw, key, path.name)
        session = cls(path, header, key=key)
        for number, line in enumerate(session._whole_lines(ENTRIES), 1):
            what = f"line {number} of entries.jsonl"
            try:
                entry, ref = codec.decode_entry(line, key, path.name, what)
            except Damaged as exc:
                session.damage.append(f"{exc}{codec.claimed(line)}: that record is not written")
                continue
            session.entries.append(entry)
            if ref is not None:
                session.payloads[entry.seq] = ref
        session.progress = session.progress_for(PROGRESS)
        return session

    def progress_for(self, name: str) -> list[Progress]:
        """The progress noted in ``name`` (another store's file: see ``tracked.spool.sync``);
        a damaged note is said (its steps may be written again)."""
        events = []
        for number, line in enumerate(self._whole_lines(name), 1):
            what = f"line {number} of {name}"
            try:
                events.append(codec.decode_progress(line, self._key, self.path.name, what))
            except Damaged as exc:
                self.damage.append(f"{exc}: the step it noted may be written again")
        return events

    def _whole_lines(self, name: str) -> list[bytes]:
        """The lines of ``name``; in a folder marked incomplete (a full disk), a last line
        cut short is the record the disk refused, which the mark accounts for: left out."""
        lines = _lines(self.path / name)
        if lines and not lines[-1].endswith(b"\n") and self.incomplete is not None:
            lines.pop()
        return lines

    @property
    def session_id(self) -> str:
        return self.path.name

    def payload(self, entry: Entry) -> StagePayload | None:
        """The payload of ``entry`` (None if it has none), unpickled once its MAC verified.

        Raises:
            Damaged: cut short or changed.
        """
        ref = self.payloads.get(entry.seq)
        if ref is None:
            return None
        data = read_range(self.path / PAYLOADS, ref.offset, ref.size)
        codec.check_payload(data, ref, self._key, self.session_id, entry.seq)
        return codec.decode_payload(data)

    def check_payloads(self) -> list[str]:
        """The damage in ``payloads.bin``, one sentence per payload (MACs checked, nothing
        unpickled)."""
        damage = []
        for entry in self.entries:
            ref = self.payloads.get(entry.seq)
            if ref is None:
                continue
            try:
                data = read_range(self.path / PAYLOADS, ref.offset, ref.size)
                codec.check_payload(data, ref, self._key, self.session_id, entry.seq)
            except (Damaged, OSError) as exc:
                damage.append(f"the payload of {describe_entry(entry)} is {exc}")
        return damage

    @property
    def closed(self) -> bool:
        """Whether the session ended (its last entry ends the parent run, or it was attached
        to another session's run and said it was done)."""
        return any(entry.kind in ("end_run", "detach") for entry in self.entries)

    @property
    def released(self) -> bool:
        """Whether its writer is done with it (see ``SessionSpool.release``)."""
        return (self.path / RELEASED).exists()

    @property
    def writing(self) -> bool:
        """Whether a process holds the folder's lock: its writer (alive), or a sync; or it
        was written on another host, which cannot be asked, and did not end."""
        if is_locked(self.path / LOCK):
            return True
        return self.header.host != hostname() and not (self.closed or self.released)

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

    def size_bytes(self) -> int:
        total = 0
        with contextlib.suppress(OSError):
            for child in os.scandir(self.path):
                if child.is_file(follow_symlinks=False):
                    total += child.stat(follow_symlinks=False).st_size
        return total

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


def describe_entry(entry: Entry) -> str:
    """Which record an entry is, in words: the run and the step it belongs to."""
    stage = getattr(entry, "stage", None)
    run = getattr(entry, "run", None)
    what = f"stage {stage!r}" if stage else entry.kind.replace("_", " ")
    return f"{what} (entry {entry.seq}" + (f", run {run})" if run else ")")
