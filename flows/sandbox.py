"""Evaluate JSONata in killable child processes: hard time, memory, depth and output limits.

``flows.mapping`` bounds an evaluation cooperatively: its deadline and depth are checked when
the evaluator enters or leaves an expression node, so one long native call runs straight
past them (a catastrophic regex ran 24 s under a 500 ms bound, ``$pad`` built 200 MB,
``$sum([1..10000000])`` takes about 30 s). ``SandboxedEvaluator`` runs ``mapping.evaluate``
and ``mapping.evaluate_condition`` in long-lived child processes instead:

* **Wall clock.** The parent waits ``timeout_ms + grace_ms`` for the answer (the child's own
  cooperative timeout fires first for ordinary loops); past that it SIGKILLs the child.
  As a backstop the child arms ``ITIMER_REAL`` around each evaluation with SIGALRM at its
  default action (terminate), so even an orphaned child cannot spin forever.
* **Memory.** The child runs under ``RLIMIT_AS`` (``memory_mb``, 256 by default): a huge
  ``$pad`` fails there with MemoryError and the parent's RSS does not move.
* **Depth and output size** are ``flows.mapping``'s (``Limits.max_depth``, Python's
  RecursionError, ``Limits.max_output_bytes``); a crash of the child (C stack overflow) is
  also caught.

Every such failure is raised as ``MappingError("resource_limit", ...)``: a hard kill, a
MemoryError, a dead child, and the library's own limit codes (D1012 timeout, D1011 depth,
D2014 range too large, F0002 output too large), whose code stays in the message and whose
position is kept. Every other error keeps its code, message and position (``$sum(`` is
still S0203 at 5). A child that was killed or ran out of memory is replaced at once, in a
background thread, so the caller (an RQ worker, a web thread) goes on with its next job and
that job does not pay the replacement's start-up (about 1 s on a loaded machine) on top of
its own time limit.

Design: a plain subprocess (``python -I -c ...``) speaking JSON lines over its stdin and
stdout, rather than ``multiprocessing``:

* no fork of the parent (it has threads, DB pools and Redis sockets) and, unlike
  multiprocessing's "spawn"/"forkserver", no re-import of the parent's ``__main__`` (gunicorn,
  RQ, pytest) in the child: the child imports ``flows.mapping`` and nothing else;
* JSON instead of pickle: the parent only ever parses plain data from the child, and a JSON
  round trip of mapping input and output is exact (the parent first applies mapping's own
  input check, which refuses what JSON would silently change: tuples, non-string keys, NaN);
* the child gets an explicit, minimal environment (no secrets, no database URL);
* ``subprocess.Popen`` starts it without ``preexec_fn`` (safe in a threaded parent), in its
  own session so a Ctrl-C to the parent's process group does not kill it; it exits when
  its stdin closes (the parent went away).

IPC cost per evaluation, ``ORDER_TO_OMS`` on the 20-line bench order (6 KB in, 2.5 ms to
evaluate): about 0.3 ms on an idle core (best case, paired with in-process runs), 0.5 to
0.8 ms median on a loaded 2-core machine; 0.1 ms for a trivial expression with no input.
It is the input checked and encoded here, decoded there, the result encoded and decoded,
and one pipe round trip. The child compiles each expression once and keeps mapping's cache.

Expressions in a bounded subset of JSONata (paths, object and array constructors, filters,
arithmetic, concatenation, common functions; no variables, recursion, regexes or ranges)
are answered in the parent by ``flows.compiled``, without a round trip, when its answer is
certain: the demo order mapping takes about 0.2 ms there instead of 2.7 ms here plus the
IPC. Its own work budget bounds it (tens of milliseconds at most); anything else, and any
error, is evaluated here.

A large input is decoded inside the hard deadline but before the cooperative clock starts,
so for inputs of several MB the parent's kill can come before the child's own D1012.

Threads: a pool of ``pool_size`` children (2 by default), each checked out by one thread
for one evaluation. A hostile evaluation holds only its own child, for at most its
deadline; a thread that finds every child busy waits for the first one back. Children are
started on first use, never at import (the first checkout starts one and the rest of the
pool in the background; ``warm_up()`` starts them all), and killed by ``close()`` or at
interpreter exit.
"""

