"""Where one configuration of the iris sweep spends its time, on a sqlite store.

    python benchmarks/profile_sweep.py [--warmup 5] [--configs 20] [--top 40] [--full]

Runs configurations of the sweep's unit of work (``IrisPipeline(n_components, C)``, then
``with pipe: train_and_score(pipe)``, the body of ``tracked.sweep``'s worker) in one
process, inside a group run, as a loky worker does, after ``--warmup`` configurations (a
worker of a 200-configuration sweep does about 100: its cold costs are spread thin). Then:

1. ``--configs`` configurations as they run by default (background writer): wall seconds
   per configuration, the ``with`` exit included (it waits for the writer).
2. ``--configs`` configurations with ``synchronous = True`` under cProfile: the same writes
   on the caller's thread, so that one profile holds both the capture and the writes. Every
   public method of ``MlflowClient`` and of MLflow's ``SqlAlchemyStore`` is wrapped here (not
   in the library) to count the calls per configuration, and the store calls' own time.

Prints ms per configuration for the functions that make up a configuration's budget, the
client and store calls by kind, and cProfile's top functions by cumulative time.
"""

from __future__ import annotations

import argparse
import cProfile
import functools
import os
import pstats
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import tracked

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "demo")]

#: (label, "file-suffix:function") -- cumulative time per configuration in the profile.
BUDGET = [
    ("stage methods, user code (fit/transform/predict)", "iris.py:preprocessing"),
    ("", "iris.py:reduction"),
    ("", "iris.py:classification"),
    ("capture on the caller (recording.capture.capture)", "capture.py:capture"),
    ("  composer: compose the pipeline model", "compose.py:compose"),
    ("  composer: verify the prediction pass", "compose.py:verify"),
    ("  evaluation on the caller (recording.evaluation.evaluate.evaluate)", "evaluate.py:evaluate"),
    ("  data summaries/digests (summarize)", "data.py:summarize"),
    ("pickle the payload (codec.encode_payload, caller)", "codec.py:encode_payload"),
    ("spool: append entries", "folder.py:append"),
    ("spool: progress lines", "folder.py:progress"),
    ("spool: remove the folder", "folder.py:remove"),
    ("write: Replayer.replay (all store work)", "replay.py:replay"),
    ("  unpickle the payload", "codec.py:decode_payload"),
    ("  deferred scores (Scores.evaluate)", "deferred.py:evaluate"),
    ("  pictures (Pictures.render)", "plots.py:render"),
    ("  kept aside for the sweep (aside.keep)", "aside.py:keep"),
    ("  output preview CSV (CsvFile.render)", "deferred.py:render"),
    ("  create runs (backend.start_run)", "backend.py:start_run"),
    ("  log_batch (backend.log)", "backend.py:log"),
    ("  artifacts (backend.log_artifact)", "backend.py:log_artifact"),
    ("  datasets (backend.log_dataset)", "backend.py:log_dataset"),
    ("  models (backend.log_model)", "models.py:log_model"),
    ("    requirements (needs.requirements)", "needs.py:requirements"),
    ("    mlflow.sklearn.save_model", "sklearn/__init__.py:save_model"),
    ("    create_logged_model", "client.py:create_logged_model"),
    ("    log_model_artifacts", "client.py:log_model_artifacts"),
    ("    finalize_logged_model", "client.py:finalize_logged_model"),
    ("  end runs (backend.end_run)", "backend.py:end_run"),
    ("session start (parent run entry, spool)", "session.py:start"),
    ("session end (end_run entry, wait)", "session.py:end"),
]


def counting(cls: type, counts: dict[str, list[float]], prefix: str) -> None:
    """Wrap every public method of ``cls`` to count its calls and their inclusive time."""
    for name, attribute in list(vars(cls).items()):
        if name.startswith("_") or not callable(attribute) or isinstance(attribute, type):
            continue

        def wrapper(*args, __f=attribute, __key=f"{prefix}.{name}", **kwargs):
            started = time.perf_counter()
            try:
                return __f(*args, **kwargs)
            finally:
                entry = counts[__key]
                entry[0] += 1
                entry[1] += time.perf_counter() - started

        setattr(cls, name, functools.wraps(attribute)(wrapper))


def run_configs(pipeline_class, configs: list[dict], synchronous: bool) -> float:
    from pipelines import train_and_score

    started = time.perf_counter()
    for params in configs:
        pipe = pipeline_class(**params)
        if synchronous:
            tracked.configure(pipe, synchronous=True)
        with pipe:
            train_and_score(pipe)
        session = pipe._last_session()
        if session is not None:  # what tracked.sweep's worker reads afterwards
            _ = session.evaluation, session.kept_aside
    return time.perf_counter() - started


