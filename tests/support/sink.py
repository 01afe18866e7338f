"""A local HTTP server standing in for a destination system (OMS, ERP...).

It speaks plain HTTP on 127.0.0.1, records every request, and counts *effects* the way an
idempotent API would: requests repeating an ``Idempotency-Key`` are recorded but not counted
as new effects. Tests can script answers (status, headers, delay) per request.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Answer:
    status: int = 201
    body: bytes = b'{"ok": true}'
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0


class Sink:
    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self.scripted: list[Answer] = []
        self.default = Answer()
        self._lock = threading.Lock()
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                with sink._lock:
                    sink.requests.append(
                        Recorded(self.command, self.path, dict(self.headers.items()), body)
                    )
                    answer = sink.scripted.pop(0) if sink.scripted else sink.default
                if answer.delay:
                    time.sleep(answer.delay)
                self.send_response(answer.status)
                for name, value in answer.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer.body)))
                self.end_headers()
                self.wfile.write(answer.body)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _handle

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> Sink:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def effects(self) -> Counter[str]:
        """Requests per Idempotency-Key: one effect per key, the count shows repeats."""
        with self._lock:
            return Counter(r.headers.get("Idempotency-Key", "") for r in self.requests)
