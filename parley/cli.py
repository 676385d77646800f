"""The ``parley`` command line: the composition root, the one module that imports every area.

It sits above ``shared/``, ``functions/`` and ``media_nodes/`` (see docs/architecture.md). Each
area contributes a typer sub-app from its own module; heavy imports happen inside commands so
``parley --help`` stays fast. The commands defined here are those of the bottom layer (database,
event contracts, log search, server check) and the demo, which runs every layer at once.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import typer

from functions.cli import api_app, tenant_app
from functions.consumer.cli import register as register_event_pipeline
from functions.jobs.cli import register as register_jobs
from media_nodes.cli import app as media_app
from media_nodes.dialogue.cli import app as agent_app
from media_nodes.simulator.cli import call_command
from media_nodes.transports.webrtc_cli import app as webrtc_app
from shared.settings import Settings, SettingsError, get_settings

app = typer.Typer(
    name="parley",
    help="Parley: open-source AI phone agents. Media nodes, dialogue, events and analytics.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
db_app = typer.Typer(help="Database: migrations.", no_args_is_help=True)
events_app = typer.Typer(help="Event contracts and the event pipeline.", no_args_is_help=True)
logs_app = typer.Typer(help="Log search in OpenSearch.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(logs_app, name="logs")
app.add_typer(events_app, name="events")


# Each area's commands (their modules import heavy libraries only inside commands).
register_event_pipeline(events_app)
register_jobs(app)
app.add_typer(agent_app, name="agent")
app.add_typer(api_app, name="api")
app.add_typer(tenant_app, name="tenant")
app.add_typer(media_app, name="media")
app.command("call")(call_command)
app.add_typer(webrtc_app, name="webrtc")


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print a clear error (no stack trace) and return the exit to raise."""
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    return typer.Exit(code)


def settings_or_exit() -> Settings:
    try:
        return get_settings()
    except SettingsError as exc:
        raise fail(str(exc), 2) from None


@db_app.command("migrate")
def db_migrate(
    create: bool = typer.Option(True, help="Create the database first if it does not exist."),
) -> None:
    """Apply pending schema migrations to PARLEY_DATABASE_URL."""
    from shared.db import DatabaseUnavailable, migrate
    from shared.db.migrate import ensure_database

    settings = settings_or_exit()
    try:
        if create and ensure_database(settings.database_url):
            typer.echo("created database")
        applied = migrate(settings.database_url)
    except DatabaseUnavailable as exc:
        raise fail(f"{exc}\n  start it with: scripts/services start postgres") from None
    if applied:
        typer.echo(f"applied {len(applied)} migration(s): {', '.join(applied)}")
    else:
        typer.echo("database schema is up to date")


@events_app.command("schemas")
def events_schemas(
    out: Path = typer.Option(Path("events/schemas"), help="Folder to write the JSON Schemas to."),
    check: bool = typer.Option(False, help="Only check that the files match the models."),
) -> None:
    """Write the event contracts' JSON Schemas (or check them for drift)."""
    from shared.events.schemas import event_schemas, render, write_schemas

    if check:
        stale = [
            name
            for name, schema in event_schemas().items()
            if not (out / name).exists() or (out / name).read_text() != render(schema)
        ]
        if stale:
            raise fail(f"out of date: {', '.join(stale)} (run: parley events schemas)")
        typer.echo("event schemas are up to date")
        return
    for path in write_schemas(out):
        typer.echo(f"wrote {path}")


@app.command("check")
def check_servers() -> None:
    """Check that the configured servers answer (database, Redis, Kafka)."""
    settings = settings_or_exit()

    async def probe() -> list[tuple[str, str | None]]:
        from shared.bus import BusError
        from shared.bus.kafka import KafkaBus
        from shared.cache import CacheUnavailable, create_cache
        from shared.db import DatabaseUnavailable, connect

        results: list[tuple[str, str | None]] = []
        try:
            conn = await connect(settings.database_url)
            await conn.close()
            results.append(("postgres", None))
        except DatabaseUnavailable as exc:
            results.append(("postgres", str(exc)))
        cache = create_cache(settings)
        try:
            await cache.ping()
            results.append(("cache", None))
        except CacheUnavailable as exc:
            results.append(("cache", str(exc)))
        finally:
            await cache.close()
        if not settings.kafka_bootstrap:
            results.append(("bus", None))  # in-process
            return results
        kafka = KafkaBus.from_settings(settings)
        try:
            await kafka.start()
            results.append(("bus", None))
        except BusError as exc:
            results.append(("bus", str(exc)))
        finally:
            await kafka.stop()
        return results

    failed = False
    for name, error in asyncio.run(probe()):
        typer.echo(f"{name:9} {'ok' if error is None else 'FAILED: ' + error}")
        failed = failed or error is not None
    if failed:
        raise typer.Exit(1)


