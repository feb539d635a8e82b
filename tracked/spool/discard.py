"""``tracked sync --discard-unverifiable``: the explicit way out when a spool key is lost.

A session folder whose header does not verify with the current key (signed with a key that
is gone, or with none the user has) can never be synced: its records cannot be told from
planted ones. Such folders wait, and no new key is made while they do (see
``tracked.spool.key.writer_key``), until the key is restored or the user gives them up
here. Only folders that pass the spool's checks (the user's own, no links) are removed, and
never one whose writer is still at work (its lock held); a folder of another spool format
is not unverifiable, only unread here (its message says what to do), and is kept.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from attrs import frozen

from tracked.spool import codec
from tracked.spool.codec import Damaged, Unreadable
from tracked.spool.format import HEADER, LOCK, read_private, session_folders
from tracked.spool.key import SpoolKeyError, noted_key, spool_key
from tracked.spool.lock import try_lock, unlock


@frozen(kw_only=True)
class Discarded:
    """A session folder that was (or, in a dry run, would be) removed, and why."""

    path: Path
    #: The fingerprint of the key its header names, or None when it names none.
    key_id: str | None
    why: str


def unverifiable_folders(spool: Path) -> list[tuple[Path, str]]:
    """The session folders of ``spool`` whose header does not verify with the current key
    (every one, when there is no key), each with why."""
    folders = session_folders(spool, {})
    try:
        key: bytes | None = spool_key(create=False)
    except SpoolKeyError as exc:
        key, missing = None, str(exc)
    found = []
    for folder in folders:
        if key is None:
            found.append((folder, missing))
            continue
        try:
            codec.decode_header(read_private(folder / HEADER), key, folder.name)
        except Unreadable:
            continue  # another format: not this command's to remove
        except (Damaged, OSError) as exc:
            found.append((folder, str(exc)))
    return found


def discard_unverifiable(spool: Path, *, dry_run: bool = False) -> list[Discarded]:
    """Remove the session folders of ``spool`` that cannot be verified (see the module's
    docstring); what was removed (or, ``dry_run``, would be)."""
    discarded = []
    for folder, why in unverifiable_folders(spool):
        lock = None if dry_run else try_lock(folder / LOCK)
        if lock is None and not dry_run:
            continue  # its writer is at work (with a key of its own): left alone
        try:
            noted = noted_key(folder)
            if not dry_run:
                shutil.rmtree(folder, ignore_errors=True)
            discarded.append(Discarded(path=folder, key_id=noted, why=why))
        finally:
            unlock(lock)
    return discarded
