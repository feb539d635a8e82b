"""Parent runs left open end with the interpreter, with a status that tells how it ended."""

from __future__ import annotations

import pytest
from test_toggle import run_python


def script(tracking_uri: str, ending: str) -> str:
    return f"""
        import tracked
        from sklearn.datasets import load_iris
        from pipelines import Iris
        X, y = load_iris(return_X_y=True)
        pipe = Iris()
        tracked.configure(pipe, tracking_uri={tracking_uri!r})
        pipe.train(X, y)
        print(pipe.run_id, flush=True)
        {ending}
    """


@pytest.mark.slow
@pytest.mark.parametrize(
    ("ending", "status", "returncode"),
    [
        ("pass", "FINISHED", 0),
        ("raise ValueError('the end')", "FAILED", 1),
        ("raise KeyboardInterrupt", "KILLED", None),
    ],
    ids=["normal", "exception", "interrupt"],
)
def test_an_open_parent_run_ends_at_interpreter_exit(
    tmp_path, tracking_uri, client, ending, status, returncode
):
    result = run_python(script(tracking_uri, ending), tmp_path, TRACKED_STRICT="1")
    if returncode is not None:
        assert returncode == result.returncode, result.stderr
    run_id = result.stdout.split()[0]
    run = client.get_run(run_id)
    assert status == run.info.status
    assert run.info.end_time is not None
    children = client.search_runs(
        [run.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{run_id}'"
    )
    assert 3 == len(children)


@pytest.mark.slow
def test_a_forked_child_logs_under_the_open_run_and_never_ends_it(tmp_path, tracking_uri, client):
    code = f"""
        import tracked
        import os, sys
        from mlflow import MlflowClient
        from sklearn.datasets import load_iris
        from pipelines import Iris
        X, y = load_iris(return_X_y=True)
        pipe = Iris()
        tracked.configure(pipe, tracking_uri={tracking_uri!r})
        with pipe:
            Xs = pipe.preprocessing(X, y)
            pid = os.fork()
            if pid == 0:
                pipe.reduction(Xs, y)   # created before the fork, used in the child
                sys.exit(0)             # a normal exit: atexit handlers run in the child
            os.waitpid(pid, 0)
            status = MlflowClient({tracking_uri!r}).get_run(pipe.run_id).info.status
            print("after child exit:", status)
        print(pipe.run_id)
    """
    result = run_python(code, tmp_path)
    assert 0 == result.returncode, result.stderr
    lines = result.stdout.split("\n")
    assert "after child exit: RUNNING" in lines
    run = client.get_run(lines[-2].strip())
    assert "FINISHED" == run.info.status
    children = client.search_runs(
        [run.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{run.info.run_id}'"
    )
    assert ["preprocessing:fit", "reduction:fit"] == sorted(c.info.run_name for c in children)
