"""The ``tracked`` command line: look at what pipelines recorded, without opening the MLflow UI.

    tracked compare EXPERIMENT [--tracking-uri URI] [--metric NAME] [--top N]
                               [--format table|csv|json]

One function per subcommand (``compare_command``), registered on an argparse subparser by
``build_parser``; a subcommand returns its exit status or raises :class:`CliError`, which
``main`` prints as one line on stderr and turns into exit status 1. Exit statuses: 0 ok,
1 for a store, experiment or metric that cannot be found, 2 for usage errors (argparse).

mlflow is imported only when a subcommand needs the store, so ``tracked --help`` is quick.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import datetime
import io
import json
import math
import os
import re
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urlsplit, urlunsplit

import attrs

from tracked._ranking import lower_is_better
from tracked._version import __version__

PIPELINE_TAG = "tracked.pipeline"

# The library's default evaluation metrics, in the order it logs them; they lead the columns
# (and so the default ranking) because MLflow does not keep the order metrics were logged in.
KNOWN_METRICS = (
    "accuracy",
    "f1_macro",
    "precision_macro",
    "recall_macro",
    "r2",
    "rmse",
    "mae",
)

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


class CliError(Exception):
    """A failure the user can fix (wrong name, store away): one line on stderr, exit 1."""


# -- the command line -----------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The ``tracked`` parser: one subparser per subcommand, its handler in ``handler``."""
    parser = argparse.ArgumentParser(
        prog="tracked",
        description="Look at the pipeline runs that tracked recorded in MLflow.",
    )
    parser.add_argument("--version", action="version", version=f"tracked {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``tracked`` command line; return its exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
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


@attrs.frozen(kw_only=True)
class Row:
    """One pipeline run as compared: what is shown of it."""

    run_id: str
    run_name: str
    pipeline: str
    start_time: int | None  # milliseconds since the epoch, as MLflow stores it
    status: str
    params: Mapping[str, str]
    metrics: Mapping[str, float]


@attrs.frozen(kw_only=True)
class Comparison:
    """Pipeline runs ranked best first, with the columns they are compared on."""

    experiment: str
    rows: tuple[Row, ...]
    #: Names of the hyperparameters shown (those that differ between runs), sorted.
    params: tuple[str, ...]
    #: Names of the metrics shown, the ranking metric first; empty when there are none.
    metrics: tuple[str, ...]
    #: The metric the rows are ranked by, or None (newest first) when there are no metrics.
    sort_metric: str | None
    #: Total number of pipeline runs, before ``--top``.
    total: int

    @property
    def description(self) -> str:
        """What the rows are and how they are ordered, for a caption."""
        shown = f"{len(self.rows)} of {self.total}" if len(self.rows) < self.total else self.total
        runs = "pipeline run" if self.total == 1 else "pipeline runs"
        if self.sort_metric is None:
            order = "newest first (no evaluation metrics)"
        else:
            better = "lower" if lower_is_better(self.sort_metric) else "higher"
            order = f"best first by {self.sort_metric} ({better} is better)"
        return f"{shown} {runs} of experiment {self.experiment!r}, {order}"


def compare_command(args: argparse.Namespace) -> int:
    """``tracked compare``: print the experiment's pipeline runs, best first."""
    client, uri = open_store(args.tracking_uri)
    runs = pipeline_runs(client, uri, args.experiment)
    comparison = compare_runs(runs, args.experiment, metric=args.metric, top=args.top)
    WRITERS[args.format](comparison, sys.stdout)
    return 0


def is_evaluation_metric(metric: str) -> bool:
    """Whether a parent-run metric is an evaluation metric rather than bookkeeping."""
    return not (metric.startswith(("training_", "total_", "system/")) or metric == "duration_s")


def compare_runs(
    runs: Sequence[Any],
    experiment: str,
    *,
    metric: str | None = None,
    top: int | None = None,
) -> Comparison:
    """Rank MLflow runs best first by ``metric`` and pick the columns to show.

    Args:
        runs: MLflow ``Run`` objects of pipeline runs (at least one).
        experiment: the experiment's name, for the caption.
        metric: the ranking metric; None means the first evaluation metric found.
        top: keep only this many of the best runs; None keeps all.

    Raises:
        CliError: ``metric`` is not a metric of any of the runs.
    """
    rows = [_row(run) for run in runs]
    metrics = _metric_columns(rows)
    if metric is not None:
        if not any(metric in row.metrics for row in rows):
            available = ", ".join(metrics) or "none"
            msg = (
                f"no pipeline run of experiment {experiment!r} has a metric {metric!r}; "
                f"its evaluation metrics: {available}"
            )
            raise CliError(msg)
        metrics = [metric, *(name for name in metrics if name != metric)]
    sort_metric = metrics[0] if metrics else None

    # Newest first, then a stable sort by the metric: ties keep the newer run in front.
    rows.sort(key=lambda row: row.start_time or 0, reverse=True)
    if sort_metric is not None:
        rows.sort(key=_ranking_key(sort_metric))

    return Comparison(
        experiment=experiment,
        rows=tuple(rows[:top] if top is not None else rows),
        params=_differing_params(rows),
        metrics=tuple(metrics),
        sort_metric=sort_metric,
        total=len(rows),
    )


def _row(run: Any) -> Row:
    return Row(
        run_id=run.info.run_id,
        run_name=run.info.run_name or "",
        pipeline=run.data.tags.get(PIPELINE_TAG, ""),
        start_time=run.info.start_time,
        status=run.info.status,
        params=dict(run.data.params),
        metrics=dict(run.data.metrics),
    )


def _metric_columns(rows: Sequence[Row]) -> list[str]:
    found = {name for row in rows for name in row.metrics if is_evaluation_metric(name)}
    known = [name for name in KNOWN_METRICS if name in found]
    return known + sorted(found - set(known))


def _ranking_key(metric: str) -> Callable[[Row], tuple[int, float]]:
    sign = 1.0 if lower_is_better(metric) else -1.0

    def key(row: Row) -> tuple[int, float]:
        value = row.metrics.get(metric)
        if value is None or math.isnan(value):
            return (1, 0.0)  # missing values last, whatever the direction
        return (0, sign * value)

    return key


def _differing_params(rows: Sequence[Row]) -> tuple[str, ...]:
    names = {name for row in rows for name in row.params}
    if len(rows) == 1:
        return tuple(sorted(names))
    return tuple(sorted(name for name in names if len({row.params.get(name) for row in rows}) > 1))


# -- the store ---------------------------------------------------------------------------------


def mask_uri(uri: str) -> str:
    """``uri`` without the credentials it may carry: ``http://user:pw@host`` -> ``http://***@host``."""
    try:
        parts = urlsplit(uri)
    except ValueError:
        return _scrub(uri)
    if "@" not in parts.netloc:
        return uri
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"***@{host}"))


