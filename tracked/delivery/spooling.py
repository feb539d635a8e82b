"""A session's spool folder: opened with the first entry, tidied away when the store has
all of it, kept (and marked) when it cannot take more."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from tracked.core.report import describe
from tracked.core.text import mask_secrets
from tracked.delivery.registry import REGISTRY
from tracked.spool.entries import (
    Header,
)

if TYPE_CHECKING:
    from tracked.spool.entries import Progress
    from tracked.spool.folder import SessionSpool


def _source_tags(tags: Callable[[], Mapping[str, str]] | None) -> dict[str, str]:
    """The backend's source tags (none when it has none, or they cannot be read)."""
    try:
        return dict(tags()) if tags is not None else {}
    except Exception:
        return {}


class SpoolFolder:
    """A session's spool folder: opened with the first entry, tidied away when the store has"""

    def _open_spool(self) -> None:
        uri = self.capabilities.spool_uri
        if uri is None:
            return
        header = self._header(
            tracking_uri=mask_secrets(uri), source_tags=_source_tags(self.capabilities.source_tags)
        )
        from tracked.spool.folder import SessionSpool
        from tracked.spool.format import spool_root

        root = None
        try:
            # Inside: with no home folder to hold it, finding the spool may fail too.
            root = spool_root()
            self.spool = SessionSpool(root, header)
        except Exception as exc:
            self._note(
                f"could not write the spool at {root or 'its place'} ({describe(exc)}): "
                "records wait in memory only, and are lost if the tracking store is away",
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
            registered_model_name=self.settings.registered_model_name,
            serialization_format=self.settings.serialization_format,
            trusted_types=self.settings.trusted_types,
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
