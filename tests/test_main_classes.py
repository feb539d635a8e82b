"""Pipeline classes defined in ``__main__`` (a script, a notebook) keep their stages in
workers: loky (``tracked.sweep``, ``joblib.Parallel``) and spawn processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from tracked import TrackedPipeline, TrackingWarning

SCRIPT = textwrap.dedent(
    """
    import json
    import multiprocessing
    import sys

    import numpy as np
    from joblib import Parallel, delayed
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    import tracked
    from tracked import TrackedPipeline

    URI = sys.argv[1]


    class Script(TrackedPipeline):
        experiment = "script"
        tracking_uri = URI

        def __init__(self, C=1.0):
            self.C = C

        def scale(self, X, y=None, train=True, stage="transformer"):
            if train:
                self.scaler = StandardScaler().fit(X)
            self.operator = self.scaler
            return self.scaler.transform(X)

        def clf(self, X, y=None, train=True, stage="estimator"):
            if train:
                self.model = LogisticRegression(C=self.C).fit(X, y)
            self.operator = self.model
            return self.model.predict(X)


    def data():
        rng = np.random.default_rng(0)
        X = rng.normal(size=(80, 3))
        return X, (X[:, 0] + X[:, 1] > 0).astype(int)


    def train_and_evaluate(pipe):
        X, y = data()
        pipe.clf(pipe.scale(X), y)
        pipe.clf(pipe.scale(X, train=False), y, train=False)
        return pipe.run_id


    def one(C):
        pipe = Script(C=C)
        with pipe:
            train_and_evaluate(pipe)
        return pipe.run_id


    if __name__ == "__main__":
        swept = tracked.sweep(
            Script, {"C": [0.1, 1.0]}, train_and_evaluate, n_jobs=2, backend="loky"
        )
        parallel = Parallel(n_jobs=2, backend="loky")(delayed(one)(C) for C in (0.2, 2.0))
        with multiprocessing.get_context("spawn").Pool(2) as pool:
            spawned = pool.map(one, [0.5, 5.0])
        print(json.dumps({
            "sweep": list(swept),
            "best_params": swept.best_params,
            "parallel": parallel,
            "spawned": spawned,
        }))
    """
)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_script_defined_pipeline_records_its_stages_in_loky_and_spawn_workers(
    tmp_path, tracking_uri, client
):
    script = tmp_path / "script.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}
    env.pop("TRACKED_STRICT", None)  # a user's script: warnings, and they must not occur
    done = subprocess.run(
        [sys.executable, "-W", "error::tracked.TrackingWarning", str(script), tracking_uri],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=540,
    )
    assert 0 == done.returncode, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])

    assert out["best_params"] is not None and out["best_params"]["C"] in (0.1, 1.0)
    run_ids = out["sweep"] + out["parallel"] + out["spawned"]
    assert 6 == len(set(run_ids))
    for run_id in run_ids:
        parent = client.get_run(run_id)
        children = client.search_runs(
            [parent.info.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{run_id}'"
        )
        names = sorted(child.info.run_name for child in children)
        assert ["clf:fit", "clf:inference", "scale:fit", "scale:inference"] == names, run_id
        assert "training_accuracy" in parent.data.metrics
        assert "accuracy" in parent.data.metrics


def test_a_class_rebuilt_by_value_gets_its_stages_back_when_an_instance_is_made():
    """What cloudpickle does with a `__main__` class, done in this process: the metaclass
    sees an empty namespace and the methods arrive afterwards as plain functions."""
    import cloudpickle

    namespace: dict[str, object] = {}
    exec(  # a class whose module is __main__, as in a script
        textwrap.dedent(
            """
            from tracked import TrackedPipeline
            class Rebuilt(TrackedPipeline):
                def clf(self, X, y=None, stage="estimator"):
                    return X
            """
        ),
        {"__name__": "__main__"},
        namespace,
    )
    rebuilt = cloudpickle.loads(cloudpickle.dumps(namespace["Rebuilt"]))
    code = (
        "import pickle, sys; cls = pickle.loads(sys.stdin.buffer.read()); "
        "before = dict(cls.stage_kinds); cls(); print(before, cls.stage_kinds)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        input=cloudpickle.dumps(rebuilt),
        capture_output=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])},
        timeout=120,
    )
    assert 0 == done.returncode, done.stderr.decode()[-2000:]
    assert "{} {'clf': 'estimator'}" == done.stdout.decode().strip()


def test_stages_that_cannot_be_instrumented_say_so():
    class Later(TrackedPipeline):
        pass

    def batches(self, X, y=None, stage="transformer"):  # a generator cannot be a stage
        yield from X

    Later.batches = batches
    with pytest.warns(TrackingWarning, match=r"instrument the stages of .*Later"):
        Later()
    np.testing.assert_array_equal([1, 2], list(Later().batches(np.array([1, 2]))))
