"""Records -> backend: sessions, the writer and the process runtime.

Lives here: a pipeline instance's tracking context (``context``), the session that owns a
parent run and turns records into entries (``session``), the background writer thread
(``writer``), the process's registries of sessions (``registry``) and the runtime hooks
(``runtime``: flush, interpreter exit, fork), installed when the first session opens, not at
import.

May import: ``tracked.spool``-level modules (the spool and its replay), ``tracked.backends``
and ``tracked.records``. Never ``tracked.recording`` nor the public modules: what the
recording layer adds to a session (its composer) is handed in.
"""
