"""Users without a home of their own, and stores shared between users.

A container's random user id has no passwd entry and no ``HOME``; a system user's ``HOME``
may be a folder it cannot write; a team shares one sqlite store in a folder everyone may
write. tracked must work for each of them: its own folders private to the user, nothing
of one user's in the way of another's, nothing left behind per store.
"""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

import pytest
from users import local_user, needs_root, run_as, shared_folder, unknown_uid, user_env

from tracked.backends.mlflow.client import _lock_bounded, _store_creation_lock
from tracked.core import homes
from tracked.spool.format import spool_root
from tracked.spool.key import key_path

#: A pipeline run by another user: two fits and an inference (two models logged), in the
#: experiment named on its command line.
PROGRAM = """
import sys
from sklearn.datasets import load_iris
from pipelines import Iris

Iris.experiment = sys.argv[1]
X, y = load_iris(return_X_y=True)
with Iris() as pipe:
    pipe.train(X, y)
    pipe.predict(X)
print("run", pipe.run_id)
"""


def _run_id(done) -> str:
    lines = [line for line in done.stdout.splitlines() if line.startswith("run ")]
    assert lines, done.stderr
    return lines[-1].split()[1]


# -- where tracked keeps its own folders -------------------------------------------------------


@pytest.fixture
def private_tmp(tmp_path, monkeypatch) -> Path:
    """The temporary directory of this test alone (``tempfile`` asks again)."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setenv("TMPDIR", str(folder))
    monkeypatch.setattr(tempfile, "tempdir", None)
    return folder


def test_without_a_writable_home_the_spool_and_key_go_to_a_private_folder(
    private_tmp, monkeypatch, caplog
):
    # A HOME under a file: it can never be a folder (root may write anywhere else).
    monkeypatch.setenv("HOME", "/etc/hostname/home")
    for name in ("TRACKED_SPOOL_DIR", "TRACKED_SPOOL_KEY_FILE", "XDG_CACHE_HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    caplog.set_level("WARNING", logger="tracked")

    root, key = spool_root(), key_path()

    private = private_tmp / f"tracked-{os.geteuid()}"
    assert (private / "spool", private / "key" / "spool.key") == (root, key)
    st = os.lstat(private)
    assert (stat.S_IMODE(st.st_mode), st.st_uid) == (0o700, os.geteuid())
    said = [r.getMessage() for r in caplog.records if "tracked keeps its" in r.getMessage()]
    assert 1 == len(said), said
    assert "the home folder /etc/hostname/home cannot be written" in said[0]


def test_a_writable_home_keeps_the_spool_where_it_was(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("TRACKED_SPOOL_DIR")
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)

    assert tmp_path in spool_root().parents


@pytest.mark.parametrize("squat", ["link", "open to all"])
def test_a_private_folder_someone_else_made_is_refused(private_tmp, squat):
    planted = private_tmp / f"tracked-{os.geteuid()}"
    if squat == "link":
        (private_tmp / "elsewhere").mkdir()
        planted.symlink_to(private_tmp / "elsewhere")
    else:
        planted.mkdir()
        planted.chmod(0o777)

    with pytest.raises(homes.PrivateFolderError, match="someone else made it"):
        homes.private_folder()


# -- the store's creation lock -----------------------------------------------------------------


def test_the_store_creation_lock_is_the_stores_folder_and_leaves_nothing(private_tmp, tmp_path):
    store = tmp_path / "store"
    store.mkdir()
    uri = f"sqlite:///{store / 'mlflow.db'}"

    with _store_creation_lock(uri):
        other = os.open(store, os.O_RDONLY)
        try:  # another process (another handle) waits for it
            assert not _lock_bounded(other, deadline=0)
        finally:
            os.close(other)
    other = os.open(store, os.O_RDONLY)
    try:
        assert _lock_bounded(other, deadline=0)
    finally:
        os.close(other)
    assert ([], []) == (os.listdir(private_tmp), os.listdir(store))


# -- other users, for real ---------------------------------------------------------------------


@needs_root
@pytest.mark.slow
def test_two_users_share_a_world_writable_store(tmp_path):
    alice, bob = local_user("tracked-alice"), local_user("tracked-bob")
    with shared_folder() as folder:
        # The team's store, made once, writable by all (its artifacts folder too).
        from mlflow import MlflowClient

        uri = f"sqlite:///{folder / 'mlflow.db'}"
        MlflowClient(uri).search_experiments()
        os.chmod(folder / "mlflow.db", 0o666)
        (folder / "mlruns").mkdir(mode=0o1777)
        os.chmod(folder / "mlruns", 0o1777)
        (folder / "program.py").write_text(PROGRAM)
        env = user_env(folder, MLFLOW_TRACKING_URI=uri)
        stash = tmp_path / "stash"
        stash.mkdir()

        runs = {}
        for name, (uid, gid) in (("alice", alice), ("bob", bob)):
            done = run_as(uid, gid, ["program.py", name], cwd=folder, env=env, stash=stash)
            assert 0 == done.returncode, done.stderr
            for bad in ("TrackingWarning", "Traceback", "PermissionError", "lost"):
                assert bad not in done.stderr, done.stderr
            runs[name] = _run_id(done)

        client = MlflowClient(uri)
        assert {"FINISHED"} == {client.get_run(run).info.status for run in runs.values()}
        # Nothing of either user's is left in the shared temporary directory but their
        # private folders (neither has a home folder: useradd -M).
        made = sorted(os.listdir(folder / "tmp"))
        assert [f"tracked-{alice[0]}", f"tracked-{bob[0]}"] == made
        for (uid, _), name in zip((alice, bob), made, strict=True):
            st = os.lstat(folder / "tmp" / name)
            assert (uid, 0o700) == (st.st_uid, stat.S_IMODE(st.st_mode))


@needs_root
@pytest.mark.slow
@pytest.mark.parametrize("home", [None, "/nonexistent"], ids=["no HOME", "HOME unwritable"])
def test_a_user_id_without_a_passwd_entry_records_its_runs(tmp_path, home):
    uid = unknown_uid()
    with shared_folder() as folder:
        (folder / "program.py").write_text(PROGRAM)
        uri = f"sqlite:///{folder / 'mlflow.db'}"
        env = user_env(folder, MLFLOW_TRACKING_URI=uri, **({"HOME": home} if home else {}))
        stash = tmp_path / "stash"
        stash.mkdir()

        done = run_as(uid, uid, ["program.py", "random"], cwd=folder, env=env, stash=stash)

        assert 0 == done.returncode, done.stderr
        for bad in ("TrackingWarning", "Traceback", "lost"):
            assert bad not in done.stderr, done.stderr
        assert done.stderr.count("getpwuid") <= 1, done.stderr
        assert 1 == done.stderr.count("tracked keeps its spool and spool key in"), done.stderr
        from mlflow import MlflowClient

        assert "FINISHED" == MlflowClient(uri).get_run(_run_id(done)).info.status
        private = folder / "tmp" / f"tracked-{uid}"
        st = os.lstat(private)
        assert (uid, 0o700) == (st.st_uid, stat.S_IMODE(st.st_mode))
        assert [] == os.listdir(private / "spool")  # everything reached the store

        for command in (["status"], ["sync"]):
            done = run_as(uid, uid, ["-m", "tracked", *command], cwd=folder, env=env, stash=stash)
            assert 0 == done.returncode, done.stdout + done.stderr
            assert "Traceback" not in done.stderr
            assert str(private / "spool") in done.stdout
