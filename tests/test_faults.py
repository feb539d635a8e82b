"""Fault injection: the store goes away, answers 500, loses answers, is read-only; the spool
cannot be written; a stage raises; the process is killed. Every fault is real: sqlite stores
in temporary folders, ``mlflow server`` processes, an HTTP proxy that fails requests, child
interpreters killed with SIGKILL.

For every fault the promise is the same: the stage results are an untracked run's, no
exception reaches the user but the user's own, and after ``tracked sync`` against a healthy
store the runs hold as many params, metrics, tags, artifacts and child runs as a healthy run
of the same pipeline -- computed in the same test against a fresh sqlite store, never
hard-coded.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import math
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import stores
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.control import currently_in_test_context
from mlflow import MlflowClient
from pipelines import Iris, run_iris
from proxy import FaultyProxy
from servers import MlflowServer, free_port
from sklearn.base import BaseEstimator
from sklearn.preprocessing import StandardScaler

import tracked
from tracked import TrackedPipeline, TrackingWarning
from tracked.cli import main as tracked_cli

TESTS = Path(__file__).parent
LOCAL_ID_TAG = "tracked.local_run_id"
END_REASON_TAG = "tracked.end_reason"
PARENT = "(parent)"
STAGES = ("preprocessing", "reduction", "classification")
FIT_CHILDREN = sorted(f"{stage}:fit" for stage in STAGES)
ALL_CHILDREN = sorted([*FIT_CHILDREN, *(f"{stage}:inference" for stage in STAGES)])


# -- stores, runs and their summaries ------------------------------------------------------------


@pytest.fixture(autouse=True)
def mlflow_prints_links(monkeypatch):
    """Each test runs with MLflow's default of printing run links for an HTTP store, so
    that the tests of stdout see what MLflow would print if tracked let it."""
    monkeypatch.delenv("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", raising=False)


@pytest.fixture
def new_store(store_template, tmp_path, monkeypatch):
    """``new_store(name)``: the URI of a fresh sqlite store ``<tmp_path>/<name>.db``.

    The working folder is ``tmp_path``: MLflow puts a sqlite store's artifacts in ./mlruns.
    """
    monkeypatch.chdir(tmp_path)

    def make(name: str) -> str:
        path = tmp_path / f"{name}.db"
        assert not path.exists(), f"store {name} made twice"
        return stores.fresh_store(store_template, path)

    return make


@pytest.fixture(scope="module")
def untracked(iris) -> np.ndarray:
    """The predictions of an untracked Iris pass: what every faulty run must return too."""
    X_train, X_test, y_train, _ = iris
    pipe = Iris()
    pipe.tracking = False
    pipe.train(X_train, y_train)
    return pipe.predict(X_test)


def children_of(client: MlflowClient, run_id: str) -> list:
    parent = client.get_run(run_id)
    return client.search_runs(
        [parent.info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{run_id}'",
        max_results=1000,
    )


def summarise(client: MlflowClient, run_id: str) -> dict[str, tuple]:
    """``{child run name: (n params, n metrics, sorted tag keys, sorted artifact paths,
    n dataset inputs)}`` plus the parent's own under ``PARENT``.

    Tag values that naturally differ between two runs (ids, digests, times) are not
    compared, their keys are. A child run name seen twice is a duplicate: it fails here.
    """

    def counts(run) -> tuple:
        artifacts = sorted(a.path for a in client.list_artifacts(run.info.run_id))
        inputs = len(run.inputs.dataset_inputs) if run.inputs else 0
        return (
            len(run.data.params),
            len(run.data.metrics),
            sorted(run.data.tags),
            artifacts,
            inputs,
        )

    summary = {PARENT: counts(client.get_run(run_id))}
    children = children_of(client, run_id)
    names = Counter(child.info.run_name for child in children)
    assert all(n == 1 for n in names.values()), f"duplicate child runs: {names}"
    summary.update({child.info.run_name: counts(child) for child in children})
    return summary


def statuses(client: MlflowClient, run_id: str) -> dict[str, str]:
    """``{child run name: status}`` plus the parent's under ``PARENT``."""
    found = {child.info.run_name: child.info.status for child in children_of(client, run_id)}
    return {PARENT: client.get_run(run_id).info.status, **found}


def healthy_summary(iris, uri: str) -> dict[str, tuple]:
    """Run the Iris pass against a healthy store; its summary."""
    pipe, _ = run_iris(iris, tracking_uri=uri)
    client = MlflowClient(uri)
    assert {PARENT: "FINISHED", **dict.fromkeys(ALL_CHILDREN, "FINISHED")} == statuses(
        client, pipe.run_id
    )
    return summarise(client, pipe.run_id)


def run_by_local_id(client: MlflowClient, local_id: str, experiment: str = "tests"):
    """The one run tagged ``tracked.local_run_id = local_id``."""
    experiment_id = client.get_experiment_by_name(experiment).experiment_id
    runs = client.search_runs(
        [experiment_id], filter_string=f"tags.`{LOCAL_ID_TAG}` = '{local_id}'"
    )
    assert 1 == len(runs), f"{len(runs)} runs for {local_id}"
    return runs[0]


