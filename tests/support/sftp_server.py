"""A real SFTP server on 127.0.0.1 for connector tests, built from paramiko's server classes.

It serves one local folder as the server's ``/`` (like a chroot: ``/upload`` is
``root/upload``), accepts one user by password and/or public key, and presents a freshly
generated Ed25519 host key. ``posix_rename=False`` imitates servers without OpenSSH's
``posix-rename@openssh.com`` extension; ``silent=True`` accepts connections and never answers
(for timeout tests).
"""

from __future__ import annotations

import contextlib
import io
import os
import posixpath
import socket
import threading
from pathlib import Path
from typing import Any

import paramiko
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from paramiko import SFTPAttributes, SFTPHandle, SFTPServer, SFTPServerInterface
from paramiko.sftp import SFTP_FAILURE, SFTP_OK, SFTP_OP_UNSUPPORTED


def new_ed25519_key() -> tuple[paramiko.Ed25519Key, str]:
    """A new key as paramiko's class, and its private half as OpenSSH PEM text."""
    private = ed25519.Ed25519PrivateKey.generate()
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.OpenSSH,
        serialization.NoEncryption(),
    ).decode()
    return paramiko.Ed25519Key.from_private_key(io.StringIO(pem)), pem


def public_line(key: paramiko.PKey) -> str:
    """The key as ``ssh-ed25519 AAAA...`` (what ``ssh-keyscan`` prints after the host)."""
    return f"{key.get_name()} {key.get_base64()}"


class SFTPTestServer:
    """Serves ``root`` over SFTP on an ephemeral loopback port until ``stop()``."""

    def __init__(
        self,
        root: Path,
        *,
        username: str = "flowgate",
        password: str | None = None,
        authorized_key: paramiko.PKey | None = None,
        posix_rename: bool = True,
        silent: bool = False,
    ) -> None:
        self.root = root
        self.username = username
        self.password = password
        self.authorized_key = authorized_key
        self.posix_rename = posix_rename
        self.silent = silent
        self.host_key, _ = new_ed25519_key()
        self.logins: list[tuple[str, str]] = []  # (username, method) of successful logins
        self.auth_attempts = 0
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(8)
        self.port: int = self._listener.getsockname()[1]
        self._transports: list[paramiko.Transport] = []
        self._sockets: list[socket.socket] = []
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._accept_loop, daemon=True)

    @property
    def host_key_line(self) -> str:
        return public_line(self.host_key)

    def start(self) -> SFTPTestServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept() on Linux
        self._listener.close()
        for transport in self._transports:
            transport.close()
        for sock in self._sockets:
            with contextlib.suppress(OSError):
                sock.close()
        self._thread.join(timeout=2)

    def _accept_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            self._sockets.append(conn)
            if not self.silent:
                threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        transport = paramiko.Transport(conn)
        self._transports.append(transport)
        transport.add_server_key(self.host_key)
        transport.set_subsystem_handler("sftp", SFTPServer, _RootedSFTP, test_server=self)
        with contextlib.suppress(Exception):  # clients that hang up early are expected
            transport.start_server(server=_Auth(self))


class _Auth(paramiko.ServerInterface):
    def __init__(self, server: SFTPTestServer) -> None:
        self.server = server

    def get_allowed_auths(self, username: str) -> str:
        methods = []
        if self.server.authorized_key is not None:
            methods.append("publickey")
        if self.server.password is not None:
            methods.append("password")
        return ",".join(methods) or "none"

    def check_auth_password(self, username: str, password: str) -> int:
        self.server.auth_attempts += 1
        wanted = self.server.password
        if username == self.server.username and wanted is not None and password == wanted:
            self.server.logins.append((username, "password"))
            return paramiko.AUTH_SUCCESSFUL
        return paramiko.AUTH_FAILED

    def check_auth_publickey(self, username: str, key: paramiko.PKey) -> int:
        self.server.auth_attempts += 1
        wanted = self.server.authorized_key
        if username == self.server.username and wanted is not None:
            if key.asbytes() == wanted.asbytes():
                self.server.logins.append((username, "publickey"))
                return paramiko.AUTH_SUCCESSFUL
        return paramiko.AUTH_FAILED

    def check_channel_request(self, kind: str, chanid: int) -> int:
        if kind == "session":
            return paramiko.OPEN_SUCCEEDED
        return paramiko.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED


class _RootedSFTP(SFTPServerInterface):
    """File operations on ``root``; paths are resolved (links too) as a real server does."""

    def __init__(self, server: Any, *args: Any, test_server: SFTPTestServer, **kwargs: Any):
        super().__init__(server, *args, **kwargs)
        self.test_server = test_server
        self.root = os.path.realpath(test_server.root)

    def _local(self, path: str) -> str:
        return os.path.join(self.root, posixpath.normpath("/" + path).lstrip("/"))

    def canonicalize(self, path: str) -> str:
        real = os.path.realpath(self._local(path))
        relative = os.path.relpath(real, self.root)
        return "/" if relative == "." else "/" + relative.replace(os.sep, "/")

    def open(self, path: str, flags: int, attr: SFTPAttributes) -> Any:
        local = self._local(path)
        try:
            fd = os.open(local, flags, 0o666)
        except OSError as exc:
            return SFTPServer.convert_errno(exc.errno)
        mode = "ab" if flags & os.O_APPEND else ("wb" if flags & os.O_WRONLY else "r+b")
        if not flags & (os.O_WRONLY | os.O_RDWR):
            mode = "rb"
        handle = SFTPHandle(flags)
        handle.filename = local
        handle.readfile = handle.writefile = os.fdopen(fd, mode)
        return handle

    def stat(self, path: str) -> Any:
        try:
            return SFTPAttributes.from_stat(os.stat(self._local(path)))
        except OSError as exc:
            return SFTPServer.convert_errno(exc.errno)

    def lstat(self, path: str) -> Any:
        try:
            return SFTPAttributes.from_stat(os.lstat(self._local(path)))
        except OSError as exc:
            return SFTPServer.convert_errno(exc.errno)

    def mkdir(self, path: str, attr: SFTPAttributes) -> int:
        return self._call(os.mkdir, self._local(path))

    def remove(self, path: str) -> int:
        return self._call(os.remove, self._local(path))

    def rename(self, oldpath: str, newpath: str) -> int:
        if os.path.lexists(self._local(newpath)):
            return SFTP_FAILURE  # standard SFTP RENAME never overwrites
        return self._call(os.rename, self._local(oldpath), self._local(newpath))

    def posix_rename(self, oldpath: str, newpath: str) -> int:
        if not self.test_server.posix_rename:
            return SFTP_OP_UNSUPPORTED
        return self._call(os.replace, self._local(oldpath), self._local(newpath))

    @staticmethod
    def _call(func: Any, *args: str) -> int:
        try:
            func(*args)
        except OSError as exc:
            return SFTPServer.convert_errno(exc.errno)
        return SFTP_OK