_USERINFO = re.compile(r"(?<=://)[^/@\s]+@")


def _scrub(text: str) -> str:
    """``text`` with every ``scheme://user:password@`` masked, wherever it came from."""
    return _USERINFO.sub("***@", text)


def open_store(tracking_uri: str | None) -> tuple[Any, str]:
    """An ``MlflowClient`` for ``tracking_uri`` (None: MLflow's own resolution) and the URI.

    Checks first what MLflow would otherwise discover slowly or wrongly: a local store that
    does not exist (MLflow would create an empty one) and an HTTP server that does not
    accept connections (MLflow would retry for minutes).

    Raises:
        CliError: the store is not there or cannot be opened.
    """
    import mlflow

    from tracked.backends.mlflow import _check_reachable

    uri = tracking_uri or mlflow.get_tracking_uri()
    where = _describe_source(tracking_uri)
    path = _local_store_path(uri)
    if path is not None and not path.exists():
        msg = (
            f"no MLflow store at {path} ({where} {mask_uri(uri)}); run in the folder that "
            "holds mlflow.db, pass --tracking-uri or set MLFLOW_TRACKING_URI"
        )
        raise CliError(msg)
    try:
        _check_reachable(uri)
    except ConnectionError as exc:
        msg = (
            f"cannot reach the MLflow tracking server {mask_uri(uri)} ({where}): {exc}; "
            "start the server or pass another --tracking-uri"
        )
        raise CliError(msg) from None
    try:
        client = mlflow.MlflowClient(tracking_uri=uri)
    except Exception as exc:
        raise _store_error(uri, exc) from None
    return client, uri