from __future__ import annotations

import json
import logging
import os
import select
import signal
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from flows import compiled, mapping
from flows.mapping import Limits, MappingError

log = logging.getLogger(__name__)

RESOURCE_LIMIT = "resource_limit"
DEFAULT_MEMORY_MB = 256  # $pad("", 2e8, "x") (200 MB) fits under 512 and ran to the end
DEFAULT_POOL_SIZE = 2
DEFAULT_GRACE_MS = 250
STARTUP_TIMEOUT_S = 20.0  # a cold interpreter on a busy CI machine can take seconds
_BACKSTOP_EXTRA_S = 2.0  # the child's own SIGALRM, well after the parent's kill

# The library's codes for a limit it enforced itself.
_LIMIT_CODES = {
    "D1011": "depth limit",
    "D1012": "time limit",
    "D2014": "range size limit",
    "F0002": "output size limit",
}
_ROOT = str(Path(__file__).resolve().parent.parent)
_READ_CHUNK = 1 << 16


class MappingEvaluator(Protocol):
    """What the engine and the web layer need from an evaluator."""

    def evaluate(
        self, expression: str, data: Any, *, bindings: Mapping[str, Any] | None = None
    ) -> Any: ...

    def evaluate_condition(self, expression: str, data: Any) -> bool: ...


class InProcessEvaluator:
    """``flows.mapping`` in this process, with fixed limits (unit tests, trusted callers)."""

    def __init__(self, limits: Limits | None = None) -> None:
        self.limits = limits or Limits()

    def evaluate(
        self, expression: str, data: Any, *, bindings: Mapping[str, Any] | None = None
    ) -> Any:
        return mapping.evaluate(expression, data, bindings=bindings, limits=self.limits)

    def evaluate_condition(self, expression: str, data: Any) -> bool:
        return mapping.evaluate_condition(expression, data, limits=self.limits)