@app.command("demo")
def demo(
    out: Path = typer.Option(
        Path(".parley/demo-agent.wav"), help="Where to save what the agent said (8 kHz WAV)."
    ),
    result_json: Path | None = typer.Option(
        None, "--result", help="Also write what the demo measured and stored as JSON here."
    ),
) -> None:
    """Place a whole simulated inbound phone call on embedded defaults and show what was stored."""
    import logging
    import os

    os.environ.setdefault("POWERTOOLS_LOG_LEVEL", "WARNING")  # keep request logs off the demo
    logging.basicConfig(level=logging.WARNING)
    from media_nodes.simulator.demo import DemoError, render, run_demo
    from shared.db import DatabaseUnavailable

    settings = settings_or_exit()
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        result = asyncio.run(run_demo(settings, say=typer.echo, out=out))
    except DatabaseUnavailable as exc:
        raise fail(f"{exc}\n  start it with: scripts/services start postgres") from None
    except DemoError as exc:
        raise fail(str(exc)) from None
    typer.echo(render(result))
    typer.echo(f"\nthe agent's side of the call: {out} ({result.agent_audio_s:.1f} s)")
    if result_json is not None:
        result_json.write_text(json.dumps(result.as_json(), indent=2, default=str))


@logs_app.command("search")
def logs_search(
    call: str = typer.Option("", "--call", help="Only this call's log lines."),
    query: str = typer.Option("", "--query", "-q", help="OpenSearch query string."),
    saved: str = typer.Option("", "--saved", help="A saved search by name (see --list)."),
    size: int = typer.Option(200, min=1, max=10000, help="Most lines to show."),
    as_json: bool = typer.Option(False, "--json", help="One JSON document a line."),
) -> None:
    """Log lines from OpenSearch, oldest first (PARLEY_OPENSEARCH_URL)."""
    from shared.logsearch import LogSearch, LogSearchError, format_hits, saved_searches

    if saved:
        searches = saved_searches()
        if saved not in searches:
            raise fail(f"no saved search {saved!r}; there are: {', '.join(sorted(searches))}", 2)
        query = f"({searches[saved]}) AND ({query})" if query else searches[saved]
    if not call and not query:
        raise fail("give --call ID, --query or --saved NAME", 2)
    try:
        hits = LogSearch(settings_or_exit().opensearch_url).search(
            call_id=call or None, query=query or None, size=size
        )
    except LogSearchError as exc:
        raise fail(str(exc)) from None
    if as_json:
        for hit in hits:
            typer.echo(json.dumps(hit))
    elif hits:
        typer.echo(format_hits(hits))


@logs_app.command("install")
def logs_install() -> None:
    """Put the index templates (logs, traces) and, where ISM exists, the retention policies."""
    from shared.logsearch import LogSearch, LogSearchError

    try:
        installed = LogSearch(settings_or_exit().opensearch_url).install()
    except LogSearchError as exc:
        raise fail(str(exc)) from None
    typer.echo("installed: " + ", ".join(installed))
    if not any(item.startswith("policy") for item in installed):
        typer.echo("no index-management plugin here: run `parley logs prune` daily for retention")


@logs_app.command("prune")
def logs_prune(
    days: int = typer.Option(14, min=1, help="Keep this many days of logs and traces."),
) -> None:
    """Delete log indices and trace backing indices past the retention (where ISM is not
    installed)."""
    from shared.logsearch import LogSearch, LogSearchError

    try:
        deleted = LogSearch(settings_or_exit().opensearch_url).prune(days)
    except LogSearchError as exc:
        raise fail(str(exc)) from None
    typer.echo(f"deleted {len(deleted)} indices" + (f": {', '.join(deleted)}" if deleted else ""))


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