def pipeline_runs(client: Any, uri: str, experiment: str) -> list[Any]:
    """The active pipeline runs (tagged ``tracked.pipeline``) of ``experiment``.

    Raises:
        CliError: no such experiment, a deleted one, one without pipeline runs, or the
            store failed.
    """
    from mlflow.entities import ViewType

    try:
        found = client.get_experiment_by_name(experiment)
        if found is None and experiment.isdigit():
            found = _experiment_by_id(client, experiment)
        if found is None:
            known = [e.name for e in client.search_experiments(max_results=21)]
            listing = ", ".join(repr(name) for name in known[:20]) or "none"
            if len(known) > 20:
                listing += ", ..."
            msg = (
                f"no experiment {experiment!r} in {mask_uri(uri)} (experiments there: "
                f"{listing}); check the name, or pass --tracking-uri for another store"
            )
            raise CliError(msg)
        if found.lifecycle_stage == "deleted":
            msg = (
                f"experiment {experiment!r} in {mask_uri(uri)} is deleted; restore it with "
                f"`mlflow experiments restore --experiment-id {found.experiment_id}`"
            )
            raise CliError(msg)
        runs: list[Any] = []
        token = None
        while True:
            page = client.search_runs(
                [found.experiment_id],
                filter_string=f"tags.`{PIPELINE_TAG}` LIKE '%'",
                run_view_type=ViewType.ACTIVE_ONLY,
                max_results=1000,
                order_by=["attributes.start_time DESC"],
                page_token=token,
            )
            runs.extend(run for run in page if PIPELINE_TAG in run.data.tags)
            token = page.token
            if not token:
                break
    except CliError:
        raise
    except Exception as exc:
        raise _store_error(uri, exc) from None
    if not runs:
        msg = (
            f"experiment {experiment!r} in {mask_uri(uri)} has no pipeline runs (runs tagged "
            f"{PIPELINE_TAG}); run a TrackedPipeline with experiment = {experiment!r} first"
        )
        raise CliError(msg)
    return runs


def _experiment_by_id(client: Any, experiment_id: str) -> Any:
    from mlflow.exceptions import MlflowException

    try:
        return client.get_experiment(experiment_id)
    except MlflowException:
        return None


def _describe_source(tracking_uri: str | None) -> str:
    if tracking_uri:
        return "--tracking-uri"
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return "MLFLOW_TRACKING_URI"
    return "MLflow's default"


def _local_store_path(uri: str) -> Path | None:
    """The file or folder of a local store URI (sqlite, file, plain path), else None."""
    if uri.startswith("sqlite:"):
        rest = uri.removeprefix("sqlite:").split("?", 1)[0]
        if not rest.startswith("///") or rest[3:] in ("", ":memory:"):
            return None  # in-memory database
        return Path(rest[3:]).absolute()
    scheme = urlsplit(uri).scheme
    if scheme == "file":
        return Path(urlsplit(uri).path).absolute()
    if scheme == "" or (len(scheme) == 1 and os.name == "nt"):  # a plain path (C:\ on Windows)
        return Path(uri).absolute()
    return None


def _store_error(uri: str, exc: BaseException) -> CliError:
    detail = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    msg = (
        f"cannot read the MLflow store {mask_uri(uri)}: {type(exc).__name__}: {detail}; "
        "check --tracking-uri (or MLFLOW_TRACKING_URI) and that the store is up"
    )
    return CliError(_scrub(msg))


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


def write_json(comparison: Comparison, out: TextIO) -> None:
    """A JSON list of objects, best first; params as text, missing metrics as null."""
    records = [
        {
            "run_id": row.run_id,
            "run_name": row.run_name,
            "pipeline": row.pipeline,
            "start_time": _iso_time(row.start_time),
            "status": row.status,
            "params": {name: row.params.get(name) for name in comparison.params},
            "metrics": {name: _json_number(row.metrics.get(name)) for name in comparison.metrics},
        }
        for row in comparison.rows
    ]
    json.dump(records, out, indent=2)
    out.write("\n")


def write_csv(comparison: Comparison, out: TextIO) -> None:
    """CSV with a header; params and metrics named as in ``mlflow.search_runs``."""
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(
        [
            "run_id",
            "run_name",
            "pipeline",
            "start_time",
            "status",
            *(f"params.{name}" for name in comparison.params),
            *(f"metrics.{name}" for name in comparison.metrics),
        ]
    )
    for row in comparison.rows:
        writer.writerow(
            [
                row.run_id,
                row.run_name,
                row.pipeline,
                _iso_time(row.start_time),
                row.status,
                *(row.params.get(name, "") for name in comparison.params),
                *(_csv_number(row.metrics.get(name)) for name in comparison.metrics),
            ]
        )


