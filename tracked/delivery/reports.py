"""A session's failure reports: collected where they happen, delivered on the caller's thread.

The writer collects; the caller's next stage call, ``end`` and ``tracked.flush()`` deliver
(a ``TrackingWarning``, or an error in strict mode), so a failure surfaces where the user is."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable

from tracked.core.report import describe, notice, report_failure
from tracked.delivery.registry import REGISTRY


class _Notice:
    """Marks a collected report as a notice (a warning that is not a failure)."""

    def __init__(self, key: str) -> None:
        self.key = key


class Reports:
    """Failure reports: collected where they happen, delivered on the caller's thread."""

    def _init_reports(self) -> None:
        #: Reports collected by the writer; their own lock, which nothing holds while waiting.
        self._reports: list[tuple[str | Callable[[], str], BaseException | None]] = []
        self._reports_lock = threading.Lock()

    def _report(self, failures: list[tuple[str, BaseException]]) -> None:
        if failures:
            with self._reports_lock:
                self._reports.extend(failures)
                REGISTRY.with_reports.add(self)

    def _note(
        self, message: str | Callable[[], str], exc: BaseException | None, *, key: str
    ) -> None:
        """A warning for the caller's thread (not a failure: nothing is lost by it)."""
        with self._reports_lock:
            self._reports.append((message, _Notice(key)))
            REGISTRY.with_reports.add(self)

    def deliver(self, *, may_raise: bool = True) -> None:
        """Report what the writer collected, on the calling thread (raise, in strict mode)."""
        if not self._reports:
            return
        with self._reports_lock:
            reports, self._reports = self._reports, []
            REGISTRY.with_reports.discard(self)
        failures = []
        for what, exc in reports:
            if callable(what):
                what = what()
            if isinstance(exc, _Notice):
                if may_raise:
                    notice(what, key=exc.key)
                else:  # even with warnings turned into errors, the user's exception wins
                    with contextlib.suppress(Warning):
                        notice(what, key=exc.key)
            else:
                failures.append((what, exc))
        if self.strict and may_raise and len(failures) > 1:
            # One error for all of them, each named: strict mode raises once per sync point.
            what = "; ".join(f"{what}: {describe(exc, 300)}" for what, exc in failures[1:])
            failures = [(f"{failures[0][0]} (and: {what})", failures[0][1])]
        for what, exc in failures:
            report_failure(what, exc, strict=self.strict, may_raise=may_raise)
