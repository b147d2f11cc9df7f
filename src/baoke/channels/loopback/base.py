"""A threaded HTTP/1.1 server on 127.0.0.1 with a pluggable answer, for the provider fakes."""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

__all__ = ["LoopbackServer", "Refused", "Request", "Response"]


@dataclass(frozen=True)
class Request:
    """One request as the fake saw it."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-case names
    body: bytes


@dataclass
class Response:
    """What the fake answers."""

    status: int = 200
    body: bytes = b""
    content_type: str = "application/json; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)


class Refused(Exception):
    """A fake's business error: the provider's error ``code`` and ``message``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(code)
        self.code = code
        self.message = message


class _Server(ThreadingHTTPServer):
    # A dispatcher keeps dozens of connections open at once; the default backlog of 5 would
    # reset some of them as they connect.
    request_queue_size = 256


class LoopbackServer:
    """Serve ``self.answer(request)`` on a free loopback port, in a background thread.

    Subclasses implement :meth:`answer`. ``mode`` is read by subclasses to misbehave on
    purpose: ``ok``, ``throttle``, ``auth``, ``timeout`` (hold the request ``hang_seconds``
    before answering), ``malformed``, ``partial``, ``error`` (HTTP 500). ``accepted`` counts
    each message the fake accepted, by the key the subclass records (a mobile and template,
    a touch key): a duplicate shows as a count above one.
    """

    def __init__(self) -> None:
        self.mode = "ok"
        self.hang_seconds = 5.0
        self.lock = threading.Lock()
        self.accepted: Counter[str] = Counter()
        self.records: list[dict[str, Any]] = []
        self.requests = 0
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- to override ----------------------------------------------------------------------

    def answer(self, request: Request) -> Response:
        """The response to one request."""
        raise NotImplementedError

    def reset(self) -> None:
        """Forget every request and record and go back to ``ok`` (one server shared by many
        tests)."""
        with self.lock:
            self._forget()

    def _forget(self) -> None:
        """What :meth:`reset` clears, under the lock; subclasses extend it with their state."""
        self.mode = "ok"
        self.accepted.clear()
        self.records.clear()
        self.requests = 0

    # -- helpers for subclasses --------------------------------------------------------------

    def accept(self, key: str, record: dict[str, Any]) -> None:
        """Record one accepted message."""
        with self.lock:
            self.accepted[key] += 1
            self.records.append(record)

    def hang(self) -> None:
        """Sleep past the client's timeout (``mode == 'timeout'``)."""
        time.sleep(self.hang_seconds)

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        assert self._httpd is not None, "start() the server first"
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> LoopbackServer:
        """Listen on a free port and serve in a daemon thread."""
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go in two writes: with Nagle on, each response stalls ~40 ms.
            disable_nagle_algorithm = True

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                parts = urlsplit(self.path)
                request = Request(
                    self.command,
                    parts.path,
                    parse_qs(parts.query),
                    {k.lower(): v for k, v in self.headers.items()},
                    body,
                )
                with server.lock:
                    server.requests += 1
                response = server.answer(request)
                self.send_response(response.status)
                self.send_header("Content-Type", response.content_type)
                self.send_header("Content-Length", str(len(response.body)))
                for name, value in response.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                try:
                    self.wfile.write(response.body)
                except (BrokenPipeError, ConnectionResetError):
                    return  # the client gave up waiting (a timeout test): nothing to tell

            do_GET = _serve
            do_POST = _serve
            do_PUT = _serve

            def log_message(self, format: str, *args: Any) -> None:
                return  # quiet: tests and benchmarks read the records, not a log

        self._httpd = _Server(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> LoopbackServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
