"""Status in the REPL: an exception the session displayed and survived is not the cause of
its exit; only the runs a Ctrl-C interrupted end KILLED."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest
from mlflow import MlflowClient
from processes import ROOT, TESTS, run_python


def run_repl(lines: str, tmp_path: Path) -> dict[str, str]:
    """Feed ``lines`` to ``python -i`` on its stdin; return the run ids it printed by name."""
    env = {
        **os.environ,
        "PYTHONPATH": f"{TESTS}{os.pathsep}{ROOT}",
        "TRACKED_STRICT": "0",
    }
    done = run_python("-i", "-q", cwd=tmp_path, env=env, input=lines)
    runs = dict(line.split() for line in done.stdout.splitlines() if line.startswith("run-"))
    assert runs, (done.stdout, done.stderr)
    return runs


SETUP = """
    from sklearn.datasets import load_iris
    from pipelines import Iris
    X, y = load_iris(return_X_y=True)
    Iris.tracking_uri = {uri!r}
    p = Iris()
    p.train(X, y)
    print("run-p", p.run_id)
"""


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_displayed_exception_leaves_open_runs_finished_at_exit(tmp_path, new_store):
    uri = new_store(tmp_path / "mlflow.db")
    runs = run_repl(textwrap.dedent(SETUP).format(uri=uri) + "1/0\n", tmp_path)
    client = MlflowClient(uri)
    assert "FINISHED" == client.get_run(runs["run-p"]).info.status


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_after_an_interrupted_statement_only_its_own_runs_end_killed(tmp_path, new_store):
    uri = new_store(tmp_path / "mlflow.db")
    lines = textwrap.dedent(SETUP).format(uri=uri) + textwrap.dedent(
        """
        class Interrupted(Iris):
            def classification(self, X, y=None, predict=False, stage="estimator"):
                raise KeyboardInterrupt  # Ctrl-C in the middle of the stage

        q = Interrupted()
        q.train(X, y)
        print("run-q", q.run_id)
        int("x")
        """
    )
    runs = run_repl(lines, tmp_path)
    client = MlflowClient(uri)
    assert "FINISHED" == client.get_run(runs["run-p"]).info.status
    assert "KILLED" == client.get_run(runs["run-q"]).info.status


IPYTHON_CELLS = """
import sys
from IPython.core.interactiveshell import InteractiveShell

shell = InteractiveShell.instance()
cells = [
    "from sklearn.datasets import load_iris\\n"
    "from pipelines import Iris\\n"
    "X, y = load_iris(return_X_y=True)\\n"
    f"Iris.tracking_uri = {sys.argv[1]!r}",
    "p = Iris()\\np.train(X, y)",
    "int('x')",  # displayed and survived
    "q = Iris()\\nq.preprocessing(X, y)\\nraise KeyboardInterrupt",  # Ctrl-C between stages
    "print('run-p', p.run_id)\\nprint('run-q', q.run_id)",
]
for cell in cells:
    shell.run_cell(cell, store_history=True)
"""


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_in_ipython_only_the_interrupted_cells_own_runs_end_killed(tmp_path, new_store):
    """The cells of a notebook kernel, run by IPython's shell in a plain interpreter (whose
    exit then ends the runs left open, as a kernel's shutdown does)."""
    pytest.importorskip("IPython")
    uri = new_store(tmp_path / "mlflow.db")
    env = {**os.environ, "PYTHONPATH": f"{TESTS}{os.pathsep}{ROOT}", "TRACKED_STRICT": "0"}
    done = run_python("-c", IPYTHON_CELLS, uri, cwd=tmp_path, env=env)
    runs = dict(line.split() for line in done.stdout.splitlines() if line.startswith("run-"))
    client = MlflowClient(uri)
    assert "FINISHED" == client.get_run(runs["run-p"]).info.status
    assert "KILLED" == client.get_run(runs["run-q"]).info.status
