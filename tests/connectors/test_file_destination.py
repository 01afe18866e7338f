"""FileDestination: local folder and a real SFTP server on 127.0.0.1 (tests/support)."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from jsonschema import Draft202012Validator

from connectors.base import ConnectorContext, ConnectorError, RetryableConnectorError
from connectors.config import config_problems
from connectors.egress import EgressDenied, EgressPolicy
from connectors.file import SPEC, FileDestination, relative_path
from tests.support.sftp_server import SFTPTestServer, new_ed25519_key, public_line

LOOPBACK = EgressPolicy.from_cidrs(["127.0.0.0/8"])
KEY = "fg-run-41-to_file"
PASSWORD = "pw-CANARY-5b1e0c77"


def make_ctx(
    connection: dict[str, Any],
    step: dict[str, Any] | None = None,
    secrets: dict[str, str] | None = None,
    egress: Any = LOOPBACK,
) -> ConnectorContext:
    return ConnectorContext(
        connection_config=connection,
        secrets=secrets or {},
        step_config=step or {},
        logger=logging.getLogger("tests.connectors.file"),
        http=None,
        egress=egress,
    )


def send(ctx: ConnectorContext, message: Any, key: str = KEY) -> Any:
    return FileDestination().send(ctx, message, idempotency_key=key)


def files(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@pytest.fixture
def base(tmp_path: Path) -> Path:
    folder = tmp_path / "out"
    folder.mkdir()
    return folder


# --- rendering, locally ---


def test_csv_neutralises_formula_cells_and_encodes_nested_values(base: Path) -> None:
    records = [
        {"sku": "=1+1", "note": "+SUM(A1)", "qty": -5, "price": 2.5},
        {"sku": "-2", "note": "@cmd", "qty": 0, "price": None},
        {"sku": "\tTAB", "note": "\rCR", "qty": True, "price": {"net": 1}},
        {"sku": 'plain, "quoted"', "note": "Zoë\nline two", "qty": [1, 2]},
    ]
    step = {"columns": ["sku", "note", "qty", "price"], "filename": "{run_key}.{ext}"}

    result = send(make_ctx({"base_dir": str(base)}, step), records)

    expected = (
        "sku,note,qty,price\r\n"
        "'=1+1,'+SUM(A1),-5,2.5\r\n"
        "'-2,'@cmd,0,\r\n"
        '\'\tTAB,"\'\rCR",true,"{""net"": 1}"\r\n'
        '"plain, ""quoted""","Zoë\nline two","[1, 2]",\r\n'
    ).encode()
    assert (base / f"{KEY}.csv").read_bytes() == expected
    assert result.status_code is None
    assert result.response_excerpt == f"wrote {KEY}.csv (4 records, {len(expected)} bytes)"


def test_csv_columns_default_to_first_appearance_and_header_is_optional(base: Path) -> None:
    step = {"include_header": False, "delimiter": ";"}
    send(make_ctx({"base_dir": str(base)}, step), [{"b": 1, "a": 2}, {"c": "=x", "a": 3}])
    assert (base / f"{KEY}.csv").read_bytes() == b"1;2;\r\n;3;'=x\r\n"


def test_jsonl_writes_one_object_per_line(base: Path) -> None:
    message = [{"id": 1, "name": "Zoë", "tags": ["a"]}, {"id": 2, "formula": "=1+1"}]
    send(make_ctx({"base_dir": str(base)}, {"format": "jsonl"}), message)
    lines = (base / f"{KEY}.jsonl").read_text("utf-8").splitlines()
    assert [json.loads(line) for line in lines] == message  # JSON is data: nothing escaped
    assert lines[0] == '{"id":1,"name":"Zoë","tags":["a"]}'


def test_one_object_is_one_record(base: Path) -> None:
    send(make_ctx({"base_dir": str(base)}, {"format": "jsonl"}), {"id": 7})
    assert (base / f"{KEY}.jsonl").read_text() == '{"id":7}\n'


@pytest.mark.parametrize("message", ["text", 3, [1, 2], [{"a": 1}, "b"], None])
def test_message_must_be_an_object_or_array_of_objects(base: Path, message: Any) -> None:
    with pytest.raises(ConnectorError, match="object") as info:
        send(make_ctx({"base_dir": str(base)}), message)
    assert not info.value.retryable
    assert files(base) == []


