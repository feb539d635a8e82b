"""The per-user key that authenticates the spool (HMAC-SHA256), and the MACs made with it.

The key is 32 random bytes in a file of its own (0600, in a 0700 folder, both the user's):
``TRACKED_SPOOL_KEY_FILE``, else ``spool.key`` in the user config directory's ``tracked``
folder. It is made on the first spooled session. A key file that another user owns, that
others may read or write, or that is a symbolic link is refused with what to do: a key
others know authenticates nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import stat
import threading
from pathlib import Path

from tracked.spool.format import (
    NOFOLLOW,
    PRIVATE_FILE,
    make_private_dir,
    open_private,
    unsafe,
    write_all,
)

KEY_ENV = "TRACKED_SPOOL_KEY_FILE"
KEY_BYTES = 32


class SpoolKeyError(RuntimeError):
    """The spool key cannot be used (missing for a reader, another user's, readable by others)."""


def key_path() -> Path:
    """``TRACKED_SPOOL_KEY_FILE``, else the user config directory's ``tracked/spool.key``."""
    configured = os.environ.get(KEY_ENV)
    if configured:
        return Path(configured).expanduser()
    import platformdirs

    return Path(platformdirs.user_config_dir("tracked")) / "spool.key"


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
                f"verified (they were written with another key: set {KEY_ENV} to its file)"
            )
            raise SpoolKeyError(msg) from None
        return _create(path)
    _check(path, st)
    fd = os.open(path, os.O_RDONLY | NOFOLLOW)
    with os.fdopen(fd, "rb") as handle:
        key = handle.read()
    if len(key) != KEY_BYTES:
        msg = f"the spool key {path} is not {KEY_BYTES} bytes long: remove it (a new one is made)"
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
            f"`chmod 600 {path}`, or remove it if others may have copied it"
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
