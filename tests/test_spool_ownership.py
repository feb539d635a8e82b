"""Folders and keys of your own: the spool is written only where it would be read.

A spool root that is not the user's own (another user's, writable by others, a link) is
refused when a session would write there, with the words ``tracked status`` uses; session
files are written through handles of folders held open (a folder renamed or swapped on the
way changes nothing), never through a link, never into a file with a second name. Each
session folder names the key that signs it; a lost key is never silently replaced while
folders signed with it wait, and ``tracked sync --discard-unverifiable`` gives them up.
"""

from __future__ import annotations

import contextlib
import io
import os
import warnings
from pathlib import Path

import pytest
from pipelines import run_iris
from servers import free_port

from tracked import TrackingWarning
from tracked.cli import main as tracked_cli
from tracked.spool import codec, key
from tracked.spool.entries import Header, StartRun
from tracked.spool.folder import SessionSpool, SpoolRefused
from tracked.spool.format import PROGRESS, LinkedFile, open_private, root_refusal
from tracked.spool.reader import SpooledSession
from tracked.spool.sync import _progress_file

as_root = pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() != 0,
    reason="needs root: makes a folder owned by another user",
)


def cli(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = tracked_cli(list(args))
    return code, out.getvalue(), err.getvalue()


@pytest.fixture
def own_key(tmp_path, monkeypatch) -> Path:
    """A key file of this test alone (it is lost and replaced here), read afresh."""
    path = tmp_path / "keys" / "spool.key"
    monkeypatch.setenv("TRACKED_SPOOL_KEY_FILE", str(path))
    monkeypatch.setattr(key, "_keys", {})
    return path


def session_id() -> str:
    return f"local-{os.urandom(16).hex()}"


def start(session: str) -> StartRun:
    return StartRun(run=session, run_name="r", start_ms=1)


def written_session(root: Path) -> Path:
    """A session folder written and left for sync (as when the store was away)."""
    header = Header(session=session_id(), tracking_uri="sqlite:///nowhere.db", run_name="r")
    spool = SessionSpool(root, header)
    spool.append(start(header.session), None, None)
    spool.release()
    return root / header.session


# -- the spool root ----------------------------------------------------------------------------


def _refuse(root: Path, how: str) -> None:
    if how == "another user's":
        os.chown(root, 54321, 54321)
    elif how == "writable by others":
        root.chmod(0o777)
    else:  # a link to a folder of one's own
        real = root.with_name("real")
        real.mkdir(mode=0o700)
        root.rmdir()
        root.symlink_to(real)


@pytest.mark.parametrize(
    "how",
    [
        pytest.param("another user's", marks=as_root),
        "writable by others",
        "a link",
    ],
)
def test_a_spool_root_that_is_not_ones_own_is_refused_when_writing_as_when_reading(
    tmp_path, own_key, how
):
    root = tmp_path / "spool"
    root.mkdir(mode=0o700)
    _refuse(root, how)
    said = root_refusal(root)
    assert said is not None

    with pytest.raises(SpoolRefused) as refused:
        SessionSpool(root, Header(session=session_id()))

    assert said == str(refused.value)
    assert [] == os.listdir(root)
    code, _, err = cli("status", "--spool", str(root))
    assert 1 == code
    assert said in err


@pytest.mark.slow
def test_a_pipeline_whose_spool_is_refused_says_so_in_status_words(
    tmp_path, iris, monkeypatch, tracking_uri
):
    root = tmp_path / "shared"
    root.mkdir(mode=0o777)
    root.chmod(0o777)
    monkeypatch.setenv("TRACKED_SPOOL_DIR", str(root))

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", TrackingWarning)
        run_iris(iris, tracking_uri=tracking_uri)

    texts = [str(w.message) for w in caught if issubclass(w.category, TrackingWarning)]
    assert any(root_refusal(root) in text for text in texts), texts
    assert [] == os.listdir(root)


# -- files through folder handles --------------------------------------------------------------


def test_a_session_folder_moved_while_written_keeps_every_record(tmp_path, own_key):
    root = tmp_path / "spool"
    header = Header(session=session_id(), run_name="r")
    spool = SessionSpool(root, header)
    # The spool's parent's owner renames the spool and puts another folder in its place.
    moved = tmp_path / "moved"
    root.rename(moved)
    root.mkdir(mode=0o700)

    spool.append(start(header.session), None, None)
    spool.release()

    assert [] == os.listdir(root)
    session = SpooledSession.read(moved / header.session, key.spool_key(create=False))
    assert [0] == [entry.seq for entry in session.entries]
    assert session.released


def test_a_spool_file_with_a_second_name_is_never_written(tmp_path):
    victim = tmp_path / "victim"
    victim.write_bytes(b"the user's own file\n")
    linked = tmp_path / PROGRESS
    os.link(victim, linked)

    for flags in (os.O_WRONLY | os.O_APPEND, os.O_WRONLY | os.O_CREAT | os.O_TRUNC):
        with pytest.raises(LinkedFile, match="2 names"):
            open_private(linked, flags)

    assert b"the user's own file\n" == victim.read_bytes()


@pytest.mark.slow
def test_sync_does_not_append_progress_to_a_hard_linked_file(tmp_path, iris, tracking_uri):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TrackingWarning)
        run_iris(iris, tracking_uri=f"http://127.0.0.1:{free_port()}")
    spool = Path(os.environ["TRACKED_SPOOL_DIR"])
    (folder,) = spool.iterdir()
    victim = tmp_path / "victim"
    victim.write_bytes(b"the user's own file\n")
    # The file this sync (into another store than the session's) appends its progress to.
    session = SpooledSession.read(folder, key.spool_key(create=False))
    os.link(victim, folder / _progress_file(session, tracking_uri))

    code, _, err = cli("sync", "--tracking-uri", tracking_uri)

    assert 1 == code
    assert "names (a hard link" in err
    assert b"the user's own file\n" == victim.read_bytes()


