"""The user's own folders when the home folder cannot hold them.

A container's random user has no passwd entry and often no ``HOME``: there is no home
folder at all (``Path.home()`` raises, platformdirs raises or answers ``~/.cache``, a path
relative to the current folder). A system user's ``HOME`` may be a folder it cannot write
(``/nonexistent``). tracked's own folders (the spool and its key) then live in a private
folder of the user's in the temporary directory, ``<tmp>/tracked-<uid>`` (0700, owned by
the user, checked as the spool's folders are: not another user's, not a link, not writable
by others), and one notice says so. MLflow's import, which asks for the home folder, is
given that folder as ``HOME`` while it runs (``tracked.backends.mlflow.client``).

Nothing here is shared between users: the folder's name carries the user id, and a folder
of that name that someone else made (or planted as a link) is refused, never used.
"""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path

from tracked.core.report import notice

PRIVATE_DIR = 0o700


class PrivateFolderError(OSError):
    """The private folder in the temporary directory cannot be used (someone else's, a
    link, writable by others): the message says what to do."""


def user_id() -> int:
    return os.geteuid() if hasattr(os, "geteuid") else 0


def home_folder() -> Path | None:
    """The user's home folder as the standard library resolves it (``HOME``, else the passwd
    entry), or None when there is none."""
    text = os.path.expanduser("~")
    return None if text == "~" else Path(text)


def private_folder() -> Path:
    """``<tmp>/tracked-<uid>``: made 0700 when missing, checked every time.

    Raises:
        PrivateFolderError: the folder is another user's, a link, not a folder or writable
            by others (someone made it first, in a folder everyone may write).
    """
    uid = user_id()
    path = Path(tempfile.gettempdir()) / f"tracked-{uid}"
    try:
        os.mkdir(path, PRIVATE_DIR)
    except FileExistsError:
        pass
    else:
        os.chmod(path, PRIVATE_DIR)  # whatever the umask
    st = os.lstat(path)
    why = None
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
        why = "is not a folder (a symbolic link?)"
    elif hasattr(os, "geteuid") and st.st_uid != uid:
        why = f"belongs to user id {st.st_uid}, not to you ({uid})"
    elif st.st_mode & 0o077:
        why = f"may be read or written by others (mode {stat.filemode(st.st_mode)})"
    if why is not None:
        msg = (
            f"tracked's private folder {path} {why}: someone else made it; remove it (as its "
            "owner, or root), or set TRACKED_SPOOL_DIR and TRACKED_SPOOL_KEY_FILE to folders "
            "of your own"
        )
        raise PrivateFolderError(msg)
    return path


def _can_hold(path: Path) -> bool:
    """Whether ``path`` is a folder, or could be made: the nearest folder above it that
    exists may be written."""
    if not path.is_absolute():
        return False
    if path.is_dir():
        return True
    for above in path.parents:
        if above.exists():
            return above.is_dir() and os.access(above, os.W_OK | os.X_OK)
    return False


def own_place(default: Callable[[], Path], name: str) -> Path:
    """Where tracked keeps one of its own folders: ``default()`` (under the home folder)
    when it can be used, else ``name`` in the private folder (said once a process).

    Raises:
        PrivateFolderError: neither can be used.
    """
    try:
        path: Path | None = default()
    except RuntimeError:  # platformdirs: no home folder to expand
        path = None
    if path is not None and _can_hold(path):
        return path
    home = home_folder()
    if home is None:
        why = (
            f"there is no home folder (HOME is not set and user id {user_id()} has no passwd entry)"
        )
    else:
        why = f"the home folder {home} cannot be written"
    folder = private_folder()
    notice(
        f"{why}: tracked keeps its spool and spool key in {folder}, a folder only you may "
        "read (the temporary directory may be emptied at reboot: set TRACKED_SPOOL_DIR and "
        "TRACKED_SPOOL_KEY_FILE to keep them elsewhere)",
        key="homeless",
        warn=False,
    )
    return folder / name
