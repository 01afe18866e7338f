"""Run a trigger's ``consume()`` in a thread, recording what it hands over."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from connectors.base import ConnectorContext


class ThreadedConsumer:
    """consume() in a thread, with a handle that records calls (and may fail)."""

    def __init__(
        self,
        trigger: Any,
        ctx: ConnectorContext,
        fail: Callable[[Any], bool] | None = None,
    ) -> None:
        self.calls: list[tuple[Any, str | None]] = []
        self.fail = fail or (lambda message: False)
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self.trigger = trigger
        self.thread = threading.Thread(target=self._run, args=(ctx,), daemon=True)

    def handle(self, message: Any, event_id: str | None) -> None:
        self.calls.append((message, event_id))
        if self.fail(message):
            raise RuntimeError("database down")

    def _run(self, ctx: ConnectorContext) -> None:
        try:
            self.trigger.consume(ctx, self.handle, self.stop)
        except BaseException as exc:
            self.error = exc

    def __enter__(self) -> ThreadedConsumer:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop.set()
        self.thread.join(10)
        assert not self.thread.is_alive()


def wait_for(predicate: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("condition not met in time")
