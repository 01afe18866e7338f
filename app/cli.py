"""Flask CLI commands: ``flask --app app users create|token|role``, ``audit verify``,
``seed-demo``, ``sweep``."""

from __future__ import annotations

import click
from flask import Flask, current_app
from flask.cli import AppGroup

from app.cli_secrets import secrets_cli
from app.errors import ServiceError

users_cli = AppGroup("users", help="Manage users and API tokens.")


@users_cli.command("create")
@click.argument("email")
@click.option("--role", type=click.Choice(["analyst", "owner", "admin"]), required=True)
@click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True)
@click.option("--name", default="")
def create_user_command(email: str, role: str, password: str, name: str) -> None:
    """Create a user."""
    from app.services.users import create_user

    try:
        user = create_user(email, role, password, name)
    except ServiceError as exc:
        raise click.ClickException(exc.detail) from exc
    click.echo(f"created user {user.id} {user.email} ({user.role})")


@users_cli.command("token")
@click.argument("email")
@click.option("--name", default="cli", help="A label to recognise the token by.")
def token_command(email: str, name: str) -> None:
    """Print a new API token for EMAIL (alone on the last line; shown only once)."""
    from app.auth import issue_token
    from app.services.users import find_user

    user = find_user(email)
    if user is None:
        raise click.ClickException(f"no user {email}")
    token = issue_token(user, name)
    click.echo(f"API token for {user.email} (store it now; it is not shown again):")
    click.echo(token)


@users_cli.command("role")
@click.argument("email")
@click.argument("role", type=click.Choice(["analyst", "owner", "admin"]))
def role_command(email: str, role: str) -> None:
    """Change EMAIL's role to ROLE (audited as user.role_changed)."""
    from app.extensions import db
    from app.services import audit
    from app.services.users import find_user

    user = find_user(email)
    if user is None:
        raise click.ClickException(f"no user {email}")
    previous = user.role
    if previous == role:
        click.echo(f"{user.email} is already {role}")
        return
    user.role = role
    audit.record(
        None,
        "user.role_changed",
        "user",
        user.id,
        email=user.email,
        role=role,
        previous=previous,
        via="cli",
    )
    db.session.commit()
    click.echo(f"{user.email}: {previous} -> {role}")


audit_cli = AppGroup("audit", help="The hash-chained audit log.")


@audit_cli.command("verify")
def audit_verify_command() -> None:
    """Walk the audit chain in id order: OK and the count, or the first broken link (exit 1)."""
    from app.services.audit import verify_chain

    report = verify_chain()
    if report.ok:
        click.echo(f"OK: {report.checked} audit events, chain intact")
        return
    click.echo(
        f"BROKEN: audit event {report.first_broken_id} does not match the chain"
        f" (event {report.checked} in id order)",
        err=True,
    )
    raise SystemExit(1)


@click.command("seed-demo")
@click.option("--base-url", default=None, help="Where this server is reachable (for the demo OMS).")
def seed_demo_command(base_url: str | None) -> None:
    """Create the demo users, systems, connection and live flow (once)."""
    from app.demo.seed import seed_demo

    url = base_url or f"http://127.0.0.1:{current_app.config['FLOWGATE_PORT']}"
    created = seed_demo(current_app._get_current_object(), url)
    click.echo("demo data created" if created else "demo data already present")


@click.command("sweep")
def sweep_command() -> None:
    """Re-enqueue stranded runs once (the scheduler does this every few seconds)."""
    from app.services.sweep import sweep

    click.echo(sweep(current_app._get_current_object()))


@click.command("demo-oms")
@click.argument("state", type=click.Choice(["down", "up", "status"]))
def demo_oms_command(state: str) -> None:
    """Stop (down) or restart (up) the built-in demo OMS: while down it answers 503."""
    from app.demo import oms_down, set_oms_outage

    if state != "status":
        set_oms_outage(state == "down")
    click.echo("demo OMS is " + ("down (answers 503)" if oms_down() else "up"))


def register(app: Flask) -> None:
    from app import cli_ops

    cli_ops.register(app)
    app.cli.add_command(users_cli)
    app.cli.add_command(secrets_cli)
    app.cli.add_command(audit_cli)
    from app.cli_flows import flows_cli  # export / import / validate flow files

    app.cli.add_command(flows_cli)
    app.cli.add_command(seed_demo_command)
    app.cli.add_command(sweep_command)
    app.cli.add_command(demo_oms_command)
