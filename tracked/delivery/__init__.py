"""Records -> backend: sessions, the writer and the process runtime.

Lives here: a pipeline instance's tracking context (``context``) and its group
(``groups``); the session that owns one parent run (``session``: its lifecycle), made of
parts split along the thread boundary: ``outbox`` (the caller's thread: records become
entries), ``sink`` and ``spooling`` (the writer's thread: entries reach the store or wait in
the spool folder), ``waiting`` (the caller waiting for the writer, bounded) and ``reports``
(failures collected by the writer, delivered on the caller's thread); the background writer
thread (``writer``), the process's registries of sessions (``registry``) and the runtime hooks
(``runtime``: flush, interpreter exit, fork), installed when the first session opens, not at
import.

May import: ``tracked.spool``-level modules (the spool and its replay), ``tracked.backends``
and ``tracked.core``. Never ``tracked.recording`` nor the public modules: what the
recording layer adds to a session (its composer) is handed in.
"""
