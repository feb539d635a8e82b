"""The per-user key that authenticates the spool (HMAC-SHA256), and the MACs made with it.

The key is 32 random bytes in a file of its own (0600, in a 0700 folder, both the user's):
``TRACKED_SPOOL_KEY_FILE``, else ``spool.key`` in the user config directory's ``tracked``
folder. It is made on the first spooled session, and never again while session folders
signed with a key that is missing wait (``writer_key``): each folder's header names the
fingerprint of its key (``fingerprint``), so that a message can say which key to restore.
Without a home folder the key lives in ``<tmp>/tracked-<uid>`` (``tracked.core.homes``).
A key file that another user owns, that
others may read or write, or that is a symbolic link is refused with what to do: a key
others know authenticates nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import stat
import threading
from collections import Counter
from pathlib import Path

from tracked.core.config import KEY_ENV, env_text
from tracked.core.homes import own_place
from tracked.spool.format import (
    HEADER,
    MAX_HEADER_BYTES,
    NOFOLLOW,
    PRIVATE_FILE,
    SESSION_NAME,
    make_private_dir,
    open_private,
    read_range,
    unsafe,
    write_all,
)

KEY_BYTES = 32


class SpoolKeyError(RuntimeError):
    """The spool key cannot be used (missing for a reader, another user's, readable by others)."""


class MissingKey(SpoolKeyError):
    """There is no spool key where one is looked for."""


def key_path() -> Path:
    """``TRACKED_SPOOL_KEY_FILE``, else the user config directory's ``tracked/spool.key``,
    else (no home folder, or one that cannot be written) ``<tmp>/tracked-<uid>/spool.key``."""
    configured = env_text(KEY_ENV)
    if configured:
        return Path(configured).expanduser()
    import platformdirs

    def config() -> Path:
        return Path(platformdirs.user_config_dir("tracked"))

    return own_place(config, "key") / "spool.key"


# Path -> key: read once per process (a key never changes under a running process).
_keys: dict[Path, bytes] = {}
_keys_lock = threading.Lock()


def spool_key(*, create: bool) -> bytes:
    """The key; made when missing if ``create`` (a writer), else ``SpoolKeyError``."""
    path = key_path()
    with _keys_lock:
        key = _keys.get(path)
        if key is None:
            key = _load(path, create)
            _keys[path] = key
        return key


def _load(path: Path, create: bool) -> bytes:
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        if not create:
            msg = (
                f"there is no spool key at {path}: the records in the spool cannot be "
                f"verified (restore the key's file there, or set {KEY_ENV} to it)"
            )
            raise MissingKey(msg) from None
        return _create(path)
    _check(path, st)
    fd = os.open(path, os.O_RDONLY | NOFOLLOW)
    with os.fdopen(fd, "rb") as handle:
        key = handle.read()
    if len(key) != KEY_BYTES:
        msg = (
            f"the spool key {path} is not {KEY_BYTES} bytes long (damaged?): restore it from a "
            f"copy (or set {KEY_ENV} to one); without it, the folders it signed cannot be "
            f"verified: `tracked sync --discard-unverifiable` removes them, then move {path} "
            "aside and a new key is made"
        )
        raise SpoolKeyError(msg)
    return key


def _check(path: Path, st: os.stat_result) -> None:
    why = unsafe(path.parent, "the folder of the spool key", os.lstat(path.parent))
    uid = os.geteuid() if hasattr(os, "geteuid") else st.st_uid
    if why is None and not stat.S_ISREG(st.st_mode):
        why = f"the spool key {path} is not a plain file (a symbolic link?): remove it"
    elif why is None and st.st_uid != uid:
        why = f"the spool key {path} belongs to user id {st.st_uid}, not to you ({uid})"
    elif why is None and st.st_mode & 0o077:
        why = (
            f"the spool key {path} may be read by others (mode {stat.filemode(st.st_mode)}): "
            f"`chmod 600 {path}`; if others may have copied it, sync what waits in the spool "
            "first (`tracked sync`), then move the key aside (a new one is made)"
        )
    if why is not None:
        raise SpoolKeyError(why)


def _create(path: Path) -> bytes:
    """Write a new key where none is; a process that was first wins (its key is read)."""
    make_private_dir(path.parent)
    why = unsafe(path.parent, "the folder of the spool key", os.lstat(path.parent))
    if why is not None:
        raise SpoolKeyError(why)
    key = os.urandom(KEY_BYTES)
    draft = path.with_name(f".{path.name}.{os.getpid()}.{os.urandom(4).hex()}")
    fd = open_private(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    try:
        write_all(fd, key)
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(draft, path)  # fails when another process made one meanwhile
    except FileExistsError:
        return _load(path, create=False)
    finally:
        os.unlink(draft)
    os.chmod(path, PRIVATE_FILE)
    return key


def fingerprint(key: bytes) -> str:
    """A short name of ``key`` that tells nothing of it: what a session folder notes, so
    that a missing key can be named (``sha256("tracked spool key" + key)``, 16 hex digits)."""
    return hashlib.sha256(b"tracked spool key\0" + key).hexdigest()[:16]


def noted_key(folder: Path) -> str | None:
    """The fingerprint of the key a session folder says it was signed with (its header's
    ``key_id``), or None. Only to name the key in a message: read unverified, so the header
    is not parsed, only searched (its first ``MAX_HEADER_BYTES``, in any format)."""
    try:
        head = read_range(folder / HEADER, 0, MAX_HEADER_BYTES)
    except OSError:
        return None
    found = _KEY_ID.search(head)
    return found.group(1).decode() if found is not None else None


_KEY_ID = re.compile(rb'"key_id"\s*:\s*"([0-9a-f]{1,64})"')


def waiting_keys(root: Path) -> Counter[str]:
    """The session folders of the spool ``root``, counted by the key they say signed them
    (``"unknown"``: a folder that does not say)."""
    keys: Counter[str] = Counter()
    try:
        names = [entry.name for entry in os.scandir(root) if SESSION_NAME.match(entry.name)]
    except OSError:
        return keys
    for name in names:
        keys[noted_key(root / name) or "unknown"] += 1
    return keys


def writer_key(root: Path) -> bytes:
    """The key a new session folder in ``root`` is signed with: the user's, made when
    there is none and nothing in the spool waits for one.

    Raises:
        SpoolKeyError: the key cannot be used; or it is missing while folders signed with
            it wait (a new key would leave them unverifiable, as if they were tampered with).
    """
    try:
        return spool_key(create=False)
    except MissingKey:
        waiting = waiting_keys(root)
        if not waiting:
            return spool_key(create=True)
    keys = ", ".join(
        f"{count} signed with key {noted}" if noted != "unknown" else f"{count} by an unnamed key"
        for noted, count in sorted(waiting.items())
    )
    path = key_path()
    msg = (
        f"the spool key {path} is missing, and {sum(waiting.values())} session folders in "
        f"{root} wait ({keys}): no new key is made, which would leave them unverifiable. "
        f"Restore the key's file at {path} (or set {KEY_ENV} to it), then run `tracked sync`; "
        "or give those runs up: `tracked sync --discard-unverifiable` removes them"
    )
    raise SpoolKeyError(msg)


def unverifiable(folder: Path, key: bytes | None, why: str) -> str:
    """Why a session folder cannot be verified (``why``), said with the key it names: a
    folder signed with another key is not "changed after it was written"."""
    noted = noted_key(folder)
    current = fingerprint(key) if key is not None else None
    if noted is None or noted == current:
        return why
    now = f"your spool key ({key_path()}) is {current}" if current else "there is no spool key"
    return (
        f"signed with spool key {noted}, and {now}: restore that key's file (or set {KEY_ENV} "
        "to it), then run `tracked sync`; or `tracked sync --discard-unverifiable` removes "
        "the folder"
    )


def mac(key: bytes, *parts: bytes) -> str:
    """HMAC-SHA256 of ``parts`` (each prefixed by its length: no two lists give one text)."""
    digest = hmac.new(key, digestmod=hashlib.sha256)
    for part in parts:
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()


def verify(key: bytes, expected: object, *parts: bytes) -> bool:
    """Whether ``expected`` is the MAC of ``parts`` (compared in constant time)."""
    return isinstance(expected, str) and hmac.compare_digest(expected, mac(key, *parts))


def streamed_mac(key: bytes, parts: tuple[bytes, ...], last_size: int, chunks) -> str:
    """``mac(key, *parts, last)`` for a last part of ``last_size`` bytes given in ``chunks``
    (a payload read piece by piece); chunks past ``last_size`` are not hashed."""
    digest = hmac.new(key, digestmod=hashlib.sha256)
    for part in parts:
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    digest.update(last_size.to_bytes(8, "big"))
    left = last_size
    for chunk in chunks:
        digest.update(chunk[:left])
        left -= min(left, len(chunk))
    return digest.hexdigest()


def verify_mac(expected: object, actual: str) -> bool:
    """Whether ``expected`` is the MAC ``actual`` (compared in constant time)."""
    return isinstance(expected, str) and hmac.compare_digest(expected, actual)
