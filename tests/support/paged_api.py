"""A real paginated JSON API on 127.0.0.1: ``GET /stock?cursor=<offset>&limit=<n>`` answers
``{"data": {"items": [...]}, "next": "<offset>" | null}`` over a list the test can grow.

``answers`` replaces the answer for one page (a source failing mid-pagination);
``always_next`` makes it a change feed, whose every page carries a next cursor (the offset
after its items), the last one too, even when it is empty."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


class PagedApi:
    def __init__(self, page_size: int = 3) -> None:
        self.items: list[dict[str, Any]] = []
        self.page_size = page_size
        self.requests: list[dict[str, Any]] = []  # {"path", "query", "headers"}
        self.status = 200
        self.delay = 0.0  # seconds before each answer
        self.raw_body: bytes | None = None  # answered as is (status 200) instead of a page
        # cursor of a page (None: the first page) -> (status, JSON body) answered instead
        self.answers: dict[str | None, tuple[int, Any]] = {}
        self.always_next = False
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def start(self) -> PagedApi:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def add(self, *items: dict[str, Any]) -> None:
        with self._lock:
            self.items.extend(items)

    def page(self, query: dict[str, str]) -> dict[str, Any]:
        start = int(query.get("cursor") or 0)
        limit = int(query.get("limit") or self.page_size)
        with self._lock:
            chunk = self.items[start : start + limit]
            more = start + limit < len(self.items)
        if self.always_next:
            return {"data": {"items": chunk}, "next": str(start + len(chunk))}
        return {"data": {"items": chunk}, "next": str(start + limit) if more else None}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        api = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                parts = urlsplit(self.path)
                query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
                headers = {k.lower(): v for k, v in self.headers.items()}
                api.requests.append({"path": parts.path, "query": query, "headers": headers})
                if api.delay:
                    time.sleep(api.delay)
                if api.raw_body is not None:
                    body, status = api.raw_body, 200
                elif api.status != 200:
                    body = json.dumps({"error": "unavailable"}).encode()
                    status = api.status
                elif query.get("cursor") in api.answers:
                    status, answer = api.answers[query.get("cursor")]
                    body = json.dumps(answer).encode()
                elif parts.path != "/stock":
                    body, status = b'{"error": "not found"}', 404
                else:
                    body, status = json.dumps(api.page(query)).encode(), 200
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler
