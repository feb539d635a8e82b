"""A session folder as ``tracked sync`` and ``tracked status`` read it: every line verified,
every damaged one said in words (which line, which run it claims), none of them trusted.

Reading is bounded: the header and each line are read with a size bound (``MAX_HEADER_BYTES``,
``MAX_LINE_BYTES``), entries and progress files past ``MAX_LOG_BYTES`` refuse the folder,
lines are read one at a time (never a whole file), payloads by offset and size in chunks,
and at most ``DAMAGE_SAID`` sentences of damage are kept per folder (all are counted)."""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

from attrs import define, field

from tracked.spool import codec
from tracked.spool.codec import Damaged
from tracked.spool.entries import Entry, Header, PayloadRef, Progress, StagePayload
from tracked.spool.format import (
    ENTRIES,
    HEADER,
    INCOMPLETE,
    LOCK,
    MAX_HEADER_BYTES,
    MAX_LINE_BYTES,
    MAX_LOG_BYTES,
    NOFOLLOW,
    PAYLOADS,
    PROGRESS,
    RELEASED,
    hostname,
    read_range,
)
from tracked.spool.lock import is_locked

#: The sentences of damage kept per folder (the rest are counted, not said).
DAMAGE_SAID = 20
#: Past this many damaged lines a folder is refused as a whole: what is in it is no spool
#: (reading 256 MB of junk lines one by one would take minutes).
DAMAGE_REFUSED = 1000
#: Payloads are read (to check their MACs) this many bytes at a time.
CHUNK_BYTES = 1 << 20


class Oversized(bytes):
    """A line longer than ``MAX_LINE_BYTES``: its first bytes only (the rest was skipped)."""


