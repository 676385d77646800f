"""Beat's queue probe serves its series and the process's from one registry of its own."""

from __future__ import annotations

import time
import urllib.request
import uuid

import pytest
import redis

import functions.consumer.metrics  # noqa: F401 - its series must not reach beat's /metrics
from functions.common.config import FunctionSettings
from functions.jobs.metrics import QUEUE, QUEUE_DEPTH_METRIC, serve_queue_depth
from tests.events.broker import free_port

pytestmark = pytest.mark.integration


def test_the_queue_depth_is_served_with_the_process_series(settings: FunctionSettings) -> None:
    prefix = f"parley-test:{uuid.uuid4().hex[:8]}:"
    probed = settings.model_copy(update={"jobs_key_prefix": prefix})
    client = redis.Redis.from_url(settings.redis_url)
    client.rpush(f"{prefix}{QUEUE}", "a", "b", "c")
    try:
        port = free_port()
        serve_queue_depth(probed, port, every_s=0.05)
        deadline = time.monotonic() + 10
        while True:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
                body = reply.read().decode()
            if f"{QUEUE_DEPTH_METRIC} 3.0" in body or time.monotonic() > deadline:
                break
            time.sleep(0.05)
    finally:
        client.delete(f"{prefix}{QUEUE}")
    assert f"{QUEUE_DEPTH_METRIC} 3.0" in body
    assert "parley_jobs_queue_probe_failed 0.0" in body
    assert "process_cpu_seconds_total" in body  # the process's own series, same registry
    assert "parley_consumer_lag" not in body  # and nothing another part registered
