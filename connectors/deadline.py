"""A total deadline for one outbound attempt, whatever the socket is doing.

Per-read timeouts cannot bound a peer that answers one byte every few seconds (reliability
case 12c, "slow drip"): each read returns in time, the attempt never ends. ``WATCHDOG.arm``
gives the calling thread's attempt a deadline; the connection classes of the egress guard
(``connectors.egress``) report the socket or connection the attempt uses (``watching``);
at the deadline one daemon thread shuts that socket down, so the blocked read or write
returns at once and the attempt fails. ``Alarm.disarm`` then says it was cut, and the
caller must not put that connection back in a pool.

Cheap on the hot path: arming is a lock and a heap push, no thread per request, and the
thread is woken only for a deadline earlier than the one it sleeps until. It starts on
first use (nothing happens at import) and again in a forked child.
"""

from __future__ import annotations

import heapq
import itertools
import math
import os
import socket
import threading
import time
from types import TracebackType
from typing import Any

# How soon the watchdog looks again at an attempt past its deadline: one that was on no
# socket yet (still resolving the name, say), or one that has not ended yet.
_RECHECK_SECONDS = 0.05
# Finished alarms wait in the heap until it is compacted, once they outnumber live ones.
_COMPACT_AFTER = 64


class Alarm:
    """One attempt's deadline. ``with`` disarms it on the way out, whatever happens."""

    __slots__ = ("at", "done", "interrupted", "target", "watchdog")

    def __init__(self, watchdog: Watchdog, at: float) -> None:
        self.watchdog = watchdog
        self.at = at
        self.done = False
        self.interrupted = False
        # What the attempt is using: a socket (while it connects) or a connection whose
        # ``sock`` it reads and writes (``watching``).
        self.target: Any = None

    def disarm(self) -> bool:
        """Stop watching (idempotent); True if the watchdog cut the attempt's socket.
        After this returns the watchdog can no longer touch it."""
        return self.watchdog.disarm(self)

    def __enter__(self) -> Alarm:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.watchdog.disarm(self)


class _Current(threading.local):
    alarm: Alarm | None = None


_current = _Current()


def watching(target: Any) -> None:
    """Called by the egress guard's connections: the calling thread's attempt (if it has a
    deadline) now uses ``target``, a new socket or a connection about to send a request."""
    alarm = _current.alarm
    if alarm is not None:
        alarm.target = target


class Watchdog:
    """One daemon thread that cuts off attempts still running at their deadline."""

    def __init__(self) -> None:
        self._fork_hook = False
        self._reset()

    def _reset(self) -> None:
        # Also runs in a forked child: the parent's thread, and any alarm of its other
        # threads, did not come along (and the lock may have been held at the fork).
        self._cond = threading.Condition(threading.Lock())
        self._heap: list[tuple[float, int, Alarm]] = []
        self._stale = 0  # finished alarms still in the heap
        self._seq = itertools.count()  # ties: never compare two alarms
        self._thread: threading.Thread | None = None
        self._wake_at = math.inf  # when the thread will look at the heap next

    def arm(self, seconds: float) -> Alarm:
        """Watch the calling thread's attempt from now until ``seconds`` from now."""
        alarm = Alarm(self, time.monotonic() + seconds)
        with self._cond:
            if self._thread is None:
                self._start()
            heapq.heappush(self._heap, (alarm.at, next(self._seq), alarm))
            if alarm.at < self._wake_at:
                self._wake_at = alarm.at
                self._cond.notify()
        _current.alarm = alarm
        return alarm

    def disarm(self, alarm: Alarm) -> bool:
        if _current.alarm is alarm:
            _current.alarm = None
        with self._cond:
            if not alarm.done:
                alarm.done = True
                alarm.target = None
                self._stale += 1
                if self._stale > _COMPACT_AFTER and 2 * self._stale > len(self._heap):
                    self._heap[:] = [entry for entry in self._heap if not entry[2].done]
                    heapq.heapify(self._heap)
                    self._stale = 0
            return alarm.interrupted

    def pending(self) -> int:
        """Attempts being watched right now."""
        with self._cond:
            return sum(1 for entry in self._heap if not entry[2].done)

    def _start(self) -> None:
        if not self._fork_hook:
            os.register_at_fork(after_in_child=self._reset)
            self._fork_hook = True
        self._thread = threading.Thread(target=self._run, name="http-deadline", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        cond = self._cond
        with cond:
            while True:
                now = time.monotonic()
                heap = self._heap
                while heap and (heap[0][2].done or heap[0][0] <= now):
                    alarm = heapq.heappop(heap)[2]
                    if alarm.done:
                        self._stale -= 1
                        continue
                    if _interrupt(alarm):
                        alarm.interrupted = True
                    # Looked at again until it ends: it may be on no socket yet.
                    heapq.heappush(heap, (now + _RECHECK_SECONDS, next(self._seq), alarm))
                # Finished alarms left at the top only cost an early wake-up.
                self._wake_at = heap[0][0] if heap else math.inf
                cond.wait(self._wake_at - now if heap else None)


def _interrupt(alarm: Alarm) -> bool:
    """Shut down the socket the attempt uses; False if it has none right now.

    Runs under the watchdog's lock, so the attempt cannot disarm and hand its connection
    back to a pool meanwhile. ``socket.socket.shutdown`` even for TLS: the SSLSocket
    override would try to unwrap under a reader in another thread.
    """
    target = alarm.target
    sock = target if isinstance(target, socket.socket) else getattr(target, "sock", None)
    if not isinstance(sock, socket.socket):
        return False
    try:
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
    except OSError:  # closed meanwhile: look again later
        return False
    return True


# One per process; its thread starts on the first ``arm``.
WATCHDOG = Watchdog()
