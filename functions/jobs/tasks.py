"""The tasks the workers run. Each is idempotent: running one twice changes nothing more.

Tasks are synchronous (Celery's prefork pool); each worker process keeps one event loop, so the
database pool of the functions' runtime is made once per process and reused."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Coroutine
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from celery import Celery

from functions.analytics import export_jobs
from functions.campaigns import schedule, store
from functions.common.db import db
from functions.common.runtime import runtime
from functions.jobs.app import (
    ANALYSIS_RUN,
    ANALYSIS_SWEEP,
    DIAL,
    EXPORT_RUN,
    EXPORT_SWEEP,
    RETENTION,
    TICK,
    WEBHOOK_DELIVER,
    WEBHOOK_SWEEP,
    send,
)
from functions.transfer import service
from functions.voice import calls
from functions.webhooks import delivery
from shared import tracing

log = logging.getLogger("parley.jobs")
T = TypeVar("T")
_loop: tuple[int, asyncio.AbstractEventLoop] | None = None


def _run(task: str, coro: Coroutine[Any, Any, T]) -> T:
    """Run on this process's loop (made after the fork: a loop is never shared by processes),
    inside the task's span. Tracing starts here too, in the forked process: an exporter's
    thread does not survive a fork."""
    global _loop
    if _loop is None or _loop[0] != os.getpid():
        _loop = (os.getpid(), asyncio.new_event_loop())
        tracing.configure(runtime().settings, "parley-jobs")
    asyncio.set_event_loop(_loop[1])
    with tracing.tracer.start_as_current_span(f"job {task}", kind=tracing.SpanKind.CONSUMER):
        return _loop[1].run_until_complete(coro)


def _now() -> datetime:
    return datetime.now(UTC)


async def tick() -> dict[str, int]:
    """One round: give up on lost dials, dispatch every running campaign, complete the ones
    with nothing left. Safe to run concurrently (the dispatcher locks per campaign)."""
    settings = runtime().settings
    now = _now()
    dispatched = lost = 0
    async with db() as conn:
        stale = await store.lost_attempts(
            conn, older_than=now - timedelta(seconds=settings.campaign_dial_stale_s)
        )
        for attempt_id in stale:
            await store.settle(
                conn,
                call_sid=None,
                attempt_id=attempt_id,
                outcome=schedule.LOST,
                error="no word of the call after it was claimed",
                now=now,
            )
            lost += 1
        await conn.commit()
        for campaign_id in await store.running_campaigns(conn):
            queued = await store.dispatch(
                conn,
                campaign_id,
                now=now,
                tick_s=settings.campaign_tick_s,
                tenant_default_max=settings.campaign_tenant_max_concurrency,
            )
            await conn.commit()  # the attempts exist before any worker is told about them
            for item in queued:
                await asyncio.to_thread(
                    send, settings, DIAL, item.attempt_id, countdown=item.countdown_s
                )
            dispatched += len(queued)
        completed = await store.complete_finished(conn, now=now)
    return {"dispatched": dispatched, "lost": lost, "completed": completed}


def _callback_urls(base: str, attempt_id: str) -> dict[str, str]:
    # The attempt rides in every callback URL: a callback then finds its attempt even when the
    # worker that placed the call died before it could store the Call SID.
    query = f"?attempt={attempt_id}"
    return {
        "voice_url": f"{base}/twilio/voice{query}",
        "status_url": f"{base}/twilio/status{query}",
        "amd_url": f"{base}/twilio/amd{query}",
    }


async def dial(attempt_id: str) -> str:
    """Place the attempt's call once: claim it (committed), then ask Twilio."""
    settings = runtime().settings
    async with db() as conn:
        claim = await store.claim(conn, attempt_id, now=_now())
    if claim is None:
        return "not claimed"
    if not settings.public_base_url:
        async with db() as conn:
            await store.settle(
                conn,
                call_sid=None,
                attempt_id=attempt_id,
                outcome=schedule.FAILED,
                error="PARLEY_PUBLIC_BASE_URL is not set: Twilio could not call back",
                now=_now(),
            )
        return "failed"
    try:
        placed = await asyncio.to_thread(
            service.place_call,
            settings,
            to=claim.to_number,
            from_number=claim.from_number,
            **_callback_urls(settings.public_base_url, attempt_id),
        )
    except (service.TwilioFailed, service.TwilioNotConfigured) as exc:
        log.warning("dial failed: %s", exc)
        async with db() as conn:
            await store.settle(
                conn,
                call_sid=None,
                attempt_id=attempt_id,
                outcome=schedule.FAILED,
                error=str(exc)[:500],
                now=_now(),
            )
        return "failed"
    async with db() as conn:
        # The attempt row first, then the call row: the order the callbacks take them in
        # (functions/voice/routes.py links the attempt, then records the call), so a callback
        # racing this transaction waits for it instead of deadlocking with it.
        await store.placed(conn, attempt_id, placed.call_sid)
        route = await calls.agent_route(conn, claim.tenant_id, claim.agent_id)
        await calls.record_call(
            conn,
            calls.NewCall(
                call_sid=placed.call_sid,
                from_number=claim.from_number,
                to_number=claim.to_number,
                direction="outbound-api",
                status=placed.status if placed.status in ("queued", "initiated") else "queued",
            ),
            route,
        )
    return "placed"


