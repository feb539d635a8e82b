"""The sweep benchmark: many configurations of the iris workflow through tracked.sweep.

    python benchmarks/sweep.py [--configs 200] [--n-jobs 2] [--stores sqlite,server] [--full]

For each store — the embedded sqlite store, and an `mlflow server` on a fresh PostgreSQL
database (started and removed here; needs PostgreSQL on 127.0.0.1:5432 and
psycopg2-binary) — runs the same grid tracked, and once untracked, in fresh temporary
folders, and prints configurations per second and MLflow runs written per second. The
sweep is light (``tracked.sweep``'s default: pictures, files, datasets and stage models for
the best configuration only); ``--full`` logs them for every configuration.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "demo")]
os.environ["PYTHONPATH"] = os.pathsep.join(
    filter(None, [str(ROOT / "tests"), str(ROOT / "demo"), os.environ.get("PYTHONPATH")])
)

#: Runs one configuration writes: a parent and six stage runs.
RUNS_PER_CONFIG = 7


def grid(configs: int) -> dict[str, list]:
    """A grid of exactly ``configs`` combinations (n_components x C)."""
    n_components = [1, 2, 3, 4]
    per = -(-configs // len(n_components))
    return {"n_components": n_components, "C": [round(0.01 * (i + 1), 4) for i in range(per)]}


def run_sweep(
    configs: int, n_jobs: int, tracking_uri: str | None, light: bool = True
) -> dict[str, float]:
    from iris import IrisPipeline
    from pipelines import train_and_score

    import tracked

    class Untracked(IrisPipeline):
        tracking = False

    cls = IrisPipeline if tracking_uri else Untracked
    if tracking_uri:
        os.environ["MLFLOW_TRACKING_URI"] = tracking_uri
    started = time.perf_counter()
    results = tracked.sweep(
        cls, grid(configs), train_and_score, n_jobs=n_jobs, progress=False, light=light
    )
    seconds = time.perf_counter() - started
    count = len(results)
    return {
        "configs": count,
        "seconds": seconds,
        "configs_per_s": count / seconds,
        "runs_per_s": count * RUNS_PER_CONFIG / seconds if tracking_uri else 0.0,
    }


@contextlib.contextmanager
def store(kind: str, folder: Path):
    if kind == "sqlite":
        yield f"sqlite:///{folder / 'mlflow.db'}"
        return
    from servers import MlflowServer, postgres_database

    with postgres_database("tracked_bench") as uri, MlflowServer(uri, folder / "artifacts") as s:
        yield s.url


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", type=int, default=200)
    parser.add_argument("--n-jobs", type=int, default=2)
    parser.add_argument("--stores", default="sqlite,server")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument(
        "--full", action="store_true", help="every configuration with its pictures and files"
    )
    args = parser.parse_args()

    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)
        rows["untracked"] = run_sweep(args.configs, args.n_jobs, None)
        for kind in args.stores.split(","):
            folder = Path(tempfile.mkdtemp(dir=tmp))
            os.chdir(folder)
            with store(kind, folder) as uri:
                rows[kind] = run_sweep(args.configs, args.n_jobs, uri, light=not args.full)
    base = rows["untracked"]["seconds"]
    print(
        f"| sweep, {args.configs} configurations, n_jobs={args.n_jobs} | seconds | "
        "configs/s | MLflow runs/s | time / untracked |"
    )
    print("|---|---:|---:|---:|---:|")
    for name, row in rows.items():
        print(
            f"| {name} | {row['seconds']:.1f} | {row['configs_per_s']:.2f} | "
            f"{row['runs_per_s']:.1f} | {row['seconds'] / base:.1f}x |"
        )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
