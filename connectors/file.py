"""File destination: CSV or JSON Lines written to a local folder or over SFTP.

Rules, each enforced at run time as well as by the schemas (stored configs may predate a fix):

* The file name comes from a template (``{run_key}``, ``{date}``, ``{time}``, ``{ext}``) and
  must expand to a plain relative path: no ``..`` or ``.`` segment, no absolute path, no
  backslash or NUL. The template must contain ``{run_key}`` (the delivery's idempotency key),
  so a retried delivery rewrites the same file instead of adding a second one: that is what
  ``idempotency="key"`` promises. ``{date}``/``{time}`` are the attempt's UTC time, so a
  retry that crosses them writes a new name; leave them out where duplicates matter.
* Nothing is written outside ``base_dir``. Locally, ``base_dir`` itself may be a symbolic
  link (it is resolved once), but every folder below it is opened with ``O_NOFOLLOW``, so a
  link planted inside can never redirect a write. Over SFTP the server resolves the target
  folder (``realpath``) and it must stay under the resolved ``base_dir``.
* Files appear atomically: the data goes to a temporary name in the target folder (fsynced
  locally), then is renamed over the final name; on failure the temporary file is removed.
* CSV cells that a spreadsheet would run as a formula (starting with ``= + - @``, tab or CR)
  get a leading single quote; numbers are written as they are.
* SFTP never trusts an unknown server: ``host_key`` (the public key or its SHA256
  fingerprint) is compared before any credential is sent.
"""

from __future__ import annotations

import base64
import contextlib
import csv
import errno
import io
import json
import math
import os
import posixpath
import re
import stat
import time
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

from connectors.base import (
    CheckResult,
    ConnectorContext,
    ConnectorError,
    ConnectorSpec,
    Destination,
    RetryableConnectorError,
    SendResult,
)
from connectors.redaction import Redactor
from connectors.tcp import open_checked_socket, os_reason

_DEFAULT_TIMEOUT_SECONDS = 10.0
_DEFAULT_FILENAME = "{run_key}.{ext}"
# A plain relative path built from safe characters and known placeholders, containing
# {run_key}, with no empty, "." or ".." segment.
FILENAME_PATTERN = (
    r"^(?=.*\{run_key\})(?!/)(?!.*//)(?!.*/$)(?!(?:.*/)?\.{1,2}(?:/|$))"
    r"(?:[A-Za-z0-9 ._/-]|\{(?:run_key|date|time|ext)\})+$"
)
_PLACEHOLDER = re.compile(r"\{(run_key|date|time|ext)\}")
_HOST_KEY_TYPES = {
    "ssh-ed25519": ["ssh-ed25519"],
    "ecdsa-sha2-nistp256": ["ecdsa-sha2-nistp256"],
    "ecdsa-sha2-nistp384": ["ecdsa-sha2-nistp384"],
    "ecdsa-sha2-nistp521": ["ecdsa-sha2-nistp521"],
    "ssh-rsa": ["rsa-sha2-512", "rsa-sha2-256"],  # the key type; SHA-1 signatures are off
}
HOST_KEY_PATTERN = (
    r"^(?:(ssh-ed25519|ecdsa-sha2-nistp(?:256|384|521)|ssh-rsa) ([A-Za-z0-9+/]+={0,3})"
    r"|SHA256:([A-Za-z0-9+/]{43})=?)$"
)
_FORMULA_STARTS = frozenset("=+-@\t\r")
# Failures that repeating cannot fix (missing folder, permissions, a link refused...).
_PERMANENT_ERRNOS = frozenset(
    {
        errno.EACCES,
        errno.EPERM,
        errno.ENOENT,
        errno.ENOTDIR,
        errno.EISDIR,
        errno.ELOOP,
        errno.EROFS,
        errno.ENAMETOOLONG,
        errno.EEXIST,
    }
)

