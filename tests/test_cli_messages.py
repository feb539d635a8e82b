"""What the command line and class definitions say in the corners: long names, missing
spools, nothing to do, spawn workers, cached stages."""

from __future__ import annotations

import csv
import functools
import io
import os
import subprocess
import sys
import textwrap

import pytest
from pipelines import Iris

import tracked
from tracked import PipelineDefinitionError, TrackedPipeline, cli
from tracked.cli.compare import RUN_NAME_WIDTH


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


class LongName(Iris):
    experiment = "long-names"
    run_name = "a-very-long-run-name-" * 12  # 252 characters


def test_compare_shortens_long_run_names_in_tables_and_keeps_them_in_csv(
    tracking_uri, capsys, iris
):
    X_train, X_test, y_train, y_test = iris
    pipe = LongName()
    tracked.configure(pipe, tracking_uri=tracking_uri)
    with pipe:
        pipe.train(X_train, y_train)
        pipe.predict(X_test, y_test)
    code, out, _ = run_cli(capsys, "compare", "long-names", "--tracking-uri", tracking_uri)
    assert 0 == code
    (row,) = [line for line in out.splitlines() if line.startswith("a-very-long")]
    name = row.split("  ")[0]
    assert len(name) == RUN_NAME_WIDTH
    assert name.endswith("...")
    assert LongName.run_name not in out
    code, out, _ = run_cli(
        capsys, "compare", "long-names", "--tracking-uri", tracking_uri, "--format", "csv"
    )
    (record,) = csv.DictReader(io.StringIO(out))
    assert LongName.run_name == record["run_name"]


def test_status_of_a_spool_folder_that_does_not_exist_says_so(capsys, tmp_path):
    missing = tmp_path / "no-such-spool"
    code, out, _ = run_cli(capsys, "status", "--spool", str(missing))
    assert 1 == code
    assert f"there is no spool at {missing} (the folder does not exist)" in out
    assert "reached its store" not in out


def test_a_dry_run_with_nothing_to_do_says_so(capsys, tmp_path):
    empty = tmp_path / "spool"
    empty.mkdir()
    code, out, _ = run_cli(capsys, "sync", "--dry-run", "--spool", str(empty))
    assert 0 == code
    assert f"nothing to sync: the spool at {empty} holds no records" in out


def test_a_dry_run_on_a_missing_spool_says_it_does_not_exist(capsys, tmp_path):
    code, out, _ = run_cli(capsys, "sync", "--dry-run", "--spool", str(tmp_path / "gone"))
    assert 0 == code
    assert "does not exist" in out


@pytest.mark.parametrize("cache", [functools.cache, functools.lru_cache(maxsize=4)])
def test_a_cached_stage_is_refused_with_what_to_do(cache):
    with pytest.raises(PipelineDefinitionError, match=r"Cached\.step .*cache what the stage"):

        class Cached(TrackedPipeline):
            @cache
            def step(self, X, y=None, stage="transformer"):
                return X


SPAWNED = textwrap.dedent(
    """
    import tracked
    import multiprocessing as mp
    import mlflow
    from sklearn.preprocessing import StandardScaler
    from tracked import TrackedPipeline

    class Scaling(TrackedPipeline):
        experiment = "spawned"
        def scale(self, X, y=None, stage="transformer"):
            self.operator = StandardScaler()
            return self.operator.fit_transform(X)

    def work(uri):
        pipe = Scaling()
        tracked.configure(pipe, tracking_uri=uri)
        with pipe:
            pipe.scale([[1.0], [2.0]])
        return pipe.run_id

    if __name__ == "__main__":
        uri = {uri!r}
        with mp.get_context("spawn").Pool(1) as pool:
            run_id = pool.apply(work, (uri,))
        print(mlflow.MlflowClient(uri).get_run(run_id).data.tags["tracked.pipeline"])
    """
)


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_a_pipeline_in_a_spawn_worker_is_named_as_in_the_parent(tracking_uri, tmp_path):
    script = tmp_path / "spawned.py"
    script.write_text(SPAWNED.format(uri=tracking_uri))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    done = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=200,
    )
    assert 0 == done.returncode, done.stderr
    assert "__main__.Scaling" == done.stdout.strip().splitlines()[-1]
