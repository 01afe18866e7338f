"""`flask users create` holds passwords to the same policy as the admin API (12 characters)."""

from __future__ import annotations

from app.services.users import find_user


def test_cli_refuses_a_short_password_and_accepts_a_long_one(app):
    runner = app.test_cli_runner()
    short = runner.invoke(
        args=["users", "create", "kim@example.test", "--role", "owner", "--password", "eight888"]
    )
    assert short.exit_code != 0 and "at least 12 characters" in short.output
    assert find_user("kim@example.test") is None
    ok = runner.invoke(
        args=["users", "create", "kim@example.test", "--role", "owner", "--password", "x" * 12]
    )
    assert ok.exit_code == 0, ok.output
    assert find_user("kim@example.test").role == "owner"
