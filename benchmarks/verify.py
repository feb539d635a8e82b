"""Caller-side cost of checking a composed model against an inference pass
(``Composer.verify``: ``tracked.pipeline_verified``), for a ColumnTransformer -> logistic
regression workflow on 1,000 rows, verified on passes of 200.

    python benchmarks/verify.py [--calls N]

Prints the first check of a composed model (which, since verification goes through the
pyfunc path, also builds the pyfunc model and checks the fit frame) and the median of the
next N, in milliseconds. Compare two versions by running it with each on PYTHONPATH, in
turn, on the same machine.
"""

from __future__ import annotations

import argparse
import time

import mlflow  # noqa: F401  (imported up front: the MLflow backend imports it at session open)
import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from tracked import TrackedPipeline
from tracked.recording.data import summarize
from tracked.testing import MemoryBackend


class Workflow(TrackedPipeline):
    fold_after = None

    def prep(self, X, train=True, stage="transformer"):
        if train:
            onehot = OneHotEncoder(sparse_output=False, handle_unknown="ignore")
            self.columns = ColumnTransformer(
                [("num", StandardScaler(), ["a", "b"]), ("cat", onehot, ["k"])]
            ).fit(X)
        self.operator = self.columns
        return self.columns.transform(X)

    def clf(self, X, y=None, train=True, stage="estimator"):
        if train:
            self.model = LogisticRegression().fit(X, y)
        self.operator = self.model
        return self.model.predict(X)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=200)
    calls = parser.parse_args().calls
    rng = np.random.default_rng(0)
    rows = 1000
    X = pd.DataFrame(
        {"a": rng.normal(size=rows), "b": rng.normal(size=rows), "k": rng.choice(list("xyz"), rows)}
    )
    y = (X["a"] > 0).astype(int).to_numpy()
    pipe = Workflow()
    pipe.backend = MemoryBackend()
    with pipe:
        pipe.clf(pipe.prep(X), y)
        composer = pipe._last_session().composer
        Z = pipe.prep(X[:200], train=False)
        out = pipe.clf(Z, train=False)
        args = ("clf", Z, out)
        if "input_digest" in composer.verify.__code__.co_varnames:
            args = (*args, summarize(Z).digest)
        composer._serving = None  # the first check of this composed model again
        started = time.perf_counter()
        verdict = composer.verify(*args)
        first = time.perf_counter() - started
        times = []
        for _ in range(calls):
            started = time.perf_counter()
            composer.verify(*args)
            times.append(time.perf_counter() - started)
    print(
        f"verdict {verdict}; first check {first * 1e3:.1f} ms, "
        f"median of {calls} {np.median(times) * 1e3:.2f} ms"
    )


if __name__ == "__main__":
    main()
