"""The iris workflow, tracked: StandardScaler -> PCA -> LogisticRegression.

    python demo/iris.py                      # tracked in ./mlflow.db (MLflow's default store)
    python demo/iris.py --n-components 3 --C 0.5
    python demo/iris.py --no-tracking
    python demo/iris.py --tracking-uri http://127.0.0.1:5000

Each run leaves one parent run with six child runs (three fit, three inference) in the
experiment "iris-demo"; the script prints the command that opens them in the MLflow UI.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys

from sklearn.datasets import load_iris
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

import tracked
from tracked import TrackedPipeline


class IrisPipeline(TrackedPipeline):
    """Scale, reduce, classify: one method per stage, no tracking code."""

    experiment = "iris-demo"

    def __init__(self, n_components=2, C=1.0):
        self.n_components = n_components
        self.C = C

    def preprocessing(self, X, y=None, train=True, stage="transformer"):
        if train:
            self.scaler = StandardScaler()
            self.operator = self.scaler
            return self.scaler.fit_transform(X, y)
        self.operator = self.scaler
        return self.scaler.transform(X)

    def reduction(self, X, y=None, train=True, stage="transformer"):
        if train:
            self.pca = PCA(n_components=self.n_components, random_state=0)
            self.operator = self.pca
            return self.pca.fit_transform(X, y)
        self.operator = self.pca
        return self.pca.transform(X)

    def classification(self, X, y=None, predict=False, stage="estimator"):
        if not predict:
            self.classifier = LogisticRegression(C=self.C, max_iter=1000)
            self.operator = self.classifier
            self.classifier.fit(X, y)
            return self.classifier
        self.operator = self.classifier
        return self.classifier.predict(X)

    def train(self, X, y):
        X = self.preprocessing(X, y)
        X = self.reduction(X, y)
        return self.classification(X, y)

    def predict(self, X, y=None):
        X = self.preprocessing(X, train=False)
        X = self.reduction(X, train=False)
        return self.classification(X, y, predict=True)


def _whole(text: str) -> int:
    """An integer, also when written as a float (`mlflow run` passes "3.0")."""
    value = float(text)
    if not value.is_integer():
        msg = f"{text!r} is not a whole number"
        raise argparse.ArgumentTypeError(msg)
    return int(value)


def ui_command(tracking_uri: str) -> str:
    """The command that opens ``tracking_uri``'s runs in the MLflow UI."""
    if tracking_uri.startswith(("http://", "https://")):
        return f"open {tracking_uri} in a browser"
    return f"mlflow ui --backend-store-uri {shlex.quote(tracking_uri)} --host 127.0.0.1 --port 5000"


def serve_commands(tracking_uri: str, run_id: str, rows: list, port: int = 5001) -> list[str]:
    """The commands that serve the composed model and query it."""
    env = f"MLFLOW_TRACKING_URI={shlex.quote(tracking_uri)} "
    body = json.dumps({"inputs": rows})
    return [
        f"serve it:  {env}mlflow models serve -m runs:/{run_id}/pipeline --env-manager local "
        f"-h 127.0.0.1 -p {port}",
        f"query it:  curl -s -X POST http://127.0.0.1:{port}/invocations "
        f"-H 'Content-Type: application/json' -d {shlex.quote(body)}",
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-components", type=_whole, default=2, help="PCA components (default 2)")
    parser.add_argument("--C", type=float, default=1.0, help="inverse regularisation (default 1.0)")
    parser.add_argument("--no-tracking", action="store_true", help="run without tracking")
    parser.add_argument("--tracking-uri", help="MLflow tracking URI (default: MLflow's own)")
    args = parser.parse_args(argv)

    X, y = load_iris(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.2, random_state=42)

    pipe = IrisPipeline(n_components=args.n_components, C=args.C)
    pipe.tracking = not args.no_tracking
    if args.tracking_uri:
        tracked.configure(pipe, tracking_uri=args.tracking_uri)

    with pipe:
        pipe.train(X_train, y_train)
        predictions = pipe.predict(X_test, y_test)

    accuracy = float((predictions == y_test).mean())
    print(f"accuracy: {accuracy:.4f}")
    print(f"predictions: {' '.join(str(int(p)) for p in predictions)}")
    if pipe.run_id is None:
        print("tracking: off")
        return 0
    import mlflow

    tracking_uri = args.tracking_uri or mlflow.get_tracking_uri()
    if tracking_uri.startswith("sqlite:///") and not tracking_uri.startswith("sqlite:////"):
        # Relative to this directory: print a URI that works from anywhere.
        tracking_uri = "sqlite:///" + os.path.abspath(tracking_uri[len("sqlite:///") :])
    if pipe.run_id.startswith("local-"):
        # The store was away: the runs wait in the spool (a warning said where).
        print(f"parent run id: {pipe.run_id} (in the spool: the store was not reachable)")
        print("write it to the store once it is back: tracked sync")
        return 0
    print(f"parent run id: {pipe.run_id}")
    print(f"experiment: {IrisPipeline.experiment}")
    print(f"open the runs: {ui_command(tracking_uri)}")
    if pipe.model_uri is not None:
        print(f"composed model: runs:/{pipe.run_id}/pipeline ({pipe.model_uri})")
        for line in serve_commands(tracking_uri, pipe.run_id, X_test[:2].tolist()):
            print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
