"""A parameter sweep of the iris workflow: every configuration tracked, in one group run.

    python demo/sweep.py                                 # loky, 2 workers, ./mlflow.db
    python demo/sweep.py --backend threading --n-jobs 4
    python demo/sweep.py --backend dask                  # starts a local cluster (2 workers)
    python demo/sweep.py --backend dask --scheduler tcp://127.0.0.1:8786

Prints the best configuration by accuracy and the group run id.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys

from sklearn.datasets import load_iris
from sklearn.model_selection import train_test_split

DEMO = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, DEMO)

from iris import IrisPipeline  # noqa: E402

import tracked  # noqa: E402

GRID = {"n_components": [1, 2, 3, 4], "C": [0.01, 0.1, 1.0, 10.0]}


def train_and_evaluate(pipe: IrisPipeline) -> float:
    """One configuration: train on the split, evaluate on the test rows, return accuracy."""
    X, y = load_iris(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.2, random_state=42)
    pipe.train(X_train, y_train)
    return float((pipe.predict(X_test, y_test) == y_test).mean())


@contextlib.contextmanager
def dask_client(scheduler: str | None):
    """A dask.distributed client: on ``scheduler``, or on a local cluster started here."""
    from dask.distributed import Client, LocalCluster

    if scheduler:
        with Client(scheduler) as client:
            yield client
        return
    with (
        LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
        ) as cluster,
        Client(cluster) as client,
    ):
        yield client


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-jobs", type=int, default=2, help="parallel jobs (default 2)")
    parser.add_argument(
        "--backend", choices=["loky", "threading", "dask"], default="loky", help="joblib backend"
    )
    parser.add_argument("--scheduler", help="address of a running dask scheduler")
    parser.add_argument("--tracking-uri", help="MLflow tracking URI (default: MLflow's own)")
    args = parser.parse_args(argv)

    if args.tracking_uri:
        os.environ["MLFLOW_TRACKING_URI"] = args.tracking_uri
    # Worker processes import the pipeline class by name: let them find demo/iris.py.
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [DEMO, os.environ.get("PYTHONPATH")]))
    client = dask_client(args.scheduler) if args.backend == "dask" else contextlib.nullcontext()
    with client:
        results = tracked.sweep(
            IrisPipeline,
            GRID,
            train_and_evaluate,
            n_jobs=args.n_jobs,
            backend=args.backend,
            name=f"iris sweep ({args.backend})",
        )
    print(f"configurations: {len(results)}")
    print(f"best configuration: {results.best_params} {results.best_metric}")
    print(f"best run id: {results.best_run_id}")
    print(f"group run id: {results.run_id}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