def local_ids_in_store(client: MlflowClient, experiment: str = "tests") -> Counter:
    """How many runs of the experiment carry each ``tracked.local_run_id``."""
    experiment_id = client.get_experiment_by_name(experiment).experiment_id
    runs = client.search_runs([experiment_id], max_results=10_000)
    return Counter(run.data.tags.get(LOCAL_ID_TAG) for run in runs)


def cli(*args: str) -> tuple[int, str, str]:
    """``tracked <args>`` in this process: exit status, stdout, stderr."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = tracked_cli(list(args))
    return code, out.getvalue(), err.getvalue()


def sync(spool: Path, uri: str | None = None) -> tuple[int, str, str]:
    return cli("sync", "--spool", str(spool), *(["--tracking-uri", uri] if uri else []))


def spooled(spool: Path) -> list[Path]:
    return sorted(p for p in spool.iterdir() if p.is_dir())


def tracking_warnings(caught) -> list[str]:
    return [str(w.message) for w in caught if issubclass(w.category, TrackingWarning)]


def unreachable() -> str:
    """An HTTP tracking URI on a port nobody listens on."""
    return f"http://127.0.0.1:{free_port()}"


# -- a real mlflow server, shared by the module ------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """``mlflow server`` on a sqlite backend store (quicker to start than PostgreSQL)."""
    folder = tmp_path_factory.mktemp("mlflow-server")
    with MlflowServer(
        f"sqlite:///{folder / 'mlflow.db'}",
        folder / "artifacts",
        workers=1,
        log_dir=folder / "log",
    ) as running:
        yield running


@pytest.fixture
def live_server(server):
    """The module's server, started again if a test left it stopped."""
    if not server.running:
        server.start()
    return server


# -- 1. an unreachable store ---------------------------------------------------------------------


def test_an_unreachable_store_spools_everything_and_sync_loses_nothing(
    iris, untracked, new_store, spool_dir
):
    healthy = healthy_summary(iris, new_store("healthy"))

    with pytest.warns(TrackingWarning) as caught:
        pipe, predictions = run_iris(iris, tracking_uri=unreachable())
    [message] = tracking_warnings(caught)  # once, not once per stage
    assert "is away" in message
    assert f"kept in the spool at {spool_dir}: run `tracked sync`" in message
    np.testing.assert_array_equal(untracked, predictions)
    local_id = pipe.run_id
    assert local_id.startswith("local-")
    assert [local_id] == [p.name for p in spooled(spool_dir)]

    target = new_store("target")
    code, out, err = sync(spool_dir, target)
    assert 0 == code, err
    assert "1 runs synced (7 store runs created" in out
    assert [] == spooled(spool_dir)
    client = MlflowClient(target)
    parent = run_by_local_id(client, local_id)
    assert {PARENT: "FINISHED", **dict.fromkeys(ALL_CHILDREN, "FINISHED")} == statuses(
        client, parent.info.run_id
    )
    assert healthy == summarise(client, parent.info.run_id)


def test_a_dry_run_says_what_it_would_write_and_writes_nothing(iris, new_store, spool_dir):
    with pytest.warns(TrackingWarning):
        pipe, _ = run_iris(iris, tracking_uri=unreachable())
    [folder] = spooled(spool_dir)
    before = {p.name: p.stat().st_size for p in folder.iterdir()}
    target = new_store("target")

    code, out, err = cli("sync", "--spool", str(spool_dir), "--tracking-uri", target, "--dry-run")

    assert 1 == code  # the spool still holds the run
    [line] = out.splitlines()
    entries = len((folder / "entries.jsonl").read_text().splitlines())  # start, 6 stages, end
    assert f"would write {pipe.run_id} (Iris): {entries} entries to {target}" == line
    assert f"remains: {pipe.run_id}: dry run" in err
    assert before == {p.name: p.stat().st_size for p in folder.iterdir()}
    assert [] == MlflowClient(target).search_experiments(filter_string="name = 'tests'")


# -- 2. the server stops between train and predict, and comes back --------------------------------


@pytest.mark.slow
@pytest.mark.timeout(150)
def test_a_server_stopped_mid_workflow_is_completed_by_sync_after_its_restart(
    iris, untracked, new_store, spool_dir, live_server
):
    healthy = healthy_summary(iris, new_store("healthy"))
    X_train, X_test, y_train, y_test = iris
    pipe = Iris()
    tracked.configure(pipe, tracking_uri=live_server.url)
    with pytest.warns(TrackingWarning) as caught:
        with pipe:
            pipe.train(X_train, y_train)
            tracked.flush()  # the training records are on the server
            run_id = pipe.run_id
            live_server.stop()
            predictions = pipe.predict(X_test, y_test)
        pipe.tracking = False
    [message] = tracking_warnings(caught)
    assert f"the tracking store {live_server.url} is away" in message
    np.testing.assert_array_equal(untracked, predictions)
    assert not run_id.startswith("local-"), "the parent run was created before the stop"
    assert run_id == pipe.run_id
    [folder] = spooled(spool_dir)
    code, out, _ = cli("status", "--spool", str(spool_dir))
    assert 0 == code
    assert any(folder.name in line and " ended " in line for line in out.splitlines()), out

    live_server.start()
    client = MlflowClient(live_server.url)
    before = statuses(client, run_id)
    assert "RUNNING" == before.pop(PARENT)
    assert {"FINISHED"} == set(before.values())  # training's children made it; predict's not all

    code, out, err = sync(spool_dir)  # to the session's own store: the server
    assert 0 == code, err
    assert f"as run {run_id}" in out
    assert [] == spooled(spool_dir)
    assert {PARENT: "FINISHED", **dict.fromkeys(ALL_CHILDREN, "FINISHED")} == statuses(
        client, run_id
    )
    assert healthy == summarise(client, run_id)
    assert 1 == local_ids_in_store(client)[folder.name]


