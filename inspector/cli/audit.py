"""``inspector audit verify``: check the audit trail's hash chain and its signed head."""

from __future__ import annotations

import json

import typer

from inspector.cli.common import fail

app = typer.Typer(name="audit", no_args_is_help=True, help="The audit trail: verify it has not been tampered with.")


@app.command("verify")
def audit_verify(
    db: str | None = typer.Option(None, help="Database URL (default: the station's SQLite database)."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Exit 0 with "N entries, chain intact", or 1 naming the first entry changed, removed or inserted."""
    from inspector.access.audit_verify import verify_audit
    from inspector.storage.db import StorageError, default_db_url, migrate, open_database

    try:
        engine = open_database(db or default_db_url())
    except StorageError as exc:
        fail(str(exc))
    try:
        migrate(engine)  # also puts back dropped triggers
        report = verify_audit(engine)
    except StorageError as exc:
        fail(str(exc))
    finally:
        engine.dispose()
    if as_json:
        typer.echo(json.dumps(report.as_dict(), indent=2))
    else:
        typer.echo(str(report) if report.ok else f"inspector: audit trail tampered with: {report}", err=not report.ok)
    raise typer.Exit(0 if report.ok else 1)
