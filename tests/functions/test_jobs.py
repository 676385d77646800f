"""The Celery application's delivery guarantees and the periodic jobs beat runs."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from functions.common.config import FunctionSettings
from functions.jobs.app import (
    ANALYSIS_RUN,
    ANALYSIS_SWEEP,
    DIAL,
    EXPORT_RUN,
    EXPORT_SWEEP,
    EXPORT_SWEEP_S,
    RETENTION,
    TICK,
    WEBHOOK_DELIVER,
    WEBHOOK_SWEEP,
    beat_schedule,
    celery_app,
)
from functions.jobs.tasks import register
from tests.functions.conftest import make_tenant


def _settings(**extra: object) -> FunctionSettings:
    return FunctionSettings(redis_url="redis://127.0.0.1:63799/0", **extra)  # type: ignore[arg-type]


def test_a_task_is_acknowledged_only_once_it_ran_and_comes_back_if_its_worker_dies() -> None:
    app = celery_app(_settings(jobs_key_prefix="t1:", jobs_visibility_timeout_s=42))
    conf = app.conf
    assert conf.task_acks_late and conf.task_reject_on_worker_lost
    assert conf.worker_prefetch_multiplier == 1
    assert conf.broker_transport_options == {
        "visibility_timeout": 42,
        "global_keyprefix": "t1:",
        "unacked_mutex_expire": 21,
    }
    register(app)
    assert {
        TICK,
        DIAL,
        RETENTION,
        WEBHOOK_SWEEP,
        WEBHOOK_DELIVER,
        ANALYSIS_SWEEP,
        ANALYSIS_RUN,
        EXPORT_RUN,
        EXPORT_SWEEP,
    } <= set(app.tasks)


def test_beat_runs_the_campaign_tick_the_sweeps_and_the_retention_purge() -> None:
    schedule = beat_schedule(
        _settings(
            campaign_tick_s=1.5,
            retention_purge_interval_s=600,
            webhook_sweep_s=0.5,
            analysis_sweep_s=2,
        )
    )
    assert {name: entry["task"] for name, entry in schedule.items()} == {
        "campaigns-tick": TICK,
        "webhooks-sweep": WEBHOOK_SWEEP,
        "analysis-sweep": ANALYSIS_SWEEP,
        "exports-sweep": EXPORT_SWEEP,
        "retention-purge": RETENTION,
    }
    assert schedule["analysis-sweep"]["schedule"].total_seconds() == 2
    assert schedule["webhooks-sweep"]["schedule"].total_seconds() == 0.5
    assert schedule["campaigns-tick"]["schedule"].total_seconds() == 1.5
    assert schedule["campaigns-tick"]["options"] == {"expires": 3.0}
    assert schedule["retention-purge"]["schedule"].total_seconds() == 600
    assert schedule["exports-sweep"]["schedule"].total_seconds() == EXPORT_SWEEP_S


def test_the_retention_task_applies_each_tenants_retention(
    database_url: str, sql: psycopg.Connection[Any], tmp_path: Path
) -> None:
    from functions.common import runtime as runtime_module
    from functions.jobs.tasks import retention_purge

    tenant = make_tenant(sql).tenant_id
    sql.execute(
        "UPDATE tenants SET settings = settings || %s WHERE tenant_id = %s",
        (Jsonb({"call_retention_days": 30}), tenant),
    )
    old, fresh = f"j-{uuid.uuid4().hex[:10]}", f"j-{uuid.uuid4().hex[:10]}"
    for call_id, days_ago in ((old, 40), (fresh, 1)):
        sql.execute(
            "INSERT INTO calls (call_id, tenant_id, agent_id, started_at, disposition) "
            "VALUES (%s, %s, 'a', %s, 'resolved')",
            (call_id, tenant, datetime.now(UTC) - timedelta(days=days_ago)),
        )
    runtime_module.configure(
        FunctionSettings(database_url=database_url, data_dir=str(tmp_path))  # type: ignore[arg-type]
    )
    try:
        assert retention_purge()["calls"] >= 1
    finally:
        runtime_module.configure()
    left = sql.execute(
        "SELECT call_id FROM calls WHERE tenant_id = %s ORDER BY call_id", (tenant,)
    ).fetchall()
    assert [row["call_id"] for row in left] == [fresh]
