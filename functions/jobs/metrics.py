"""``parley_jobs_queue_depth``: tasks waiting in the broker, served for Prometheus by the beat
process (one per deployment), so the worker Deployment's HPA scales on the backlog."""

from __future__ import annotations

import threading

import redis
from prometheus_client import CollectorRegistry, Gauge, start_http_server

from functions.common.config import FunctionSettings
from shared.metrics import process_registry

QUEUE_DEPTH_METRIC = "parley_jobs_queue_depth"
QUEUE = "celery"  # Celery's default queue; kombu's key prefix comes first


class QueueMetrics:
    """The probe's series on the process's registry (shared/metrics.py)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.depth = Gauge(
            QUEUE_DEPTH_METRIC,
            "Tasks waiting in the job queue (not yet taken by a worker)",
            registry=registry,
        )
        self.probe_failed = Gauge(
            "parley_jobs_queue_probe_failed", "1 while the broker cannot be read", registry=registry
        )


def queue_depth(client: redis.Redis, settings: FunctionSettings) -> int:
    return int(client.llen(f"{settings.jobs_key_prefix}{QUEUE}"))


def serve_queue_depth(settings: FunctionSettings, port: int, every_s: float = 5.0) -> None:
    """Serve /metrics on ``port`` and refresh the depth every ``every_s`` in a daemon thread."""
    client = redis.Redis.from_url(settings.redis_url)
    metrics = QueueMetrics(process_registry())
    start_http_server(port, registry=metrics.registry)
    stop = threading.Event()

    def refresh() -> None:
        while not stop.wait(every_s):
            try:
                metrics.depth.set(queue_depth(client, settings))
                metrics.probe_failed.set(0)
            except redis.RedisError:
                metrics.probe_failed.set(1)

    threading.Thread(target=refresh, name="queue-depth", daemon=True).start()