class SandboxedEvaluator:
    """``mapping.evaluate`` / ``evaluate_condition`` in a pool of killable child processes.

    Same semantics as ``flows.mapping`` except that every resource failure is raised as
    ``MappingError("resource_limit", ...)`` (see the module docstring). Thread-safe.
    """

    def __init__(
        self,
        limits: Limits | None = None,
        memory_mb: int = DEFAULT_MEMORY_MB,
        pool_size: int = DEFAULT_POOL_SIZE,
        *,
        grace_ms: int = DEFAULT_GRACE_MS,
    ) -> None:
        self.limits = limits or Limits()
        if not isinstance(self.limits, Limits):
            raise TypeError(f"limits must be a Limits, got {type(self.limits).__name__}")
        for name, value in (("memory_mb", memory_mb), ("pool_size", pool_size)):
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not isinstance(grace_ms, int) or grace_ms < 0:
            raise ValueError(f"grace_ms must be a non-negative integer, got {grace_ms!r}")
        self.memory_mb = memory_mb
        self.pool_size = pool_size
        self.grace_ms = grace_ms
        self._pool = _Pool(self._child_config(), pool_size)
        # Kills the children when this evaluator is collected, or at interpreter exit.
        self._finalizer = weakref.finalize(self, self._pool.close)

    @property
    def hard_timeout_s(self) -> float:
        """How long the parent waits for one evaluation before it kills the child."""
        return (self.limits.timeout_ms + self.grace_ms) / 1000

    def evaluate(
        self, expression: str, data: Any, *, bindings: Mapping[str, Any] | None = None
    ) -> Any:
        """Like ``mapping.evaluate``, with the evaluator's limits, in a child process."""
        variables = _checked_input(expression, data, bindings, self.limits)
        if variables is None:
            # The bounded subset in-process, no round trip (see flows.compiled)
            known = compiled.evaluate(
                expression, data, max_output_bytes=self.limits.max_output_bytes
            )
            if known is not compiled.UNKNOWN:
                return known
        return self._call(["e", expression, data, variables])

    def evaluate_condition(self, expression: str, data: Any) -> bool:
        """Like ``mapping.evaluate_condition``, with the evaluator's limits."""
        _checked_input(expression, data, None, self.limits)
        known = compiled.evaluate_condition(expression, data)  # the bounded subset in-process
        if known is not compiled.UNKNOWN:
            return bool(known)
        return bool(self._call(["c", expression, data, None]))

    def warm_up(self) -> None:
        """Start every child now instead of on first use (e.g. before taking traffic)."""
        self._pool.fill()

    def close(self) -> None:
        """Kill the children; later calls raise. Idempotent."""
        self._finalizer()

    def __enter__(self) -> SandboxedEvaluator:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _child_config(self) -> dict[str, Any]:
        limits = self.limits
        return {
            "limits": {
                "timeout_ms": limits.timeout_ms,
                "max_depth": limits.max_depth,
                "max_output_bytes": limits.max_output_bytes,
                "max_expression_chars": limits.max_expression_chars,
            },
            "memory_mb": self.memory_mb,
            "backstop_s": self.hard_timeout_s + _BACKSTOP_EXTRA_S,
        }

    def _call(self, request: list[Any]) -> Any:
        try:
            line = json.dumps(request, separators=(",", ":")).encode("ascii") + b"\n"
        except RecursionError:  # mapping itself would hit Python's stack limit too
            raise MappingError(RESOURCE_LIMIT, "the input is nested too deeply") from None
        child = self._pool.checkout()
        healthy = False
        try:
            text = child.ask(line, self.hard_timeout_s)
            reply = _decode_reply(text)
            healthy = reply[0] == 1 or not reply[4]  # reply[4]: the child wants replacing
        except _Overrun:
            log.warning("mapping.sandbox_killed pid=%s after %.2fs", child.pid, self.hard_timeout_s)
            raise MappingError(
                RESOURCE_LIMIT,
                f"the evaluation was stopped after {self.hard_timeout_s * 1000:.0f} ms"
                " (hard time limit)",
            ) from None
        except _ChildDied as exc:
            log.warning("mapping.sandbox_died pid=%s %s", child.pid, exc)
            raise MappingError(
                RESOURCE_LIMIT, f"the evaluation crashed its sandbox process ({exc})"
            ) from None
        finally:
            self._pool.checkin(child, healthy)
        if reply[0] == 1:
            return reply[1]
        raise _error_from_child(reply, self.memory_mb)


def _checked_input(
    expression: Any, data: Any, bindings: Mapping[str, Any] | None, limits: Limits
) -> dict[str, Any] | None:
    """Mapping's own input checks, in the parent: what passes survives JSON unchanged."""
    mapping._check_expression_text(expression, limits)
    mapping.check_json_input_once(data, "input data")
    if bindings is None:
        return None
    variables = dict(bindings)
    for name, value in variables.items():
        if not isinstance(name, str):
            raise MappingError("F0001", f"binding names must be strings, got {name!r}")
        mapping._check_json_input(value, f"binding ${name}")
    return variables


def _decode_reply(text: bytes) -> list[Any]:
    try:
        reply = json.loads(text)
    except RecursionError:
        # The child's recursion limit is jsonata-python's 10,000; this process may have less.
        return [0, "F0003", "the result is nested too deeply", None, False]
    except ValueError as exc:
        raise _ChildDied(f"unreadable reply: {exc}") from None
    if isinstance(reply, list) and (
        reply[:1] == [1] and len(reply) == 2 or reply[:1] == [0] and len(reply) == 5
    ):
        return reply
    raise _ChildDied("unexpected reply")


