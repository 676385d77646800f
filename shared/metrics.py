"""One Prometheus registry per process, handed to every part that exports metrics.

A process makes its registry once (:func:`process_registry`) and passes it to the metrics classes
of the parts it runs (the media node's ``MediaMetrics``, the event spool's ``SpoolMetrics``, the
consumer's ``ConsumerMetrics``); its ``/metrics`` serves that registry alone. Nothing registers
on prometheus_client's global default registry, so two nodes, buses or consumers in one process
(as in the tests) never share or clash over a series.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector


def process_registry() -> CollectorRegistry:
    """A registry with the process-wide series (CPU, memory, file descriptors, GC, Python)."""
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    return registry
