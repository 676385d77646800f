"""The Celery application: Redis as the broker, tasks acknowledged only once done.

Why these settings: a task is acknowledged after it ran (``acks_late``) and given back when its
worker process dies (``reject_on_worker_lost``), so a killed worker loses nothing; a worker takes
one message at a time (prefetch 1), so a dying worker holds few; an unacknowledged message comes
back to the queue after the visibility timeout. A task may therefore run twice: every task is
idempotent (the dial task's claim is a database row, see functions/campaigns/store.py).
"""

from __future__ import annotations

from datetime import timedelta
from functools import lru_cache
from typing import Any

from celery import Celery

from functions.common.config import FunctionSettings
from shared.settings import EVERY_PROCESS, REDIS, TRACING, Needs

# What a worker or beat process reads: the database, the broker, Twilio (it places the calls,
# which call back to the public API URL), the trace collector (a span per task), the LLM (the
# post-call analysis asks it when one is configured), and where export jobs write their files.
NEEDS = (
    EVERY_PROCESS
    | REDIS
    | TRACING
    | Needs.of(
        secrets=["PARLEY_TWILIO_AUTH_TOKEN", "PARLEY_LLM_API_KEY"],
        settings=[
            "PARLEY_TWILIO_ACCOUNT_SID",
            "PARLEY_PUBLIC_BASE_URL",
            "PARLEY_LLM_BASE_URL",
            "PARLEY_LLM_MODEL",
            "PARLEY_EXPORT_STORE",
        ],
    )
)

TICK = "parley.campaigns.tick"
DIAL = "parley.campaigns.dial"
RETENTION = "parley.retention.purge"
WEBHOOK_SWEEP = "parley.webhooks.sweep"
WEBHOOK_DELIVER = "parley.webhooks.deliver"
ANALYSIS_SWEEP = "parley.analysis.sweep"
ANALYSIS_RUN = "parley.analysis.run"
EXPORT_RUN = "parley.exports.run"
EXPORT_SWEEP = "parley.exports.sweep"
EXPORT_SWEEP_S = 30.0  # a lost export job waits at most about this long to be sent again


@lru_cache(maxsize=8)
def _app(broker_url: str, key_prefix: str, visibility_timeout_s: float) -> Celery:
    app = Celery("parley", broker=broker_url, set_as_current=False)
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_ignore_result=True,
        task_serializer="json",
        accept_content=["json"],
        timezone="UTC",
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        broker_transport_options={
            "visibility_timeout": visibility_timeout_s,
            "global_keyprefix": key_prefix,
            # Workers take turns giving overdue messages back under a Redis lock; a worker
            # killed while holding it would block every restore until the lock expires
            # (kombu's default: 5 minutes), so it expires well within the visibility timeout.
            "unacked_mutex_expire": max(1, int(visibility_timeout_s / 2)),
        },
    )
    return app


def celery_app(settings: FunctionSettings) -> Celery:
    """The app for these settings (one per broker and key prefix, so tests stay apart)."""
    if not settings.redis_url:
        raise RuntimeError("the job scheduler needs Redis: set PARLEY_REDIS_URL")
    return _app(settings.redis_url, settings.jobs_key_prefix, settings.jobs_visibility_timeout_s)


def beat_schedule(settings: FunctionSettings) -> dict[str, dict[str, Any]]:
    """The periodic jobs. A tick that waited longer than its period is dropped (``expires``):
    the next one does the same work, so a backlog of ticks never builds up."""
    tick = timedelta(seconds=settings.campaign_tick_s)
    return {
        "campaigns-tick": {
            "task": TICK,
            "schedule": tick,
            "options": {"expires": settings.campaign_tick_s * 2},
        },
        "webhooks-sweep": {
            "task": WEBHOOK_SWEEP,
            "schedule": timedelta(seconds=settings.webhook_sweep_s),
            "options": {"expires": settings.webhook_sweep_s * 2},
        },
        "analysis-sweep": {
            "task": ANALYSIS_SWEEP,
            "schedule": timedelta(seconds=settings.analysis_sweep_s),
            "options": {"expires": settings.analysis_sweep_s * 2},
        },
        "exports-sweep": {
            "task": EXPORT_SWEEP,
            "schedule": timedelta(seconds=EXPORT_SWEEP_S),
            "options": {"expires": EXPORT_SWEEP_S * 2},
        },
        "retention-purge": {
            "task": RETENTION,
            "schedule": timedelta(seconds=settings.retention_purge_interval_s),
            "options": {"expires": settings.retention_purge_interval_s},
        },
    }


def send(settings: FunctionSettings, task: str, *args: Any, countdown: float = 0) -> None:
    """Enqueue ``task`` by name (the API and the tick do this; workers run it)."""
    celery_app(settings).send_task(task, args=list(args), countdown=countdown or None)