CONNECTION_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "title": "File connection",
    "properties": {
        "transport": {
            "type": "string",
            "title": "Transport",
            "description": "local: a folder on the worker's machine; sftp: a folder on an "
            "SFTP server.",
            "enum": ["local", "sftp"],
            "default": "local",
        },
        "base_dir": {
            "type": "string",
            "title": "Base folder",
            "description": "Absolute path of the folder files are written to (on the SFTP "
            "server for sftp). It must exist; nothing is ever written outside it.",
            "pattern": r"^/[^\x00\\]*$",
            "maxLength": 1024,
            "errorMessage": {"pattern": "must be an absolute path (starting with /)"},
        },
        "host": {
            "type": "string",
            "title": "SFTP host",
            "description": "Name or address of the SFTP server.",
            "pattern": r"^[A-Za-z0-9.:\[\]-]+$",
            "maxLength": 253,
        },
        "port": {
            "type": "integer",
            "title": "SFTP port",
            "description": "TCP port of the SFTP server.",
            "default": 22,
            "minimum": 1,
            "maximum": 65535,
        },
        "username": {
            "type": "string",
            "title": "SFTP username",
            "description": "Account to log in as; store its password or private key as a secret.",
            "minLength": 1,
            "maxLength": 256,
        },
        "host_key": {
            "type": "string",
            "title": "Server host key",
            "description": "The server's public host key as 'ssh-ed25519 AAAA...' (the last "
            "two fields of `ssh-keyscan -t ed25519 HOST`) or its fingerprint 'SHA256:...' "
            "(`ssh-keygen -lf` on the server). Unknown keys are never accepted.",
            "pattern": HOST_KEY_PATTERN,
            "maxLength": 4096,
            "errorMessage": {
                "pattern": "must be 'TYPE BASE64' (ssh-ed25519, ecdsa-sha2-nistp256/384/521 "
                "or ssh-rsa) or 'SHA256:' followed by the 43-character fingerprint"
            },
        },
        "timeout_seconds": {
            "type": "number",
            "title": "Timeout (seconds)",
            "description": "Limit for connecting, the SSH handshake, login and each SFTP "
            "operation.",
            "default": _DEFAULT_TIMEOUT_SECONDS,
            "minimum": 0.1,
            "maximum": 120,
        },
    },
    "required": ["base_dir"],
    "additionalProperties": False,
    "allOf": [
        {
            "if": {"properties": {"transport": {"const": "sftp"}}, "required": ["transport"]},
            "then": {"required": ["host", "username", "host_key"]},
        }
    ],
}

STEP_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "title": "Write a file",
    "properties": {
        "format": {
            "type": "string",
            "title": "Format",
            "description": "csv: one row per record; jsonl: one JSON object per line.",
            "enum": ["csv", "jsonl"],
            "default": "csv",
        },
        "filename": {
            "type": "string",
            "title": "File name",
            "description": "Relative path under the base folder. Placeholders: {run_key} "
            "(required: the delivery's idempotency key, so a retry rewrites the same file), "
            "{date} (UTC YYYY-MM-DD), {time} (UTC HHMMSS), {ext} (csv or jsonl). A retry "
            "after {date} or {time} changed writes a new file. Sub-folders are created.",
            "default": _DEFAULT_FILENAME,
            "pattern": FILENAME_PATTERN,
            "maxLength": 200,
            "errorMessage": {
                "pattern": "must contain {run_key} and be a relative path of letters, digits, "
                "space . _ - / and the placeholders {run_key} {date} {time} {ext}, without "
                ". or .. segments"
            },
        },
        "columns": {
            "type": "array",
            "title": "CSV columns",
            "description": "Fields written as columns, in order; nested values are written "
            "as JSON. Empty: every field, in order of first appearance.",
            "items": {"type": "string", "minLength": 1, "maxLength": 256},
            "uniqueItems": True,
            "maxItems": 500,
            "default": [],
        },
        "include_header": {
            "type": "boolean",
            "title": "CSV header row",
            "description": "Write the column names as the first row.",
            "default": True,
        },
        "delimiter": {
            "type": "string",
            "title": "CSV delimiter",
            "description": "Separator between CSV cells (';' suits spreadsheets in many "
            "European locales).",
            "enum": [",", ";", "\t", "|"],
            "default": ",",
        },
    },
    "additionalProperties": False,
}

SPEC = ConnectorSpec(
    key="file",
    name="File (local or SFTP)",
    kind="destination",
    version=1,
    description="Write each message as a CSV or JSON Lines file to a local folder or an SFTP "
    "server, atomically, under a name that includes the delivery's key.",
    connection_schema=CONNECTION_SCHEMA,
    secret_fields=("password", "private_key", "private_key_passphrase"),
    step_schema=STEP_SCHEMA,
    requires_connection=True,
    idempotency="key",
)


