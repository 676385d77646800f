"""The Celery application's delivery guarantees and the periodic jobs beat runs."""

from __future__ import annotations

from functions.common.config import FunctionSettings
from functions.jobs.app import DIAL, RETENTION, TICK, beat_schedule, celery_app
from functions.jobs.tasks import register


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
    assert {TICK, DIAL, RETENTION} <= set(app.tasks)


def test_beat_runs_the_campaign_tick_and_the_retention_purge() -> None:
    schedule = beat_schedule(_settings(campaign_tick_s=1.5, retention_purge_interval_s=600))
    assert {name: entry["task"] for name, entry in schedule.items()} == {
        "campaigns-tick": TICK,
        "retention-purge": RETENTION,
    }
    assert schedule["campaigns-tick"]["schedule"].total_seconds() == 1.5
    assert schedule["campaigns-tick"]["options"] == {"expires": 3.0}
    assert schedule["retention-purge"]["schedule"].total_seconds() == 600
