"""What capturing a stage costs on large inputs (issue: 1,000,000 x 20 within 10%).

    python benchmarks/capture.py [--rows 1000000] [--features 20] [--repeats 5]

One transformer stage (StandardScaler fit_transform, then transform) on a float64 array,
untracked and tracked into the in-memory backend, so that the figure isolates capture —
input and output digests, the 20-row preview, the dataset summary, fitted attributes —
from any store's write costs. Alternates untracked and tracked; reports medians, the
overhead ratio and the bytes of artifacts the tracked stage left.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
from sklearn.preprocessing import StandardScaler

from tracked import TrackedPipeline
from tracked.testing import MemoryBackend


class Scale(TrackedPipeline):
    backend = MemoryBackend()

    def scale(self, X, train=True, stage="transformer"):
        if train:
            self.scaler = StandardScaler()
            self.operator = self.scaler
            return self.scaler.fit_transform(X)
        self.operator = self.scaler
        return self.scaler.transform(X)


def timed(pipe: Scale, X: np.ndarray) -> tuple[float, float]:
    started = time.perf_counter()
    pipe.scale(X)
    fitted = time.perf_counter()
    pipe.scale(X, train=False)
    return fitted - started, time.perf_counter() - fitted


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--features", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    X = np.random.default_rng(0).normal(size=(args.rows, args.features))
    times: dict[str, list[tuple[float, float]]] = {"untracked": [], "tracked": []}
    timed(Scale(), X[:1000])  # warm imports
    for _ in range(args.repeats):
        for name in times:
            pipe = Scale()
            pipe.tracking = name == "tracked"
            with pipe:
                times[name].append(timed(pipe, X))
    print(f"| {args.rows:,} x {args.features} float64 | fit s | transform s |")
    print("|---|---:|---:|")
    medians = {}
    for name, pairs in times.items():
        medians[name] = [statistics.median(p[i] for p in pairs) for i in (0, 1)]
        print(f"| {name} | {medians[name][0]:.4f} | {medians[name][1]:.4f} |")
    ratios = [medians["tracked"][i] / medians["untracked"][i] for i in (0, 1)]
    print(f"| tracked / untracked | {ratios[0]:.3f} | {ratios[1]:.3f} |")
    children = [run for run in Scale.backend.runs.values() if run.parent_run_id]
    sizes = [sum(len(v) for v in run.artifacts.values()) for run in children]
    print(f"\nartifact bytes per stage run: max {max(sizes):,} (preview and fitted attributes)")


if __name__ == "__main__":
    main()
