"""demo/iris.py on a fresh folder, with MLflow's default store, as a user runs it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

DEMO = Path(__file__).parents[1] / "demo" / "iris.py"


def run_demo(cwd: Path, *args: str, script: Path = DEMO, stderr: list | None = None) -> str:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    result = subprocess.run(
        [sys.executable, str(script), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    if stderr is not None:
        stderr.append(result.stderr)
    return result.stdout


def printed(output: str, label: str) -> str:
    [line] = [line for line in output.splitlines() if line.startswith(f"{label}: ")]
    return line.split(": ", 1)[1]


@pytest.mark.slow
def test_two_demo_runs_leave_two_comparable_parent_runs_in_the_default_store(tmp_path):
    from mlflow import MlflowClient

    first = run_demo(tmp_path)
    second = run_demo(tmp_path, "--n-components", "3", "--C", "0.5")

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert f"mlflow ui --backend-store-uri {uri}" in printed(first, "open the runs")
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("iris-demo")
    parents = client.search_runs(
        [experiment.experiment_id],
        filter_string="tags.`tracked.pipeline` LIKE '%IrisPipeline'",
        order_by=["attributes.start_time ASC"],
    )
    assert [printed(first, "parent run id"), printed(second, "parent run id")] == [
        run.info.run_id for run in parents
    ]
    assert {"n_components": "3", "C": "0.5"} == parents[1].data.params
    for output, parent in zip((first, second), parents, strict=True):
        assert float(printed(output, "accuracy")) == pytest.approx(parent.data.metrics["accuracy"])
        children = client.search_runs(
            [experiment.experiment_id],
            filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'",
        )
        phases = sorted(child.data.tags["tracked.phase"] for child in children)
        assert phases == ["fit"] * 3 + ["inference"] * 3
    assert parents[0].info.run_name != parents[1].info.run_name
    run_id = printed(first, "parent run id")
    assert printed(first, "composed model").startswith(f"runs:/{run_id}/pipeline (models:/")
    assert f"mlflow models serve -m runs:/{run_id}/pipeline --env-manager local" in printed(
        first, "serve it"
    )


@pytest.mark.slow
def test_the_demo_without_tracking_leaves_no_store(tmp_path):
    output = run_demo(tmp_path, "--no-tracking")
    assert "tracking: off" in output
    assert [] == list(tmp_path.iterdir())


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_the_dask_sweep_demo_leaves_one_complete_group_run(tmp_path, new_store):
    from mlflow import MlflowClient
    from test_sweep import assert_pipelines_complete

    # The default store exists already (a copied template): the workers do not race to make it.
    new_store(tmp_path / "mlflow.db", tmp_path)
    output = run_demo(tmp_path, "--backend", "dask", script=DEMO.parent / "sweep.py")
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    group_run_id = printed(output, "group run id")
    assert "iris sweep (dask)" == client.get_run(group_run_id).info.run_name
    assert_pipelines_complete(client, group_run_id, int(printed(output, "configurations")))
    assert (
        printed(output, "best run id")
        == client.get_run(group_run_id).data.tags["tracked.best_run_id"]
    )


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_the_demo_with_its_store_away_keeps_everything_for_tracked_sync(
    tmp_path, spool_dir, new_store
):
    """The issue's scenario: the server is down, the demo still answers and warns once;
    `tracked sync` then writes the whole run (here into a sqlite store standing in for it)."""
    from mlflow import MlflowClient
    from pipelines import CHILD_NAMES
    from servers import free_port

    errors: list[str] = []
    away = run_demo(tmp_path, "--tracking-uri", f"http://127.0.0.1:{free_port()}", stderr=errors)
    untracked = run_demo(tmp_path, "--no-tracking")
    assert printed(untracked, "accuracy") == printed(away, "accuracy")
    assert printed(untracked, "predictions") == printed(away, "predictions")
    assert printed(away, "parent run id").startswith("local-")
    [warning] = [line for line in errors[0].splitlines() if "TrackingWarning" in line]
    assert f"kept in the spool at {spool_dir}" in warning

    store = new_store(tmp_path / "synced.db")
    done = subprocess.run(
        [sys.executable, "-m", "tracked", "sync", "--tracking-uri", store],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert 0 == done.returncode, done.stderr
    client = MlflowClient(store)
    experiment = client.get_experiment_by_name("iris-demo")
    [parent] = client.search_runs(
        [experiment.experiment_id], filter_string="tags.`tracked.pipeline` LIKE '%IrisPipeline'"
    )
    assert "FINISHED" == parent.info.status
    assert float(printed(away, "accuracy")) == pytest.approx(parent.data.metrics["accuracy"])
    children = client.search_runs(
        [experiment.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{parent.info.run_id}'",
    )
    assert sorted(CHILD_NAMES) == sorted(child.info.run_name for child in children)
    assert all("FINISHED" == child.info.status for child in children)
    assert [] == list(spool_dir.iterdir())