async def purge_retention() -> dict[str, int]:
    """Each tenant's data retention, applied by the purge of shared.retention."""
    from shared.recordings import local_root
    from shared.retention import purge_expired

    settings = runtime().settings
    report = await purge_expired(
        settings.database_url,
        recording_root=local_root(settings.recording_store, settings.data_dir),
        now=_now(),
    )
    return {"calls": report.total_calls, "recordings": report.total_recordings}


async def sweep_webhooks() -> int:
    """Lease the due webhook deliveries and send a task for each (see
    functions/webhooks/delivery.py: a task that never runs leaves a lease that expires)."""
    settings = runtime().settings
    async with db() as conn:
        leased = await delivery.lease_due(conn, settings)
    for item in leased:
        await asyncio.to_thread(send, settings, WEBHOOK_DELIVER, item.delivery_id, item.token)
    return len(leased)


async def deliver_webhook(delivery_id: str, token: str) -> str:
    async with db() as conn:
        return await delivery.deliver(conn, runtime().settings, delivery.Leased(delivery_id, token))


async def sweep_analyses() -> int:
    """Lease the calls waiting for their analysis and send a task for each (a task that never
    runs leaves a lease that expires, as a webhook delivery's does)."""
    from functions.analysis import worker

    settings = runtime().settings
    leased = await worker.sweep(settings)
    for item in leased:
        await asyncio.to_thread(send, settings, ANALYSIS_RUN, item.request_id, item.token)
    return len(leased)


async def analyze_call(request_id: str, token: str) -> str:
    # Imported here: only a worker that analyses loads the models.
    from functions.analysis import store, worker

    return await worker.run(runtime().settings, store.Leased(request_id, token))


def campaigns_tick() -> dict[str, int]:
    return _run(TICK, tick())


def campaigns_dial(attempt_id: str) -> str:
    return _run(DIAL, dial(attempt_id))


def retention_purge() -> dict[str, int]:
    return _run(RETENTION, purge_retention())


def webhooks_sweep() -> int:
    return _run(WEBHOOK_SWEEP, sweep_webhooks())


def webhooks_deliver(delivery_id: str, token: str) -> str:
    return _run(WEBHOOK_DELIVER, deliver_webhook(delivery_id, token))


def analysis_sweep() -> int:
    return _run(ANALYSIS_SWEEP, sweep_analyses())


def analysis_run(request_id: str, token: str) -> str:
    return _run(ANALYSIS_RUN, analyze_call(request_id, token))


def exports_run(export_id: str) -> str:
    return _run(EXPORT_RUN, export_jobs.run_export(export_id))


def exports_sweep() -> dict[str, int]:
    return _run(EXPORT_SWEEP, export_jobs.sweep_exports())


def register(app: Celery) -> None:
    """Attach the tasks to ``app`` (the worker's)."""
    app.task(name=TICK)(campaigns_tick)
    app.task(name=DIAL)(campaigns_dial)
    app.task(name=RETENTION)(retention_purge)
    app.task(name=WEBHOOK_SWEEP)(webhooks_sweep)
    app.task(name=WEBHOOK_DELIVER)(webhooks_deliver)
    app.task(name=ANALYSIS_SWEEP)(analysis_sweep)
    app.task(name=ANALYSIS_RUN)(analysis_run)
    app.task(name=EXPORT_RUN)(exports_run)
    app.task(name=EXPORT_SWEEP)(exports_sweep)
