"""The writer's side of a session: entries reach the store, or wait in the spool.

Runs on the writer thread (or the caller's, for a synchronous session): replays each entry
against the backend, goes spooling when the store is away, keeps the spool folder tidy."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

from tracked.backends.base import capabilities
from tracked.delivery.registry import REGISTRY
from tracked.delivery.writer import writer
from tracked.records.report import describe
from tracked.records.text import mask_uri
from tracked.spool.records import (
    Entry,
    Header,
)


def _source_tags(backend: object) -> dict[str, str]:
    tags = capabilities(backend).source_tags
    try:
        return dict(tags()) if tags is not None else {}
    except Exception:
        return {}


def spool_uri(backend: object) -> str | None:
    """The tracking URI of a backend whose records can be spooled and synced later."""
    return capabilities(backend).spool_uri


if TYPE_CHECKING:
    from tracked.spool.folder import SessionSpool
    from tracked.spool.records import Progress
    from tracked.spool.replay import Replayer


class Sink:
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

    def _open_spool(self) -> None:
        uri = spool_uri(self.backend)
        if uri is None:
            return
        header = self._header(tracking_uri=mask_uri(uri), source_tags=_source_tags(self.backend))
        from tracked.spool.folder import SessionSpool
        from tracked.spool.format import spool_root

        root = spool_root()
        try:
            self.spool = SessionSpool(root, header)
        except Exception as exc:
            self._note(
                f"could not write the spool at {root} ({describe(exc)}): records wait in "
                "memory only, and are lost if the tracking store is away",
                exc,
                key=f"spool-unwritable:{root}",
            )
        if self.spool is not None and REGISTRY.store_recently_away(uri):
            # The store failed moments ago: straight to the spool, without a 3 s wait.
            self.spooling = True

    def _header(self, **fields: Any) -> Header:
        return Header(
            session=self.local_id,
            experiment=self.experiment,
            run_name=self.run_name,
            parent=self.parent_ref,
            registered_model_name=self.registered_model_name,
            serialization_format=self.serialization_format,
            trusted_types=tuple(self.trusted_types),
            **fields,
        )

    def _tidy_spool(self) -> None:
        """A copy writing synchronously (a forked worker) keeps no folder for what reached the
        store: the worker may end any moment through os._exit, and a folder left behind would
        look like an abandoned run. Its next entry opens a fresh one."""
        spool = self.spool
        if self.owned or self.spooling or spool is None or self._outstanding:
            return
        if self._unacknowledged:
            return  # it holds records the store refused: kept for `tracked sync`
        self.spool = None
        self._respool = True
        spool.remove()

    def _drop_spool(self, spool: SessionSpool, exc: BaseException) -> None:
        """Stop spooling after ``exc`` (a full disk). The folder is never removed: it may hold
        records the store has not acknowledged (all of them, when the store is away). It is
        marked incomplete, so that `tracked sync` knows that its end is missing; what follows
        waits in memory only. A folder whose records all reach the store after all goes when
        the run ends (see ``_process``)."""
        lost = (
            "they are lost unless the store comes back before this process ends"
            if self.spooling
            else "they are lost if the store goes away"
        )
        self._note(
            f"could not write to the spool at {spool.path} ({describe(exc)}): it keeps the "
            f"records it holds (marked incomplete; `tracked sync` sends them); records from "
            f"now on wait in memory only: {lost}",
            exc,
            key=f"spool-unwritable:{spool.path.parent}",
        )
        self.spool = None
        self._dropped_spool = spool
        spool.mark_incomplete(describe(exc))

    def _note_spool_cap(self) -> None:
        """Once, at the run's end: the records the full spool kept without their heavy parts."""
        spool = self.spool or self._dropped_spool
        if spool is None or not spool.dropped:
            return
        self._note(
            f"the spool at {spool.path.parent} passed its cap (TRACKED_SPOOL_MAX_BYTES="
            f"{spool.max_bytes} bytes): {spool.dropped} records of run {self.run_name!r} were "
            "kept there without their models, artifacts, pictures and dataset samples (their "
            "runs, params, tags and metrics are kept; `tracked sync` tags those runs "
            "tracked.spool_dropped); run `tracked sync` to make room, or raise the cap",
            None,
            key=f"spool-cap:{self.local_id}",
        )

    def _progress(self, event: Progress) -> None:
        """Note a step done in the spool; a spool that cannot take it is dropped."""
        spool = self.spool
        if spool is None:
            return
        try:
            spool.progress(event)
        except OSError as exc:
            self._drop_spool(spool, exc)

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
            )
        return self._replayer

    def _go_spooling(self, away: BaseException) -> None:
        self.spooling = True
        cause = away.__cause__ or away
        uri = spool_uri(self.backend)
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
                f"the tracking store {mask_uri(uri or '')} is away ({describe(cause)}); "
                f"{_records(self._spooled)} of run {self.run_name!r} so far, and what follows, "
                f"are kept in the spool at {folder}: run `tracked sync` when the store is "
                "back, it sends them"
            )

        self._note(message, None, key=f"spooling:{uri}")


def _records(count: int) -> str:
    return f"{count} record{'' if count == 1 else 's'}"
