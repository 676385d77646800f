"""``parley events consume`` and ``parley events replay``. Wire into the ``events`` group with
``register(events_app)``; ``python -m functions.consumer.cli`` runs them standalone."""

from __future__ import annotations

import asyncio
import logging
import signal
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import typer

from shared import tracing
from shared.bus import BusError
from shared.db import DatabaseUnavailable
from shared.logsearch import configure_logging
from shared.settings import Settings, SettingsError, get_settings

if TYPE_CHECKING:
    from psycopg_pool import AsyncConnectionPool

    from shared.bus.kafka import KafkaBus
    from shared.cache.registry import NodeRegistry

app = typer.Typer(
    help="The event pipeline: consume call events into PostgreSQL, replay them from Kafka.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _fail(message: str, code: int = 1) -> typer.Exit:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    return typer.Exit(code)


def _settings() -> Settings:
    try:
        settings = get_settings()
        tracing.configure(settings, "parley-consumer")
    except SettingsError as exc:
        raise _fail(str(exc), 2) from None
    if not settings.kafka_bootstrap:
        raise _fail(
            "PARLEY_KAFKA_BOOTSTRAP is empty: the event consumer reads from Kafka "
            "(for a local broker: scripts/services start kafka; eval $(scripts/services env))",
            2,
        )
    return settings


def parse_since(text: str) -> datetime:
    """ISO 8601 (a time without zone is UTC), epoch seconds, or an age like 15m, 2h, 1d."""
    value = text.strip()
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    if len(value) > 1 and value[-1] in units and value[:-1].isdigit():
        return datetime.now(UTC) - timedelta(seconds=int(value[:-1]) * units[value[-1]])
    try:
        return datetime.fromtimestamp(float(value), UTC)
    except ValueError:
        pass
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"'{text}' is not a time: use ISO 8601 (2026-11-29T12:00:00Z), epoch seconds or "
            "an age like 30m, 2h, 1d"
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _kafka(settings: Settings) -> KafkaBus:
    from shared.bus.kafka import KafkaBus

    return KafkaBus.from_settings(settings)


@app.command("consume")
def consume(
    group: str = typer.Option("parley-projector", help="Kafka consumer group."),
    batch_size: int = typer.Option(1000, min=1, max=10000, help="Records per poll."),
    lanes: int = typer.Option(
        2, min=1, max=16, help="Concurrent transactions per batch (partitions are split)."
    ),
    metrics_port: int = typer.Option(
        0, min=0, max=65535, help="Serve Prometheus metrics on this port (0: off)."
    ),
    health_port: int = typer.Option(
        0, min=0, max=65535, help="Serve /healthz and /readyz on this port (0: off)."
    ),
    lost_call_sweep_s: float = typer.Option(
        30.0, min=0, help="Close calls whose media node died, every this many seconds (0: off)."
    ),
    lost_call_grace_s: float = typer.Option(
        60.0, min=0, help="A call of a node gone from the registry is lost after this silence."
    ),
    silent_call_s: float = typer.Option(
        7200.0, min=1, help="A call with no event for this long is lost, whatever its node."
    ),
) -> None:
    """Consume call events from Kafka into PostgreSQL until SIGINT/SIGTERM.

    A database or broker that is away never stops the process: it reports not-ready on
    /readyz and retries with backoff until they answer."""
    settings = _settings()
    configure_logging(
        settings.log_level, "%(asctime)s %(levelname)s %(message)s", as_json=settings.production
    )
    from functions.consumer.metrics import ConsumerMetrics
    from shared.metrics import process_registry

    metrics = ConsumerMetrics(process_registry())
    if metrics_port:
        from prometheus_client import start_http_server

        start_http_server(metrics_port, addr="127.0.0.1", registry=metrics.registry)

    async def run() -> None:
        from functions.consumer.health import HealthServer
        from functions.consumer.lost_calls import LostCallSweeper
        from functions.consumer.service import ConsumerService

        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        service: ConsumerService | None = None

        def readiness() -> str | None:
            if service is None:
                return "database"
            return None if service.ready else "database or broker"

        health = HealthServer(health_port, readiness) if health_port else None
        if health is not None:
            await health.start()
        try:
            pool = await _wait_for_database(settings.database_url, lanes, stop)
            if pool is None:
                typer.echo("stopped before the database answered")
                return
            bus = _kafka(settings)
            tasks: list[asyncio.Task[None]] = []
            try:
                await bus.start()
                service = ConsumerService(
                    bus, pool, group_id=group, batch_size=batch_size, lanes=lanes, metrics=metrics
                )
                if lost_call_sweep_s > 0:
                    sweeper = LostCallSweeper(
                        pool,
                        _registry(settings),
                        every_s=lost_call_sweep_s,
                        node_grace_s=lost_call_grace_s,
                        silent_after_s=silent_call_s,
                    )
                    tasks.append(asyncio.create_task(sweeper.run(stop)))
                typer.echo(f"consuming {settings.kafka_topic_prefix}.call-events as group {group}")
                stats = await service.run(stop)
                typer.echo(
                    f"stopped: {stats.applied} applied, {stats.duplicates} duplicates skipped, "
                    f"{stats.dead_lettered} dead-lettered"
                )
            finally:
                stop.set()
                for task in tasks:
                    await task
                await bus.stop()
                await pool.close()
        finally:
            if health is not None:
                await health.stop()

    try:
        asyncio.run(run())
    except (BusError, DatabaseUnavailable) as exc:
        raise _fail(str(exc)) from None


async def _wait_for_database(
    url: str, lanes: int, stop: asyncio.Event
) -> AsyncConnectionPool | None:
    """The consumer's pool once PostgreSQL answers, retrying with backoff (1 s doubling to
    30 s); None if stopped first. A consumer that exits here would crash-loop on EKS."""
    from shared.db import create_pool

    backoff = 1.0
    while not stop.is_set():
        try:
            return await create_pool(url, min_size=lanes, max_size=lanes + 2, timeout_s=5)
        except DatabaseUnavailable as exc:
            logging.getLogger(__name__).error("%s; not ready, retrying in %.0fs", exc, backoff)
        try:
            await asyncio.wait_for(stop.wait(), backoff)
        except TimeoutError:
            backoff = min(backoff * 2, 30.0)
    return None


def _registry(settings: Settings) -> NodeRegistry | None:
    """The media nodes' registry, if they share one (Redis); None leaves the silence rule."""
    if not settings.redis_url:
        return None
    from shared.cache import create_cache
    from shared.cache.registry import NodeRegistry

    return NodeRegistry(create_cache(settings))


@app.command("replay")
def replay_command(
    since: str = typer.Option(
        ..., "--from", help="Start time: ISO 8601 (UTC if no zone), epoch seconds, or 30m/2h/1d."
    ),
    call: str | None = typer.Option(None, "--call", help="Only this call's events."),
) -> None:
    """Re-read call events from Kafka since a time and rebuild missing rows (idempotent)."""
    try:
        start = parse_since(since)
    except ValueError as exc:
        raise _fail(str(exc), 2) from None
    settings = _settings()

    async def run() -> None:
        from functions.consumer.replay import replay
        from shared.db import create_pool

        pool = await create_pool(settings.database_url, max_size=2)
        bus = _kafka(settings)
        try:
            report = await replay(bus, pool, since=start, call_id=call)
        finally:
            await pool.close()
        typer.echo(
            f"replayed from {start.isoformat()}: read {report.read}, matched {report.matched}, "
            f"applied {report.applied}, already present {report.duplicates}, "
            f"invalid {report.invalid}"
        )

    try:
        asyncio.run(run())
    except (BusError, DatabaseUnavailable) as exc:
        raise _fail(str(exc)) from None


def register(events_app: typer.Typer) -> None:
    """Add ``consume`` and ``replay`` to an existing ``events`` command group."""
    events_app.command("consume")(consume)
    events_app.command("replay")(replay_command)


if __name__ == "__main__":
    app()