def test_placeholders_build_a_sub_path_and_folders_are_created(base: Path) -> None:
    step = {"filename": "orders/{date}/batch_{run_key}_{time}.{ext}"}
    before = datetime.now(UTC)
    send(make_ctx({"base_dir": str(base)}, step), {"id": 1}, key="fg-run-9:weird key/x")
    [written] = [p for p in base.rglob("*") if p.is_file()]
    rel = written.relative_to(base).parts
    assert rel[:2] == ("orders", before.strftime("%Y-%m-%d"))
    assert rel[2].startswith("batch_fg-run-9_weird_key_x_") and rel[2].endswith(".csv")


def test_resending_the_same_key_rewrites_the_same_file(base: Path) -> None:
    ctx = make_ctx({"base_dir": str(base)})
    send(ctx, {"id": 1})
    first = (base / f"{KEY}.csv").read_bytes()
    send(ctx, {"id": 1})
    assert files(base) == [f"{KEY}.csv"]  # no second file, no temp file left
    assert (base / f"{KEY}.csv").read_bytes() == first


# --- path safety and atomicity ---


@pytest.mark.parametrize(
    "template",
    [
        "../{run_key}.csv",
        "a/../../{run_key}.csv",
        "/etc/{run_key}.csv",
        "a\\{run_key}.csv",
        "{run_key}\x00.csv",
        "./{run_key}.csv",
        "a//{run_key}.csv",
        "{run_key}/",
        "orders.csv",  # no {run_key}: a retry would not be idempotent
        "{run_key}{user}.csv",
    ],
)
def test_unsafe_filename_templates_are_refused(base: Path, template: str) -> None:
    assert [p for p, _ in config_problems(SPEC.step_schema, {"filename": template})] == [
        "/filename"
    ]
    with pytest.raises(ConnectorError, match="plain relative path") as info:
        send(make_ctx({"base_dir": str(base)}, {"filename": template}), {"id": 1})
    assert not info.value.retryable
    assert files(base.parent) == ["out"]


def test_a_key_expanding_to_a_dot_segment_is_refused() -> None:
    now = datetime.now(UTC)
    assert relative_path("{run_key}/x.{ext}", "k", "csv", now) == ["k", "x.csv"]
    for key in ("..", "."):
        with pytest.raises(ConnectorError, match="not a plain relative path"):
            relative_path("{run_key}/x.{ext}", key, "csv", now)


