"""Processes racing on a fresh sqlite store all land in it (MLflow's schema creation races)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow import MlflowClient

TESTS = Path(__file__).parent
ROOT = TESTS.parent

WORKER = """
import tracked
import sys, time
from sklearn.datasets import load_iris
from pipelines import Iris
X, y = load_iris(return_X_y=True)
start = float(sys.argv[2])
while time.time() < start:  # all four open the fresh store at the same moment
    time.sleep(0.001)
pipe = Iris()
tracked.configure(pipe, tracking_uri=sys.argv[1])
with pipe:
    pipe.train(X, y)
print(pipe.run_id)
"""


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_four_processes_on_one_fresh_sqlite_store_all_land(tmp_path):
    store = f"sqlite:///{tmp_path / 'fresh.db'}"
    spool = tmp_path / "spool"
    env = {
        **os.environ,
        "PYTHONPATH": f"{TESTS}{os.pathsep}{ROOT}",
        "TRACKED_SPOOL_DIR": str(spool),
        "TRACKED_STRICT": "0",  # a failure would spool and warn: the assertions below see it
        # The subject is the race, not the exit bound: four interpreters creating one schema
        # on a busy machine may take longer than the default 30 s.
        "TRACKED_EXIT_TIMEOUT": "200",
    }
    start = time.time() + 8  # after every interpreter has imported what it needs
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, store, str(start)],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    results = []
    try:
        for process in processes:
            out, err = process.communicate(timeout=240)
            results.append((process.returncode, out.strip(), err))
    finally:
        for process in processes:
            process.kill()
    for code, _, err in results:
        assert 0 == code, err
        assert "TrackingWarning" not in err, err
    run_ids = [out for _, out, _ in results]
    assert not [run_id for run_id in run_ids if run_id.startswith("local-")]
    client = MlflowClient(store)
    assert ["FINISHED"] * 4 == [client.get_run(run_id).info.status for run_id in run_ids]
    assert not spool.exists() or [] == list(spool.iterdir())
