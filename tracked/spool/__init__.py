"""The spool: every session's records on local disk, written before the store sees them.

A session's records go to its own folder first, then to the tracking store (by the
background writer, or later by ``tracked sync``). A folder is removed once everything in it
reached the store; what remains is what the store has not acknowledged, and is never
removed before (a record the store refused stays too, for ``tracked sync`` once the cause is
fixed). Layout: ``tracked.spool.format``.

The format is a contract (format 2; tracked 0.1.0 wrote format 1, without a number): the
header, entries and progress notes are typed records (``records``: frozen attrs classes)
written as canonical JSON lines by one codec (``codec``, cattrs); payloads are cloudpickle
pickles. A folder of another format is refused with what to do, never misread. Replay
progress is noted by named steps (``steps``), never by positions.

Authentication: payloads are pickles, and loading a pickle runs code. Rather than a second
set of code-free formats for every kind of payload (skops, ``.npy``, JSON, each with gaps:
scorers, pictures, pandas objects), every header, entry line, progress line and payload
carries an HMAC-SHA256 made with a per-user key (``key``: 32 random bytes, 0600, in a 0700
folder of the user's). Nothing is structured, unpickled or trusted (the header's store URI
included) before its MAC verifies: a folder planted by someone without the key is damage,
never code that runs. The MAC is also each record's checksum: a flipped byte or a cut line
is found, reported (run and step) and kept.

Locks (``lock``): the writing process holds its folder's lock; ``tracked sync`` takes a
folder's lock (skipping one that is held) and the spool's.

Modules: ``format`` (layout, safety checks, file helpers), ``key`` (the key, MACs),
``records``, ``codec``, ``lock``, ``folder`` (the writer's side), ``reader`` (sync and
status's side), ``steps`` and ``replay`` (entries to a store, step by named step), ``sync``,
``status``, ``discard`` (``tracked sync --discard-unverifiable``).

Imports: the spool layer stands on the library's floor only: ``tracked._records`` (values),
``tracked._capture``'s text helpers (``mask_secrets``), ``tracked._report``, ``tracked._errors``
and ``tracked.backends.base``; never on the session, the writer, the stage wrapper, phase or
params code, nor on mlflow (``sync`` asks ``tracked.backends.mlflow`` for a backend only when
none is given).

Nothing is imported here: ``import tracked`` (which knows the records' classes) does not pay
for the codec, cattrs or the replay until a session spools or writes.
"""