@pytest.mark.slow
@pytest.mark.timeout(150)
def test_a_run_half_written_to_a_lost_server_is_synced_whole_into_another_store(
    iris, untracked, new_store, spool_dir, live_server
):
    """The server goes away for good mid-workflow: `tracked sync --tracking-uri` elsewhere
    writes the whole run there, not only the steps the lost server had not taken."""
    healthy = healthy_summary(iris, new_store("healthy"))
    X_train, X_test, y_train, y_test = iris
    pipe = Iris()
    tracked.configure(pipe, tracking_uri=live_server.url)
    with pytest.warns(TrackingWarning):
        with pipe:
            pipe.train(X_train, y_train)
            tracked.flush()  # the training records are on the server
            live_server.stop()
            predictions = pipe.predict(X_test, y_test)
        pipe.tracking = False
    np.testing.assert_array_equal(untracked, predictions)
    [folder] = spooled(spool_dir)

    target = new_store("replacement")
    code, _, err = sync(spool_dir, target)
    assert 0 == code, err
    assert [] == spooled(spool_dir)
    client = MlflowClient(target)
    parent = run_by_local_id(client, folder.name)
    assert {PARENT: "FINISHED", **dict.fromkeys(ALL_CHILDREN, "FINISHED")} == statuses(
        client, parent.info.run_id
    )
    assert healthy == summarise(client, parent.info.run_id)


# -- 3. a proxy that fails requests ---------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(150)
@pytest.mark.parametrize(
    ("mode", "every", "path_contains"),
    [
        ("500", 13, None),  # every 13th request answered 500, never forwarded
        ("drop", 17, None),  # every 17th connection closed without an answer
        ("lose", 19, None),  # every 19th request done by the server, its answer lost
        ("lose", 2, "/runs/create"),  # every 2nd run created, the client never told
    ],
    ids=["500", "drop", "lose", "lose-run-creation"],
)
def test_a_flaky_proxy_loses_nothing_and_duplicates_nothing(
    iris, untracked, new_store, spool_dir, live_server, mode, every, path_contains
):
    """The workflow and then ``tracked sync`` run through the same faulty proxy: sync is
    run again until the spool is empty, each run getting further than the last."""
    healthy = healthy_summary(iris, new_store("healthy"))
    with FaultyProxy(
        live_server.port, mode=mode, every=every, path_contains=path_contains
    ) as proxy:
        with pytest.warns(TrackingWarning) as caught:
            _, predictions = run_iris(iris, tracking_uri=proxy.url)
        assert proxy.failures, f"no request failed: {proxy!r}"
        [message] = tracking_warnings(caught)
        assert f"the tracking store {proxy.url} is away" in message
        np.testing.assert_array_equal(untracked, predictions)
        [folder] = spooled(spool_dir)
        local_id = folder.name

        attempts = []
        for _ in range(40):
            code, _, err = sync(spool_dir)  # to the session's own store: the proxy
            attempts.append(code)
            if code == 0:
                break
            assert "remains:" in err and "the store is away" in err, err
        assert 0 == attempts[-1], f"sync never got through: {proxy!r}"
    assert [] == spooled(spool_dir)

    client = MlflowClient(live_server.url)
    parent = run_by_local_id(client, local_id)
    run_id = parent.info.run_id
    assert {PARENT: "FINISHED", **dict.fromkeys(ALL_CHILDREN, "FINISHED")} == statuses(
        client, run_id
    )
    assert healthy == summarise(client, run_id)
    ours = {child.data.tags[LOCAL_ID_TAG] for child in children_of(client, run_id)} | {local_id}
    store = local_ids_in_store(client)
    assert {key: 1 for key in ours} == {key: store[key] for key in ours}


# -- 4. a read-only store -----------------------------------------------------------------------


