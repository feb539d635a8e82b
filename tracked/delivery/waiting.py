"""The caller waiting for the writer: the parent run's id, its model, its evaluation, and
bounded waits (``TRACKED_EXIT_TIMEOUT``) after which what is left belongs to the spool."""

from __future__ import annotations

import contextlib
import threading
import time

from tracked.core.config import EXIT_TIMEOUT_ENV, wait_bound
from tracked.core.text import mask_secrets
from tracked.delivery.registry import REGISTRY
from tracked.delivery.sink import records_text
from tracked.delivery.writer import writer


def _not_answered() -> str:
    return f"it did not take them within {wait_bound():g} s ({EXIT_TIMEOUT_ENV})"


class Waiting:
    """The caller waiting for the writer: the parent run's id, its model, its evaluation, and"""

    @property
    def run_id(self) -> str | None:
        """The parent run's id: the store's, or ``local-...`` while it is only in the spool.

        Waits for the writer to create the run. ``local-...`` also when the store refused
        the run and its records wait in the spool; None when they could not even be kept.
        """
        if not self.started:
            return None
        if not self.owned:
            return self.state.runs.get(self.parent_ref, self.parent_ref)
        if not self._created.is_set():
            writer().expedite(self)
            with writer().urgent():
                bound = wait_bound()
                created = self._created.wait(None if bound > threading.TIMEOUT_MAX else bound)
            if not created:
                self.give_up(_not_answered())
        if self.local_id in self.state.runs:
            return self.state.runs[self.local_id]
        return None if self.broken else self.local_id

    @property
    def model_uri(self) -> str | None:
        """URI of the newest composed model, once the writer logged it (waiting at most
        ``TRACKED_EXIT_TIMEOUT``)."""
        self.settle(time.monotonic() + wait_bound())
        return self.state.model_uri

    @property
    def evaluation(self) -> dict[str, float]:
        """The latest evaluation metrics on the parent run (a prediction pass given y)."""
        self.settle(time.monotonic() + wait_bound())
        return self.state.evaluation

    @property
    def kept_aside(self) -> list:
        """A sweep's session: the stages' heavy parts the writer kept aside
        (``tracked.spool.aside``), once it is done with the session's entries."""
        self.settle(time.monotonic() + wait_bound())
        return list(self.state.aside)

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the writer is done with this session's entries."""
        if timeout is not None and timeout > threading.TIMEOUT_MAX:
            timeout = None  # TRACKED_EXIT_TIMEOUT=inf
        with writer().urgent(), self._idle:
            return self._idle.wait_for(lambda: self._outstanding == 0, timeout)

    def settle(self, deadline: float, *, at_exit: bool = False) -> bool:
        """Wait for the writer until ``deadline`` (``time.monotonic()``) at most.

        When the wait ends first (the bound, or a Ctrl-C, which is raised again), the store
        counts as away: the entries still waiting stay in the spool (``give_up``).
        """
        try:
            done = self.wait(max(0.0, deadline - time.monotonic()))
        except KeyboardInterrupt:
            self.give_up("the wait for it was interrupted (Ctrl-C)", at_exit=at_exit)
            raise
        if not done:
            self.give_up(_not_answered(), at_exit=at_exit)
        return done

    def give_up(self, why: str, *, at_exit: bool = False) -> None:
        """Stop waiting for the writer: the entries it has not written stay in the spool.

        The session goes on spooling (the writer skips the store for its remaining entries)
        and the store counts as away for new sessions for a while. One warning says how many
        records wait and that ``tracked sync`` sends them.
        """
        with self._idle:
            waiting = self._outstanding
        if self.gave_up or not waiting:
            return
        self.gave_up = True
        spool = self.spool
        uri = self.capabilities.spool_uri
        told = self.spooling and spool is not None  # the "is away" warning said it already
        if spool is not None:
            self.spooling = True
            if uri is not None:
                REGISTRY.store_away(uri)
            with contextlib.suppress(OSError):
                spool.make_durable()
            message = (
                f"the tracking store {mask_secrets(uri or repr(self.backend))} is away: {why}; "
                f"{records_text(waiting)} of run {self.run_name!r} wait in the spool at "
                f"{spool.path.parent}: `tracked sync` sends them"
            )
        else:
            message = (
                f"{records_text(waiting)} of run {self.run_name!r} are not written yet: {why}; "
                f"there is no spool for {self.backend!r}, so they are lost if the process ends"
            )
        if not told:
            self._note(message, None, key=f"gave-up:{self.local_id}")
        if at_exit:
            self.deliver(may_raise=False)
