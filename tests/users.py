"""Python programs run as another local user: real users (``useradd -M``) and random user ids
without a passwd entry (a container's). Only root can start them: the tests that do skip
(with the reason) otherwise.

The interpreter may sit where other users cannot reach it (pyenv under a 0700 ``/root``).
Then the program runs in a mount namespace of its own where that folder is an empty 0755
tmpfs holding only the interpreter's folders, bound read-only from the real ones: nothing
changes for the rest of the machine, and the program sees no other file of root's.
"""

from __future__ import annotations

import os
import pwd
import random
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent

needs_root = pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() != 0,
    reason="runs processes as other users: needs root (CI runs as root)",
)


def local_user(name: str) -> tuple[int, int]:
    """The user id and group id of local user ``name``, made without a home folder
    (``useradd -M``) when missing."""
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        if shutil.which("useradd") is None:
            pytest.skip("useradd is not installed: no second local user can be made")
        subprocess.run(
            ["useradd", "-M", "-s", "/usr/sbin/nologin", name],
            check=True,
            capture_output=True,
            timeout=30,
        )
        entry = pwd.getpwnam(name)
    return entry.pw_uid, entry.pw_gid


def unknown_uid() -> int:
    """A user id that no passwd entry names (as a container's random user)."""
    while True:
        uid = random.randrange(200_000, 2_000_000)
        try:
            pwd.getpwuid(uid)
        except KeyError:
            return uid


@contextmanager
def shared_folder() -> Iterator[Path]:
    """A folder every user may write (sticky, 1777, like ``/tmp``) in the temporary
    directory (pytest's own is root's alone), removed afterwards."""
    folder = Path(tempfile.mkdtemp(prefix="tracked-users-"))
    try:
        os.chmod(folder, 0o1777)
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _blocked() -> list[tuple[Path, list[str]]]:
    """The folders above the interpreter that others may not pass through, each with the
    names under it that the interpreter needs."""
    blocked: dict[Path, set[str]] = {}
    for target in (Path(os.path.realpath(sys.executable)), Path(sys.base_prefix), Path(sys.prefix)):
        for folder in reversed(target.parents):
            if not os.stat(folder).st_mode & 0o001:
                blocked.setdefault(folder, set()).add(target.relative_to(folder).parts[0])
                break
    return [(folder, sorted(names)) for folder, names in blocked.items()]


def run_as(
    uid: int,
    gid: int,
    args: list[str],
    *,
    cwd: Path,
    env: dict[str, str],
    stash: Path,
    umask: int = 0o022,
    timeout: float = 240,
) -> subprocess.CompletedProcess[str]:
    """``python *args`` as ``uid``/``gid`` (no other groups) in ``cwd`` with exactly ``env``
    (no ``HOME`` in it: none at all), bounded by ``timeout``. ``stash``: an empty folder of
    root's, used while the program's mount namespace is made."""
    for tool in ("setpriv", "unshare", "mount"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} (util-linux) is not installed")
    lines = ["set -e", f"umask {umask:03o}"]
    blocked = _blocked()
    for folder, names in blocked:
        lines += [
            f"mount --bind '{folder}' '{stash}'",
            f"mount -t tmpfs -o mode=0755,size=64k tmpfs '{folder}'",
        ]
        for name in names:
            lines += [
                f"mkdir '{folder / name}'",
                f"mount --bind -o ro '{stash / name}' '{folder / name}'",
            ]
        lines.append(f"umount '{stash}'")
    lines.append(
        f'exec setpriv --reuid={uid} --regid={gid} --clear-groups -- "{sys.executable}" "$@"'
    )
    script = "\n".join(lines)
    command = ["sh", "-c", script, "sh", *args]
    if blocked:
        command = ["unshare", "--mount", "--propagation", "private", *command]
    return subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def user_env(folder: Path, **extra: str) -> dict[str, str]:
    """A minimal environment for another user's program: no HOME, the worktree and its
    tests importable, the temporary directory inside ``folder`` (so that what tracked
    makes there is seen, and removed with it)."""
    tmp = folder / "tmp"
    tmp.mkdir(exist_ok=True)
    os.chmod(tmp, 0o1777)
    env = {
        "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
        "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'tests'}",
        "TMPDIR": str(tmp),
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
        "MLFLOW_HTTP_REQUEST_TIMEOUT": "5",
        "TRACKED_EXIT_TIMEOUT": "120",
    }
    env.update(extra)
    return env
