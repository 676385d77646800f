"""``parley media ...``: run a media node."""

from __future__ import annotations

import typer

app = typer.Typer(help="Media nodes: answer calls (Twilio Media Streams).", no_args_is_help=True)


@app.callback()
def media() -> None:
    """Media nodes: answer calls (Twilio Media Streams)."""


@app.command("serve")
def serve(
    host: str = typer.Option("127.0.0.1", help="Interface to bind."),
    port: int = typer.Option(8765, help="Port to bind."),
) -> None:
    """Run a media node: WS /twilio/stream, /healthz, /readyz, /metrics. SIGTERM drains calls."""
    from media_nodes.app import StartupError
    from media_nodes.server import serve as run
    from shared.logsearch import configure_logging
    from shared.settings import SettingsError, get_settings

    try:
        settings = get_settings()
    except SettingsError as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from None
    configure_logging(
        settings.log_level,
        "%(asctime)s %(levelname)s %(name)s: %(message)s",
        as_json=settings.production,
    )
    try:
        run(host, port, settings)
    except StartupError as exc:
        typer.secho(f"error: {exc}", fg=typer.colors.RED, err=True)
        raise typer.Exit(1) from None


if __name__ == "__main__":  # python -m media_nodes.cli serve: the node alone, without parley/cli.py
    app()
