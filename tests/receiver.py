"""A loopback HTTP endpoint that records what notifiers post to it and can be told to fail."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any


@dataclass(frozen=True)
class ReceivedRequest:
    """One POST as received: ``headers`` have lower-case names; ``json`` is None if the body is not JSON."""

    path: str
    headers: dict[str, str]
    body: bytes
    json: Any
    status: int  # what the receiver answered


class Receiver:
    """A threaded HTTP server on 127.0.0.1 (a free port) recording every POST.

    It answers 200 unless told otherwise with :meth:`respond_with`. Use it as a context manager
    or call :meth:`close`.
    """

    def __init__(self) -> None:
        self._lock = threading.Condition()
        self._requests: list[ReceivedRequest] = []
        self._always = 200
        self._next: list[int] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="receiver", daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT`` (no trailing slash); any path is accepted."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def requests(self) -> list[ReceivedRequest]:
        """A copy of the POSTs received so far, oldest first."""
        with self._lock:
            return list(self._requests)

    def respond_with(self, status: int, times: int | None = None) -> None:
        """Answer ``status`` to the next ``times`` requests, or to all from now on if ``times`` is None."""
        with self._lock:
            if times is None:
                self._always = status
                self._next.clear()
            else:
                self._next.extend([status] * times)

    def wait_for(self, count: int, timeout: float = 5.0) -> list[ReceivedRequest]:
        """Block until at least ``count`` POSTs arrived; returns them, or fails after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while len(self._requests) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(
                        f"expected {count} requests within {timeout}s, got {len(self._requests)}"
                    )
                self._lock.wait(remaining)
            return list(self._requests)

    def clear(self) -> None:
        """Forget the requests received so far."""
        with self._lock:
            self._requests.clear()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    def __enter__(self) -> Receiver:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _record(self, path: str, headers: dict[str, str], body: bytes) -> int:
        try:
            parsed = json.loads(body) if body else None
        except ValueError:
            parsed = None
        with self._lock:
            status = self._next.pop(0) if self._next else self._always
            self._requests.append(ReceivedRequest(path, headers, body, parsed, status))
            self._lock.notify_all()
        return status

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                headers = {name.lower(): value for name, value in self.headers.items()}
                status = receiver._record(self.path, headers, body)
                answer = b'{"status":"ok"}' if 200 <= status < 300 else b'{"error":"told to fail"}'
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler
