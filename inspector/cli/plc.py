"""``inspector plc modbus-map``: the Modbus TCP register map, as a table or JSON."""

from __future__ import annotations

import json

import typer

app = typer.Typer(name="plc", no_args_is_help=True, help="PLC links: the Modbus register map.")


@app.command("modbus-map")
def plc_modbus_map(as_json: bool = typer.Option(False, "--json")) -> None:
    """The Modbus TCP register map: every register, the command, error and state codes."""
    from inspector.plc.modbus_map import codes, map_rows

    rows, c = map_rows(), codes()
    if as_json:
        typer.echo(json.dumps({"registers": rows, **c}, indent=2))
        return
    typer.echo("Holding registers, 0-based; u32 = two registers, high word first.")
    typer.echo(f"{'ADDR':>4} {'WORDS':>5} {'TYPE':4} {'ACC':3} {'NAME':18} MEANING")
    for r in rows:
        typer.echo(f"{r['address']:>4} {r['words']:>5} {r['type']:4} {r['access']:3} {r['name']:18} {r['meaning']}")
    for title, key in (("Commands (write command_arg, then command)", "commands"), ("Error codes", "error_codes"),
                       ("result_state", "result_state"), ("state", "state")):
        typer.echo(f"\n{title}: " + ", ".join(f"{v} {k}" for k, v in c[key].items()))
