"""``flask --app app flows export|import|validate``: one flow per JSON file (definition with
samples and tests, integration contract; connections by name, never secrets). An import is
always a draft that must be reviewed."""

from __future__ import annotations

import json
from pathlib import Path

import click
from flask.cli import AppGroup

from app.errors import ServiceError

flows_cli = AppGroup("flows", help="Export, import and validate flow files.")


def _load(path: str) -> object:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise click.ClickException(f"cannot read {path}: {exc}") from exc


@flows_cli.command("export")
@click.argument("flow")
@click.option("-o", "--output", default="-", help="File to write (default: stdout).")
@click.option("--version", "number", type=int, default=None, help="Default: the live version.")
def export_command(flow: str, output: str, number: int | None) -> None:
    """Write FLOW (an id or a slug) as a JSON file."""
    from app.services import export

    try:
        document = export.export_flow(export.find_flow(flow).id, number)
    except ServiceError as exc:
        raise click.ClickException(exc.detail) from exc
    text = json.dumps(document, indent=2, sort_keys=True) + "\n"
    if output == "-":
        click.echo(text, nl=False)
        return
    Path(output).write_text(text, encoding="utf-8")
    click.echo(f"exported {document['flow']['slug']} v{document['version']['number']} to {output}")


@flows_cli.command("validate")
@click.argument("path")
def validate_command(path: str) -> None:
    """Check a flow file against this installation (exit 1 with the problems)."""
    from app.services import export

    _, _, problems = export.resolve(_load(path))
    if problems:
        for problem in problems:
            click.echo(f"- {problem}", err=True)
        raise click.ClickException(f"{path}: {len(problems)} problem(s)")
    click.echo(f"{path}: OK")


@flows_cli.command("import")
@click.argument("path")
@click.option("--as", "email", required=True, help="The importing user's e-mail (the author).")
def import_command(path: str, email: str) -> None:
    """Import a flow file as a new draft (never live; it must be reviewed)."""
    from app.services import export
    from app.services.users import find_user

    actor = find_user(email)
    if actor is None:
        raise click.ClickException(f"no user {email}")
    try:
        version = export.import_flow(_load(path), actor)
    except ServiceError as exc:
        details = exc.extra.get("problems") or []
        for problem in details:
            click.echo(f"- {problem}", err=True)
        raise click.ClickException(exc.detail) from exc
    click.echo(f"imported as draft: flow {version.flow_id} version {version.number}")
