"""demo/iris.py on a fresh folder, with MLflow's default store, as a user runs it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

DEMO = Path(__file__).parents[1] / "demo" / "iris.py"


def run_demo(cwd: Path, *args: str, script: Path = DEMO) -> str:
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
def test_the_dask_sweep_demo_leaves_one_complete_group_run(tmp_path):
    from mlflow import MlflowClient
    from test_sweep import assert_pipelines_complete

    output = run_demo(tmp_path, "--backend", "dask", script=DEMO.parent / "sweep.py")
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    group_run_id = printed(output, "group run id")
    assert "iris sweep (dask)" == client.get_run(group_run_id).info.run_name
    assert_pipelines_complete(client, group_run_id, int(printed(output, "configurations")))
    assert (
        printed(output, "best run id")
        == client.get_run(group_run_id).data.tags["tracked.best_run_id"]
    )
