"""Records of forked workers reach the store without a manual step.

multiprocessing's fork workers end through ``os._exit`` (a ``with Pool()`` block even
terminates them): no exit handler runs there, so a worker's records are written before its
stage call returns.
"""

from __future__ import annotations

import os

import pytest
from mlflow import MlflowClient
from processes import ROOT, TESTS, run_python

PROGRAM = """
import tracked
import multiprocessing, os, sys
from concurrent.futures import ProcessPoolExecutor
from mlflow import MlflowClient
from sklearn.datasets import load_iris
from pipelines import Iris

X, y = load_iris(return_X_y=True)
uri, how = sys.argv[1], sys.argv[2]
pipe = Iris()
tracked.configure(pipe, tracking_uri=uri)


def work(i):
    pipe.classification(X, y)  # the pipeline inherited through fork
    return i


with pipe:
    pipe.preprocessing(X, y)
    fork = multiprocessing.get_context("fork")
    if how == "pool":
        with fork.Pool(2) as pool:  # terminates its workers on exit
            pool.map(work, range(2))
    elif how == "executor":
        with ProcessPoolExecutor(2, mp_context=fork) as executor:
            list(executor.map(work, range(2)))
    else:
        pid = os.fork()
        if pid == 0:
            work(0)
            os._exit(0)
        os.waitpid(pid, 0)
    # In the store once the workers' calls returned, before the parent run ends.
    client = MlflowClient(uri)
    run = client.get_run(pipe.run_id)
    children = client.search_runs(
        [run.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{run.info.run_id}'"
    )
    print("before the end:", ",".join(sorted(c.info.run_name for c in children)))
print(pipe.run_id)
"""


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.parametrize(("how", "calls"), [("pool", 2), ("executor", 2), ("os.fork", 1)])
def test_stage_calls_in_forked_workers_are_in_the_store_when_they_return(
    tmp_path, how, calls, new_store
):
    store = new_store(tmp_path / "mlflow.db")
    spool = tmp_path / "spool"
    env = {
        **os.environ,
        "PYTHONPATH": f"{TESTS}{os.pathsep}{ROOT}",
        "TRACKED_SPOOL_DIR": str(spool),
    }
    done = run_python("-c", PROGRAM, store, how, cwd=tmp_path, env=env)
    lines = done.stdout.split("\n")
    expected = ["classification:fit"] * calls + ["preprocessing:fit"]
    assert f"before the end: {','.join(expected)}" in lines
    client = MlflowClient(store)
    run = client.get_run(lines[-2].strip())
    assert "FINISHED" == run.info.status
    children = client.search_runs(
        [run.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{run.info.run_id}'"
    )
    assert ["FINISHED"] * (calls + 1) == [c.info.status for c in children]
    assert not spool.exists() or [] == list(spool.iterdir()), "records left in the spool"
    # The parent does not claim that no estimator was fitted: its workers fitted them.
    assert "no estimator stage was fitted in it" not in done.stderr


ABANDONED_COPY = """
import tracked
import os, sys
from sklearn.datasets import load_iris
from pipelines import Iris

X, y = load_iris(return_X_y=True)
pipe = Iris()
tracked.configure(pipe, tracking_uri=sys.argv[1])  # nobody listens: everything goes to the spool
with pipe:
    pipe.preprocessing(X, y)
    pid = os.fork()
    if pid == 0:
        pipe.classification(pipe.preprocessing(X, train=False), y)
        os._exit(0)  # a worker's end: its copy's folder is left behind, not closed
    os.waitpid(pid, 0)
print(pipe.run_id)
"""


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_sync_dry_run_and_sync_agree_on_a_forked_workers_records_and_name_the_run(
    tmp_path, new_store
):
    from servers import free_port

    from tracked.spool.sync import sync

    spool = tmp_path / "spool"
    env = {
        **os.environ,
        "PYTHONPATH": f"{TESTS}{os.pathsep}{ROOT}",
        "TRACKED_SPOOL_DIR": str(spool),
        "TRACKED_STRICT": "0",
    }
    done = run_python(
        "-c", ABANDONED_COPY, f"http://127.0.0.1:{free_port()}", cwd=tmp_path, env=env
    )
    local_id = done.stdout.split()[-1]
    assert local_id.startswith("local-")
    assert 2 == len(list(spool.iterdir()))  # the parent's folder and the worker's
    target = new_store(tmp_path / "target.db")

    dry = sync(spool, tracking_uri=target, dry_run=True)
    assert 2 == len(dry.done)
    assert not [line for line in dry.done if "KILLED" in line], dry.done
    [worker_line] = [line for line in dry.done if local_id not in line.split()[2]]
    assert f"under run {local_id}" in worker_line

    real = sync(spool, tracking_uri=target)
    assert real.ok, real.remaining
    client = MlflowClient(target)
    [parent] = client.search_runs(
        [client.get_experiment_by_name("tests").experiment_id],
        filter_string=f"tags.`tracked.local_run_id` = '{local_id}'",
    )
    assert "FINISHED" == parent.info.status  # as the dry run said: nothing ends KILLED
    assert f"as run {parent.info.run_id}" in " ".join(real.done)
    assert f"under run {parent.info.run_id}" in " ".join(real.done)
    assert " -" not in " ".join(real.done)
    children = client.search_runs(
        [parent.info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'",
    )
    assert ["classification:fit", "preprocessing:fit", "preprocessing:inference"] == sorted(
        c.info.run_name for c in children
    )


VERIFIED_IN_WORKER = """
import tracked
import os, sys
from pipelines import Iris
from sklearn.datasets import load_iris

X, y = load_iris(return_X_y=True)
pipe = Iris()
tracked.configure(pipe, tracking_uri=sys.argv[1])
with pipe:
    pipe.train(X, y)  # the composed model reaches the store before the fork
    pid = os.fork()
    if pid == 0:
        pipe.predict(X, y)
        os._exit(0)
    os.waitpid(pid, 0)
print(pipe.run_id)
"""


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_forked_worker_s_pass_agreeing_with_the_parent_s_logged_model_is_verified(
    tmp_path, new_store
):
    store = new_store(tmp_path / "mlflow.db")
    env = {
        **os.environ,
        "PYTHONPATH": f"{TESTS}{os.pathsep}{ROOT}",
        "TRACKED_SPOOL_DIR": str(tmp_path / "spool"),
    }
    done = run_python("-c", VERIFIED_IN_WORKER, store, cwd=tmp_path, env=env)
    client = MlflowClient(store)
    run = client.get_run(done.stdout.split()[-1])
    [worker] = client.search_runs(
        [run.info.experiment_id],
        filter_string=(
            f"tags.mlflow.parentRunId = '{run.info.run_id}' "
            "and attributes.run_name = 'classification:inference'"
        ),
    )
    assert "true" == worker.data.tags["tracked.copy"]
    assert "true" == worker.data.tags["tracked.pipeline_verified"], worker.data.tags
