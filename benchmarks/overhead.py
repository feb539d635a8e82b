"""Per-call cost of a stage with tracking off, against the same method unwrapped.

    python benchmarks/overhead.py [--calls N] [--repeats R]

Each variant is timed R times, alternating (A B C A B C ...) so that machine drift hits all
alike; the best of R is reported, in nanoseconds per call, with the overhead over plain.
"""

from __future__ import annotations

import argparse
import os
import timeit


def build():
    from tracked import TrackedPipeline

    class Plain:
        def stage_method(self, X, stage="transformer"):
            return X

    class Off(TrackedPipeline):
        tracking = False

        def stage_method(self, X, stage="transformer"):
            return X

    class EnvOff(TrackedPipeline):
        def stage_method(self, X, stage="transformer"):
            return X

    os.environ["TRACKED_ENABLED"] = "0"
    env_off = EnvOff()  # the kill switch is read when the instance is created
    del os.environ["TRACKED_ENABLED"]
    return {"plain method": Plain(), "tracking = False": Off(), "TRACKED_ENABLED=0": env_off}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200_000)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()

    variants = build()
    best = {name: float("inf") for name in variants}
    for _ in range(args.repeats):
        for name, obj in variants.items():
            seconds = timeit.timeit(lambda o=obj: o.stage_method(1), number=args.calls)
            best[name] = min(best[name], seconds / args.calls * 1e9)
    plain = best["plain method"]
    print("| variant | ns per call | overhead over plain (ns) |")
    print("|---|---:|---:|")
    for name, ns in best.items():
        print(f"| {name} | {ns:.0f} | {ns - plain:.0f} |")


if __name__ == "__main__":
    main()
