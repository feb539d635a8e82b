"""The spool as a trust and durability boundary (issue 16, points 1 and 3).

Nobody else's files are ever read as records: ``tracked sync`` and ``tracked status`` refuse,
without reading them, session folders another user owns, that others may write, that hold a
symbolic link or whose name is no session id; and the healthy folders beside them are synced.
A folder holding records the store has not acknowledged is never deleted, even on a full disk.

The tests run as root on these machines (chown to another uid, tmpfs mounts); each skips with
its reason elsewhere.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import pickle
import shutil
import socket
import stat
import subprocess
import warnings
from pathlib import Path

import pytest
from mlflow import MlflowClient
from pipelines import run_iris
from servers import free_port

from tracked import TrackingWarning
from tracked.cli import main as tracked_cli

LOCAL_ID_TAG = "tracked.local_run_id"
END_REASON_TAG = "tracked.end_reason"
as_root = pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() != 0,
    reason="needs root: makes folders owned by another user and mounts a tmpfs",
)


def cli(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = tracked_cli(list(args))
    return code, out.getvalue(), err.getvalue()


def unreachable() -> str:
    return f"http://127.0.0.1:{free_port()}"


def spooled_run(iris) -> str:
    """A real run whose store is away: its records are all in the spool; its local id."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TrackingWarning)
        pipe, _ = run_iris(iris, tracking_uri=unreachable())
        return pipe.run_id


