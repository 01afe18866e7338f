"""Fernet key rotation for stored secrets (SQLite and PostgreSQL): a new primary key in
FLOWGATE_SECRET_KEYS, old keys still decrypt, ``flask secrets rotate`` re-encrypts everything
with the primary (all or nothing, audited), and a bad key never shows in an error."""

from __future__ import annotations

from typing import Any

import pytest
from cryptography.fernet import Fernet, InvalidToken
from sqlalchemy import select

from app import runtime
from app.crypto import SecretBox, derived_key, generate_key
from app.extensions import db
from app.models import AuditEvent, Connection
from tests.support.live_flows import make_connection


def _use_keys(app: Any, keys: list[str]) -> None:
    app.config["FLOWGATE_SECRET_KEYS"] = keys
    app.extensions.pop("flowgate.secret_box", None)


def _tokens() -> dict[int, str]:
    db.session.expire_all()
    rows = db.session.execute(select(Connection).order_by(Connection.id)).scalars()
    return {row.id: row.secrets_encrypted for row in rows}


def _rotate(app: Any) -> Any:
    return app.test_cli_runner().invoke(args=["secrets", "rotate"])


def test_rotate_reencrypts_every_secret_with_the_new_primary_key(app):
    first = make_connection("http", {"base_url": "https://erp.example"}, {"token": "tok-1"})
    second = make_connection("http", {"base_url": "https://wms.example"}, {"password": "pw-2"})
    make_connection("http", {"base_url": "https://no-secrets.example"})
    before = _tokens()
    old = Fernet(derived_key(app.config["SECRET_KEY"]))
    new_key = generate_key()
    _use_keys(app, [new_key])

    # Before the rotation: old secrets still open (fallback), new ones use the new key.
    box = runtime.secret_box()
    assert box.decrypt(before[first]) == {"token": "tok-1"}
    assert Fernet(new_key).decrypt(box.encrypt({"a": "b"}).encode())

    result = _rotate(app)

    assert result.exit_code == 0, result.output
    assert "re-encrypted the secrets of 2 connection(s)" in result.output
    after = _tokens()
    for row_id, expected in ((first, {"token": "tok-1"}), (second, {"password": "pw-2"})):
        assert after[row_id] != before[row_id]
        assert Fernet(new_key).decrypt(after[row_id].encode())  # the new key alone opens it
        with pytest.raises(InvalidToken):
            old.decrypt(after[row_id].encode())
        assert runtime.secret_box().decrypt(after[row_id]) == expected
    event = db.session.execute(
        select(AuditEvent).where(AuditEvent.action == "secrets.rotated")
    ).scalar_one()
    assert event.detail["connections"] == 2


def test_rotate_between_two_listed_keys(app):
    key1, key2 = generate_key(), generate_key()
    _use_keys(app, [key1])
    row_id = make_connection("http", {"base_url": "https://erp.example"}, {"token": "tok"})
    _use_keys(app, [key2, key1])
    assert _rotate(app).exit_code == 0
    token = _tokens()[row_id]
    assert Fernet(key2).decrypt(token.encode())
    _use_keys(app, [key2])  # the old key can go now
    assert runtime.secret_box().decrypt(token) == {"token": "tok"}


def test_rotate_changes_nothing_when_a_secret_cannot_be_opened(app):
    readable = make_connection("http", {"base_url": "https://erp.example"}, {"token": "tok"})
    lost = SecretBox("some-other-installation").encrypt({"token": "x"})
    orphan = Connection(name="orphan", connector_key="http", config={}, secrets_encrypted=lost)
    db.session.add(orphan)
    db.session.commit()
    before = _tokens()
    _use_keys(app, [generate_key()])

    result = _rotate(app)

    assert result.exit_code != 0
    assert f"connection(s) {orphan.id}" in result.output and "nothing was changed" in result.output
    assert _tokens() == before
    assert runtime.secret_box().decrypt(before[readable]) == {"token": "tok"}


def test_a_malformed_key_is_named_by_position_never_echoed():
    with pytest.raises(ValueError) as error:
        SecretBox("k", [generate_key(), "not-a-fernet-key-hunter2"])
    assert "entry 2" in str(error.value) and "hunter2" not in str(error.value)
