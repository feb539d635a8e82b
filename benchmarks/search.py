"""The search benchmark: ``GridSearchCV`` over a tracked pipeline used as an estimator.

    python benchmarks/search.py [--repeats 3] [--candidates 4] [--folds 5]

Each repetition runs two fresh processes, each in a new temporary folder with its own
sqlite store, untracked then tracked: ``GridSearchCV(pipeline, {"C": [...]}, cv=folds)``
over a two-stage pipeline (scale, classify) with scikit-learn's ``fit``/``predict`` on the
iris data (candidates x folds clones, and the refit). The child times the search's ``fit``,
then ``best_estimator_.run_id``, and exits; its exit waits for the writer (at most
``TRACKED_EXIT_TIMEOUT``, default 30 s). The parent times the whole process, then reads
the store: the runs, any still RUNNING, and the records left in the spool. Every run is in
the store at exit when the store holds all of them, none RUNNING, and the spool is empty.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENT = "bench-search"


def child(mode: str, candidates: int, folds: int) -> dict[str, float]:
    """One search in this process; its figures (the exit comes after)."""
    from sklearn.base import BaseEstimator, ClassifierMixin
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV
    from sklearn.preprocessing import StandardScaler

    from tracked import TrackedPipeline

    class Estimator(TrackedPipeline, ClassifierMixin, BaseEstimator):
        experiment = EXPERIMENT

        def __init__(self, C=1.0):
            self.C = C

        def scale(self, X, y=None, train=True, stage="transformer"):
            if train:
                self.scaler = self.operator = StandardScaler()
                return self.scaler.fit_transform(X)
            self.operator = self.scaler
            return self.scaler.transform(X)

        def classify(self, X, y=None, predict=False, stage="estimator"):
            if not predict:
                self.model = self.operator = LogisticRegression(C=self.C, max_iter=500)
                return self.model.fit(X, y)
            self.operator = self.model
            return self.model.predict(X)

        def fit(self, X, y):
            self.classify(self.scale(X), y)
            return self

        def predict(self, X):
            return self.classify(self.scale(X, train=False), predict=True)

        @property
        def classes_(self):
            return self.model.classes_

    X, y = load_iris(return_X_y=True)
    estimator = Estimator()
    estimator.tracking = mode == "tracked"
    grid = {"C": [round(0.01 * 10**i, 4) for i in range(candidates)]}
    started = time.perf_counter()
    search = GridSearchCV(estimator, grid, cv=folds).fit(X, y)
    fitted = time.perf_counter()
    run_id = search.best_estimator_.run_id
    answered = time.perf_counter()
    return {
        "search_s": fitted - started,
        "run_id_s": answered - fitted,
        "best_score": search.best_score_,
        "run_id": run_id,
    }


def store_figures(uri: str, spool: Path) -> dict[str, int]:
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(EXPERIMENT)
    runs = client.search_runs([experiment.experiment_id], max_results=5000) if experiment else []
    waiting = sum(
        len((folder / "entries.jsonl").read_bytes().splitlines())
        for folder in spool.iterdir()
        if folder.is_dir() and (folder / "entries.jsonl").exists()
    )
    return {
        "runs": len(runs),
        "parents": sum("tracked.pipeline" in r.data.tags for r in runs),
        "groups": sum("tracked.clones_of" in r.data.tags for r in runs),
        "running": sum(r.info.status == "RUNNING" for r in runs),
        "spool_folders": sum(folder.is_dir() for folder in spool.iterdir()),
        "spool_entries": waiting,
    }


def job(mode: str, candidates: int, folds: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="tracked-bench-search-") as tmp:
        uri = f"sqlite:///{tmp}/mlflow.db"
        spool = Path(tmp) / "spool"
        spool.mkdir()
        env = {
            **os.environ,
            "MLFLOW_TRACKING_URI": uri,
            "TRACKED_SPOOL_DIR": str(spool),
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        }
        env.pop("TRACKED_ENABLED", None)
        command = [sys.executable, __file__, "--child", mode]
        command += ["--candidates", str(candidates), "--folds", str(folds)]
        started = time.perf_counter()
        done = subprocess.run(
            command, cwd=tmp, env=env, capture_output=True, text=True, timeout=900
        )
        wall = time.perf_counter() - started
        if done.returncode != 0:
            raise RuntimeError(f"{mode} child failed:\n{done.stderr[-3000:]}")
        figures = json.loads(done.stdout.strip().splitlines()[-1])
        figures["wall_s"] = wall
        if mode == "tracked":
            figures.update(store_figures(uri, spool))
        return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--candidates", type=int, default=4)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--child", choices=("untracked", "tracked"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.candidates, args.folds)))
        return 0

    results: dict[str, list[dict]] = {"untracked": [], "tracked": []}
    for repeat in range(args.repeats):
        for mode in results:  # alternating: a shared machine's drift hits both alike
            results[mode].append(job(mode, args.candidates, args.folds))
            print(f"repeat {repeat + 1} {mode}: {results[mode][-1]}", file=sys.stderr)

    def median(mode: str, key: str) -> float:
        return statistics.median(r[key] for r in results[mode])

    clones = args.candidates * args.folds + 1
    # A group run, a parent run per clone; scale and classify fit and predict per fold's
    # clone, fit only for the refit.
    expected = 1 + clones + 4 * (clones - 1) + 2
    tracked = results["tracked"]
    complete = all(
        r["runs"] == expected and r["running"] == 0 and r["spool_entries"] == 0 for r in tracked
    )
    print(
        f"GridSearchCV, {args.candidates} candidates x {args.folds} folds + refit, median of "
        f"{args.repeats} (expected {expected} runs)\n"
    )
    print("| figure | untracked | tracked | ratio |\n|---|---|---|---|")
    for key in ("search_s", "wall_s"):
        off, on = median("untracked", key), median("tracked", key)
        print(f"| {key} | {off:.2f} | {on:.2f} | {on / off:.1f}x |")
    print(f"| best_estimator_.run_id s | - | {median('tracked', 'run_id_s'):.2f} | |")
    same = {r["best_score"] for r in results["untracked"]} == {r["best_score"] for r in tracked}
    print(f"\nsame best score tracked and untracked: {same}")
    runs = [(r["runs"], r["groups"], r["running"], r["spool_entries"]) for r in tracked]
    print(f"store after each tracked exit (runs, group runs, RUNNING, spooled entries): {runs}")
    print(f"every run in the store at exit: {complete}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
