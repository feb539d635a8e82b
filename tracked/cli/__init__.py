"""The ``tracked`` command line: look at what pipelines recorded, without opening the MLflow UI.

    tracked compare EXPERIMENT [--tracking-uri URI] [--metric NAME] [--top N]
                               [--format table|csv|json]
    tracked sync [--spool DIR] [--tracking-uri URI] [--dry-run] [--discard-unverifiable]
    tracked status [--spool DIR]

One function per subcommand (``compare_command``), registered on an argparse subparser by
``build_parser``; a subcommand returns its exit status or raises :class:`CliError`, which
``main`` prints as one line on stderr and turns into exit status 1. Exit statuses: 0 ok,
1 for a store, experiment or metric that cannot be found, 2 for usage errors (argparse).

mlflow is imported only when a subcommand needs the store, so ``tracked --help`` is quick.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TextIO

from tracked._version import __version__
from tracked.backends.mlflow import reading
from tracked.cli.compare import (  # noqa: F401 - re-exported for scripts and tests
    KNOWN_METRICS,
    PIPELINE_TAG,
    CliError,
    Comparison,
    compare_runs,
    is_evaluation_metric,
    plain_table,
    write_csv,
    write_json,
    write_table,
)
from tracked.core.ranking import lower_is_better  # noqa: F401 - re-exported
from tracked.core.report import describe, logger
from tracked.core.text import mask_secrets

RANKING_RULE = """\
ranking: runs are sorted by --metric (default: the first evaluation metric found, the
library's own order first: accuracy, f1_macro, precision_macro, recall_macro, r2, rmse, mae;
then alphabetical), best first. Lower is better for a metric whose name has the word rmse,
mae, mse, rmsle, msle, mape or medae, or contains "loss" or "error"; higher is better for
every other metric, including scikit-learn's neg_* scorers (already negated). Runs without
the metric come last; ties go to the newer run.

