"""Operations commands: ``flask --app app retention run [--days N]``,
``flask --app app rollup backfill [--since DATE]``."""

from __future__ import annotations

from datetime import datetime

import click
from flask import Flask, current_app
from flask.cli import AppGroup

retention_cli = AppGroup("retention", help="Prune old run payloads and step I/O.")


@retention_cli.command("run")
@click.option(
    "--days",
    type=click.IntRange(min=1),
    default=None,
    help="Prune runs received more than this many days ago (default FLOWGATE_RETENTION_DAYS).",
)
def retention_run_command(days: int | None) -> None:
    """Prune payloads and step input/output of finished runs now; runs and counts stay."""
    from app.services.retention import prune

    days = days or current_app.config["FLOWGATE_RETENTION_DAYS"]
    if not days:
        raise click.ClickException("FLOWGATE_RETENTION_DAYS is 0 (keep everything); pass --days")
    click.echo(str(prune(days)))


rollup_cli = AppGroup("rollup", help="Dashboard statistics: roll runs up into run_stats.")


@rollup_cli.command("backfill")
@click.option(
    "--since",
    type=click.DateTime(formats=["%Y-%m-%d", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M"]),
    default=None,
    help="Recount from this UTC date (floored to the hour); default: the oldest run.",
)
def rollup_backfill_command(since: datetime | None) -> None:
    """Recount the buckets from the runs table from --since on, then catch up to now."""
    from app.services.rollup import backfill

    click.echo(str(backfill(since)))


def register(app: Flask) -> None:
    app.cli.add_command(retention_cli)
    app.cli.add_command(rollup_cli)