def _open_bounded(path: Path, bound: int, what: str):
    """The file at ``path`` opened for reading (no link followed), or None when missing.

    Raises:
        Damaged: it is larger than ``bound``: the folder is refused, nothing of it read.
    """
    try:
        # Non-blocking: a pipe planted under a spool file's name must not hold the reader.
        fd = os.open(path, os.O_RDONLY | NOFOLLOW | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        return None
    handle = os.fdopen(fd, "rb")
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        handle.close()
        raise Damaged(f"{what} is not a plain file: move the folder out of the spool")
    size = st.st_size
    if size > bound:
        handle.close()
        msg = (
            f"{what} is {size} bytes, over the {bound} a spool file may hold (it was not "
            "written by tracked, or is damaged): move the folder out of the spool"
        )
        raise Damaged(msg)
    return handle


def _lines(path: Path) -> Iterator[bytes]:
    """The lines of a spool file, each with its newline (a cut last one without), one at a
    time; a line over ``MAX_LINE_BYTES`` comes as ``Oversized`` (its head), the rest of it
    skipped unread."""
    handle = _open_bounded(path, MAX_LOG_BYTES, path.name)
    if handle is None:
        return
    with handle:
        while True:
            line = handle.readline(MAX_LINE_BYTES + 1)
            if not line:
                return
            if len(line) > MAX_LINE_BYTES and not line.endswith(b"\n"):
                while True:  # skip to the end of the line, a bounded chunk at a time
                    rest = handle.readline(CHUNK_BYTES)
                    if not rest or rest.endswith(b"\n"):
                        break
                yield Oversized(line[:200])
                continue
            yield line


def _read_header(path: Path) -> bytes:
    handle = _open_bounded(path / HEADER, MAX_HEADER_BYTES, HEADER)
    if handle is None:
        raise Damaged("it has no header.json")
    with handle:
        return handle.read(MAX_HEADER_BYTES + 1)


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

    #: How many lines or payloads were found damaged (``damage`` says the first few).
    damage_count: int = 0
    #: The spool format of the folder (its header's).
    format: int = codec.FORMAT

    @classmethod
    def read(cls, path: Path, key: bytes) -> SpooledSession:
        """Raises: Unreadable (another format), Damaged (no header that verifies, a file
        over its bound)."""
        raw = _read_header(path)
        header = codec.decode_header(raw, key, path.name)
        session = cls(path, header, key=key, format=codec.header_format(raw))
        for number, line in enumerate(session._whole_lines(ENTRIES), 1):
            what = f"line {number} of entries.jsonl"
            if isinstance(line, Oversized):
                session.note_damage(
                    f"{what} is over {MAX_LINE_BYTES} bytes, more than a record holds: "
                    "that line is not read"
                )
                continue
            try:
                entry, ref = codec.decode_entry(line, key, path.name, what)
            except Damaged as exc:
                session.note_damage(f"{exc}{codec.claimed(line)}: that record is not written")
                continue
            session.entries.append(entry)
            if ref is not None:
                session.payloads[entry.seq] = ref
        session.progress = session.progress_for(PROGRESS)
        return session

    def note_damage(self, sentence: str) -> None:
        """Count a damaged line or payload; say it if fewer than ``DAMAGE_SAID`` are.

        Raises:
            Damaged: more than ``DAMAGE_REFUSED`` lines are: the folder is refused.
        """
        self.damage_count += 1
        if self.damage_count > DAMAGE_REFUSED:
            msg = (
                f"more than {DAMAGE_REFUSED} of its lines are damaged (the first: "
                f"{self.damage[0]}): it is no spool folder any more; look at it, then move it "
                "out of the spool"
            )
            raise Damaged(msg)
        if len(self.damage) < DAMAGE_SAID:
            self.damage.append(sentence)
        elif len(self.damage) == DAMAGE_SAID:
            self.damage.append("(more damage is counted, not said)")

    def progress_for(self, name: str) -> list[Progress]:
        """The progress noted in ``name`` (another store's file: see ``tracked.spool.sync``);
        a damaged note is said (its steps may be written again)."""
        events = []
        for number, line in enumerate(self._whole_lines(name), 1):
            what = f"line {number} of {name}"
            try:
                if isinstance(line, Oversized):
                    raise Damaged(f"{what} is over {MAX_LINE_BYTES} bytes")
                events.append(codec.decode_progress(line, self._key, self.path.name, what))
            except Damaged as exc:
                self.note_damage(f"{exc}: the step it noted may be written again")
        return events

    def _whole_lines(self, name: str) -> Iterator[bytes]:
        """The lines of ``name``; in a folder marked incomplete (a full disk), a last line
        cut short is the record the disk refused, which the mark accounts for: left out."""
        incomplete = self.incomplete is not None
        held = None
        for line in _lines(self.path / name):
            if held is not None:
                yield held
            held = line
        if held is not None and not (incomplete and not held.endswith(b"\n")):
            yield held

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

    def check_payloads(self, skip: Callable[[int], bool] = lambda seq: False) -> list[str]:
        """The damage in ``payloads.bin``, one sentence per payload (MACs checked over chunks,
        nothing unpickled); entries for which ``skip(seq)`` is true are not checked (a sync
        frees the payloads it delivered on a full disk)."""
        damage = []
        for entry in self.entries:
            ref = self.payloads.get(entry.seq)
            if ref is None or skip(entry.seq):
                continue
            try:
                chunks = _chunks(self.path / PAYLOADS, ref.offset, ref.size)
                codec.check_payload_chunks(chunks, ref, self._key, self.session_id, entry.seq)
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
            said = read_range(self.path / INCOMPLETE, 0, 4096)  # a sentence: bounded
            return said.decode(errors="replace") or "incomplete"
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


def _chunks(path: Path, offset: int, size: int) -> Iterator[bytes]:
    """``size`` bytes of ``path`` from ``offset``, ``CHUNK_BYTES`` at a time (fewer when
    the file is shorter)."""
    fd = os.open(path, os.O_RDONLY | NOFOLLOW)
    with os.fdopen(fd, "rb") as handle:
        handle.seek(offset)
        left = size
        while left > 0:
            chunk = handle.read(min(left, CHUNK_BYTES))
            if not chunk:
                return
            left -= len(chunk)
            yield chunk


def describe_entry(entry: Entry) -> str:
    """Which record an entry is, in words: the run and the step it belongs to."""
    stage = getattr(entry, "stage", None)
    run = getattr(entry, "run", None)
    what = f"stage {stage!r}" if stage else entry.kind.replace("_", " ")
    return f"{what} (entry {entry.seq}" + (f", run {run})" if run else ")")
