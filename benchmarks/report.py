"""The markdown report and the issue's targets, computed from summarised results.

``results`` is what run.py builds: ``results["cases"][case][mode]`` maps each figure to
``{"median", "min", "max", "n", "values"}`` (booleans stay booleans), and
``results["scaling"][rows][case]`` does the same for the workflow on synthetic data.
Ratios are ratios of medians from this one run.
"""

from __future__ import annotations

from typing import Any

from cases import CASES
from cases.common import STAGE_CALLS
from report_loops import loop_targets, loops_table

WORKFLOW_CASES = ("untracked", "tracked", "tracked_sync", "client", "autolog")


def figure(results: dict[str, Any], case: str, mode: str, key: str) -> dict[str, Any] | None:
    value = results["cases"].get(case, {}).get(mode, {}).get(key)
    return value if isinstance(value, dict) else None


def median(results: dict[str, Any], case: str, mode: str, key: str) -> float | None:
    value = figure(results, case, mode, key)
    return None if value is None else value["median"]


def cell(value: dict[str, Any] | None, digits: int = 2, scale: float = 1.0) -> str:
    """``median (min-max)``, or an em dash when not measured."""
    if value is None:
        return "—"
    med, low, high = (value[k] * scale for k in ("median", "min", "max"))
    if value["n"] == 1:
        return f"{med:.{digits}f}"
    return f"{med:.{digits}f} ({low:.{digits}f}-{high:.{digits}f})"


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or not denominator:
        return None
    return numerator / denominator


# -- targets -------------------------------------------------------------------------------


def target(
    name: str, measured: float | None, limit: float, unit: str = "x", *, strict: bool = False
) -> dict[str, Any]:
    """One target: met when ``measured <= limit`` (``<`` if ``strict``; None: not measured)."""
    met = None
    if measured is not None:
        met = measured < limit if strict else measured <= limit
    return {
        "target": name,
        "measured": measured,
        "limit": limit,
        "unit": unit,
        "strict": strict,
        "met": met,
    }


def flag_target(name: str, value: bool | None) -> dict[str, Any]:
    """A yes/no target that is met when ``value`` is False (e.g. "mlflow was imported")."""
    return {
        "target": name,
        "measured": value,
        "limit": False,
        "unit": "",
        "met": None if value is None else not value,
    }


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's targets, each with its measured value and verdict."""

    def m(case: str, mode: str, key: str) -> float | None:
        return median(results, case, mode, key)

    largest = max(results.get("scaling", {}), key=int, default=None)
    scaling = None
    if largest is not None and int(largest) >= 1_000_000:
        per_size = results["scaling"][largest]
        scaling = ratio(
            _median(per_size.get("tracked"), "workflow_s"),
            _median(per_size.get("untracked"), "workflow_s"),
        )
    imported = results["cases"].get("import", {}).get("import", {}).get("mlflow_imported")
    untracked_imported = (
        results["cases"].get("untracked", {}).get("workflow", {}).get("mlflow_imported")
    )
    return [
        target(
            "workflow time: tracked / autolog",
            ratio(m("tracked", "workflow", "workflow_s"), m("autolog", "workflow", "workflow_s")),
            0.10,
        ),
        target(
            "whole-process wall time: tracked / autolog",
            ratio(m("tracked", "workflow", "wall_s"), m("autolog", "workflow", "wall_s")),
            0.50,
        ),
        target(
            "whole-process wall time: tracked / untracked",
            ratio(m("tracked", "workflow", "wall_s"), m("untracked", "workflow", "wall_s")),
            2.0,
        ),
        target(
            "caller-side overhead per stage call, tracked (median)",
            m("tracked", "overhead", "overhead_ms"),
            1.0,
            "ms",
        ),
        target(
            "tracking off (tracking = False), per call over a plain method",
            m("untracked", "overhead", "off_ns"),
            1000.0,
            "ns",
        ),
        target(
            "tracking off (TRACKED_ENABLED=0), per call over a plain method",
            m("untracked", "overhead", "env_off_ns"),
            1000.0,
            "ns",
        ),
        target(
            "`import tracked` on top of scikit-learn",
            m("import", "import", "import_ms"),
            50.0,
            "ms",
            strict=True,
        ),
        flag_target("`import tracked` imports mlflow", imported),
        flag_target("untracked workflow imports mlflow", untracked_imported),
        target(
            "peak RSS: tracked / hand-written MlflowClient",
            ratio(m("tracked", "workflow", "peak_rss_mb"), m("client", "workflow", "peak_rss_mb")),
            1.10,
        ),
        target("workflow time at 1e6 rows: tracked / untracked", scaling, 1.10),
        *loop_targets(results, target),
    ]