# -- keys --------------------------------------------------------------------------------------


def test_each_session_folder_names_the_key_that_signs_it(tmp_path, own_key):
    folder = written_session(tmp_path / "spool")

    header = SpooledSession.read(folder, key.spool_key(create=False)).header

    assert key.fingerprint(key.spool_key(create=False)) == header.key_id


def test_a_header_written_before_keys_were_named_still_reads(tmp_path, own_key):
    secret = key.spool_key(create=True)
    header = Header(session=session_id(), run_name="older")
    fields = codec.converter.unstructure(header)
    del fields["key_id"]
    raw = codec.signed_line(
        {"format": codec.FORMAT, "header": fields}, secret, b"header", header.session
    )

    read = codec.decode_header(raw, secret, header.session)

    assert (None, "older") == (read.key_id, read.run_name)


def test_a_lost_key_is_not_replaced_while_folders_signed_with_it_wait(tmp_path, own_key):
    root = tmp_path / "spool"
    waiting = written_session(root)
    lost = key.fingerprint(key.spool_key(create=False))
    own_key.unlink()
    key._keys.clear()

    with pytest.raises(key.SpoolKeyError) as refused:
        SessionSpool(root, Header(session=session_id()))

    said = str(refused.value)
    assert f"1 signed with key {lost}" in said
    assert "TRACKED_SPOOL_KEY_FILE" in said
    assert "--discard-unverifiable" in said
    assert not own_key.exists()  # no new key made
    code, _, err = cli("status", "--spool", str(root))
    assert 1 == code
    assert f"signed with spool key {lost}, and there is no spool key" in err

    code, out, _ = cli("sync", "--spool", str(root), "--discard-unverifiable")

    assert f"discarded {waiting} (signed with key {lost})" in out
    assert not waiting.exists()
    written_session(root)  # nothing waits for the lost key now: a new one is made
    assert own_key.exists()
    assert lost != key.fingerprint(key.spool_key(create=False))


def test_a_folder_signed_with_another_key_is_said_so_not_called_tampered(tmp_path, own_key):
    root = tmp_path / "spool"
    other = written_session(root)
    old = key.fingerprint(key.spool_key(create=False))
    own_key.write_bytes(os.urandom(key.KEY_BYTES))  # another key in its place
    key._keys.clear()
    new = key.fingerprint(key.spool_key(create=False))

    code, _, err = cli("status", "--spool", str(root))

    assert 1 == code
    assert f"signed with spool key {old}, and your spool key ({own_key}) is {new}" in err
    assert "changed after it was written" not in err
    assert key.noted_key(other) == old