def write_table(comparison: Comparison, out: TextIO) -> None:
    """A table for people: rich's when it is installed and ``out`` is a terminal, else text."""
    header, cells = _table_cells(comparison)
    if _isatty(out):
        try:
            from rich.console import Console
            from rich.table import Table
        except ImportError:
            pass
        else:
            table = Table(caption=comparison.description, header_style="bold")
            numeric = _numeric_columns(comparison)
            for index, name in enumerate(header):
                # Values are never cut ("0.93…" would mislead); only run names may wrap.
                width = max(len(cell) for cell in [name, *(row[index] for row in cells)])
                table.add_column(
                    name,
                    justify="right" if index in numeric else "left",
                    style="bold" if index in numeric and name == comparison.sort_metric else None,
                    no_wrap=index != 0,
                    min_width=min(width, 12) if index == 0 else width,
                    overflow="fold",
                )
            for row in cells:
                table.add_row(*row)
            console = Console(file=out)
            # Wider than the terminal: let lines wrap rather than rich cut columns away.
            needed = sum(column.min_width or 0 for column in table.columns) + 3 * len(header) + 1
            if needed > console.width:
                console = Console(file=out, width=needed)
            console.print(table)
            return
    out.write(plain_table(header, cells, right=_numeric_columns(comparison)))
    out.write(f"\n{comparison.description}\n")


def plain_table(header: Sequence[str], rows: Sequence[Sequence[str]], right: set[int]) -> str:
    """An aligned text table; columns whose index is in ``right`` are right-aligned."""
    widths = [max(len(cell) for cell in column) for column in zip(header, *rows, strict=True)]

    def line(cells: Sequence[str]) -> str:
        padded = (
            cell.rjust(width) if index in right else cell.ljust(width)
            for index, (cell, width) in enumerate(zip(cells, widths, strict=True))
        )
        return "  ".join(padded).rstrip()

    rule = "  ".join("-" * width for width in widths)
    return "\n".join([line(header), rule, *(line(row) for row in rows)]) + "\n"


def _table_cells(comparison: Comparison) -> tuple[list[str], list[list[str]]]:
    show_pipeline = len({row.pipeline for row in comparison.rows}) > 1
    header = ["run name", "start time", "status"]
    header += ["pipeline"] if show_pipeline else []
    header += [*comparison.params, *comparison.metrics, "run id"]
    cells = []
    for row in comparison.rows:
        cell = [row.run_name, _local_time(row.start_time), row.status]
        cell += [row.pipeline] if show_pipeline else []
        cell += [row.params.get(name, "") for name in comparison.params]
        cell += [_table_number(row.metrics.get(name)) for name in comparison.metrics]
        cells.append([*cell, row.run_id[:8]])
    return header, cells


def _numeric_columns(comparison: Comparison) -> set[int]:
    show_pipeline = len({row.pipeline for row in comparison.rows}) > 1
    first = 3 + show_pipeline + len(comparison.params)
    return set(range(first, first + len(comparison.metrics)))


def _isatty(out: TextIO) -> bool:
    try:
        return out.isatty()
    except (AttributeError, ValueError, io.UnsupportedOperation):
        return False


def _iso_time(milliseconds: int | None) -> str | None:
    if milliseconds is None:
        return None
    moment = datetime.datetime.fromtimestamp(milliseconds / 1000, tz=datetime.timezone.utc)
    return moment.isoformat(timespec="milliseconds")


def _local_time(milliseconds: int | None) -> str:
    if milliseconds is None:
        return ""
    return datetime.datetime.fromtimestamp(milliseconds / 1000).strftime("%Y-%m-%d %H:%M:%S")


def _json_number(value: float | None) -> float | None:
    return None if value is None or math.isnan(value) or math.isinf(value) else value


def _csv_number(value: float | None) -> str:
    return "" if value is None else repr(value)


def _table_number(value: float | None) -> str:
    if value is None:
        return ""
    return f"{value:.4f}" if abs(value) < 1e6 else f"{value:.4g}"


WRITERS: dict[str, Callable[[Comparison, TextIO], None]] = {
    "table": write_table,
    "csv": write_csv,
    "json": write_json,
}