def test_a_read_only_store_spools_and_sync_writes_into_a_writable_copy(
    iris, untracked, new_store, spool_dir, tmp_path
):
    import hashlib

    healthy = healthy_summary(iris, new_store("healthy"))
    new_store("readonly")  # made healthy first: its tables exist
    db = tmp_path / "readonly.db"
    digest = hashlib.sha256(db.read_bytes()).hexdigest()
    # We run as root, and root ignores file permissions: a chmod'ed file would still be
    # written. Instead SQLite itself opens the file read-only: a URI filename with
    # mode=ro, which SQLAlchemy hands to sqlite3 when the URL says uri=true. Every write
    # then fails with "attempt to write a readonly database".
    readonly = f"sqlite:///file:{db}?mode=ro&uri=true"
    MlflowClient(readonly).search_experiments()  # it reads

    with pytest.warns(TrackingWarning) as caught:
        pipe, predictions = run_iris(iris, tracking_uri=readonly)
    [message] = tracking_warnings(caught)
    assert "is away" in message and "readonly database" in message
    np.testing.assert_array_equal(untracked, predictions)
    assert pipe.run_id.startswith("local-")

    # Still read-only: sync into the session's own store keeps everything, and says so.
    code, _, err = sync(spool_dir)
    assert 1 == code
    assert "the store is away" in err and "readonly database" in err
    [folder] = spooled(spool_dir)
    assert digest == hashlib.sha256(db.read_bytes()).hexdigest(), "a read-only store was written"

    writable = tmp_path / "writable.db"
    shutil.copyfile(db, writable)
    code, _, err = sync(spool_dir, f"sqlite:///{writable}")
    assert 0 == code, err
    assert [] == spooled(spool_dir)
    client = MlflowClient(f"sqlite:///{writable}")
    parent = run_by_local_id(client, folder.name)
    assert "FINISHED" == parent.info.status
    assert healthy == summarise(client, parent.info.run_id)


# -- 5. an unwritable spool --------------------------------------------------------------------


def test_an_unwritable_spool_warns_clearly_and_a_healthy_store_gets_everything(
    iris, untracked, new_store, tmp_path, monkeypatch
):
    healthy = healthy_summary(iris, new_store("healthy"))
    blocker = tmp_path / "a-file"
    blocker.write_text("a regular file: nothing can be made under it, not even by root")
    monkeypatch.setenv("TRACKED_SPOOL_DIR", str(blocker / "spool"))
    uri = new_store("store")

    with pytest.warns(TrackingWarning) as caught:
        pipe, predictions = run_iris(iris, tracking_uri=uri)
    [message] = tracking_warnings(caught)
    assert f"could not write the spool at {blocker / 'spool'}" in message
    assert "NotADirectoryError" in message
    assert "records wait in memory only" in message
    np.testing.assert_array_equal(untracked, predictions)
    assert blocker.is_file()

    client = MlflowClient(uri)
    assert not pipe.run_id.startswith("local-")
    assert {PARENT: "FINISHED", **dict.fromkeys(ALL_CHILDREN, "FINISHED")} == statuses(
        client, pipe.run_id
    )
    assert healthy == summarise(client, pipe.run_id)


# -- 6. a stage raises --------------------------------------------------------------------------


class Failing(TrackedPipeline):
    """A scaler stage, then a stage that fits a scaler and raises ``self._error``."""

    experiment = "tests"

    def scale(self, X, y=None, stage="transformer"):
        self.operator = StandardScaler().fit(X)
        return self.operator.transform(X)

    def explode(self, X, y=None, stage="transformer"):
        self.operator = StandardScaler().fit(X)
        raise self._error


ERRORS = [
    pytest.param(lambda: ValueError("the user's own value error"), "FAILED", id="ValueError"),
    pytest.param(KeyboardInterrupt, "KILLED", id="KeyboardInterrupt"),
    pytest.param(lambda: SystemExit(3), "FAILED", id="SystemExit"),
]


@pytest.mark.parametrize("store", ["healthy", "away"])
@pytest.mark.parametrize(("make_error", "status"), ERRORS)
def test_a_stage_exception_reaches_the_caller_as_the_same_object(
    iris, new_store, spool_dir, make_error, status, store
):
    X_train, _, y_train, _ = iris
    uri = new_store("store") if store == "healthy" else unreachable()
    pipe = Failing()
    tracked.configure(pipe, tracking_uri=uri)
    error = pipe._error = make_error()

    # Recorded rather than raised: a tracking warning must not even be attempted in place of
    # the user's exception (strict mode is on: a tracking failure would raise).
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(type(error)) as info, pipe:
            scaled = pipe.scale(X_train, y_train)
            pipe.explode(scaled, y_train)
    assert info.value is error
    assert error.__context__ is None and error.__cause__ is None
    messages = tracking_warnings(caught)
    if store == "healthy":
        assert [] == messages
        client = MlflowClient(uri)
        run_id = pipe.run_id
    else:
        [message] = messages
        assert "is away" in message
        target = new_store("target")
        code, _, err = sync(spool_dir, target)
        assert 0 == code, err
        client = MlflowClient(target)
        run_id = run_by_local_id(client, pipe.run_id).info.run_id

    assert {PARENT: status, "scale:fit": "FINISHED", "explode:fit": status} == statuses(
        client, run_id
    )
    [failed] = [c for c in children_of(client, run_id) if c.info.run_name == "explode:fit"]
    assert failed.data.tags["tracked.error"].startswith(type(error).__name__)
    assert str(error) in failed.data.tags["tracked.error"]


def test_a_pending_spool_notice_never_replaces_the_users_exception(iris):
    # pyproject turns TrackingWarning into an error, as `python -W error` would for a user.
    X_train, _, y_train, _ = iris
    pipe = Failing()
    tracked.configure(pipe, tracking_uri=unreachable())
    error = pipe._error = ValueError("the user's own failure")
    with pytest.raises(ValueError) as info, pipe:
        assert pipe.run_id  # waits until the writer tried: the "store is away" notice is pending
        pipe.explode(X_train, y_train)
    assert info.value is error


