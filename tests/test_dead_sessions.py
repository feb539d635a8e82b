"""Nothing left RUNNING, nothing that needs a person (issue "Security and faults, round two",
point 4): a session whose process was SIGKILLed mid-series has every run ended KILLED by
``tracked sync``, with the reason; a half-migrated store is named as such in bounded time;
a sync drains a spool that filled its disk."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow import MlflowClient
from test_spool_safety import cli

from tracked.core.names import END_REASON_TAG, FOLDED_CALLS_TAG, LOCAL_ID_TAG
from tracked.spool import sync as sync_module

TESTS = Path(__file__).parent
ROOT = TESTS.parent

LOOP = """
import sys, time
from test_folding import Learner, data
X, y = data()
pipe = Learner()
pipe.tracking_uri = sys.argv[1]
pipe.__enter__()
for batch in range(int(sys.argv[2])):
    rows = slice(batch % 8 * 50, batch % 8 * 50 + 50)
    pipe.learn(X[rows], y[rows])
print("looped", flush=True)
time.sleep(600)  # killed here, mid-series: the series' run is open
"""


def env_for(spool: Path, **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(TESTS), str(ROOT)]),
        "TRACKED_SPOOL_DIR": str(spool),
        "TRACKED_STRICT": "0",
        **extra,
    }


def runs_of(uri: str, experiment: str) -> list:
    client = MlflowClient(uri)
    found = client.get_experiment_by_name(experiment)
    return [] if found is None else client.search_runs([found.experiment_id])


def wait_for(check, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.5)
    raise AssertionError(f"{what} did not happen within {timeout} s")


def tracked_cli(*args: str, env: dict[str, str], timeout: float = 240):
    return subprocess.run(
        [sys.executable, "-m", "tracked", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_sigkill_mid_series_then_sync_ends_the_series_and_the_parent_killed(tmp_path):
    uri = f"sqlite:///{tmp_path / 'store.db'}"
    spool = tmp_path / "spool"
    env = env_for(spool)
    MlflowClient(uri).search_experiments()  # the schema made before the test polls the store
    process = subprocess.Popen(
        [sys.executable, "-c", LOOP, uri, "150"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert "looped" in process.stdout.readline()
        # The first chunk of the series (100 calls) reached the store: its run is open.
        wait_for(
            lambda: [r for r in runs_of(uri, "folding") if FOLDED_CALLS_TAG in r.data.tags],
            120,
            "the series' first chunk reaching the store",
        )
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        process.kill()
        process.communicate(timeout=30)
    assert ["RUNNING"] * 2 == sorted(
        r.info.status for r in runs_of(uri, "folding") if r.info.status == "RUNNING"
    )
    dry = tracked_cli("sync", "--spool", str(spool), "--dry-run", env=env)
    assert "and end 1 open series run and its parent run KILLED" in dry.stdout, dry.stdout
    done = tracked_cli("sync", "--spool", str(spool), env=env)
    assert 0 == done.returncode, done.stderr
    runs = runs_of(uri, "folding")
    assert [] == [r.info.run_name for r in runs if r.info.status == "RUNNING"]
    [series] = [r for r in runs if FOLDED_CALLS_TAG in r.data.tags]
    [parent] = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    for run in (series, parent):
        assert "KILLED" == run.info.status
        assert "ended without ending the run (killed?)" in run.data.tags[END_REASON_TAG]
    # Every call that reached the spool is on the series, each once.
    client = MlflowClient(uri)
    steps = [m.step for m in client.get_metric_history(series.info.run_id, "duration_s")]
    assert sorted(set(steps)) == sorted(steps)
    assert set(range(2, 102)) <= set(steps)
    local_ids = [r.data.tags[LOCAL_ID_TAG] for r in runs]
    assert len(local_ids) == len(set(local_ids))


@pytest.fixture
def small_disk(tmp_path):
    """A 2 MB tmpfs (unmounted afterwards)."""
    mount = tmp_path / "small"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m,mode=0700", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"mounting a tmpfs is not permitted here ({done.stderr.strip()})")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True, check=False)


def fill(folder: Path, name: str, leave: int = 0) -> None:
    """Write ``folder/name`` until the disk has at most ``leave`` bytes free."""
    with open(folder / name, "ab") as handle:
        try:
            while os.statvfs(folder).f_bavail * os.statvfs(folder).f_frsize > leave:
                handle.write(b"\0" * 4096)
                handle.flush()
        except OSError:
            pass


def steps_of(uri: str, run_id: str, key: str) -> list[int]:
    return [m.step for m in MlflowClient(uri).get_metric_history(run_id, key)]


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_sync_drains_a_spool_that_filled_its_disk_and_ends_every_run(
    tmp_path, small_disk, monkeypatch
):
    spool = small_disk / "spool"
    spool.mkdir(mode=0o700)
    fill(small_disk, "filler", leave=160_000)
    store = "http://127.0.0.1:9"  # away: every record goes to the spool, until the disk is full
    env = env_for(spool, TRACKED_EXIT_TIMEOUT="5")
    done = subprocess.run(
        [sys.executable, "-c", LOOP.replace("time.sleep(600)", "pipe.__exit__(None, None, None)"),
         store, "1500"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240, check=False,
    )  # fmt: skip
    assert 0 == done.returncode, done.stderr
    assert "could not write to the spool" in done.stderr  # the disk filled up
    fill(small_disk, "filler-2")  # and stays full: the sync has no room for its notes
    [folder] = list(spool.iterdir())
    target = f"sqlite:///{tmp_path / 'target.db'}"
    freed = []  # the sync met the full disk, and gave delivered payloads back to it

    original = sync_module.punch_hole

    def punch_hole(path, offset, size):
        freed.append(size)
        return original(path, offset, size)

    monkeypatch.setattr(sync_module, "punch_hole", punch_hole)
    code, _out, err = cli("sync", "--spool", str(spool), "--tracking-uri", target)
    assert "cannot be replayed" not in err, err
    assert freed and freed[-1] > 0
    runs = runs_of(target, "folding")
    assert [] == [r.info.run_name for r in runs if r.info.status == "RUNNING"]
    [parent] = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    assert "KILLED" == parent.info.status
    assert "could not take all of its records" in parent.data.tags[END_REASON_TAG]
    [series] = [r for r in runs if FOLDED_CALLS_TAG in r.data.tags]
    assert "KILLED" == series.info.status
    # Resumed or not, nothing twice: a second sync (the folder kept if a line was cut
    # short) writes no run and no step again.
    before = sorted(steps_of(target, series.info.run_id, "duration_s"))
    tracked_cli("sync", "--spool", str(spool), "--tracking-uri", target, env=env)
    after = sorted(steps_of(target, series.info.run_id, "duration_s"))
    assert before == after and len(set(after)) == len(after)
    local_ids = [r.data.tags[LOCAL_ID_TAG] for r in runs_of(target, "folding")]
    assert len(local_ids) == len(set(local_ids))
    if code == 0:
        assert not folder.exists()


def half_migrated(path: Path) -> tuple[str, str, str]:
    """A sqlite store MLflow made, whose alembic_version is set back one revision: what a
    process killed mid-upgrade leaves. (uri, the revision it says, MLflow's head)"""
    from alembic.script import ScriptDirectory
    from mlflow.store.db.utils import _get_alembic_config, _get_latest_schema_revision

    uri = f"sqlite:///{path}"
    MlflowClient(uri).search_experiments()
    head = _get_latest_schema_revision()
    script = ScriptDirectory.from_config(_get_alembic_config(db_url=""))
    before = script.get_revision(head).down_revision
    with sqlite3.connect(path) as connection:
        connection.execute("UPDATE alembic_version SET version_num = ?", (before,))
    return uri, before, head


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_a_half_migrated_store_is_named_with_its_revision_and_what_to_do(tmp_path):
    from tracked.backends.mlflow import MlflowBackend
    from tracked.core.errors import StoreUnavailable

    uri, before, head = half_migrated(tmp_path / "half.db")
    backend = MlflowBackend(uri)
    with pytest.raises(StoreUnavailable) as raised:
        backend.experiment_id("anything")
    message = str(raised.value)
    assert "stuck at a partial schema migration" in message
    assert f"alembic_version is {before}" in message and f"needs {head}" in message
    assert f"`mlflow db upgrade {uri}`" in message
    # Asked again (the next record of a sync), it is said again without a new wait.
    with pytest.raises(StoreUnavailable, match="stuck at a partial schema migration"):
        backend.experiment_id("anything")


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_sync_to_a_half_migrated_store_says_so_keeps_the_records_and_writes_them_once_fixed(
    iris, tmp_path, spool_dir
):
    from test_spool_limits import spooled

    folders = [spooled(iris), spooled(iris)]
    uri, before, head = half_migrated(tmp_path / "half.db")
    env = env_for(spool_dir)
    done = tracked_cli("sync", "--spool", str(spool_dir), "--tracking-uri", uri, env=env)
    code, err = done.returncode, done.stderr
    assert 1 == code
    assert 2 == err.count(f"alembic_version is {before}"), err
    assert len(err.splitlines()) < 10, err
    assert all(folder.is_dir() for folder in folders)
    with sqlite3.connect(tmp_path / "half.db") as connection:  # a person fixed the store
        connection.execute("UPDATE alembic_version SET version_num = ?", (head,))
    done = tracked_cli("sync", "--spool", str(spool_dir), "--tracking-uri", uri, env=env)
    assert 0 == done.returncode, done.stderr
    parents = [r for r in runs_of(uri, "tests") if "mlflow.parentRunId" not in r.data.tags]
    assert sorted(f.name for f in folders) == sorted(r.data.tags[LOCAL_ID_TAG] for r in parents)