class _Planted:
    """Unpickling it creates ``marker``: what a planted payload could do instead."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (str(self.marker),))


def plant(spool: Path, name: str, marker: Path, target_uri: str) -> Path:
    """A session folder as another user could plant it: an ended session whose start_run
    entry carries a pickle that, once loaded, creates ``marker``."""
    folder = spool / name
    folder.mkdir()
    payload = pickle.dumps(_Planted(marker))
    header = {
        "session": name,
        "tracking_uri": target_uri,
        "run_name": "innocent-looking run",
        "experiment": "tests",
        "parent": name,
        "pid": 1,
        "host": socket.gethostname(),
        "created_ms": 0,
    }
    (folder / "header.json").write_text(json.dumps(header) + "\n")
    entry = {
        "seq": 0,
        "kind": "start_run",
        "run": name,
        "parent": None,
        "experiment": "tests",
        "run_name": "innocent-looking run",
        "tags": {},
        "params": {},
        "start_ms": 0,
        "payload": [0, len(payload)],
    }
    (folder / "entries.jsonl").write_text(json.dumps(entry) + "\n")
    (folder / "payloads.bin").write_bytes(payload)
    (folder / "progress.jsonl").write_text("")
    (folder / "released").write_text("")
    for path in folder.iterdir():
        path.chmod(0o600)
    folder.chmod(0o700)
    return folder


def local_ids(uri: str) -> list[str]:
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("tests")
    if experiment is None:
        return []
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    return sorted(
        r.data.tags.get(LOCAL_ID_TAG, "") for r in runs if "mlflow.parentRunId" not in r.data.tags
    )


@as_root
def test_sync_and_status_refuse_other_users_and_writable_folders_and_sync_the_rest(
    iris, spool_dir, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    target = f"sqlite:///{tmp_path / 'target.db'}"
    healthy = spooled_run(iris)
    markers = {}

    def planted(label: str) -> Path:
        markers[label] = tmp_path / f"executed-{label}"
        return plant(spool_dir, f"local-{os.urandom(16).hex()}", markers[label], target)

    other_user = planted("other-user")
    for path in [other_user, *other_user.iterdir()]:
        os.chown(path, 12345, 12345)
    group_writable = planted("group-writable")
    group_writable.chmod(0o770)
    linked = planted("symlink")
    outside = tmp_path / "outside.txt"
    outside.write_text("a file of someone else's\n")
    outside.chmod(0o600)
    (linked / "progress.jsonl").unlink()
    (linked / "progress.jsonl").symlink_to(outside)
    # A folder whose name no session has: another program's, or a planted one.
    misnamed = plant(spool_dir, "innocent", tmp_path / "executed-misnamed", target)
    markers["misnamed"] = tmp_path / "executed-misnamed"

    code, out, err = cli("status", "--spool", str(spool_dir))
    assert 1 == code
    assert healthy in out
    assert "belongs to user id 12345" in err
    assert f"chmod 700 {group_writable}" in err
    assert f"{linked / 'progress.jsonl'} is a symbolic link" in err
    assert f"{misnamed} is not a session folder" in err

    code, out, err = cli("sync", "--spool", str(spool_dir), "--tracking-uri", target)
    assert 1 == code, (out, err)  # non-zero: it refused folders
    assert "1 runs synced" in out
    assert "4 folders refused" in out
    assert 4 == err.count("refused: ")
    assert {} == {label: m for label, m in markers.items() if m.exists()}  # nothing ran
    assert [healthy] == local_ids(target)  # only the healthy run reached the store
    assert "a file of someone else's\n" == outside.read_text()  # nothing appended through it
    assert not (spool_dir / healthy).exists()
    for folder in (other_user, group_writable, linked, misnamed):
        assert folder.is_dir()  # refused folders are left as they are, for their owner


@as_root
def test_a_spool_root_writable_by_others_is_not_read_at_all(iris, spool_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    target = f"sqlite:///{tmp_path / 'target.db'}"
    marker = tmp_path / "executed"
    plant(spool_dir, f"local-{os.urandom(16).hex()}", marker, target)
    spool_dir.chmod(0o777)
    code, out, err = cli("sync", "--spool", str(spool_dir), "--tracking-uri", target)
    assert 1 == code
    assert f"`chmod 700 {spool_dir}`" in err
    assert not marker.exists()
    assert [] == local_ids(target)
    code, out, err = cli("status", "--spool", str(spool_dir))
    assert 1 == code
    assert "is empty" not in out


def test_a_spooled_run_leaves_a_private_folder_whatever_the_umask(iris, tmp_path, monkeypatch):
    root = tmp_path / "not-yet" / "spool"
    monkeypatch.setenv("TRACKED_SPOOL_DIR", str(root))
    previous = os.umask(0)
    try:
        local_id = spooled_run(iris)
    finally:
        os.umask(previous)
    folder = root / local_id
    modes = {
        str(path.relative_to(root)): stat.S_IMODE(path.lstat().st_mode)
        for path in [root, folder, *folder.iterdir()]
    }
    assert {"header.json", "entries.jsonl", "payloads.bin", "progress.jsonl", "released"} <= {
        p.name for p in folder.iterdir()
    }
    expected = {name: 0o600 for name in modes}
    expected["."] = expected[local_id] = 0o700
    assert expected == modes


# -- a full disk ---------------------------------------------------------------------------------


@pytest.fixture
def small_disk(tmp_path):
    """A tmpfs of 16 KiB (a spooled Iris run takes about 28), unmounted afterwards;
    ``resize(bytes)`` makes it bigger."""
    mount = tmp_path / "small-disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=16k,mode=700", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")

    def resize(size: int) -> None:
        subprocess.run(["mount", "-o", f"remount,size={size}", str(mount)], check=True, timeout=30)

    try:
        yield mount, resize
    finally:
        subprocess.run(["umount", "-l", str(mount)], timeout=30, check=False)


@as_root
@pytest.mark.timeout(300)
def test_a_full_disk_with_the_store_away_keeps_the_folder_and_says_so(
    iris, small_disk, tmp_path, monkeypatch
):
    mount, resize = small_disk
    monkeypatch.chdir(tmp_path)
    root = mount / "spool"
    monkeypatch.setenv("TRACKED_SPOOL_DIR", str(root))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pipe, _ = run_iris(iris, tracking_uri=unreachable())
    messages = [str(w.message) for w in caught if issubclass(w.category, TrackingWarning)]
    full = [m for m in messages if "could not write to the spool" in m]
    assert 1 == len(full), messages
    assert "No space left" in full[0] or "ENOSPC" in full[0]
    assert "records from now on wait in memory only" in full[0]
    folder = root / pipe.run_id
    assert folder.is_dir()  # the records the store never saw are still here
    assert (folder / "incomplete").exists()
    assert (folder / "entries.jsonl").stat().st_size > 0

    code, out, err = cli("status", "--spool", str(root))
    assert 0 == code, err
    assert "is empty" not in out
    assert pipe.run_id in out
    assert "incomplete" in out

    resize(64 << 20)  # room again, for sync's notes of progress
    target = f"sqlite:///{tmp_path / 'target.db'}"
    code, out, err = cli("sync", "--spool", str(root), "--tracking-uri", target)
    assert 0 == code, err
    assert "1 runs synced" in out
    client = MlflowClient(target)
    [run_id] = [
        r.info.run_id
        for r in client.search_runs(
            [client.get_experiment_by_name("tests").experiment_id], max_results=100
        )
        if r.data.tags.get(LOCAL_ID_TAG) == pipe.run_id
    ]
    parent = client.get_run(run_id)
    assert "KILLED" == parent.info.status
    assert "could not take all of its records" in parent.data.tags[END_REASON_TAG]
    shutil.rmtree(root, ignore_errors=True)