# -- 7. the process is killed ------------------------------------------------------------------


KILLED_SCRIPT = """
    import tracked
    import sys, time
    from sklearn.datasets import load_iris
    from sklearn.model_selection import train_test_split
    from pipelines import Iris

    X, y = load_iris(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.2, random_state=42)
    pipe = Iris()
    tracked.configure(pipe, tracking_uri=sys.argv[1])
    with pipe:
        pipe.train(X_train, y_train)
        print("trained", flush=True)
        time.sleep(600)
"""


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_a_process_killed_mid_workflow_is_ended_killed_by_sync(
    iris, new_store, spool_dir, tmp_path
):
    X_train, _, y_train, _ = iris
    healthy_uri = new_store("healthy")
    healthy_pipe = Iris()
    tracked.configure(healthy_pipe, tracking_uri=healthy_uri)
    with healthy_pipe:
        healthy_pipe.train(X_train, y_train)
    healthy = summarise(MlflowClient(healthy_uri), healthy_pipe.run_id)

    uri = new_store("store")
    script = tmp_path / "killed.py"
    script.write_text(textwrap.dedent(KILLED_SCRIPT))
    # The code under test, not whatever `tracked` the interpreter would find on its own.
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(TESTS), str(TESTS.parent)]),
        "TRACKED_SPOOL_DIR": str(spool_dir),
    }
    with (tmp_path / "killed.err").open("w") as stderr:
        process = subprocess.Popen(
            [sys.executable, str(script), uri],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
        try:
            line = process.stdout.readline()  # pytest-timeout bounds the wait
            assert "trained" == line.strip(), (tmp_path / "killed.err").read_text()
            os.kill(process.pid, signal.SIGKILL)  # the writer may be anywhere in its work
        finally:
            if process.poll() is None:
                process.kill()
            process.wait()
            process.stdout.close()
    assert -signal.SIGKILL == process.returncode

    [folder] = spooled(spool_dir)
    code, out, _ = cli("status", "--spool", str(spool_dir))
    assert 0 == code
    [row] = [line for line in out.splitlines() if folder.name in line]
    assert " abandoned " in row

    code, out, err = sync(spool_dir)  # to the session's own store
    assert 0 == code, err
    assert [] == spooled(spool_dir)
    client = MlflowClient(uri)
    parent = run_by_local_id(client, folder.name)
    run_id = parent.info.run_id
    assert "KILLED" == parent.info.status
    assert parent.info.end_time is not None
    assert f"process {process.pid} " in parent.data.tags[END_REASON_TAG]
    assert {PARENT: "KILLED", **dict.fromkeys(FIT_CHILDREN, "FINISHED")} == statuses(client, run_id)
    killed = summarise(client, run_id)
    # The children of the stages that ran are all there, complete.
    assert {k: v for k, v in healthy.items() if k != PARENT} == {
        k: v for k, v in killed.items() if k != PARENT
    }
    # The parent: its params and tags, plus the reason it was ended; the total duration
    # is a metric of a run that ended itself.
    h_params, _, h_tags, h_artifacts, h_inputs = healthy[PARENT]
    k_params, _, k_tags, k_artifacts, k_inputs = killed[PARENT]
    assert (h_params, h_artifacts, h_inputs) == (k_params, k_artifacts, k_inputs)
    assert sorted([*h_tags, END_REASON_TAG]) == k_tags
    assert set(client.get_run(run_id).data.metrics) == set(
        MlflowClient(healthy_uri).get_run(healthy_pipe.run_id).data.metrics
    ) - {"total_stage_duration_s"}


RECORDER_SCRIPT = """
    import tracked
    import sys
    from sklearn.datasets import load_iris
    from pipelines import Iris

    X, y = load_iris(return_X_y=True)
    pipe = Iris()
    tracked.configure(pipe, tracking_uri=sys.argv[1])
    with pipe:
        pipe.preprocessing(X, y)
"""


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_a_synced_run_keeps_the_source_of_the_process_that_recorded_it(
    new_store, spool_dir, tmp_path
):
    script = tmp_path / "recorder.py"
    script.write_text(textwrap.dedent(RECORDER_SCRIPT))
    # The code under test, not whatever `tracked` the interpreter would find on its own.
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(TESTS), str(TESTS.parent)]),
        "TRACKED_SPOOL_DIR": str(spool_dir),
    }
    done = subprocess.run(
        [sys.executable, str(script), unreachable()],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=100,
        check=False,
    )
    assert 0 == done.returncode, done.stderr
    [folder] = spooled(spool_dir)
    target = new_store("target")
    code, _, err = sync(spool_dir, target)
    assert 0 == code, err
    parent = run_by_local_id(MlflowClient(target), folder.name)
    assert str(script) == parent.data.tags["mlflow.source.name"]


# -- 8. sync twice, and after a crash --------------------------------------------------------


class LosesAnAnswer:
    """A backend whose ``lose``-th ``start_run`` is done by the store, and then the answer
    is lost (the connection broke, or sync was killed before it noted the run)."""

    def __init__(self, backend, lose: int) -> None:
        self.backend, self.lose, self.calls = backend, lose, 0

    def __getattr__(self, name):
        return getattr(self.backend, name)

    def start_run(self, **kwargs):
        run_id = self.backend.start_run(**kwargs)
        self.calls += 1
        if self.calls == self.lose:
            raise ConnectionError("the answer to start_run was lost")
        return run_id


