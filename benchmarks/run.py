"""Benchmark tracked against an untracked run, hand-written MlflowClient logging and autolog.

    python benchmarks/run.py                                  # everything (~15 min here)
    python benchmarks/run.py --cases untracked,tracked --repeats 3 --skip-scaling
    python benchmarks/run.py --scaling-sizes 1e3,1e5 --scaling-repeats 2 --json out.json
    python benchmarks/run.py --cases partial_fit,predict_loop,knn_fit --repeats 1 --skip-scaling

Every job runs in a fresh process with its own temporary sqlite store; the jobs of one
repetition run one after another, case after case (A B C A B C ...), so that the drift of a
shared machine spreads over all cases alike. Prints a markdown report (medians and min-max,
then the issue's targets with met / MISSED) on stdout, progress on stderr, and writes all
figures, raw values included, as JSON to benchmarks/results/<timestamp>.json (or --json).
See benchmarks/README.md for what each figure means.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import report
from cases import CASES, SCALING_CASES
from harness import ChildFailed, Job, prepare_store, run_child, summarize_records

HERE = Path(__file__).resolve().parent
DEFAULT_SIZES = "1e3,1e4,1e5,1e6"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--cases",
        default=",".join(CASES),
        help=f"comma-separated cases (default: all): {', '.join(CASES)}",
    )
    parser.add_argument("--repeats", type=int, default=5, help="processes per job (default 5)")
    parser.add_argument(
        "--passes",
        type=int,
        help="timed passes per overhead process (default: the case's own, 10 or 3 for autolog)",
    )
    parser.add_argument(
        "--scaling-sizes",
        default=DEFAULT_SIZES,
        help=f"comma-separated row counts of the scaling case (default {DEFAULT_SIZES})",
    )
    parser.add_argument(
        "--scaling-repeats", type=int, default=3, help="processes per scaling cell (default 3)"
    )
    parser.add_argument("--skip-scaling", action="store_true", help="do not run the scaling case")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="loop cases with small counts (a smoke test, not a measurement)",
    )
    parser.add_argument(
        "--prepared-store",
        action="store_true",
        help="give each child a copy of a store whose tables exist (a store used before) "
        "instead of an empty one whose tables the child creates",
    )
    parser.add_argument("--json", type=Path, help="where to write the JSON results")
    parser.add_argument(
        "--from-json",
        type=Path,
        metavar="PATH",
        help="run nothing: print the report of an earlier run's JSON again",
    )
    parser.add_argument(
        "--timeout", type=float, default=900.0, help="seconds before a child is killed"
    )
    args = parser.parse_args(argv)
    args.cases = [name.strip() for name in args.cases.split(",") if name.strip()]
    unknown = sorted(set(args.cases) - set(CASES))
    if unknown:
        parser.error(f"unknown case(s) {', '.join(unknown)}; choose from {', '.join(CASES)}")
    try:
        args.scaling_sizes = [int(float(size)) for size in args.scaling_sizes.split(",") if size]
    except ValueError:
        parser.error(f"--scaling-sizes must be numbers like 1e3,1e4, not {args.scaling_sizes!r}")
    if args.repeats < 1 or args.scaling_repeats < 1:
        parser.error("--repeats and --scaling-repeats must be at least 1")
    return args


def unavailable(case: str) -> str | None:
    """Why ``case`` cannot run in this version of tracked (the synchronous-writes hook)."""
    if case != "tracked_sync":
        return None
    from cases import tracked_sync

    return tracked_sync.unavailable()


def schedule(args: argparse.Namespace, runnable: list[str]) -> list[tuple[int, Job]]:
    """(repetition, job) in running order: each repetition runs every case once, in turn."""
    per_round = [
        Job(
            case,
            mode,
            passes=args.passes if mode == "overhead" else None,
            quick=args.quick and mode == "loop",
        )
        for mode in ("workflow", "overhead", "import", "loop")
        for case in runnable
        if mode in CASES[case].modes
    ]
    jobs = [(rep, job) for rep in range(args.repeats) for job in per_round]
    if not args.skip_scaling:
        jobs += [
            (rep, Job(case, "workflow", rows=rows))
            for rep in range(args.scaling_repeats)
            for rows in args.scaling_sizes
            for case in SCALING_CASES
        ]
    return jobs


def run_jobs(
    jobs: list[tuple[int, Job]], timeout: float, template: Path | None
) -> tuple[list[dict], list[dict]]:
    """Run every job: the records of those that worked, and one entry per failed process."""
    records, failures = [], []
    for index, (rep, job) in enumerate(jobs, 1):
        prefix = f"[{index}/{len(jobs)}] {job.label()} #{rep + 1}"
        try:
            figures = run_child(job, timeout, template)
        except ChildFailed as exc:
            print(f"{prefix}: FAILED\n{exc}", file=sys.stderr, flush=True)
            # The first line names the job, the last one the error.
            lines = str(exc).splitlines()
            failures.append(
                {
                    "case": job.case,
                    "mode": job.mode,
                    "rows": job.rows,
                    "rep": rep,
                    "error": f"{lines[0]} {lines[-1]}",
                }
            )
            continue
        print(f"{prefix}: {progress(figures)}", file=sys.stderr, flush=True)
        records.append(
            {"case": job.case, "mode": job.mode, "rows": job.rows, "rep": rep, **figures}
        )
    return records, failures


def progress(figures: dict[str, Any]) -> str:
    shown = ("wall_s", "workflow_s", "peak_rss_mb", "overhead_ms", "off_ns", "import_ms", "ratio")
    return ", ".join(f"{key} {figures[key]:.4g}" for key in shown if key in figures)


def collect(args, records, failures) -> dict[str, Any]:
    """Summaries per case and mode, and per scaling size and case."""
    cases: dict[str, Any] = {}
    for case in args.cases:
        entry: dict[str, Any] = {"title": CASES[case].title}
        reason = unavailable(case)
        if reason is not None:
            entry["unavailable"] = reason
        for mode in CASES[case].modes:
            mine = [r for r in records if r["case"] == case and r["mode"] == mode and not r["rows"]]
            if mine:
                entry[mode] = summarize_records(mine)
        cases[case] = entry
    scaling: dict[str, Any] = {}
    for rows in [] if args.skip_scaling else args.scaling_sizes:
        per_size = {}
        for case in SCALING_CASES:
            mine = [r for r in records if r["case"] == case and r["rows"] == rows]
            if mine:
                per_size[case] = summarize_records(mine)
        scaling[str(rows)] = per_size
    return {"cases": cases, "scaling": scaling, "failures": failures}


def metadata_now() -> dict[str, Any]:
    def version(name: str) -> str | None:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return None

    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "load_average": os.getloadavg(),
        "versions": {name: version(name) for name in ("tracked", "mlflow", "scikit-learn")},
        "git": git_state(),
    }


def git_state() -> dict[str, Any]:
    """HEAD, the files changed under tracked/ and demo/ and a digest of their diff.

    Read only: ``--no-optional-locks`` keeps git from refreshing the index.
    """
    repo = HERE.parent

    def git(*argv: str) -> str:
        command = ["git", "--no-optional-locks", "-C", str(repo), *argv]
        done = subprocess.run(command, capture_output=True, text=True, check=False, timeout=30)
        return done.stdout.rstrip()

    try:
        changed = git("status", "--porcelain", "--", "tracked", "demo").splitlines()
        diff = git("diff", "HEAD", "--", "tracked", "demo")
        return {
            "head": git("rev-parse", "--short", "HEAD"),
            "changed": changed,
            "diff_sha1": hashlib.sha1(diff.encode()).hexdigest()[:12],
        }
    except (OSError, subprocess.SubprocessError):
        return {}


def header(results: dict[str, Any]) -> str:
    meta = results["meta"]
    versions = ", ".join(f"{k} {v}" for k, v in meta["versions"].items())
    git = meta.get("git") or {}
    changed = f", {len(git['changed'])} changed file(s) under tracked/ and demo/" if git else ""
    if meta.get("git_end") and meta["git_end"] != git:
        changed += " (the code CHANGED during the run: see meta.git_end in the JSON)"
    load = "/".join(f"{x:.1f}" for x in meta["load_average"])
    store = (
        "a copy of a prepared store per child (tables exist)"
        if results["options"].get("prepared_store")
        else "an empty sqlite store per child (its first MLflow call creates the tables)"
    )
    return (
        f"## tracked benchmarks, {meta['started']}\n\n"
        f"`{meta['command']}` -- {meta['duration_s'] / 60:.1f} min; Python {meta['python']}, "
        f"{meta['cpus']} CPUs, load average at start {load}; {versions}; "
        f"git {git.get('head', '?')}{changed}. Stores: {store}."
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.from_json:
        results = json.loads(args.from_json.read_text())
        results["targets"] = report.targets(results)
        print(header(results) + "\n\n" + report.markdown(results), end="")
        return 0
    started = time.time()
    stamp = datetime.datetime.now()
    runnable = [case for case in args.cases if unavailable(case) is None]
    for case in sorted(set(args.cases) - set(runnable)):
        print(f"{case}: not run: {unavailable(case)}", file=sys.stderr)
    meta = metadata_now()
    with tempfile.TemporaryDirectory(prefix="tracked-bench-store-") as folder:
        template = prepare_store(Path(folder)) if args.prepared_store else None
        records, failures = run_jobs(schedule(args, runnable), args.timeout, template)

    results: dict[str, Any] = {
        "meta": {
            **meta,
            "started": stamp.isoformat(timespec="seconds"),
            "duration_s": time.time() - started,
            # tracked/ may be edited while a run goes on: compare with "git" (at the start).
            "git_end": git_state(),
            "command": " ".join(["python", "benchmarks/run.py", *(argv or sys.argv[1:])]),
        },
        "options": {
            "cases": args.cases,
            "repeats": args.repeats,
            "passes": args.passes,
            "scaling_sizes": [] if args.skip_scaling else args.scaling_sizes,
            "scaling_repeats": args.scaling_repeats,
            "prepared_store": args.prepared_store,
            "quick": args.quick,
        },
        **collect(args, records, failures),
    }
    results["targets"] = report.targets(results)
    results["records"] = records

    print(header(results) + "\n\n" + report.markdown(results), end="")
    path = args.json or HERE / "results" / f"{stamp:%Y%m%d-%H%M%S}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nJSON: {path}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