def _error_from_child(reply: list[Any], memory_mb: int) -> MappingError:
    _, code, message, position, out_of_memory = reply
    if out_of_memory:
        return MappingError(
            RESOURCE_LIMIT, f"the evaluation ran out of memory (limit {memory_mb} MB)", position
        )
    if code in _LIMIT_CODES:
        return MappingError(RESOURCE_LIMIT, f"{_LIMIT_CODES[code]}: {message} ({code})", position)
    return MappingError(code, message, position)


# --- the parent's side of one child ------------------------------------------------------


class _Overrun(Exception):
    pass


class _ChildDied(Exception):
    pass


class _Child:
    """One child process and the parent's ends of its pipes."""

    def __init__(self, config: dict[str, Any]) -> None:
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-I", "-c", _BOOT, _ROOT, json.dumps(config)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                env=_child_environment(),
                close_fds=True,
                start_new_session=True,
            )
        except OSError as exc:  # out of processes or memory
            raise MappingError("F0001", f"the mapping sandbox could not start: {exc}") from None
        self.pid = self.proc.pid
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self._in = self.proc.stdin.fileno()
        self._out = self.proc.stdout.fileno()
        os.set_blocking(self._in, False)
        os.set_blocking(self._out, False)
        self._poll_in = select.poll()
        self._poll_in.register(self._out, select.POLLIN)
        self._poll_out = select.poll()
        self._poll_out.register(self._in, select.POLLOUT)
        self._buffer = bytearray()
        try:
            ready = self._read_line(time.monotonic() + STARTUP_TIMEOUT_S)
        except (_Overrun, _ChildDied) as exc:
            self.kill()
            raise MappingError("F0001", f"the mapping sandbox could not start: {exc}") from None
        if ready != b'"ready"':
            self.kill()
            raise MappingError("F0001", "the mapping sandbox could not start: bad handshake")

    def ask(self, line: bytes, timeout_s: float) -> bytes:
        deadline = time.monotonic() + timeout_s
        self._write(line, deadline)
        return self._read_line(deadline)

    def _write(self, data: bytes, deadline: float) -> None:
        view = memoryview(data)
        while view:
            try:
                written = os.write(self._in, view)
            except BlockingIOError:
                written = 0
            except (BrokenPipeError, OSError) as exc:
                raise _ChildDied(self._exit_description()) from exc
            view = view[written:]
            if view and not self._poll_out.poll(_remaining_ms(deadline)):
                raise _Overrun

    def _read_line(self, deadline: float) -> bytes:
        while True:
            end = self._buffer.find(b"\n")
            if end >= 0:
                line = bytes(self._buffer[:end])
                del self._buffer[: end + 1]
                return line
            if not self._poll_in.poll(_remaining_ms(deadline)):
                raise _Overrun
            try:
                chunk = os.read(self._out, _READ_CHUNK)
            except BlockingIOError:
                continue
            if not chunk:
                raise _ChildDied(self._exit_description())
            self._buffer += chunk

    def _exit_description(self) -> str:
        try:
            code = self.proc.wait(timeout=1)
        except subprocess.TimeoutExpired:
            return "its output closed"
        if code < 0:
            try:
                return f"killed by {signal.Signals(-code).name}"
            except ValueError:
                return f"killed by signal {-code}"
        return f"exit status {code}"

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        try:
            self.proc.kill()
        except OSError:
            pass
        for pipe in (self.proc.stdin, self.proc.stdout):
            try:
                if pipe is not None:
                    pipe.close()
            except OSError:
                pass
        # A child that filled hundreds of MB takes ~0.1 s to exit: reap it later, not now.
        with _dying_lock:
            _dying.append(self.proc)
            _dying[:] = [proc for proc in _dying if proc.poll() is None]