def test_sync_twice_and_after_a_crash_creates_no_duplicates(iris, new_store, spool_dir, tmp_path):
    from tracked.backends.mlflow import shared_backend
    from tracked.spool.sync import sync as sync_spool

    healthy_uri = new_store("healthy")
    healthy_pipe, _ = run_iris(iris, tracking_uri=healthy_uri)
    healthy_client = MlflowClient(healthy_uri)
    healthy = summarise(healthy_client, healthy_pipe.run_id)

    with pytest.warns(TrackingWarning, match="is away"):
        pipe, _ = run_iris(iris, tracking_uri=unreachable())
    local_id = pipe.run_id
    copy = tmp_path / "spool-copy"
    shutil.copytree(spool_dir, copy)  # the spool as it was before any sync

    # A first sync breaks down after the store created the third run.
    target = new_store("target")
    lossy = LosesAnAnswer(shared_backend(target), lose=3)
    result = sync_spool(spool_dir, tracking_uri=target, backend_for=lambda uri: lossy)
    assert [local_id] == list(result.remaining)
    assert 3 == lossy.calls
    client = MlflowClient(target)
    assert 3 == sum(local_ids_in_store(client).values())

    # Run again: it finds the third run instead of creating it again, and completes.
    code, out, err = sync(spool_dir, target)
    assert 0 == code, err
    assert f"synced {local_id} (Iris)" in out
    assert 7 == sum(local_ids_in_store(client).values())
    # Once more: nothing left to do.
    code, out, err = sync(spool_dir, target)
    assert 0 == code, err
    assert "0 runs synced (0 store runs created, 0 records written); 0 remain" in out
    # The copy has none of the progress notes: a crash that lost them all.
    code, out, err = sync(copy, target)
    assert 0 == code, err
    assert [] == spooled(copy)

    store = local_ids_in_store(client)
    assert 7 == sum(store.values())
    assert set(store.values()) == {1}, f"duplicates: {store}"
    parent = run_by_local_id(client, local_id)
    assert healthy == summarise(client, parent.info.run_id)
    assert {PARENT: "FINISHED", **dict.fromkeys(ALL_CHILDREN, "FINISHED")} == statuses(
        client, parent.info.run_id
    )

    # Replayed steps left no doubled values behind: the metric histories are a healthy run's.
    def histories(c, run_id):
        runs = [c.get_run(run_id), *children_of(c, run_id)]
        return {
            (run.info.run_name, key): len(c.get_metric_history(run.info.run_id, key))
            for run in runs
            for key in run.data.metrics
        }

    assert histories(healthy_client, healthy_pipe.run_id) == histories(client, parent.info.run_id)


def test_sync_reports_only_the_runs_it_created(iris, new_store, spool_dir, tmp_path):
    with pytest.warns(TrackingWarning, match="is away"):
        run_iris(iris, tracking_uri=unreachable())
    copy = tmp_path / "spool-copy"
    shutil.copytree(spool_dir, copy)
    target = new_store("target")
    code, out, err = sync(spool_dir, target)
    assert 0 == code, err
    assert "(7 store runs created" in out
    code, out, err = sync(copy, target)  # every run is in the store already
    assert 0 == code, err
    assert 7 == sum(local_ids_in_store(MlflowClient(target)).values())
    assert "1 runs synced (0 store runs created" in out, out


# -- 9. any names and values ---------------------------------------------------------------------


class Bag:
    """An operator whose hyperparameters are whatever the test gives it."""

    def __init__(self, params: dict[str, str]) -> None:
        self._params = params

    def get_params(self, deep: bool = True) -> dict[str, str]:
        return dict(self._params)


class Anything(TrackedPipeline):
    experiment = "anything"
    log_outputs = "none"

    def hold(self, X, stage="transformer"):
        self.operator = Bag(self.bag)
        return X


MAX_PARAM = 6000  # MLflow's limit on a param value
NASTY_KEYS = ["a/b", "a?b", "a_b", "..", ".", "", "/", "x/../y", "é ü/ß", "k" * 300, "tab\tkey"]


def long_text(size_range=(MAX_PARAM - 5, MAX_PARAM + 200)):
    """Text around and beyond the param limit (a repeated short text: quick to draw)."""
    return st.tuples(st.text(min_size=1, max_size=4), st.integers(*size_range)).map(
        lambda pair: (pair[0] * pair[1])[: pair[1]]
    )


keys = st.one_of(
    st.sampled_from(NASTY_KEYS), st.text(max_size=40), st.text(min_size=240, max_size=300)
)
values = st.one_of(st.text(max_size=40), long_text())


def key_notes(client: MlflowClient, run_id: str, folder: Path) -> dict:
    """The run's ``tracked/key_notes.json`` (empty when nothing had to change): names
    renamed per kind (params, metrics, tags), full values of truncated ones."""
    names = {a.path for a in client.list_artifacts(run_id, "tracked")}
    if "tracked/key_notes.json" not in names:
        renamed = {"params": {}, "metrics": {}, "tags": {}}
        truncated = {"params": {}, "tags": {}}
        return {"renamed": renamed, "truncated": truncated, "param_conflicts": {}}
    path = client.download_artifacts(run_id, "tracked/key_notes.json", str(folder))
    return json.loads(Path(path).read_text())