def test_symlinked_folder_below_base_dir_is_refused(base: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (base / "link").symlink_to(outside)
    step = {"filename": "link/{run_key}.{ext}"}
    with pytest.raises(ConnectorError, match="symbolic link") as info:
        send(make_ctx({"base_dir": str(base)}, step), {"id": 1})
    assert not info.value.retryable
    assert list(outside.iterdir()) == []


def test_a_link_named_like_the_target_is_replaced_not_written_through(
    base: Path, tmp_path: Path
) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("untouched")
    (base / f"{KEY}.csv").symlink_to(victim)
    send(make_ctx({"base_dir": str(base)}), {"id": 1})
    assert victim.read_text() == "untouched"
    assert not (base / f"{KEY}.csv").is_symlink()
    assert (base / f"{KEY}.csv").read_bytes() == b"id\r\n1\r\n"


def test_base_dir_may_itself_be_a_link(base: Path, tmp_path: Path) -> None:
    (tmp_path / "alias").symlink_to(base)
    send(make_ctx({"base_dir": str(tmp_path / "alias")}), {"id": 1})
    assert files(base) == [f"{KEY}.csv"]


def test_failed_write_leaves_no_partial_or_temp_file(base: Path) -> None:
    (base / f"{KEY}.csv").mkdir()  # rename over a folder fails after the data was written
    with pytest.raises(ConnectorError) as info:
        send(make_ctx({"base_dir": str(base)}), {"id": 1})
    assert not info.value.retryable
    assert files(base) == [f"{KEY}.csv"]  # only the folder: the temp file was removed


def test_missing_base_dir_is_permanent(tmp_path: Path) -> None:
    with pytest.raises(ConnectorError, match="base_dir") as info:
        send(make_ctx({"base_dir": str(tmp_path / "nope")}), {"id": 1})
    assert not info.value.retryable


@pytest.mark.parametrize("config", [{}, {"base_dir": "relative/dir"}, {"transport": "ftp"}])
def test_broken_connection_config_is_permanent(config: dict[str, Any]) -> None:
    with pytest.raises(ConnectorError) as info:
        send(make_ctx(config), {"id": 1})
    assert not info.value.retryable


def test_check_local_reports_a_writable_folder_or_the_reason(base: Path, tmp_path: Path) -> None:
    result = FileDestination().check(make_ctx({"base_dir": str(base)}))
    assert result.ok and result.message == f"{base} is a writable folder"
    assert files(base) == []  # the probe file is gone
    missing = FileDestination().check(make_ctx({"base_dir": str(tmp_path / "nope")}))
    assert not missing.ok
    assert "No such file or directory" in missing.message


# --- SFTP against a real server ---


@pytest.fixture
def server_root(tmp_path: Path) -> Path:
    root = tmp_path / "sftp-root"
    (root / "upload").mkdir(parents=True)
    return root


@pytest.fixture
def sftp_server(server_root: Path) -> Iterator[SFTPTestServer]:
    server = SFTPTestServer(server_root, password=PASSWORD).start()
    yield server
    server.stop()


def sftp_connection(server: SFTPTestServer, **overrides: Any) -> dict[str, Any]:
    return {
        "transport": "sftp",
        "host": "127.0.0.1",
        "port": server.port,
        "username": "flowgate",
        "base_dir": "/upload",
        "host_key": server.host_key_line,
        "timeout_seconds": 3,
        **overrides,
    }


def test_sftp_writes_the_file_atomically_with_a_password(
    sftp_server: SFTPTestServer, server_root: Path
) -> None:
    step = {"format": "jsonl", "filename": "in/{run_key}.{ext}"}
    ctx = make_ctx(sftp_connection(sftp_server), step, {"password": PASSWORD})

    result = send(ctx, [{"id": 1}, {"id": 2}])

    assert (server_root / "upload" / "in" / f"{KEY}.jsonl").read_text() == '{"id":1}\n{"id":2}\n'
    assert files(server_root / "upload") == ["in", f"in/{KEY}.jsonl"]
    assert result.response_excerpt == f"wrote in/{KEY}.jsonl (2 records, 18 bytes)"
    assert sftp_server.logins == [("flowgate", "password")]


def test_sftp_resend_replaces_the_file_even_without_posix_rename(server_root: Path) -> None:
    server = SFTPTestServer(server_root, password=PASSWORD, posix_rename=False).start()
    try:
        ctx = make_ctx(sftp_connection(server), {}, {"password": PASSWORD})
        send(ctx, {"id": 1})
        send(ctx, {"id": 2})
    finally:
        server.stop()
    assert files(server_root / "upload") == [f"{KEY}.csv"]
    assert (server_root / "upload" / f"{KEY}.csv").read_bytes() == b"id\r\n2\r\n"


@pytest.mark.parametrize("form", ["openssh", "pkcs8", "encrypted"])
def test_sftp_logs_in_with_a_private_key(server_root: Path, form: str) -> None:
    client_key, pem = new_ed25519_key()
    secrets = {"private_key": pem}
    if form != "openssh":
        loaded = serialization.load_ssh_private_key(pem.encode(), None)
        encrypted = form == "encrypted"
        secrets["private_key"] = loaded.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.OpenSSH if encrypted else serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"pass-CANARY")
            if encrypted
            else serialization.NoEncryption(),
        ).decode()
        if encrypted:
            secrets["private_key_passphrase"] = "pass-CANARY"
    server = SFTPTestServer(server_root, authorized_key=client_key).start()
    try:
        send(make_ctx(sftp_connection(server), {}, secrets), {"id": 1})
        if form == "encrypted":  # a wrong passphrase is a permanent, unquoted error
            secrets["private_key_passphrase"] = "wrong"
            with pytest.raises(ConnectorError, match="private_key cannot be read") as info:
                send(make_ctx(sftp_connection(server), {}, secrets), {"id": 1})
            assert "CANARY" not in str(info.value)
    finally:
        server.stop()
    assert server.logins == [("flowgate", "publickey")]
    assert (server_root / "upload" / f"{KEY}.csv").exists()