_dying: list[subprocess.Popen[bytes]] = []  # killed children not yet reaped
_dying_lock = threading.Lock()


def _remaining_ms(deadline: float) -> int:
    return max(0, int((deadline - time.monotonic()) * 1000) + 1)


def _child_environment() -> dict[str, str]:
    """Nothing from the parent's environment (it may hold secrets) but the time zone."""
    env = {"PATH": os.defpath, "LC_ALL": "C.UTF-8", "PYTHONHASHSEED": "random"}
    if "TZ" in os.environ:
        env["TZ"] = os.environ["TZ"]
    return env


class _Pool:
    """At most ``size`` children; each is used by one thread at a time.

    Kept warm: the first checkout starts the rest of the pool in the background, and a child
    that is killed or dies in use is replaced in the background at once, so the next
    evaluation does not pay a child's start-up (about 150 ms idle, 1 s on a loaded machine)
    on top of its own time limit. A checkout that finds no idle child waits for one being
    started rather than starting another.
    """

    def __init__(self, config: dict[str, Any], size: int) -> None:
        self.config = config
        self.size = size
        self.cond = threading.Condition()
        self.idle: list[_Child] = []
        self.count = 0  # children started or starting, idle or checked out
        self.starting = 0  # of which being started in the background
        self.closed = False
        self.pid = os.getpid()

    def checkout(self) -> _Child:
        with self.cond:
            self._forget_if_forked()
            while True:
                if self.closed:
                    raise MappingError("F0001", "the mapping sandbox is closed")
                while self.idle:
                    child = self.idle.pop()  # the most recently used: warm caches
                    if child.alive():
                        return child
                    self.count -= 1
                    child.kill()
                if self.starting:
                    self.cond.wait()  # one is on its way: sooner than starting another
                    continue
                if self.count < self.size:
                    self.count += 1
                    break
                self.cond.wait()
        try:
            child = _Child(self.config)  # start outside the lock: it takes ~150 ms
        except BaseException:
            with self.cond:
                self.count -= 1
                self.cond.notify()
            raise
        with self.cond:
            self._start_in_background(self.size - self.count)  # the rest of the pool
        return child

    def checkin(self, child: _Child, healthy: bool) -> None:
        with self.cond:
            if healthy and not self.closed and self.pid == os.getpid():
                self.idle.append(child)
                self.cond.notify()
                return
            if self.pid == os.getpid():
                self.count -= 1
                self._start_in_background(1)  # its replacement, now rather than on demand
            self.cond.notify()
        child.kill()

    def _start_in_background(self, n: int) -> None:
        """Start up to ``n`` children in daemon threads (called with the lock held)."""
        if self.closed or self.pid != os.getpid():
            return
        for _ in range(max(0, min(n, self.size - self.count))):
            self.count += 1
            self.starting += 1
            threading.Thread(target=self._start_one, name="sandbox-start", daemon=True).start()

    def _start_one(self) -> None:
        try:
            child: _Child | None = _Child(self.config)
        except BaseException as exc:  # not retried here: the next checkout starts one
            log.warning("mapping.sandbox_start_failed %s", exc)
            child = None
        with self.cond:
            self.starting -= 1
            if child is not None and not self.closed and self.pid == os.getpid():
                self.idle.insert(0, child)  # the least recently used end
                child = None
            else:
                self.count -= 1
            self.cond.notify_all()
        if child is not None:  # the pool was closed meanwhile
            child.kill()

    def wait_warm(self, timeout_s: float) -> bool:
        """Wait until no child is being started; True when that happened in time."""
        deadline = time.monotonic() + timeout_s
        with self.cond:
            while self.starting:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self.cond.wait(remaining)
            return True

    def fill(self) -> None:
        started = [self.checkout() for _ in range(self.size)]
        for child in started:
            self.checkin(child, True)

    def close(self) -> None:
        with self.cond:
            self.closed = True
            idle, self.idle = self.idle, []
            if self.pid != os.getpid():
                return  # a forked copy: the children are the parent's
            self.count -= len(idle)
            self.cond.notify_all()
        for child in idle:
            child.kill()

    def _forget_if_forked(self) -> None:
        """After a fork (gunicorn --preload) the children and pipes belong to the parent."""
        if self.pid != os.getpid():
            for child in self.idle:
                for pipe in (child.proc.stdin, child.proc.stdout):
                    if pipe is not None:
                        pipe.close()
            self.idle = []
            self.count = 0
            self.starting = 0
            self.pid = os.getpid()