evaluation metrics: the parent run's metrics (latest value) except training_* metrics,
duration_s, total_* and system/* bookkeeping.

params: the hyperparameters whose values differ between the experiment's pipeline runs (all
of them when there is a single run).

pipeline runs: runs tagged tracked.pipeline, nested under another run or not.
"""


# -- the command line -----------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The ``tracked`` parser: one subparser per subcommand, its handler in ``handler``."""
    parser = argparse.ArgumentParser(
        prog="tracked",
        description="Look at the pipeline runs that tracked recorded in MLflow, and write "
        "what the spool kept while the store was away.",
    )
    parser.add_argument("--version", action="version", version=f"tracked {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_compare(commands)
    _add_sync(commands)
    _add_status(commands)
    return parser


def _add_compare(commands: Any) -> None:
    """``tracked compare``: the parent runs of an experiment side by side, best first."""
    compare = commands.add_parser(
        "compare",
        help="the pipeline runs of an experiment side by side, best first",
        description=(
            "The pipeline (parent) runs of an MLflow experiment side by side, one row per "
            "run: run name, start time, status, the hyperparameters that differ between "
            "runs and the evaluation metrics, best first."
        ),
        epilog=RANKING_RULE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    compare.add_argument("experiment", metavar="EXPERIMENT", help="MLflow experiment name (or id)")
    _add_tracking_uri(compare)
    compare.add_argument(
        "--metric",
        metavar="NAME",
        help="rank by this metric (default: the first evaluation metric found)",
    )
    compare.add_argument("--top", metavar="N", type=_positive_int, help="show only the N best runs")
    compare.add_argument(
        "--format",
        choices=("table", "csv", "json"),
        default="table",
        help="table (for people; drawn by rich on a terminal when installed), csv or json "
        "(for scripts)",
    )
    compare.set_defaults(handler=compare_command)


def _add_sync(commands: Any) -> None:
    """``tracked sync``: replay the spool into the tracking stores."""
    sync = commands.add_parser(
        "sync",
        help="write the spooled records to their tracking store",
        description=(
            "Write what the spool holds (records whose store was away, and the runs of "
            "processes that died) to the tracking store, then remove it from the spool. "
            "Running it again, or after an interruption, creates no duplicates. Exit status "
            "1 when anything remains in the spool."
        ),
    )
    _add_spool(sync)
    sync.add_argument(
        "--tracking-uri",
        metavar="URI",
        help="write everything to this store (default: each run's own store)",
    )
    sync.add_argument(
        "--dry-run", action="store_true", help="say what would be written; write nothing"
    )
    sync.add_argument(
        "--discard-unverifiable",
        action="store_true",
        help="first remove the runs that cannot be verified with your spool key (signed with "
        "a key that is lost): their records are given up",
    )
    sync.set_defaults(handler=sync_command)


def _add_status(commands: Any) -> None:
    """``tracked status``: what the spool holds, without touching a store."""
    status = commands.add_parser(
        "status",
        help="what the spool holds: runs not yet written to their store",
        description="The runs in the spool, oldest first: state, records, size and age.",
    )
    _add_spool(status)
    status.set_defaults(handler=status_command)


def _add_spool(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--spool",
        metavar="DIR",
        type=Path,
        help="the spool folder (default: TRACKED_SPOOL_DIR, else the user cache's tracked/spool)",
    )


def _say_waiting() -> None:
    print("waiting for another `tracked sync` of this spool to finish", file=sys.stderr)


def sync_command(args: argparse.Namespace) -> int:
    """``tracked sync``: replay the spool; 0 when it is empty afterwards, else 1."""
    from tracked.spool.format import spool_root
    from tracked.spool.sync import sync

    spool = args.spool or spool_root()
    if not spool.is_dir():
        print(f"there is no spool at {spool} (the folder does not exist): nothing to sync")
        return 0
    if args.discard_unverifiable:
        _discard(spool, dry_run=args.dry_run)
    result = sync(spool, tracking_uri=args.tracking_uri, dry_run=args.dry_run, on_wait=_say_waiting)
    if args.dry_run and not (result.done or result.failures or result.remaining or result.refused):
        print(f"nothing to sync: the spool at {spool} holds no records")
    for line in result.done:
        print(_scrub(line))
    for failure in result.failures:
        print(f"failed: {_scrub(failure)}", file=sys.stderr)
    for session, reason in result.remaining.items():
        print(f"remains: {session}: {_scrub(reason)}", file=sys.stderr)
    _say_refused(result.refused, "refused")
    if not args.dry_run:
        print(
            f"{len(result.synced)} runs synced ({result.runs_created} store runs created, "
            f"{result.entries_written} records written); {len(result.remaining)} remain "
            f"in {spool}"
            + (f"; {len(result.refused)} folders refused, not read" if result.refused else "")
        )
    return 0 if result.ok else 1


def _discard(spool: Path, *, dry_run: bool) -> None:
    from tracked.spool.discard import discard_unverifiable

    for gone in discard_unverifiable(spool, dry_run=dry_run):
        key = f"signed with key {gone.key_id}" if gone.key_id else "its key unnamed"
        verb = "would discard" if dry_run else "discarded"
        print(f"{verb} {gone.path} ({key}): {_scrub(gone.why)}")


#: The refused folders named one by one; the others are counted (a spool of 100,000 junk
#: folders says so in a few lines).
REFUSALS_SAID = 5


def _say_refused(refused: dict[str, str], prefix: str) -> None:
    """The first ``REFUSALS_SAID`` refusals on stderr, then how many more there are."""
    for index, reason in enumerate(refused.values()):
        if index == REFUSALS_SAID:
            more = len(refused) - REFUSALS_SAID
            print(
                f"{prefix}: {more} more folders, not named here (the first {REFUSALS_SAID} "
                "are above): look at the spool's folders, then move out what is no session",
                file=sys.stderr,
            )
            return
        print(f"{prefix}: {_scrub(reason)}", file=sys.stderr)


def status_command(args: argparse.Namespace) -> int:
    """``tracked status``: one line per spooled session, and the totals."""
    import time

    from tracked.spool.format import spool_root
    from tracked.spool.status import status

    spool = args.spool or spool_root()
    if not spool.is_dir():
        # Not "everything reached its store": nothing was ever spooled there (a typo?).
        print(f"there is no spool at {spool} (the folder does not exist)")
        return 1 if args.spool is not None else 0
    refused: dict[str, str] = {}
    rows = status(spool, refused)
    _say_refused(refused, "refused (not read)")
    for row in rows:
        for damage in row.damage:
            print(f"damaged: {row.session_id}: {_scrub(damage)}", file=sys.stderr)
    if not rows:
        if refused:
            print(f"the spool at {spool} holds {len(refused)} folders that were not read")
            return 1
        print(f"the spool at {spool} is empty: everything reached its store")
        return 0
    print(f"{'session':<38} {'state':<9} {'pending':>7} {'bytes':>9}  created              run")
    for row in rows:
        created = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(row.created_ms / 1000))
        print(
            f"{row.session_id:<38} {row.state:<9} {row.pending:>7} {row.bytes:>9}  {created}  "
            f"{row.run_name} in {row.experiment} at {row.tracking_uri}"
        )
    oldest = min(rows, key=lambda row: row.created_ms)
    age_h = (time.time() * 1000 - oldest.created_ms) / 3_600_000
    print(
        f"{len(rows)} runs, {sum(r.pending for r in rows)} records pending, "
        f"{sum(r.bytes for r in rows)} bytes, oldest {age_h:.1f} h ago, in {spool}; "
        "`tracked sync` writes them"
    )
    return 1 if refused or any(row.damage for row in rows) else 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``tracked`` command line; return its exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    # Everything the commands print (tables, run names, URIs, the reasons of failures)
    # passes the one masker, whichever line printed it.
    with (
        contextlib.redirect_stdout(MaskedStream(sys.stdout)),
        contextlib.redirect_stderr(MaskedStream(sys.stderr)),
    ):
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    try:
        with _quick_http_failures():
            return args.handler(args)
    except CliError as exc:
        print(f"tracked {args.command}: {_scrub(str(exc))}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`| head`): no traceback, and none at exit when Python flushes.
        with contextlib.suppress(OSError, ValueError, io.UnsupportedOperation):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except Exception as exc:
        # Never a traceback from tracked: what failed, in one line (the traceback is on the
        # `tracked` logger, at DEBUG).
        logger.debug("tracked %s failed", args.command, exc_info=True)
        print(f"tracked {args.command}: could not finish: {describe(exc)}", file=sys.stderr)
        return 1


def _add_tracking_uri(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--tracking-uri",
        metavar="URI",
        help="MLflow tracking URI (default: MLflow's own: MLFLOW_TRACKING_URI, "
        "else sqlite:///mlflow.db in the current folder)",
    )


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        msg = f"expected a whole number of at least 1, got {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return value


# -- tracked compare ------------------------------------------------------------------------------


def compare_command(args: argparse.Namespace) -> int:
    """``tracked compare``: print the experiment's pipeline runs, best first."""
    client, uri = reading.open_store(args.tracking_uri)
    runs = reading.pipeline_runs(client, uri, args.experiment)
    comparison = compare_runs(runs, args.experiment, metric=args.metric, top=args.top)
    WRITERS[args.format](comparison, sys.stdout)
    return 0


# -- the store ---------------------------------------------------------------------------------


# Credentials in a message (a URI's user and password, ``?token=``, ...) -> ``***``.
_scrub = mask_secrets


class MaskedStream(io.TextIOBase):
    """A text stream that writes to ``stream`` with the credentials in each write masked;
    everything else (``isatty``, ``fileno``, ``encoding``) is the stream's."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        self._stream.write(mask_secrets(text))
        return len(text)

    def flush(self) -> None:
        self._stream.flush()

    def isatty(self) -> bool:
        return self._stream.isatty()

    def fileno(self) -> int:
        return self._stream.fileno()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self._stream, "encoding", "utf-8")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


@contextlib.contextmanager
def _quick_http_failures() -> Iterator[None]:
    """Bound MLflow's HTTP retries (minutes by default) unless the user chose otherwise."""
    defaults = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_TIMEOUT": "30"}
    added = [name for name in defaults if name not in os.environ]
    for name in added:
        os.environ[name] = defaults[name]
    try:
        yield
    finally:
        for name in added:
            os.environ.pop(name, None)


# -- output ---------------------------------------------------------------------------------------


WRITERS: dict[str, Callable[[Comparison, TextIO], None]] = {
    "table": write_table,
    "csv": write_csv,
    "json": write_json,
}
