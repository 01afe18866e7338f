"""Flask CLI commands: ``flask --app app users create|token``, ``seed-demo``, ``sweep``."""

from __future__ import annotations

import click
from flask import Flask, current_app
from flask.cli import AppGroup

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


def register(app: Flask) -> None:
    app.cli.add_command(users_cli)
    app.cli.add_command(seed_demo_command)
    app.cli.add_command(sweep_command)