def grid(count: int, offset: int) -> list[dict]:
    return [
        {"n_components": 1 + (i % 4), "C": round(0.01 * (i // 4 + 1), 4)}
        for i in range(offset, offset + count)
    ]


def budget_rows(stats: pstats.Stats, configs: int) -> list[tuple[str, float, float, str]]:
    """(label, ms per configuration, calls per configuration) of each BUDGET function."""
    by_key: dict[str, tuple[float, float]] = {}
    for (filename, _, function), (_, ncalls, _, cumtime, _) in stats.stats.items():
        for _, key in BUDGET:
            suffix, name = key.split(":")
            if function == name and filename.endswith(suffix):
                old = by_key.get(key, (0.0, 0.0))
                by_key[key] = (old[0] + cumtime, old[1] + ncalls)
    rows = []
    for label, key in BUDGET:
        cum, calls = by_key.get(key, (0.0, 0.0))
        rows.append((label or f"  ({key})", cum * 1e3 / configs, calls / configs, key))
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--configs", type=int, default=20)
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument(
        "--full",
        action="store_true",
        help="every configuration with its pictures, files, datasets and stage models "
        "(tracked.sweep(light=False)); default: as a light sweep's configurations",
    )
    args = parser.parse_args()

    folder = tempfile.mkdtemp(prefix="tracked-profile-")
    os.chdir(folder)
    store = f"sqlite:///{folder}/mlflow.db"
    os.environ["MLFLOW_TRACKING_URI"] = store
    os.environ["TRACKED_SPOOL_DIR"] = os.path.join(folder, "spool")
    from iris import IrisPipeline

    import tracked

    sweep_group = tracked.group(
        "profile sweep", experiment=IrisPipeline.experiment, tracking_uri=store
    )
    sweep_group.keep_aside = not args.full  # what tracked.sweep(light=...) sets
    with sweep_group:
        run_configs(IrisPipeline, grid(args.warmup, 0), synchronous=False)
        tracked.flush()
        background = run_configs(IrisPipeline, grid(args.configs, args.warmup), False)
        tracked.flush()
        untracked_class = type("Untracked", (IrisPipeline,), {"tracking": False})
        untracked = run_configs(untracked_class, grid(args.configs, args.warmup), False)

        import mlflow
        from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

        counts: dict[str, list[float]] = defaultdict(lambda: [0, 0.0])
        counting(mlflow.MlflowClient, counts, "MlflowClient")
        counting(SqlAlchemyStore, counts, "SqlAlchemyStore")
        profile = cProfile.Profile()
        offset = args.warmup + args.configs
        profile.enable()
        synchronous = run_configs(IrisPipeline, grid(args.configs, offset), True)
        profile.disable()

    n = args.configs
    print(f"store {store}; {args.warmup} warm-up configurations, then {n} per measurement\n")
    print("| per configuration | ms |")
    print("|---|---:|")
    print(f"| untracked (tracking = False) | {untracked * 1e3 / n:.1f} |")
    label = "tracked, background writer (default), `with` exit included"
    print(f"| {label} | {background * 1e3 / n:.1f} |")
    print(f"| tracked, synchronous = True, under cProfile | {synchronous * 1e3 / n:.1f} |")

    stats = pstats.Stats(profile)
    print("\n| part (cumulative, synchronous run under cProfile) | ms / config | calls / config |")
    print("|---|---:|---:|")
    for label, ms, calls, _ in budget_rows(stats, n):
        print(f"| {label} | {ms:.1f} | {calls:g} |")

    print("\n| MLflow call (counted by wrapping) | calls / config | ms / config (inclusive) |")
    print("|---|---:|---:|")
    for key, (calls, seconds) in sorted(counts.items(), key=lambda kv: -kv[1][1]):
        print(f"| {key} | {calls / n:g} | {seconds * 1e3 / n:.1f} |")
    store_calls = sum(c for k, (c, _) in counts.items() if k.startswith("SqlAlchemyStore"))
    print(f"\nSqlAlchemyStore calls per configuration: {store_calls / n:g}")

    print(f"\ncProfile, top {args.top} by cumulative time (whole synchronous run of {n} configs):")
    stats.sort_stats("cumulative").print_stats(args.top)
    return 0


if __name__ == "__main__":
    sys.exit(main())