def _median(summary: dict[str, Any] | None, key: str) -> float | None:
    if not summary or not isinstance(summary.get(key), dict):
        return None
    return summary[key]["median"]


# -- markdown ------------------------------------------------------------------------------


def markdown(results: dict[str, Any]) -> str:
    """The whole report: cases, per-call breakdown, tracking off, scaling, targets."""
    parts = [
        failures_note(results.get("failures") or []),
        cases_table(results),
        per_call_table(results),
        exit_line(results),
        off_table(results),
        scaling_table(results),
        loops_table(results, cell),
        targets_table(results["targets"]),
    ]
    return "\n\n".join(part for part in parts if part) + "\n"


def cases_table(results: dict[str, Any]) -> str:
    if not any(name in results["cases"] for name in WORKFLOW_CASES):
        return ""
    repeats = results["options"]["repeats"]
    lines = [
        f"### Cases (median (min-max) over {repeats} fresh processes each)",
        "",
        "| case | wall s | peak RSS MB | workflow s | start-up + exit s "
        "| overhead per call, median ms | overhead per train+predict pass, ms |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name in WORKFLOW_CASES:
        entry = results["cases"].get(name)
        if entry is None:
            continue
        title = CASES[name].title
        if entry.get("unavailable"):
            lines.append(f"| {title} | not available: {entry['unavailable']} ||||||")
            continue
        if not any(mode in entry for mode in CASES[name].modes):
            lines.append(f"| {title} | FAILED: no process of this case succeeded ||||||")
            continue

        def c(mode: str, key: str, digits: int = 2, name: str = name) -> str:
            return cell(figure(results, name, mode, key), digits)

        per_pass = c("overhead", "pass_overhead_ms", 1)
        if name == "untracked":
            per_call = f"off: +{cell(figure(results, name, 'overhead', 'off_ns'), 0)} ns"
            per_pass = "—"
        elif name == "autolog":
            # Two kinds of call (fit: seconds, score: ms): their median is meaningless. A pass
            # does the work of six stage calls.
            pass_ms = figure(results, name, "overhead", "pass_overhead_ms")
            per_call = f"{cell(pass_ms, 2, scale=1 / len(STAGE_CALLS))} (pass / 6)"
        else:
            per_call = c("overhead", "overhead_ms")
        lines.append(
            f"| {title} | {c('workflow', 'wall_s')} | {c('workflow', 'peak_rss_mb', 0)} "
            f"| {c('workflow', 'workflow_s', 3)} | {c('workflow', 'outside_s')} "
            f"| {per_call} | {per_pass} |"
        )
    return "\n".join(lines)


def exit_line(results: dict[str, Any]) -> str:
    """The time of the ``with`` exit of a tracked pass: the writer draining (the flush)."""
    parts = [
        f"{name} {cell(figure(results, name, 'overhead', 'exit_ms'), 1)} ms"
        for name in ("tracked", "tracked_sync")
        if figure(results, name, "overhead", "exit_ms") is not None
    ]
    if not parts:
        return ""
    return "`with` exit of a pass (ends the parent run, waits for the writer): " + ", ".join(parts)


def per_call_table(results: dict[str, Any]) -> str:
    cases = [
        name
        for name in ("tracked", "tracked_sync", "client", "autolog")
        if figure(results, name, "overhead", "overhead_ms") is not None
    ]
    if not cases:
        return ""
    calls = [*STAGE_CALLS, "fit", "score"]
    lines = [
        "### Caller-side overhead per call (ms; median per process, then median (min-max) "
        "over processes)",
        "",
        "| call | " + " | ".join(cases) + " |",
        "|---|" + "---:|" * len(cases),
    ]
    for call in calls:
        cells = [cell(figure(results, name, "overhead", f"per_call_ms.{call}")) for name in cases]
        if any(c != "—" for c in cells):
            lines.append(f"| {call} | " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(
        "autolog's `fit` and `score` are whole-Pipeline calls (three stages each), so its "
        "per-call figure in the cases table is its per-pass overhead / 6; the other rows are "
        "single stage calls."
    )
    return "\n".join(lines)


def off_table(results: dict[str, Any]) -> str:
    rows = [
        ("plain method call, ns", "untracked", "overhead", "plain_ns", 0),
        ("tracking = False, ns over plain", "untracked", "overhead", "off_ns", 0),
        ("TRACKED_ENABLED=0, ns over plain", "untracked", "overhead", "env_off_ns", 0),
        ("`import tracked` after scikit-learn, ms", "import", "import", "import_ms", 1),
    ]
    lines = ["### Tracking off and import", "", "| figure | median (min-max) |", "|---|---:|"]
    found = False
    for label, case, mode, key, digits in rows:
        value = figure(results, case, mode, key)
        if value is not None:
            found = True
            lines.append(f"| {label} | {cell(value, digits)} |")
    return "\n".join(lines) if found else ""


def scaling_table(results: dict[str, Any]) -> str:
    scaling = results.get("scaling") or {}
    if not scaling:
        return ""
    repeats = results["options"]["scaling_repeats"]
    lines = [
        f"### Scaling (make_classification, 20 features; {repeats} processes per cell)",
        "",
        "| rows | untracked workflow s | tracked workflow s | tracked / untracked "
        "| untracked wall s | tracked wall s | wall ratio |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for rows in sorted(scaling, key=int):
        per = scaling[rows]
        off, on = per.get("untracked") or {}, per.get("tracked") or {}
        work = ratio(_median(on, "workflow_s"), _median(off, "workflow_s"))
        wall = ratio(_median(on, "wall_s"), _median(off, "wall_s"))
        cells = [
            f"{int(rows):.0e}",
            cell(off.get("workflow_s"), 3),
            cell(on.get("workflow_s"), 3),
            _fmt(work),
            cell(off.get("wall_s")),
            cell(on.get("wall_s")),
            _fmt(wall),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _fmt(value: float | None, digits: int = 2) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def targets_table(rows: list[dict[str, Any]]) -> str:
    lines = ["### Targets", "", "| target | measured | limit | verdict |", "|---|---:|---:|---|"]
    for row in rows:
        verdict = {True: "met", False: "MISSED", None: "n/a (not measured)"}[row["met"]]
        unit = row["unit"]
        if isinstance(row["measured"], bool) or row["limit"] is False:
            measured = "—" if row["measured"] is None else ("yes" if row["measured"] else "no")
            limit = "no"
        else:
            measured = "—" if row["measured"] is None else f"{row['measured']:.3g}{_unit(unit)}"
            sign = "<" if row.get("strict") else "≤"
            limit = f"{sign} {row['limit']:g}{_unit(unit)}"
        lines.append(f"| {row['target']} | {measured} | {limit} | {verdict} |")
    return "\n".join(lines)


def _unit(unit: str) -> str:
    return "x" if unit == "x" else f" {unit}" if unit else ""


def failures_note(failures: list[dict[str, Any]]) -> str:
    """The processes that failed (their figures are missing from the medians below)."""
    if not failures:
        return ""
    lines = [f"**{len(failures)} process(es) FAILED** and are left out of the figures below:", ""]
    lines += [f"- #{f['rep'] + 1} {f['error']}" for f in failures]
    return "\n".join(lines)