def recovered_params(logged: dict[str, str], notes: dict, originals) -> dict[str, str]:
    """The original params, read back through the notes: renamed keys and full values."""
    renamed = notes["renamed"]["params"]
    if currently_in_test_context():  # statistics of a Hypothesis test
        event(f"renamed: {bool(renamed)}, truncated: {bool(notes['truncated']['params'])}")
    out = {}
    for key in originals:
        name = renamed.get(key, key)
        assert name in logged, f"{key!r} was logged as {name!r}, which is not on the run"
        out[key] = notes["truncated"]["params"].get(name, logged[name])
        if len(out[key]) > MAX_PARAM:
            assert len(logged[name]) == MAX_PARAM and logged[name].endswith("...")
    return out


@pytest.mark.filterwarnings("ignore:The recursion limit will not be reset")
@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)
@given(params=st.dictionaries(keys, values, max_size=6))
def test_any_param_names_and_values_are_recorded_recoverably(new_store_once, tmp_path, params):
    from tracked.core.params import flatten

    uri = new_store_once
    pipe = Anything()
    tracked.configure(pipe, tracking_uri=uri)
    pipe.bag = params
    with pipe:
        pipe.hold(np.ones((3, 2)))
    client = MlflowClient(uri)
    [child] = children_of(client, pipe.run_id)
    # What the pipeline means to record: the operator's params as text, secrets masked.
    meant = flatten(params)
    logged = child.data.params
    notes = key_notes(client, child.info.run_id, tmp_path)
    assert len(meant) == len(logged)
    assert meant == recovered_params(logged, notes, meant)


@pytest.fixture
def new_store_once(new_store):
    """One store for all of a Hypothesis test's examples."""
    return new_store("hypothesis")


def same_float(logged: float, value: float) -> bool:
    if math.isnan(value):
        return math.isnan(logged)
    if math.isinf(value):  # MLflow's sqlite store keeps infinities as the largest floats
        return logged == math.copysign(sys.float_info.max, value) or logged == value
    return logged == value


@pytest.mark.filterwarnings("ignore:The recursion limit will not be reset")
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)
@given(
    params=st.dictionaries(keys, values, max_size=4),
    metrics=st.dictionaries(
        keys,
        st.floats(allow_nan=True, allow_infinity=True),
        max_size=4,
    ),
)
def test_the_backend_logs_any_names_and_nan_or_infinite_metrics_recoverably(
    new_store_once, tmp_path, params, metrics
):
    from tracked.backends.mlflow.backend import MlflowBackend
    from tracked.core.values import Metric

    uri = new_store_once
    backend = MlflowBackend(uri)
    run_id = backend.start_run(experiment="anything", run_name="r")
    backend.log(
        run_id,
        params=params,
        metrics=[Metric(key=key, value=value, step=0) for key, value in metrics.items()],
    )
    client = MlflowClient(uri)
    run = client.get_run(run_id)
    notes = key_notes(client, run_id, tmp_path)
    assert params == recovered_params(run.data.params, notes, params)
    for key, value in metrics.items():
        name = notes["renamed"]["metrics"].get(key, key)
        assert same_float(run.data.metrics[name], value), (key, name, run.data.metrics)
    assert len(metrics) == len(run.data.metrics)


def test_two_metric_names_that_sanitise_alike_stay_two_metrics(new_store, tmp_path):
    from tracked.backends.mlflow.backend import MlflowBackend
    from tracked.core.values import Metric

    uri = new_store("store")
    backend = MlflowBackend(uri)
    run_id = backend.start_run(experiment="anything", run_name="r")
    backend.log(
        run_id, metrics=[Metric(key="loss/train", value=1.0), Metric(key="loss?train", value=2.0)]
    )
    client = MlflowClient(uri)
    notes = key_notes(client, run_id, tmp_path)
    metrics = client.get_run(run_id).data.metrics
    renamed = notes["renamed"]["metrics"]
    assert 2 == len(metrics), f"{metrics} (renamed: {renamed})"
    assert {1.0, 2.0} == {metrics[renamed["loss/train"]], metrics[renamed["loss?train"]]}
    assert 1.0 == metrics[renamed["loss/train"]]


def test_a_param_and_a_metric_of_one_name_keep_their_own_renaming(new_store, tmp_path):
    from tracked.backends.mlflow.backend import MlflowBackend
    from tracked.core.values import Metric

    uri = new_store("store")
    backend = MlflowBackend(uri)
    run_id = backend.start_run(experiment="anything", run_name="r")
    params = {"a_b": "first", "a/b": "second"}  # "a/b" is logged as a_b_2: a_b is taken
    backend.log(run_id, params=params, metrics=[Metric(key="a/b", value=1.0)])
    client = MlflowClient(uri)
    notes = key_notes(client, run_id, tmp_path)
    assert params == recovered_params(client.get_run(run_id).data.params, notes, params)