class FileDestination(Destination):
    """Writes one file per delivery; see the module docstring for the rules."""

    spec = SPEC

    def send(self, ctx: ConnectorContext, message: Any, *, idempotency_key: str) -> SendResult:
        """Render ``message`` (an object or an array of objects) and write it atomically."""
        step = ctx.step_config
        records = _records(message)
        fmt = str(step.get("format", "csv"))
        data = render(step, records)
        parts = relative_path(
            str(step.get("filename", _DEFAULT_FILENAME)), idempotency_key, fmt, datetime.now(UTC)
        )
        started = time.monotonic()
        transport = _transport(ctx.connection_config)
        if transport == "local":
            _write_local(_base_dir(ctx.connection_config), parts, data)
        else:
            with _sftp(ctx) as sftp:
                _write_sftp(sftp, _base_dir(ctx.connection_config), parts, data)
        relative = "/".join(parts)
        ctx.logger.info(
            "connector.file.written transport=%s path=%s records=%d bytes=%d elapsed_ms=%d",
            transport,
            relative,
            len(records),
            len(data),
            round((time.monotonic() - started) * 1000),
        )
        return SendResult(
            status_code=None,
            response_excerpt=f"wrote {relative} ({len(records)} records, {len(data)} bytes)",
        )

    def check(self, ctx: ConnectorContext) -> CheckResult:
        """Local: the folder exists and takes a file. SFTP: log in and find the folder."""
        try:
            base = _base_dir(ctx.connection_config)
            if _transport(ctx.connection_config) == "local":
                _probe_local(base)
                return CheckResult(ok=True, message=f"{base} is a writable folder")
            started = time.monotonic()
            with _sftp(ctx) as sftp:
                root = _sftp_root(sftp, base)
                server_key = sftp.get_channel().get_transport().get_remote_server_key()
                elapsed_ms = round((time.monotonic() - started) * 1000)
        except ConnectorError as exc:
            return CheckResult(ok=False, message=exc.message)
        config = ctx.connection_config
        return CheckResult(
            ok=True,
            message=f"logged in to {config.get('host')}:{config.get('port', 22)} as "
            f"{config.get('username')} in {elapsed_ms} ms (host key {server_key.fingerprint}); "
            f"{root} is a folder",
        )


# --- rendering ---


def _records(message: Any) -> list[Mapping[str, Any]]:
    if isinstance(message, Mapping):
        return [message]
    if isinstance(message, list) and all(isinstance(item, Mapping) for item in message):
        return message
    raise ConnectorError("the message must be an object or an array of objects")


def render(step: Mapping[str, Any], records: list[Mapping[str, Any]]) -> bytes:
    """The file's bytes (UTF-8): CSV with neutralised cells, or one JSON object per line."""
    fmt = step.get("format", "csv")
    if fmt == "jsonl":
        try:
            lines = [
                json.dumps(r, ensure_ascii=False, allow_nan=False, separators=(",", ":")) + "\n"
                for r in records
            ]
        except (TypeError, ValueError) as exc:
            raise ConnectorError(f"the message cannot be written as JSON: {exc}") from None
        return "".join(lines).encode("utf-8")
    if fmt != "csv":
        raise ConnectorError(f"format {fmt!r} is not csv or jsonl")
    columns = list(step.get("columns") or _columns_seen(records))
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=str(step.get("delimiter", ",")), lineterminator="\r\n")
    if step.get("include_header", True):
        writer.writerow([neutralise(str(c)) for c in columns])
    for record in records:
        writer.writerow([cell(record.get(c)) for c in columns])
    return buffer.getvalue().encode("utf-8")


def _columns_seen(records: list[Mapping[str, Any]]) -> list[str]:
    seen: dict[str, None] = {}
    for record in records:
        seen.update((str(name), None) for name in record)
    return list(seen)