def test_sftp_accepts_the_host_key_fingerprint(
    sftp_server: SFTPTestServer, server_root: Path
) -> None:
    config = sftp_connection(sftp_server, host_key=sftp_server.host_key.fingerprint)
    send(make_ctx(config, {}, {"password": PASSWORD}), {"id": 1})
    assert (server_root / "upload" / f"{KEY}.csv").exists()


@pytest.mark.parametrize("form", ["key", "fingerprint"])
def test_sftp_host_key_mismatch_is_permanent_and_no_credential_is_sent(
    sftp_server: SFTPTestServer, server_root: Path, form: str
) -> None:
    other, _ = new_ed25519_key()
    host_key = public_line(other) if form == "key" else other.fingerprint
    ctx = make_ctx(sftp_connection(sftp_server, host_key=host_key), {}, {"password": PASSWORD})
    with pytest.raises(ConnectorError, match="host key mismatch") as info:
        send(ctx, {"id": 1})
    assert not info.value.retryable
    assert sftp_server.host_key.fingerprint in info.value.message
    assert sftp_server.auth_attempts == 0
    assert files(server_root / "upload") == []


def test_sftp_wrong_password_is_permanent_and_never_echoed(
    sftp_server: SFTPTestServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = "wrong-CANARY-0d9c8b7a"
    ctx = make_ctx(sftp_connection(sftp_server), {}, {"password": wrong})
    with pytest.raises(ConnectorError, match="refused the login as 'flowgate'") as info:
        send(ctx, {"id": 1})
    assert not info.value.retryable
    check = FileDestination().check(ctx)
    assert not check.ok and "wrong password" in check.message
    texts = [str(info.value), info.value.response_excerpt, check.message, caplog.text]
    texts += [r.getMessage() for r in caplog.records]
    assert not any(wrong in text for text in texts)


def test_sftp_unreadable_private_key_is_permanent_and_not_quoted(
    sftp_server: SFTPTestServer, connect_log: list[Any]
) -> None:
    canary = (
        "-----BEGIN OPENSSH PRIVATE KEY-----\nKEY-CANARY-77aa\n-----END OPENSSH PRIVATE KEY-----"
    )
    ctx = make_ctx(sftp_connection(sftp_server), {}, {"private_key": canary})
    with pytest.raises(ConnectorError, match="private_key cannot be read") as info:
        send(ctx, {"id": 1})
    assert "KEY-CANARY" not in str(info.value)
    assert connect_log == []  # refused before connecting


def test_sftp_closed_port_is_retryable(closed_port: int) -> None:
    config = {
        "transport": "sftp",
        "host": "127.0.0.1",
        "port": closed_port,
        "username": "u",
        "base_dir": "/upload",
        "host_key": public_line(new_ed25519_key()[0]),
    }
    ctx = make_ctx(config, {}, {"password": PASSWORD})
    with pytest.raises(RetryableConnectorError, match="Connection refused"):
        send(ctx, {"id": 1})
    check = FileDestination().check(ctx)
    assert not check.ok and "Connection refused" in check.message


def test_sftp_silent_server_times_out_as_retryable(server_root: Path) -> None:
    server = SFTPTestServer(server_root, password=PASSWORD, silent=True).start()
    try:
        ctx = make_ctx(sftp_connection(server, timeout_seconds=0.3), {}, {"password": PASSWORD})
        started = time.monotonic()
        with pytest.raises(RetryableConnectorError, match="no answer from .* within 0.3 s"):
            send(ctx, {"id": 1})
        assert time.monotonic() - started < 2
    finally:
        server.stop()


def test_sftp_refuses_a_link_that_leaves_base_dir(
    sftp_server: SFTPTestServer, server_root: Path
) -> None:
    (server_root / "elsewhere").mkdir()
    (server_root / "upload" / "link").symlink_to(server_root / "elsewhere")
    step = {"filename": "link/deeper/{run_key}.{ext}"}
    ctx = make_ctx(sftp_connection(sftp_server), step, {"password": PASSWORD})
    with pytest.raises(ConnectorError, match="outside base_dir") as info:
        send(ctx, {"id": 1})
    assert not info.value.retryable
    assert list((server_root / "elsewhere").iterdir()) == []


def test_sftp_missing_base_dir_is_permanent(sftp_server: SFTPTestServer) -> None:
    config = sftp_connection(sftp_server, base_dir="/nope")
    with pytest.raises(ConnectorError, match="does not exist") as info:
        send(make_ctx(config, {}, {"password": PASSWORD}), {"id": 1})
    assert not info.value.retryable


def test_sftp_check_logs_in_and_names_the_host_key(sftp_server: SFTPTestServer) -> None:
    ctx = make_ctx(sftp_connection(sftp_server), {}, {"password": PASSWORD})
    result = FileDestination().check(ctx)
    assert result.ok, result.message
    assert "as flowgate" in result.message
    assert sftp_server.host_key.fingerprint in result.message
    assert result.message.endswith("/upload is a folder")


def test_sftp_egress_refusal_sends_no_packet(
    sftp_server: SFTPTestServer, connect_log: list[Any]
) -> None:
    ctx = make_ctx(sftp_connection(sftp_server), {}, {"password": PASSWORD}, egress=EgressPolicy())
    with pytest.raises(EgressDenied) as info:
        send(ctx, {"id": 1})
    assert not info.value.retryable
    assert "loopback" in info.value.message
    assert not FileDestination().check(ctx).ok
    assert connect_log == []


def test_sftp_without_an_egress_policy_is_refused(
    sftp_server: SFTPTestServer, connect_log: list[Any]
) -> None:
    ctx = make_ctx(sftp_connection(sftp_server), {}, {"password": PASSWORD}, egress=None)
    with pytest.raises(ConnectorError, match="no egress policy"):
        send(ctx, {"id": 1})
    assert connect_log == []


# --- the spec ---


def test_spec_schemas_are_valid_and_describe_every_field() -> None:
    for schema in (SPEC.connection_schema, SPEC.step_schema):
        Draft202012Validator.check_schema(schema)
        assert schema["additionalProperties"] is False
        for name, prop in schema["properties"].items():
            assert prop.get("title") and prop.get("description"), name
    assert SPEC.secret_fields == ("password", "private_key", "private_key_passphrase")
    assert (SPEC.key, SPEC.kind, SPEC.idempotency) == ("file", "destination", "key")


def test_connection_schema_problems() -> None:
    assert config_problems(SPEC.connection_schema, {"base_dir": "/srv/out"}) == []
    assert [p for p, _ in config_problems(SPEC.connection_schema, {"transport": "sftp"})] == [
        "/base_dir",
        "/host",
        "/host_key",
        "/username",
    ]
    bad = {"base_dir": "out", "host_key": "AAAA", "port": 0, "extra": 1}
    assert [p for p, _ in config_problems(SPEC.connection_schema, bad)] == [
        "/base_dir",
        "/extra",
        "/host_key",
        "/port",
    ]
    fingerprint = "SHA256:" + "A" * 43
    sftp = {"transport": "sftp", "base_dir": "/in", "host": "sftp.example.com", "username": "u"}
    assert config_problems(SPEC.connection_schema, {**sftp, "host_key": fingerprint}) == []


def test_step_schema_accepts_the_documented_shapes() -> None:
    good = {
        "format": "csv",
        "filename": "orders/{date}/{run_key}-{time}.{ext}",
        "columns": ["sku", "qty"],
        "include_header": True,
        "delimiter": ";",
    }
    assert config_problems(SPEC.step_schema, good) == []
    assert config_problems(SPEC.step_schema, {}) == []
    assert [p for p, _ in config_problems(SPEC.step_schema, {"format": "xml"})] == ["/format"]
    assert [p for p, _ in config_problems(SPEC.step_schema, {"columns": ["a", "a"]})] == [
        "/columns"
    ]


def test_module_imports_no_driver_at_import_time() -> None:
    import subprocess
    import sys

    code = "import sys, connectors.file; assert 'paramiko' not in sys.modules"
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, timeout=30)
    assert done.returncode == 0, done.stderr
