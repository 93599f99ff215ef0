"""A real HTTP receiver of webhooks on loopback, for the tests: a
``ThreadingHTTPServer`` on port 0 in a thread, recording every request it gets.

It answers each request with the next of ``statuses`` (then ``default_status``),
optionally with ``headers``; ``gate``, when given, holds every answer until it is
set (to keep an attempt in flight). Waiting for requests observes the receiver
(a condition notified by the handler), never a sleep.
"""

from __future__ import annotations

import hashlib
import hmac
import socket
import threading
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson


@dataclass(frozen=True)
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return orjson.loads(self.body)

    def signed_with(self, secret: str) -> bool:
        """What a receiver does: recompute the signature of the raw body, compare."""
        expected = "sha256=" + hmac.new(secret.encode(), self.body, hashlib.sha256).hexdigest()
        return hmac.compare_digest(expected, self.headers.get("X-Importer-Signature", ""))


class Receiver:
    def __init__(
        self,
        statuses: Iterable[int] = (),
        default_status: int = 200,
        headers: dict[str, str] | None = None,
        gate: threading.Event | None = None,
    ) -> None:
        self.statuses = deque(statuses)
        self.default_status = default_status
        self.answer_headers = dict(headers or {})
        self.gate = gate
        self.requests: list[Received] = []
        self._changed = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the http.server API
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                status = receiver._record(
                    Received("POST", self.path, dict(self.headers.items()), body)
                )
                if receiver.gate is not None:
                    receiver.gate.wait(60)
                self.send_response(status)
                for name, value in receiver.answer_headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        # A short poll interval: shutdown() waits for the serving loop's next poll.
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )
        self.thread.start()

    def _record(self, received: Received) -> int:
        with self._changed:
            self.requests.append(received)
            status = self.statuses.popleft() if self.statuses else self.default_status
            self._changed.notify_all()
        return status

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}/hooks"

    def wait_for(self, count: int, timeout: float = 30) -> list[Received]:
        """Block until ``count`` requests arrived (bounded); returns them."""
        with self._changed:
            if not self._changed.wait_for(lambda: len(self.requests) >= count, timeout):
                raise TimeoutError(f"{len(self.requests)} of {count} webhook request(s) arrived")
            return list(self.requests)

    def close(self) -> None:
        if self.gate is not None:
            self.gate.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)

    def __enter__(self) -> Receiver:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def closed_port_url() -> str:
    """A loopback URL nothing listens on (connection refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/hooks"
