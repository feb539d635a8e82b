"""The loop cases' table and the targets of issue 14 that they measure.

``results["cases"][case]["loop"]`` maps each figure to ``{"median", "min", "max", "n",
"values"}`` (see ``report.py``); per-call figures are under ``call_ms.<name>`` and models per
name under ``models_by_name.<name>``.
"""

from __future__ import annotations

from typing import Any

from cases import CASES, LOOP_CASES


def loop_figure(results: dict[str, Any], case: str, key: str) -> dict[str, Any] | None:
    value = results["cases"].get(case, {}).get("loop", {}).get(key)
    return value if isinstance(value, dict) else None


def loop_median(results: dict[str, Any], case: str, key: str) -> float | None:
    value = loop_figure(results, case, key)
    return None if value is None else value["median"]


def loops_table(results: dict[str, Any], cell: Any) -> str:
    """One row per loop case that ran: totals, ratio, per-call ms, exit, store contents."""
    cases = [case for case in LOOP_CASES if case in results["cases"]]
    if not cases:
        return ""
    quick = " -- QUICK counts, not a measurement" if results["options"].get("quick") else ""
    lines = [
        f"### Loops (tracked vs its untracked twin in one process; median over "
        f"{results['options']['repeats']} process(es)){quick}",
        "",
        "| case | calls | untracked s | tracked s | ratio | per call untracked ms "
        "(median / p99) | per call tracked ms (median / p99) | overhead per call ms "
        "(median / p99) | `with` exit s | runs | logged models | artifacts MB "
        "| stage records left in the spool |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for case in cases:
        if "loop" not in results["cases"][case]:
            lines.append(f"| {CASES[case].title} | FAILED: no process of this case succeeded |")
            continue

        def c(key: str, digits: int = 2, case: str = case) -> str:
            return cell(loop_figure(results, case, key), digits)

        def pair(kind: str) -> str:
            return f"{c(f'call_ms.{kind}_median', 3)} / {c(f'call_ms.{kind}_p99', 3)}"

        lines.append(
            f"| {CASES[case].title} | {c('loop_calls', 0)} | {c('untracked_s', 3)} "
            f"| {c('tracked_s', 3)} | {c('ratio', 1)}x | {pair('untracked')} | {pair('tracked')} "
            f"| {pair('overhead')} | {c('exit_s', 3)} | {c('runs', 0)} | {c('models', 0)} "
            f"| {c('artifact_mb', 1)} | {c('spooled_stage_records', 0)} |"
        )
    lines += [
        "",
        "runs: every run in the store (the parent run included); logged models: every logged "
        "model (stage `model`s and composed `pipeline`s); left in the spool: stage records "
        "the `with` exit stopped waiting for (its bound, `TRACKED_EXIT_TIMEOUT`, 30 s by "
        "default), which `tracked sync` would send.",
    ]
    return "\n".join(lines)


def loop_targets(results: dict[str, Any], target: Any) -> list[dict[str, Any]]:
    """Issue 14's targets that the loop cases measure (none when no loop case ran, or with
    ``--quick`` counts, which measure nothing)."""
    if results["options"].get("quick"):
        return []
    if not any(case in results["cases"] for case in LOOP_CASES):
        return []

    def m(case: str, key: str) -> float | None:
        return loop_median(results, case, key)

    knn_on = m("knn_fit", "call_ms.tracked_median")
    knn_off = m("knn_fit", "call_ms.untracked_median")
    knn = None if knn_on is None or not knn_off else (knn_on - 5.0) / knn_off
    fits = m("partial_fit", "models_by_name.model")
    if fits is None and m("partial_fit", "models") is not None:
        fits = 0.0
    return [
        target(
            "predict x2000: caller overhead per call (median)",
            m("predict_loop", "call_ms.overhead_median"),
            0.5,
            "ms",
        ),
        target(
            "predict x2000: caller overhead per call (p99)",
            m("predict_loop", "call_ms.overhead_p99"),
            5.0,
            "ms",
        ),
        target("predict x2000: `with` exit", m("predict_loop", "exit_s"), 2.0, "s"),
        target(
            "predict x2000: runs (parent + fit + folded predictions)",
            m("predict_loop", "runs"),
            12,
            "",
        ),
        target("partial_fit x200: runs (parent + folded fits)", m("partial_fit", "runs"), 11, ""),
        target("partial_fit x200: stage `model`s logged", fits, 3, ""),
        target("KNN fit: (tracked call - 5 ms) / untracked call", knn, 1.1),
        target(
            "1000 x 20,000 frame: caller time, tracked / untracked",
            m("wide_frame", "calls_ratio"),
            1.2,
        ),
        target(
            "1,000,000 x 20 frame: caller time, tracked / untracked",
            m("long_frame", "calls_ratio"),
            1.1,
        ),
    ]
