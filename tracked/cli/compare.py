"""`tracked compare`: pipeline runs side by side, ranked, as a table, csv or json."""

from __future__ import annotations

import csv
import datetime
import io
import json
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TextIO

import attrs

from tracked.core.errors import CliError
from tracked.core.names import PIPELINE_TAG
from tracked.core.ranking import lower_is_better
from tracked.core.text import shorten

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


#: Run names are cut to this many characters in tables (csv and json keep them whole).
RUN_NAME_WIDTH = 60


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
        cell = [shorten(row.run_name, RUN_NAME_WIDTH), _local_time(row.start_time), row.status]
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