def test_a_long_param_and_a_long_tag_of_one_name_keep_their_full_values(new_store, tmp_path):
    from tracked.backends.mlflow.backend import MlflowBackend

    uri = new_store("store")
    backend = MlflowBackend(uri)
    run_id = backend.start_run(experiment="anything", run_name="r")
    params = {"note": "p" * (MAX_PARAM + 1)}
    backend.log(run_id, params=params, tags={"note": "t" * 9000})
    client = MlflowClient(uri)
    notes = key_notes(client, run_id, tmp_path)
    assert params == recovered_params(client.get_run(run_id).data.params, notes, params)


# -- 10. secrets ---------------------------------------------------------------------------------


SECRETS = {"password": "pw-hunter2", "api_key": "ak-hunter2", "token": "tk-hunter2"}


class Database(BaseEstimator):
    """A nested estimator that holds a credential."""

    def __init__(self, host="localhost", api_key=None):
        self.host = host
        self.api_key = api_key


class Secretive(TrackedPipeline):
    experiment = "tests"

    def __init__(self, password=None, db=None, token=None):
        self.password = password
        self.db = db
        self.token = token

    def scale(self, X, y=None, stage="transformer"):
        self.operator = StandardScaler().fit(X)
        return self.operator.transform(X)


def secretive(uri: str) -> Secretive:
    pipe = Secretive(
        password=SECRETS["password"],
        db=Database(api_key=SECRETS["api_key"]),
        token=SECRETS["token"],
    )
    tracked.configure(pipe, tracking_uri=uri)
    return pipe


def everything_recorded(client: MlflowClient, run_id: str) -> str:
    """Run names, params and tags of a parent run and its children, as one text."""
    runs = [client.get_run(run_id), *children_of(client, run_id)]
    return json.dumps(
        [[run.info.run_name, run.data.params, run.data.tags] for run in runs], sort_keys=True
    )


def test_secret_params_are_logged_masked(iris, new_store):
    X_train, _, y_train, _ = iris
    uri = new_store("store")
    pipe = secretive(uri)
    with pipe:
        pipe.scale(X_train, y_train)
    params = MlflowClient(uri).get_run(pipe.run_id).data.params
    assert {"password": "***", "db__api_key": "***", "token": "***"} == {
        key: params[key] for key in ("password", "db__api_key", "token")
    }
    assert "localhost" == params["db__host"]


def test_no_secret_value_reaches_the_store(iris, new_store):
    X_train, _, y_train, _ = iris
    uri = new_store("store")
    pipe = secretive(uri)
    with pipe:
        pipe.scale(X_train, y_train)
    recorded = everything_recorded(MlflowClient(uri), pipe.run_id)
    assert [] == [name for name, secret in SECRETS.items() if secret in recorded], recorded


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_credentials_in_the_tracking_uri_never_show(iris, spool_dir, live_server, caplog):
    caplog.set_level(logging.INFO)
    X_train, _, y_train, _ = iris
    password = "s3cr3t-pw"
    away = f"http://alice:{password}@127.0.0.1:{free_port()}"
    pipe = Iris()
    tracked.configure(pipe, tracking_uri=away)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pipe:
            pipe.train(X_train, y_train)
    [message] = tracking_warnings(caught)
    assert "http://***@127.0.0.1:" in message
    [folder] = spooled(spool_dir)
    for path in folder.rglob("*"):
        if path.is_file():
            assert password.encode() not in path.read_bytes(), path

    code, status_out, _ = cli("status", "--spool", str(spool_dir))
    assert 0 == code and "http://***@127.0.0.1:" in status_out
    # The spool keeps no credentials: sync needs the URI again, and says so.
    code, out1, err1 = sync(spool_dir)
    assert 1 == code
    assert "holds credentials" in err1 and "--tracking-uri" in err1
    # Given them, it writes to the server (which ignores them).
    with_credentials = f"http://alice:{password}@127.0.0.1:{live_server.port}"
    code, out2, err2 = sync(spool_dir, with_credentials)
    assert 0 == code, err2
    run_id = run_by_local_id(MlflowClient(live_server.url), folder.name).info.run_id
    recorded = everything_recorded(MlflowClient(live_server.url), run_id)

    shown = [
        *(str(w.message) for w in caught),
        caplog.text,
        status_out,
        out1,
        err1,
        without_mlflow_links(out2),  # MLflow's own lines: see the test below
        err2,
        recorded,
    ]
    assert [] == [text for text in shown if password in text]


def without_mlflow_links(text: str) -> str:
    """``text`` without the "View run/experiment at: <url>" lines MLflow writes to stdout."""
    return "\n".join(line for line in text.splitlines() if not line.startswith(MLFLOW_LINKS))


# MLflow's "🏃 View run <name> at: <url>" and "🧪 View experiment at: <url>".
MLFLOW_LINKS = ("\N{RUNNER} View run ", "\N{TEST TUBE} View experiment ")


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_credentials_in_the_tracking_uri_never_reach_stdout(iris, live_server, capfd):
    X_train, _, y_train, _ = iris
    password = "s3cr3t-pw"
    pipe = Iris()
    tracked.configure(pipe, tracking_uri=f"http://alice:{password}@127.0.0.1:{live_server.port}")
    with pipe:
        pipe.preprocessing(X_train, y_train)
    captured = capfd.readouterr()
    assert password not in captured.out + captured.err, captured.out
