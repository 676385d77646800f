"""Traces: one per call, from the voice webhook through the media node and Kafka to the consumer.

Off unless ``PARLEY_OTLP_ENDPOINT`` is set (the embedded demo exports nothing): without a
configured provider the OpenTelemetry API hands out non-recording spans, so every hook below
costs next to nothing. The context travels as a W3C ``traceparent``: in the stream's
parameters (webhook -> media node) and in Kafka record headers (producer -> consumer).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Iterable, Mapping

from opentelemetry import trace
from opentelemetry.context import Context, attach, get_value, set_value
from opentelemetry.trace import Span, SpanKind, StatusCode, set_span_in_context

__all__ = ["Span", "SpanKind", "StatusCode", "set_span_in_context", "tracer"]
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from shared.settings import Settings

TRACEPARENT = "traceparent"
_CALL_FIELDS = "parley.call_fields"  # the context key of the current call's log fields
# Call contexts outlive their call a while: the durable producer may forward a call's last
# events from its spool after the call has ended, and they still belong to its trace.
KEPT_CALL_CONTEXTS = 10_000

tracer = trace.get_tracer("parley")  # a proxy: it records once configure() set a provider
_propagator = TraceContextTextMapPropagator()
_provider: object | None = None
_calls: OrderedDict[str, Context] = OrderedDict()


def configure(settings: Settings, service: str) -> bool:
    """Export spans over OTLP/HTTP when an endpoint is set; True if this process exports."""
    global _provider
    if _provider is not None:
        return True
    if not settings.otlp_endpoint:
        return False
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    endpoint = settings.otlp_endpoint.rstrip("/") + "/v1/traces"
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
    trace.set_tracer_provider(provider)
    _provider = provider
    return True


def flush(timeout_ms: int = 5000) -> None:
    """Send what is buffered (a Lambda is frozen between invocations; tests read traces back)."""
    force_flush = getattr(_provider, "force_flush", None)
    if force_flush is not None:
        force_flush(timeout_ms)


def carrier(context: Context | None = None) -> dict[str, str]:
    """The ``traceparent`` of ``context`` (default: the current span); empty when not tracing."""
    out: dict[str, str] = {}
    _propagator.inject(out, context=context)
    return out


def extract(values: Mapping[str, str]) -> Context:
    return _propagator.extract(dict(values))


def wall_ns(monotonic_at: float) -> int:
    """A ``time.monotonic()`` reading as epoch nanoseconds (spans derived after the fact)."""
    return time.time_ns() - int((time.monotonic() - monotonic_at) * 1e9)


# ---- calls ----------------------------------------------------------------------------------


def start_call(call_id: str, parameters: Mapping[str, str], **attributes: str) -> Span:
    """The media node's span of one call, child of the webhook's (from the stream parameters),
    made current in the calling task, so the tasks the call starts (LLM requests, HTTP actions)
    are its children. The caller ends it."""
    parent = extract({k: v for k, v in parameters.items() if k == TRACEPARENT})
    span = tracer.start_span(
        "call", context=parent, kind=SpanKind.SERVER, attributes={"call.id": call_id, **attributes}
    )
    # The call's identity travels with its context, so every log line of the call (and of the
    # tasks it starts) carries it, traced or not (shared/logsearch.py).
    fields = {"call_id": call_id}
    for attribute, field in (("tenant.id", "tenant_id"), ("agent.id", "agent_id")):
        if attributes.get(attribute):
            fields[field] = attributes[attribute]
    _calls[call_id] = set_span_in_context(span, set_value(_CALL_FIELDS, fields))
    attach(_calls[call_id])
    _calls.move_to_end(call_id)
    while len(_calls) > KEPT_CALL_CONTEXTS:
        _calls.popitem(last=False)
    return span


def call_context(call_id: str) -> Context | None:
    return _calls.get(call_id)


def call_fields() -> Mapping[str, str]:
    """The current call's id, tenant and agent (empty outside a call)."""
    fields = get_value(_CALL_FIELDS)
    return fields if isinstance(fields, dict) else {}


# ---- Kafka ----------------------------------------------------------------------------------


def kafka_headers(key: bytes | None) -> list[tuple[str, bytes]]:
    """Headers of a record keyed by a call id: the call's context, else the current one."""
    context = _calls.get(key.decode(errors="replace")) if key else None
    return [(name, value.encode()) for name, value in carrier(context).items()]


def context_of_headers(headers: Iterable[tuple[str, bytes]]) -> Context:
    return extract({k: v.decode(errors="replace") for k, v in headers if k == TRACEPARENT})
