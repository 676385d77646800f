"""Powertools Logger / Metrics / Tracer for the functions.

The logger writes the documents log search indexes (shared/logsearch.py): Powertools' JSON line
(request id, cold start, function name) with ``@timestamp``, the current OpenTelemetry trace and
span ids, and every free-text value redacted like events are, before the line leaves the process
(CloudWatch Logs, and from there OpenSearch through the stack's Firehose stream).
"""

from __future__ import annotations

import os
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.logging.formatter import LambdaPowertoolsFormatter
from opentelemetry import trace

from shared.logsearch import CONTEXT_FIELDS
from shared.privacy import redact_text

NAMESPACE = os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "Parley")
SERVICE = "parley-functions"  # the "service" dimension of every metric the functions emit
ROUTE_DIMENSION = "route"  # the route template an HTTP function answered ("/twilio/voice")
# Values that are identifiers or Powertools' own fields, never caller text: kept as they are
# (a masked call id could not be searched for).
UNREDACTED = frozenset(
    {
        *CONTEXT_FIELDS,
        "call_sid",
        "attempt_id",
        "campaign_id",
        "level",
        "location",
        "timestamp",
        "service",
        "cold_start",
        "function_name",
        "function_memory_size",
        "function_arn",
        "function_request_id",
        "correlation_id",
        "xray_trace_id",
        "sampling_rate",
        "method",
        "route",
        "status",
        "ms",
    }
)


class LogDocumentFormatter(LambdaPowertoolsFormatter):
    """Powertools' structured line as a log-search document."""

    def serialize(self, log: dict[str, Any]) -> str:  # type: ignore[override]
        doc = {k: v if k in UNREDACTED else _redacted(v) for k, v in log.items()}
        doc["@timestamp"] = doc.get("timestamp")
        doc.setdefault("logger", f"{SERVICE}.{doc.get('location', '')}")
        span = trace.get_current_span().get_span_context()
        if span.is_valid:
            doc["trace_id"] = format(span.trace_id, "032x")
            doc["span_id"] = format(span.span_id, "016x")
        return super().serialize(doc)


def _redacted(value: Any) -> Any:
    if isinstance(value, str):
        return redact_text(value).text
    if isinstance(value, dict):
        return {k: _redacted(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_redacted(v) for v in value]
    return value


logger = Logger(service=SERVICE, logger_formatter=LogDocumentFormatter(use_rfc3339=True, utc=True))
metrics = Metrics(namespace=NAMESPACE, service=SERVICE)
tracer = Tracer(service=SERVICE)
