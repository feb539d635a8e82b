"""Running one child process and measuring it from outside; summarising repetitions.

Each child gets a fresh temporary folder as its working directory, holding its own sqlite
store (``sqlite:///<tmp>/mlflow.db``) and MLflow's ``./mlruns`` artifacts; the folder is
removed afterwards. Wall time is taken around the whole process (start-up, imports, teardown
included); peak RSS is the child's ``ru_maxrss`` as ``os.wait4`` reports it when reaping
that one child (the maximum over it and any process it waited for, e.g. autolog's
requirements inference).
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CHILD = Path(__file__).resolve().parent / "child.py"
#: Variables that would change what a child measures.
SCRUBBED_ENV = ("TRACKED_ENABLED",)


@dataclass(frozen=True)
class Job:
    """One child process: a case, a mode and the options it is given."""

    case: str
    mode: str
    rows: int | None = None
    passes: int | None = None
    quick: bool = False

    def argv(self, store: str) -> list[str]:
        argv = [str(CHILD), self.case, self.mode, "--store", store]
        if self.rows is not None:
            argv += ["--rows", str(self.rows)]
        if self.passes is not None:
            argv += ["--passes", str(self.passes)]
        if self.quick:
            argv.append("--quick")
        return argv

    def label(self) -> str:
        rows = f" rows={self.rows}" if self.rows is not None else ""
        return f"{self.case} {self.mode}{rows}"


class ChildFailed(RuntimeError):
    """A child exited with an error or printed no JSON (the message holds its stderr tail)."""


def child_env(store: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in SCRUBBED_ENV}
    # Anything that falls back to MLflow's default store lands in the child's folder too.
    env["MLFLOW_TRACKING_URI"] = store
    if store.startswith("sqlite:///"):
        # So does the spool: records a child leaves there (a `with` exit that reached its
        # bound) go with its folder, not into the user's cache for `tracked sync`.
        env["TRACKED_SPOOL_DIR"] = str(Path(store.removeprefix("sqlite:///")).parent / "spool")
    return env


def prepare_store(folder: Path) -> Path:
    """An MLflow sqlite store whose tables exist already, made once by a separate process.

    Copied into each child's folder (``--prepared-store``), it stands for a store that has
    been used before, so that the schema creation (seconds) is not part of every figure.
    """
    path = folder / "mlflow.db"
    code = "import sys, mlflow; mlflow.MlflowClient(sys.argv[1]).search_experiments()"
    subprocess.run(
        [sys.executable, "-c", code, f"sqlite:///{path}"],
        cwd=folder,
        env=child_env(f"sqlite:///{path}"),
        check=True,
        capture_output=True,
    )
    return path


def run_child(job: Job, timeout: float, template: Path | None = None) -> dict[str, Any]:
    """Run ``job`` in a fresh process; its figures plus ``wall_s`` and ``peak_rss_mb``.

    ``template``: a prepared store to copy in as the child's store (default: none, so the
    child's first MLflow call creates the store's tables).

    Raises:
        ChildFailed: non-zero exit, timeout, or no JSON object on the last stdout line.
    """
    folder = Path(tempfile.mkdtemp(prefix="tracked-bench-"))
    store = f"sqlite:///{folder / 'mlflow.db'}"
    if template is not None:
        shutil.copyfile(template, folder / "mlflow.db")
    stdout_path, stderr_path = folder / "child.stdout", folder / "child.stderr"
    try:
        with stdout_path.open("wb") as out, stderr_path.open("wb") as err:
            started = time.perf_counter()
            process = subprocess.Popen(
                [sys.executable, *job.argv(store)],
                cwd=folder,
                env=child_env(store),
                stdout=out,
                stderr=err,
                stdin=subprocess.DEVNULL,
            )
            timer = threading.Timer(timeout, process.kill)
            timer.start()
            try:
                # Reaping it ourselves gives this child's own rusage (ru_maxrss in KiB).
                _, status, usage = os.wait4(process.pid, 0)
            finally:
                timer.cancel()
            wall = time.perf_counter() - started
            process.returncode = os.waitstatus_to_exitcode(status)
        stdout = stdout_path.read_text(errors="replace")
        stderr = stderr_path.read_text(errors="replace")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    if process.returncode != 0:
        msg = f"{job.label()} exited with {process.returncode}:\n{tail(stderr)}"
        raise ChildFailed(msg)
    figures = last_json_object(stdout)
    if figures is None:
        msg = f"{job.label()} printed no JSON figures:\n{tail(stdout)}\n{tail(stderr)}"
        raise ChildFailed(msg)
    figures["wall_s"] = wall
    figures["peak_rss_mb"] = usage.ru_maxrss / 1024
    if "in_process_s" in figures:
        figures["outside_s"] = wall - figures["in_process_s"]
    return figures


def last_json_object(text: str) -> dict[str, Any] | None:
    for line in reversed(text.strip().splitlines()):
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict):
            return value
    return None


def tail(text: str, lines: int = 25) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def summarize(values: list[float]) -> dict[str, Any]:
    """Median, min, max and the values themselves."""
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "n": len(values),
        "values": values,
    }


def summarize_records(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Per numeric figure (nested dicts of numbers too, as ``per_call_ms.<name>``) a summary;
    per boolean figure (``mlflow_imported``) whether any repetition had it true."""
    series: dict[str, list[float]] = {}
    flags: dict[str, bool] = {}
    for record in records:
        for key, value in flatten_numbers(record).items():
            series.setdefault(key, []).append(value)
        for key, value in record.items():
            if isinstance(value, bool):
                flags[key] = flags.get(key, False) or value
    return {**{key: summarize(values) for key, values in series.items()}, **flags}


def flatten_numbers(record: dict[str, Any], prefix: str = "") -> dict[str, float]:
    flat: dict[str, float] = {}
    for key, value in record.items():
        if isinstance(value, dict):
            flat.update(flatten_numbers(value, f"{prefix}{key}."))
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            flat[f"{prefix}{key}"] = float(value)
    return flat
