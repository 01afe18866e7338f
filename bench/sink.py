"""Counting HTTP sink, the Python fallback for /work/shared/bench-peers/sink.js.

    python bench/sink.py PORT

Same interface as sink.js (127.0.0.1 only): every non-GET request is drained, counted and
answered 200 ``{"ok":true}``; ``GET /stats`` returns ``{count, bytes, bad, first, last, perSec}``
(``first``/``last`` in epoch milliseconds) plus what sink.js cannot tell: ``unique_keys`` and
``duplicates`` by ``Idempotency-Key`` (a request repeating a key is a duplicate effect), and
``missing_key`` (requests without one). ``GET /reset`` zeroes everything.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_lock = threading.Lock()
_state: dict[str, Any] = {}
_keys: set[str] = set()


def _reset() -> None:
    with _lock:
        _state.clear()
        _state.update(
            count=0, bytes=0, bad=0, first=0, last=0, perSec={}, duplicates=0, missing_key=0
        )
        _keys.clear()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like node's http server

    def do_GET(self) -> None:  # noqa: N802
        if self.path.startswith("/reset"):
            _reset()
        with _lock:
            body = json.dumps({**_state, "unique_keys": len(_keys)}).encode()
        self._answer(body)

    def _effect(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        key = self.headers.get("Idempotency-Key")
        now = int(time.time() * 1000)
        with _lock:
            _state["count"] += 1
            _state["bytes"] += len(body)
            if _state["count"] % 97 == 1:  # light sanity check, as sink.js does
                try:
                    doc = json.loads(body)
                    if not doc.get("orderRef") or not isinstance(doc.get("lines"), list):
                        _state["bad"] += 1
                    _state["sample"] = doc
                except (ValueError, AttributeError):
                    _state["bad"] += 1
            if key is None:
                _state["missing_key"] += 1
            elif key in _keys:
                _state["duplicates"] += 1
            else:
                _keys.add(key)
            if not _state["first"]:
                _state["first"] = now
            _state["last"] = now
            sec = str(now // 1000)
            _state["perSec"][sec] = _state["perSec"].get(sec, 0) + 1
        self._answer(b'{"ok":true}')

    do_POST = do_PUT = do_PATCH = do_DELETE = _effect

    def _answer(self, body: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


def main() -> None:
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 9900
    _reset()
    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    print(f"sink on 127.0.0.1:{port}", flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