def cell(value: Any) -> str:
    """One CSV cell: text neutralised, numbers as written, nested values as JSON."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        if isinstance(value, float) and not math.isfinite(value):
            raise ConnectorError(f"the number {value} cannot be written to CSV")
        return str(value)  # a number cannot carry a formula, and -5 must stay -5
    if isinstance(value, str):
        return neutralise(value)
    try:
        return neutralise(json.dumps(value, ensure_ascii=False, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise ConnectorError(f"a CSV value cannot be written as JSON: {exc}") from None


def neutralise(text: str) -> str:
    """Prefix a quote so spreadsheets show the text instead of running it (CSV injection)."""
    return "'" + text if text[:1] in _FORMULA_STARTS else text


def relative_path(template: str, key: str, fmt: str, now: datetime) -> list[str]:
    """The expanded file name as path segments; ``ConnectorError`` unless it is safe."""
    if not re.search(FILENAME_PATTERN, template):
        raise ConnectorError(
            f"filename template {template!r} must contain {{run_key}} and be a plain relative "
            "path (no .., no absolute path, no backslash)"
        )
    values = {
        # Only characters that are safe in every file system; the mapping is deterministic.
        "run_key": re.sub(r"[^A-Za-z0-9._-]", "_", key),
        "date": now.strftime("%Y-%m-%d"),
        "time": now.strftime("%H%M%S"),
        "ext": fmt,
    }
    name = _PLACEHOLDER.sub(lambda m: values[m.group(1)], template)
    parts = name.split("/")
    if "\x00" in name or "\\" in name or any(p in ("", ".", "..") for p in parts):
        raise ConnectorError(f"file name {name!r} is not a plain relative path")
    return parts


# --- configuration ---


def _transport(config: Mapping[str, Any]) -> str:
    transport = config.get("transport", "local")
    if transport not in ("local", "sftp"):
        raise ConnectorError(f"transport {transport!r} is not local or sftp")
    return str(transport)


def _base_dir(config: Mapping[str, Any]) -> str:
    base = config.get("base_dir")
    if not isinstance(base, str) or not base.startswith("/") or "\x00" in base:
        raise ConnectorError("the connection's base_dir is missing or not an absolute path")
    return base


def _timeout(ctx: ConnectorContext) -> float:
    return float(ctx.connection_config.get("timeout_seconds", ctx.timeout_seconds))


# --- local folder ---


def _os_error(exc: OSError, what: str) -> ConnectorError:
    kind = ConnectorError if exc.errno in _PERMANENT_ERRNOS else RetryableConnectorError
    return kind(f"could not write {what}: {os_reason(exc)}")


def _open_root(base: str) -> int:
    try:
        root = os.path.realpath(base, strict=True)  # base_dir itself may be a link
        return os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise _os_error(exc, f"to base_dir {base}") from None


def _write_local(base: str, parts: list[str], data: bytes) -> None:
    dir_fd = _open_root(base)
    try:
        for part in parts[:-1]:
            dir_fd = _enter(dir_fd, part)
        try:
            _atomic_write(dir_fd, parts[-1], data)
        except OSError as exc:
            raise _os_error(exc, "/".join(parts)) from None
    finally:
        os.close(dir_fd)


def _enter(parent_fd: int, name: str) -> int:
    """Open (creating if needed) the folder ``name``; never through a symbolic link."""
    try:
        with contextlib.suppress(FileExistsError):
            os.mkdir(name, 0o777, dir_fd=parent_fd)
        fd = os.open(
            name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=parent_fd
        )
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise ConnectorError(
                f"{name!r} below base_dir is a symbolic link or not a folder; links below "
                "base_dir are never followed"
            ) from None
        raise _os_error(exc, f"folder {name!r}") from None
    os.close(parent_fd)
    return fd


def _atomic_write(dir_fd: int, name: str, data: bytes) -> None:
    temp = f".{name[:200]}.{os.urandom(6).hex()}.tmp"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(temp, flags, 0o666, dir_fd=dir_fd)  # 0o666: the umask decides, as for cp
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        # rename() replaces a link named like the target; it never writes through it.
        os.replace(temp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp, dir_fd=dir_fd)
        raise
    os.fsync(dir_fd)  # make the rename itself durable


def _probe_local(base: str) -> None:
    dir_fd = _open_root(base)
    try:
        _atomic_write(dir_fd, ".flowgate-check", b"")
        os.unlink(".flowgate-check", dir_fd=dir_fd)
    except OSError as exc:
        raise _os_error(exc, f"to base_dir {base}") from None
    finally:
        os.close(dir_fd)


# --- SFTP ---


@contextlib.contextmanager
def _sftp(ctx: ConnectorContext) -> Iterator[Any]:
    """A logged-in ``paramiko.SFTPClient``; every failure becomes a classified error."""
    import paramiko  # lazily: no import-time cost for flows that never use SFTP

    config, secrets = ctx.connection_config, ctx.secrets
    redact = Redactor(secrets.values())
    host, port, username = _sftp_target(config)
    expected = _expected_host_key(config)
    pkey = _private_key(secrets)
    password = secrets.get("password") or None
    if pkey is None and password is None:
        raise ConnectorError("no password or private_key is stored for this SFTP connection")
    timeout = _timeout(ctx)
    sock = open_checked_socket(ctx, host, port, timeout)
    try:
        transport = paramiko.Transport(sock)
    except BaseException:
        sock.close()
        raise
    try:
        transport.banner_timeout = transport.handshake_timeout = timeout
        transport.auth_timeout = timeout
        if expected[0] is not None:
            transport.get_security_options().key_types = _HOST_KEY_TYPES[expected[0]]
        transport.start_client(timeout=timeout)  # returns quietly when the time is up
        try:
            server_key = transport.get_remote_server_key()
        except paramiko.SSHException:
            raise RetryableConnectorError(
                f"no answer from {host}:{port} within {timeout:g} s"
            ) from None
        _verify_host_key(server_key, expected, host)
        _authenticate(transport, username, pkey, password)
        channel = transport.open_session(timeout=timeout)
        channel.settimeout(timeout)
        channel.invoke_subsystem("sftp")
        yield paramiko.SFTPClient(channel)
    except ConnectorError:
        raise
    except (paramiko.SSHException, OSError, EOFError) as exc:
        raise _sftp_error(exc, redact, host, port, timeout, username) from None
    finally:
        transport.close()


def _sftp_target(config: Mapping[str, Any]) -> tuple[str, int, str]:
    host, port, username = config.get("host"), config.get("port", 22), config.get("username")
    if not isinstance(host, str) or not host or not isinstance(username, str) or not username:
        raise ConnectorError("an sftp connection needs host and username")
    if not isinstance(port, int) or not 0 < port < 65536:
        raise ConnectorError(f"port {port!r} is not a TCP port")
    return host, port, username


def _expected_host_key(config: Mapping[str, Any]) -> tuple[str | None, str]:
    """(key type, base64 key) or (None, SHA256 fingerprint without padding)."""
    match = re.search(HOST_KEY_PATTERN, str(config.get("host_key") or ""))
    if match is None:
        raise ConnectorError(
            "the connection has no valid host_key: the server's key must be known in advance"
        )
    if match.group(3):
        return None, match.group(3)
    return match.group(1), match.group(2)


def _verify_host_key(key: Any, expected: tuple[str | None, str], host: str) -> None:
    key_type, value = expected
    if key_type is None:
        ok = key.fingerprint == f"SHA256:{value}"
    else:
        ok = key.asbytes() == base64.b64decode(value + "=" * (-len(value) % 4))
    if not ok:
        raise ConnectorError(
            f"host key mismatch: {host} presented {key.get_name()} {key.fingerprint}, which "
            "is not the configured host_key. Nothing was sent. If the server's key really "
            "changed, verify the new fingerprint with its administrator and update the "
            "connection."
        )


def _private_key(secrets: Mapping[str, str]) -> Any:
    text = secrets.get("private_key")
    if not text:
        return None
    import paramiko
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    passphrase = (secrets.get("private_key_passphrase") or "").encode() or None
    try:
        try:
            key: Any = serialization.load_ssh_private_key(text.encode(), passphrase)
        except ValueError:
            key = serialization.load_pem_private_key(text.encode(), passphrase)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        # The library's message is not shown: it is about the secret's content.
        raise ConnectorError(
            "the stored private_key cannot be read: expected an OpenSSH or PEM private key "
            "(with private_key_passphrase if it is encrypted)"
        ) from None
    classes = (
        (ed25519.Ed25519PrivateKey, paramiko.Ed25519Key),
        (ec.EllipticCurvePrivateKey, paramiko.ECDSAKey),
        (rsa.RSAPrivateKey, paramiko.RSAKey),
    )
    for crypto_class, paramiko_class in classes:
        if isinstance(key, crypto_class):
            openssh = key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.OpenSSH,
                serialization.NoEncryption(),
            )
            return paramiko_class.from_private_key(io.StringIO(openssh.decode()))
    raise ConnectorError("the stored private_key is not an Ed25519, ECDSA or RSA key")


def _authenticate(transport: Any, username: str, pkey: Any, password: str | None) -> None:
    import paramiko

    if pkey is not None:
        try:
            transport.auth_publickey(username, pkey)
            return
        except paramiko.AuthenticationException:
            if password is None:
                raise
    transport.auth_password(username, password)


def _sftp_error(
    exc: BaseException, redact: Redactor, host: str, port: int, timeout: float, username: str
) -> ConnectorError:
    import paramiko

    reason = redact(os_reason(exc))
    if isinstance(exc, paramiko.BadAuthenticationType):
        allowed = ", ".join(exc.allowed_types) or "none"
        return ConnectorError(f"{host} does not accept this login method (it allows {allowed})")
    if isinstance(exc, paramiko.AuthenticationException):
        return ConnectorError(
            f"{host} refused the login as {username!r}: wrong password or key not authorised"
        )
    if isinstance(exc, paramiko.ssh_exception.IncompatiblePeer):
        return ConnectorError(f"cannot agree on SSH algorithms with {host}: {reason}")
    if isinstance(exc, TimeoutError) or isinstance(exc.__context__, TimeoutError):
        return RetryableConnectorError(f"no answer from {host}:{port} within {timeout:g} s")
    if isinstance(exc, paramiko.SSHException | EOFError):
        return RetryableConnectorError(f"SSH session with {host}:{port} failed: {reason}")
    if isinstance(exc, ConnectionError):
        return RetryableConnectorError(f"connection to {host}:{port} failed: {reason}")
    assert isinstance(exc, OSError)
    kind = ConnectorError if exc.errno in _PERMANENT_ERRNOS else RetryableConnectorError
    return kind(f"SFTP operation on {host} failed: {reason}")


def _sftp_root(sftp: Any, base: str) -> str:
    try:
        root = str(sftp.normalize(base))
        mode = sftp.stat(root).st_mode
    except FileNotFoundError:
        raise ConnectorError(f"base_dir {base} does not exist on the server") from None
    if mode is None or not stat.S_ISDIR(mode):
        raise ConnectorError(f"base_dir {base} is not a folder on the server")
    return root


def _write_sftp(sftp: Any, base: str, parts: list[str], data: bytes) -> None:
    root = _sftp_root(sftp, base)
    real = root
    for depth, part in enumerate(parts[:-1], start=1):
        folder = posixpath.join(real, part)
        try:
            sftp.stat(folder)
        except FileNotFoundError:
            sftp.mkdir(folder)
        # The server resolves links: judge where each level points before going deeper.
        real = str(sftp.normalize(folder))
        if real != root and not real.startswith(root.rstrip("/") + "/"):
            sub = "/".join(parts[:depth])
            raise ConnectorError(f"{sub!r} resolves outside base_dir on the server; refused")
    target = posixpath.join(real, parts[-1])
    temp = posixpath.join(real, f".{parts[-1][:200]}.{os.urandom(6).hex()}.tmp")
    try:
        with sftp.open(temp, "wbx") as handle:
            handle.write(data)
        _sftp_replace(sftp, temp, target)
    except BaseException:
        with contextlib.suppress(Exception):
            sftp.remove(temp)
        raise


def _sftp_replace(sftp: Any, temp: str, target: str) -> None:
    try:
        sftp.posix_rename(temp, target)  # OpenSSH extension: atomic replace
    except OSError as exc:
        if exc.errno is not None:
            raise
        # No posix-rename@openssh.com: plain RENAME refuses to overwrite, so a retry removes
        # the old copy first (readers may briefly miss the file, never see a partial one).
        with contextlib.suppress(FileNotFoundError):
            sftp.remove(target)
        sftp.rename(temp, target)


CONNECTOR = FileDestination