# --- a module-level evaluator per configuration ---------------------------------------

_shared: dict[tuple[Limits, int, int], SandboxedEvaluator] = {}
_shared_lock = threading.Lock()


def shared_evaluator(
    limits: Limits | None = None,
    memory_mb: int = DEFAULT_MEMORY_MB,
    pool_size: int = DEFAULT_POOL_SIZE,
) -> SandboxedEvaluator:
    """One evaluator per configuration for the whole process (nothing starts until used).

    Several Flask apps in one process (the tests) then share children instead of each
    starting its own.
    """
    key = (limits or Limits(), memory_mb, pool_size)
    with _shared_lock:
        evaluator = _shared.get(key)
        if evaluator is None or evaluator._pool.closed:
            evaluator = _shared[key] = SandboxedEvaluator(*key)
        return evaluator


# --- the child ---------------------------------------------------------------------------

# The child's command line: ``python -I -c _BOOT <project root> <config json>``. -I keeps
# the parent's PYTHON* variables, user site and working directory out of the child.
_BOOT = "import sys; sys.path.insert(0, sys.argv[1]); from flows.sandbox import _serve; _serve()"


def _serve() -> None:
    """The child's main loop: one JSON request per line on stdin, one reply per line."""
    import resource

    config = json.loads(sys.argv[2])
    # Replies go to a private copy of stdout; anything else printed goes to stderr.
    replies = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    requests = sys.stdin.buffer
    memory = config["memory_mb"] * 1024 * 1024
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        memory = min(memory, hard)
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    signal.signal(signal.SIGALRM, signal.SIG_DFL)  # an ignored SIGALRM survives exec
    limits = Limits(**config["limits"])
    backstop = float(config["backstop_s"])
    mapping._library()  # import jsonata-python before the first deadline starts
    _send(replies, "ready")
    for line in requests:
        signal.setitimer(signal.ITIMER_REAL, backstop)  # SIGALRM's default action: terminate
        try:
            reply = _answer(line, limits)
            text = json.dumps(reply, separators=(",", ":")).encode("ascii")
        except MemoryError:
            text = b'[0,"resource_limit","out of memory",null,true]'
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        replies.write(text + b"\n")
        replies.flush()


def _answer(line: bytes, limits: Limits) -> list[Any]:
    try:
        op, expression, data, bindings = json.loads(line)
        if op == "c":
            return [1, mapping.evaluate_condition(expression, data, limits=limits)]
        return [1, mapping.evaluate(expression, data, bindings=bindings, limits=limits)]
    except MappingError as exc:
        return [0, exc.code, exc.message, exc.position, _caused_by_memory(exc)]
    except MemoryError:
        return [0, RESOURCE_LIMIT, "out of memory", None, True]
    except Exception as exc:  # a bug of ours; the parent shows F0001 like mapping does
        return [0, "F0001", f"evaluation failed: {type(exc).__name__}", None, True]


def _caused_by_memory(exc: BaseException) -> bool:
    seen = 0
    cause: BaseException | None = exc
    while cause is not None and seen < 20:
        if isinstance(cause, MemoryError):
            return True
        cause = cause.__cause__ or cause.__context__
        seen += 1
    return False


def _send(stream: Any, value: Any) -> None:
    stream.write(json.dumps(value).encode("ascii") + b"\n")
    stream.flush()
