"""``tracked compare`` against real sqlite MLflow stores holding real pipeline runs."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import stores
from pipelines import Iris, Regression
from servers import free_port

import tracked
from tracked import cli


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    """Run ``tracked ARGV`` in this process: exit status, stdout, stderr."""
    code = cli.main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def track_iris(tracking_uri: str, iris, **params) -> str:
    """One demo-like pipeline run (fit, then a prediction pass with ground truth)."""
    X_train, X_test, y_train, y_test = iris
    pipe = Iris(**params)
    tracked.configure(pipe, tracking_uri=tracking_uri)
    with pipe:
        pipe.train(X_train, y_train)
        pipe.predict(X_test, y_test)
    return pipe.run_id


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory, store_template, iris) -> dict:
    """A store with two Iris runs that differ in C only; the older one is the better.

    C=0.1 scores accuracy 0.933 on the demo's split, C=1.0 scores 0.9: ranking by accuracy
    must reverse the newest-first order MLflow returns.
    """
    folder = tmp_path_factory.mktemp("compare")
    uri = stores.fresh_store(store_template, folder / "mlflow.db", folder)
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)  # MLflow puts a sqlite store's artifacts in ./mlruns
        better = track_iris(uri, iris, C=0.1)
        time.sleep(0.01)  # distinct start times
        worse = track_iris(uri, iris, C=1.0)
    return {"uri": uri, "folder": folder, "better": better, "worse": worse}


# -- the three formats ------------------------------------------------------------------------


def test_csv_ranks_runs_by_accuracy_and_shows_only_differing_params(capsys, two_runs):
    code, out, err = run_cli(
        capsys, "compare", "tests", "--tracking-uri", two_runs["uri"], "--format", "csv"
    )

    assert (0, "") == (code, err)
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [two_runs["better"], two_runs["worse"]] == [row["run_id"] for row in rows]
    assert ["0.1", "1.0"] == [row["params.C"] for row in rows]
    assert "params.n_components" not in rows[0]  # the same in both runs
    assert [0.9333, 0.9] == [round(float(row["metrics.accuracy"]), 4) for row in rows]
    assert ["FINISHED", "FINISHED"] == [row["status"] for row in rows]
    assert ["Iris(C=0.1)", "Iris"] == [row["run_name"] for row in rows]
    columns = list(rows[0])
    metrics = [name for name in columns if name.startswith("metrics.")]
    assert [
        "metrics.accuracy",
        "metrics.f1_macro",
        "metrics.precision_macro",
        "metrics.recall_macro",
    ] == metrics
    assert not any("training_" in name or "duration_s" in name for name in columns)


def test_json_is_a_list_of_objects_best_first(capsys, two_runs):
    code, out, _ = run_cli(
        capsys, "compare", "tests", "--tracking-uri", two_runs["uri"], "--format", "json"
    )

    assert 0 == code
    records = json.loads(out)
    assert [two_runs["better"], two_runs["worse"]] == [r["run_id"] for r in records]
    assert [{"C": "0.1"}, {"C": "1.0"}] == [r["params"] for r in records]
    first = records[0]
    assert {"run_id", "run_name", "pipeline", "start_time", "status", "params", "metrics"} == set(
        first
    )
    assert "pipelines.Iris" == first["pipeline"]
    assert first["start_time"].endswith("+00:00")
    assert records[0]["metrics"]["accuracy"] > records[1]["metrics"]["accuracy"]
    assert ["accuracy", "f1_macro", "precision_macro", "recall_macro"] == list(first["metrics"])


def test_table_lists_runs_best_first_with_a_caption(capsys, two_runs):
    code, out, _ = run_cli(capsys, "compare", "tests", "--tracking-uri", two_runs["uri"])

    assert 0 == code
    lines = out.splitlines()
    header = lines[0].split()
    assert ["run", "name", "start", "time", "status", "C", "accuracy"] == header[:7]
    assert "n_components" not in header
    assert lines[2].startswith("Iris(C=0.1) ")
    assert lines[3].startswith("Iris ")
    assert "0.9333" in lines[2] and "0.9000" in lines[3]
    assert two_runs["better"][:8] in lines[2]
    assert (
        "2 pipeline runs of experiment 'tests', best first by accuracy (higher is better)"
        == lines[-1]
    )


def test_table_uses_rich_on_a_terminal(two_runs):
    pytest.importorskip("rich")

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    from tracked.backends.mlflow import reading

    client, uri = reading.open_store(two_runs["uri"])
    comparison = cli.compare_runs(reading.pipeline_runs(client, uri, "tests"), "tests")
    out = Terminal()
    cli.write_table(comparison, out)

    text = out.getvalue()
    assert "┃" in text  # rich's box
    assert text.index("Iris(C=0.1)") < text.index("Iris ")
    assert "best first by accuracy" in text


# -- options ----------------------------------------------------------------------------------


def test_top_keeps_the_best_runs_and_says_how_many_there_are(capsys, two_runs):
    code, out, _ = run_cli(
        capsys,
        "compare",
        "tests",
        "--tracking-uri",
        two_runs["uri"],
        "--top",
        "1",
        "--format",
        "json",
    )

    assert 0 == code
    [record] = json.loads(out)
    assert two_runs["better"] == record["run_id"]
    assert {"C": "0.1"} == record["params"]  # still the params that differ across all runs

    _, table, _ = run_cli(
        capsys, "compare", "tests", "--tracking-uri", two_runs["uri"], "--top", "1"
    )
    assert table.splitlines()[-1].startswith("1 of 2 pipeline runs")


def test_metric_ranks_by_that_metric_and_shows_it_first(capsys, two_runs):
    code, out, _ = run_cli(
        capsys,
        "compare",
        "tests",
        "--tracking-uri",
        two_runs["uri"],
        "--metric",
        "recall_macro",
        "--format",
        "csv",
    )

    assert 0 == code
    rows = list(csv.DictReader(io.StringIO(out)))
    assert "metrics.recall_macro" == next(n for n in rows[0] if n.startswith("metrics."))
    recalls = [float(row["metrics.recall_macro"]) for row in rows]
    assert sorted(recalls, reverse=True) == recalls


def test_lower_is_better_metrics_rank_ascending(capsys, tracking_uri):
    """rmse ranks the smallest first; the default (r2, the library's first) the largest."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(80, 3))
    y = X @ [1.0, -2.0, 0.5] + 50 + rng.normal(scale=0.1, size=80)
    run_ids = []
    for fit_intercept in (True, False):  # the better one first: newest-first would be wrong
        pipe = Regression(fit_intercept=fit_intercept)
        tracked.configure(pipe, tracking_uri=tracking_uri)
        with pipe:
            pipe.regress(pipe.scale(X), y)
            pipe.regress(pipe.scale(X, train=False), y, train=False)
        run_ids.append(pipe.run_id)
        time.sleep(0.01)

    for metric in ("rmse", "mae", None):
        option = ["--metric", metric] if metric else []
        code, out, _ = run_cli(
            capsys, "compare", "tests", "--tracking-uri", tracking_uri, "--format", "json", *option
        )
        assert 0 == code
        records = json.loads(out)
        assert run_ids == [r["run_id"] for r in records], metric
        assert [metric or "r2"] == list(records[0]["metrics"])[:1]

    _, table, _ = run_cli(
        capsys, "compare", "tests", "--tracking-uri", tracking_uri, "--metric", "rmse"
    )
    assert table.splitlines()[-1].endswith("best first by rmse (lower is better)")


@pytest.mark.parametrize(
    ("metric", "lower"),
    [
        ("accuracy", False),
        ("f1_macro", False),
        ("r2", False),
        ("rmse", True),
        ("val_rmse", True),
        ("mae", True),
        ("mse", True),
        ("log_loss", True),
        ("logloss", True),
        ("max_error", True),
        ("hamming_loss", True),
        ("neg_mean_squared_error", False),
        ("neg_log_loss", False),
        ("neg_root_mean_squared_error", False),
        ("roc_auc", False),
        ("gamma_estimate", False),  # "mae" inside a word is not the abbreviation
    ],
)
def test_lower_is_better_follows_the_documented_rule(metric, lower):
    assert lower == cli.lower_is_better(metric)


def test_pipeline_runs_are_those_tagged_even_when_nested(capsys, tracking_uri, client):
    """A pipeline run under an outer run counts; outer runs and stage runs do not."""
    experiment_id = client.create_experiment("nested")
    outer = client.create_run(experiment_id, run_name="sweep").info.run_id
    pipeline = client.create_run(
        experiment_id,
        run_name="Iris",
        tags={"tracked.pipeline": "pipelines.Iris", "mlflow.parentRunId": outer},
    ).info.run_id
    client.log_metric(pipeline, "accuracy", 0.9)
    client.log_metric(pipeline, "total_time", 3.0)
    client.log_param(pipeline, "C", "1.0")
    stage = client.create_run(
        experiment_id,
        run_name="classification:fit",
        tags={"tracked.stage": "classification", "mlflow.parentRunId": pipeline},
    ).info.run_id
    client.log_metric(stage, "accuracy", 1.0)

    code, out, _ = run_cli(
        capsys, "compare", "nested", "--tracking-uri", tracking_uri, "--format", "json"
    )

    assert 0 == code
    [record] = json.loads(out)
    assert pipeline == record["run_id"]
    assert {"accuracy": 0.9} == record["metrics"]  # total_* is bookkeeping
    assert {"C": "1.0"} == record["params"]  # a single run shows all its params


def test_default_store_is_mlflows_own_resolution(capsys, two_runs, monkeypatch, tmp_path):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", two_runs["uri"])
    monkeypatch.chdir(tmp_path)
    code, out, _ = run_cli(capsys, "compare", "tests", "--format", "json")
    assert 0 == code
    assert 2 == len(json.loads(out))

    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    monkeypatch.chdir(two_runs["folder"])  # ./mlflow.db, MLflow's default store
    code, out, _ = run_cli(capsys, "compare", "tests", "--format", "json")
    assert 0 == code
    assert 2 == len(json.loads(out))


# -- failures ---------------------------------------------------------------------------------


def test_unknown_experiment_exits_1_naming_it(capsys, two_runs):
    code, out, err = run_cli(capsys, "compare", "nope", "--tracking-uri", two_runs["uri"])

    assert (1, "") == (code, out)
    assert 1 == len(err.splitlines())
    assert "no experiment 'nope'" in err
    assert "'tests'" in err  # the experiments that are there
    assert two_runs["uri"] in err


def test_unknown_metric_exits_1_listing_the_metrics(capsys, two_runs):
    code, _, err = run_cli(
        capsys, "compare", "tests", "--tracking-uri", two_runs["uri"], "--metric", "rmse"
    )

    assert 1 == code
    assert "no pipeline run of experiment 'tests' has a metric 'rmse'" in err
    assert "accuracy, f1_macro, precision_macro, recall_macro" in err


def test_experiment_without_pipeline_runs_exits_1(capsys, tracking_uri, client):
    experiment_id = client.create_experiment("plain")
    client.create_run(experiment_id, run_name="not a pipeline")

    code, _, err = run_cli(capsys, "compare", "plain", "--tracking-uri", tracking_uri)

    assert 1 == code
    assert "experiment 'plain'" in err and "has no pipeline runs" in err


def test_unreachable_server_fails_fast_without_showing_credentials(capsys):
    port = free_port()  # nothing listens there
    uri = f"http://alice:s3cret@127.0.0.1:{port}"

    start = time.monotonic()
    code, out, err = run_cli(capsys, "compare", "tests", "--tracking-uri", uri)

    assert time.monotonic() - start < 10
    assert (1, "") == (code, out)
    assert f"http://***@127.0.0.1:{port}" in err
    assert "s3cret" not in err and "alice" not in err


def test_a_missing_local_store_is_reported_not_created(capsys, in_tmp_cwd, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)

    code, _, err = run_cli(capsys, "compare", "tests")

    assert 1 == code
    assert f"no MLflow store at {in_tmp_cwd / 'mlflow.db'}" in err
    assert not (in_tmp_cwd / "mlflow.db").exists()


@pytest.mark.parametrize(
    "argv",
    [
        ["compare"],
        ["compare", "tests", "--top", "0"],
        ["compare", "tests", "--format", "xml"],
        [],
    ],
)
def test_usage_errors_exit_2(capsys, argv):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    assert 2 == exit_info.value.code
    assert "usage: tracked" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("uri", "masked"),
    [
        ("http://user:pw@host:5000/path", "http://***@host:5000/path"),
        ("https://token@host", "https://***@host"),
        ("http://host:5000", "http://host:5000"),
        ("sqlite:////tmp/mlflow.db", "sqlite:////tmp/mlflow.db"),
    ],
)
def test_mask_uri_hides_credentials(uri, masked):
    assert masked == cli.mask_secrets(uri)


# -- as installed -----------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("command", ["console script", "python -m tracked"])
def test_the_command_runs_as_installed(two_runs, command):
    script = Path(sys.executable).parent / "tracked"
    if command == "console script":
        if not script.exists():
            pytest.skip(f"no console script at {script}: pip install -e . creates it")
        prefix = [str(script)]
    else:
        prefix = [sys.executable, "-m", "tracked"]
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}

    done = subprocess.run(
        [*prefix, "compare", "tests", "--format", "json"],
        cwd=two_runs["folder"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert 0 == done.returncode, done.stderr
    assert [two_runs["better"], two_runs["worse"]] == [r["run_id"] for r in json.loads(done.stdout)]

    missing = subprocess.run(
        [*prefix, "compare", "nope", "--tracking-uri", two_runs["uri"]],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert 1 == missing.returncode
    assert missing.stderr.startswith("tracked compare: no experiment 'nope'")
