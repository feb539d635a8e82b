"""The writer's side of a session: entries reach the store, or wait in the spool.

Runs on the writer thread (or the caller's, for a synchronous session): replays each entry
against the backend, goes spooling when the store is away, keeps the spool folder tidy."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

from tracked.core.report import describe
from tracked.core.text import mask_secrets
from tracked.delivery.registry import REGISTRY
from tracked.delivery.spooling import SpoolFolder
from tracked.delivery.writer import writer
from tracked.spool.entries import (
    Entry,
)

if TYPE_CHECKING:
    from tracked.spool.folder import SessionSpool
    from tracked.spool.replay import Replayer


class Sink(SpoolFolder):
    """The writer's side of a session: entries reach the store, or wait in the spool."""

    def _init_sink(self) -> None:
        self.spool: SessionSpool | None = None
        #: The spool folder was tidied away (``_tidy_spool``): the next entry opens it again.
        self._respool = False
        #: A folder that stopped taking records (``_drop_spool``): kept until the run's end
        #: reached the store, for good if it never does.
        self._dropped_spool: SessionSpool | None = None
        #: Entries that went to the spool instead of the store (counted by the writer).
        self._spooled = 0
        #: A wait for the writer ended (bound reached, Ctrl-C): what is left is the spool's.
        self.gave_up = False
        self._replayer: Replayer | None = None
        #: The store refused some of its records: the spool folder stays for `tracked sync`.
        self._unacknowledged = False

    def _prepare_backend(self) -> None:
        # The writer must import nothing while the caller's stages run: a module it is
        # importing (MLflow pulls in pandas, polars) sits half-made in sys.modules, and
        # scikit-learn's checks of the user's data find it there and fail in the user's call.
        # The backend imports its store's library here, on the caller's thread, once.
        prepare = self.capabilities.prepare
        if prepare is not None:
            prepare()

    def process(self, entry: Entry, data: Any) -> None:
        """Write one entry to the store (the writer's side of ``_submit``)."""
        try:
            self._process(entry, data)
        finally:
            if entry.kind == "start_run":
                self._created.set()
            self._job_done()

    def _job_done(self) -> None:
        with self._idle:
            self._outstanding -= 1
            if self._outstanding == 0:
                REGISTRY.busy.discard(self)
                self._idle.notify_all()

    def _process(self, entry: Entry, data: Any) -> None:
        from tracked.spool.codec import decode_payload
        from tracked.spool.replay import StoreAway

        kind = entry.kind
        if not (self.broken or self.spooling or self.refused):
            payload = decode_payload(data) if isinstance(data, bytes) else data
            try:
                failures = self._replayer_for().replay(entry, payload)
            except StoreAway as away:
                self._go_spooling(away)
            except Exception as exc:  # a bug of ours: reported, and the writer goes on
                self._report([(f"write a {kind} entry", exc)])
            else:
                if kind == "start_run" and self.local_id not in self.state.runs:
                    # Refused (a deleted experiment): the records wait in the spool until
                    # the cause is fixed and `tracked sync` runs; without a spool, nothing
                    # more is captured.
                    self.refused = self.spooling = True
                    spool = self.spool
                    if spool is not None:
                        where = (
                            f"the records are kept in the spool at {spool.path.parent}: fix "
                            "this, then run `tracked sync`"
                        )
                    else:
                        self.broken = True
                        where = "nothing more is recorded for this run"
                    failures = [(f"{what} ({where})", exc) for what, exc in failures]
                if failures:
                    # What the store refused is kept in the spool for `tracked sync`.
                    self._unacknowledged = True
                self._report(failures)
        if self.spooling and kind != "detach":
            self._spooled += 1
        dropped = self._dropped_spool
        if dropped is not None and kind in ("end_run", "detach"):
            self._dropped_spool = None
            if self.spooling or self.broken or self._unacknowledged:
                # `tracked sync` may take it: it ends the run, saying what is missing.
                with contextlib.suppress(OSError):
                    dropped.release()
            else:  # everything reached the store after all: the folder is not needed
                dropped.remove()
        spool = self.spool  # the caller may drop it meanwhile
        if spool is None:
            return
        if self.spooling:
            spool.make_durable()
        if kind in ("end_run", "detach"):
            if self.spooling or self._unacknowledged:
                spool.release()  # the writer is done with it: `tracked sync` may take over
            else:
                spool.remove()

    def _replayer_for(self) -> Replayer:
        if self._replayer is None:
            from tracked.spool.replay import Replayer

            self._replayer = Replayer(
                self.backend,
                self._header(),
                self.state,
                self._progress,
                between_steps=None if self.synchronous else writer().pause_for_callers,
                keep_aside=self.keep_aside,
            )
        return self._replayer

    def _go_spooling(self, away: BaseException) -> None:
        self.spooling = True
        cause = away.__cause__ or away
        uri = self.capabilities.spool_uri
        if uri is not None:
            REGISTRY.store_away(uri)
        spool = self.spool
        if spool is None:
            self._note(
                f"could not {away} ({describe(cause)}), and there is no spool: the records of "
                f"run {self.run_name!r} are lost",
                cause,
                key=f"lost:{uri}",
            )
            return
        folder = spool.path.parent

        def message() -> str:  # formatted when shown: the count is known by then
            return (
                f"the tracking store {mask_secrets(uri or '')} is away ({describe(cause)}); "
                f"{records_text(self._spooled)} of run {self.run_name!r} so far, and what follows, "
                f"are kept in the spool at {folder}: run `tracked sync` when the store is "
                "back, it sends them"
            )

        self._note(message, None, key=f"spooling:{uri}")


def records_text(count: int) -> str:
    """``1 record``, ``3 records``: how messages count what waits in the spool."""
    return f"{count} record{'' if count == 1 else 's'}"
