"""A faulty HTTP forwarder on 127.0.0.1, to put in front of a real ``mlflow server``.

Not a test module; the tests import it as ``proxy``. :class:`FaultyProxy` forwards every
request to the upstream server and answers with the upstream's response, except for the
requests its policy picks, which fail in one of three ways (``mode``):

- ``"500"``: answered ``500 INTERNAL_ERROR`` at once; the upstream never sees the request.
- ``"drop"``: the connection is closed without an answer; the upstream never sees it.
- ``"lose"``: forwarded, and the upstream does the work, but its answer is thrown away and
  the connection closed: the client cannot tell that the store did it (the nastiest case
  for a replay: the step must not be done twice, or doing it twice must be harmless).

Faults are deterministic: ``every=N`` fails the N-th, 2N-th, ... request (counted from the
proxy's start, optionally only requests whose path contains ``path_contains``), ``nth``
fails the listed request numbers, and the ``down`` switch fails everything while it is set.
Every request is answered with ``Connection: close`` so that each one is a fresh connection
and a dropped one never poisons a pooled connection of the client.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import threading
from collections.abc import Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# Headers that describe one hop, not the message (RFC 9110 7.6.1), plus the ones we recompute.
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
    }
)
MODES = ("500", "drop", "lose")


class FaultyProxy:
    """Forward ``127.0.0.1:<port>`` to ``http://127.0.0.1:<upstream_port>``, failing some requests.

    Use as a context manager (or ``start()``/``stop()``). ``requests`` counts the requests
    seen, ``failures`` lists ``(number, method, path)`` of the ones failed on purpose.
    """

    def __init__(
        self,
        upstream_port: int,
        *,
        mode: str = "500",
        every: int | None = None,
        nth: Iterable[int] = (),
        path_contains: str | None = None,
        upstream_host: str = "127.0.0.1",
        timeout: float = 30.0,
    ) -> None:
        if mode not in MODES:
            msg = f"mode must be one of {MODES}, not {mode!r}"
            raise ValueError(msg)
        self.upstream = (upstream_host, upstream_port)
        self.mode = mode
        self.every = every
        self.nth = frozenset(nth)
        self.path_contains = path_contains
        self.timeout = timeout
        #: While True every request fails (in ``mode``), whatever the counters say.
        self.down = False
        #: Requests seen (all of them), and those counted by the policy (``path_contains``).
        self.requests = 0
        self.counted = 0
        self.failures: list[tuple[int, str, str]] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- the policy -------------------------------------------------------------------------

    def _should_fail(self, method: str, path: str) -> bool:
        with self._lock:
            self.requests += 1
            number = self.requests
            counts = self.path_contains is None or self.path_contains in path
            if counts:
                self.counted += 1
            fail = self.down or (
                counts
                and (
                    (self.every is not None and self.counted % self.every == 0)
                    or self.counted in self.nth
                )
            )
            if fail:
                self.failures.append((number, method, path))
            return fail

    # -- life cycle -------------------------------------------------------------------------

    @property
    def port(self) -> int:
        assert self._server is not None, "the proxy is not started"
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FaultyProxy:
        proxy = self

        class Handler(_Handler):
            owner = proxy

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="faulty-proxy", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def __enter__(self) -> FaultyProxy:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        return (
            f"FaultyProxy(mode={self.mode!r}, every={self.every}, nth={sorted(self.nth)}, "
            f"down={self.down}, requests={self.requests}, failures={len(self.failures)})"
        )


class _Handler(BaseHTTPRequestHandler):
    # HTTP/1.0: one request per connection, closed after the answer.
    protocol_version = "HTTP/1.0"
    owner: FaultyProxy

    def log_message(self, format: str, *args: object) -> None:
        pass  # quiet: pytest would show it for every request

    def _body(self) -> bytes:
        length = self.headers.get("Content-Length")
        if length is not None:
            return self.rfile.read(int(length))
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()  # the CRLF after each chunk
            return b"".join(chunks)
        return b""

    def _drop(self) -> None:
        """Close the connection without a byte of answer."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    def _handle(self) -> None:
        proxy = self.owner
        body = self._body()
        fail = proxy._should_fail(self.command, self.path)
        if fail and proxy.mode == "500":
            payload = json.dumps(
                {"error_code": "INTERNAL_ERROR", "message": "injected by the faulty proxy"}
            ).encode()
            self.send_response(500)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(payload)
            return
        if fail and proxy.mode == "drop":
            self._drop()
            return
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
        host, port = proxy.upstream
        upstream = http.client.HTTPConnection(host, port, timeout=proxy.timeout)
        try:
            upstream.request(self.command, self.path, body=body or None, headers=headers)
            response = upstream.getresponse()
            content = response.read()
            status, reason = response.status, response.reason
            answer_headers = [
                (k, v)
                for k, v in response.getheaders()
                if k.lower() not in _HOP_BY_HOP and k.lower() not in ("date", "server")
            ]
        except OSError as exc:
            message = f"upstream failed: {exc}".encode()
            self.send_response(502)
            self.send_header("Content-Length", str(len(message)))
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(message)
            return
        finally:
            upstream.close()
        if fail:  # "lose": the upstream did it; the client never hears of it
            self._drop()
            return
        self.send_response(status, reason)
        for key, value in answer_headers:
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(content)))
        self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(content)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _handle
