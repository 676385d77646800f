"""What happened, as a webhook event, and the delivery rows it makes.

Call events come from the event pipeline: the consumer calls :func:`record_for_events` with the
events its transaction has just projected (new ones only, so a replayed batch makes none), in
that same transaction. ``call.analyzed`` comes from the job worker that stored the call's
analysis (functions/analysis/store.py), in the transaction that stored it. Campaign and
transfer events happen in the API and the job workers, whose transaction is where the change
is made: they call :func:`record` in it. Either way a
delivery row exists exactly when the change it reports committed, and never on a call's hot path;
the job workers POST it later (functions/webhooks/delivery.py).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from psycopg import AsyncConnection
from psycopg.types.json import Jsonb

from shared.events import CallEnded, CallStarted, EscalationRequested, Event

CALL_STARTED = "call.started"
CALL_ENDED = "call.ended"
CALL_ANALYZED = "call.analyzed"
TRANSFER_REQUESTED = "transfer.requested"
TRANSFER_INITIATED = "transfer.initiated"
CAMPAIGN_STARTED = "campaign.started"
CAMPAIGN_PAUSED = "campaign.paused"
CAMPAIGN_RESUMED = "campaign.resumed"
CAMPAIGN_CANCELED = "campaign.canceled"
CAMPAIGN_COMPLETED = "campaign.completed"
CAMPAIGN_ATTEMPT_FINISHED = "campaign.attempt.finished"

EVENT_NAMES: tuple[str, ...] = (
    CALL_STARTED,
    CALL_ENDED,
    CALL_ANALYZED,
    TRANSFER_REQUESTED,
    TRANSFER_INITIATED,
    CAMPAIGN_STARTED,
    CAMPAIGN_PAUSED,
    CAMPAIGN_RESUMED,
    CAMPAIGN_CANCELED,
    CAMPAIGN_COMPLETED,
    CAMPAIGN_ATTEMPT_FINISHED,
)
# A subscription names events or whole families of them.
FAMILIES: tuple[str, ...] = ("*", "call.*", "transfer.*", "campaign.*")


def unknown_events(names: Iterable[str]) -> list[str]:
    return [n for n in names if n not in EVENT_NAMES and n not in FAMILIES]


def matches(patterns: Sequence[str], event_type: str) -> bool:
    for pattern in patterns:
        if pattern == event_type or pattern == "*":
            return True
        if pattern.endswith(".*") and event_type.startswith(pattern[:-1]):
            return True
    return False


@dataclass(frozen=True)
class Outcome:
    """One webhook event before it is addressed to any subscription."""

    tenant_id: str
    event_type: str
    source_id: str  # unique per event type: what makes a second recording of it a no-op
    occurred_at: datetime
    data: dict[str, Any]
    call_id: str | None = None


def happened_now(
    tenant_id: str,
    event_type: str,
    data: dict[str, Any],
    *,
    source_id: str | None = None,
    call_id: str | None = None,
) -> Outcome:
    """An outcome of a change made now by the API or a job worker; ``source_id`` names the
    change when it can happen only once (a campaign completing), else it is unique."""
    return Outcome(
        tenant_id=tenant_id,
        event_type=event_type,
        source_id=source_id or f"{event_type}:{uuid.uuid4().hex}",
        occurred_at=datetime.now(UTC),
        data=data,
        call_id=call_id,
    )


def new_delivery_id() -> str:
    return "wd_" + uuid.uuid4().hex


async def record(conn: AsyncConnection[Any], outcomes: Sequence[Outcome]) -> int:
    """A delivery row for every active subscription that wants each outcome, inside the
    caller's transaction; one already recorded (same subscription and source) is skipped.
    Returns how many rows were added."""
    if not outcomes:
        return 0
    tenants = sorted({o.tenant_id for o in outcomes})
    cur = await conn.execute(
        "SELECT subscription_id, tenant_id, events FROM webhook_subscriptions "
        "WHERE tenant_id = ANY(%s) AND active AND deleted_at IS NULL",
        (tenants,),
    )
    subscriptions: dict[str, list[tuple[str, list[str]]]] = {}
    for row in await cur.fetchall():
        sid, tenant, events = _fields(row, "subscription_id", "tenant_id", "events")
        subscriptions.setdefault(tenant, []).append((sid, events))
    rows = []
    for outcome in outcomes:
        for subscription_id, patterns in subscriptions.get(outcome.tenant_id, []):
            if not matches(patterns, outcome.event_type):
                continue
            delivery_id = new_delivery_id()
            envelope = {
                "id": delivery_id,
                "type": outcome.event_type,
                "occurred_at": outcome.occurred_at.isoformat(),
                "tenant_id": outcome.tenant_id,
                "data": outcome.data,
            }
            rows.append(
                (
                    delivery_id,
                    outcome.tenant_id,
                    subscription_id,
                    outcome.event_type,
                    outcome.source_id,
                    outcome.call_id,
                    Jsonb(envelope),
                )
            )
    if not rows:
        return 0
    added = 0
    async with conn.cursor() as cur:
        await cur.executemany(
            "INSERT INTO webhook_deliveries (delivery_id, tenant_id, subscription_id, event_type, "
            "source_id, call_id, payload) VALUES (%s, %s, %s, %s, %s, %s, %s) "
            "ON CONFLICT (subscription_id, source_id) DO NOTHING",
            rows,
        )
        added = max(cur.rowcount, 0)
    return added


def _fields(row: Any, *names: str) -> tuple[Any, ...]:
    """Columns by name from a dict row or by position from a tuple row (callers' pools
    differ)."""
    if isinstance(row, dict):
        return tuple(row[n] for n in names)
    return tuple(row)


async def record_for_events(conn: AsyncConnection[Any], fresh: Sequence[Event]) -> int:
    """The call events just projected (in this transaction) as webhook deliveries."""
    outcomes: list[Outcome] = []
    for event in fresh:
        p = event.payload
        base: dict[str, Any] = {"call_id": event.call_id}
        data: dict[str, Any]
        if isinstance(p, CallStarted):
            data = base | {
                "agent_id": p.agent_id,
                "agent_version": p.agent_version,
                "channel": p.channel,
                "from_number": p.from_number,
                "to_number": p.to_number,
                "twilio_call_sid": p.twilio_call_sid,
            }
            outcomes.append(_of_event(event, CALL_STARTED, data))
        elif isinstance(p, EscalationRequested):
            data = base | {"reason": p.reason, "target": p.target}
            outcomes.append(_of_event(event, TRANSFER_REQUESTED, data))
        elif isinstance(p, CallEnded):
            data = base | {
                "end_reason": p.reason,
                "duration_ms": p.duration_ms,
                "recording": p.recording_url is not None,
            }
            outcomes.append(_of_event(event, CALL_ENDED, data))
    return await record(conn, outcomes)


def _of_event(event: Event, event_type: str, data: dict[str, Any]) -> Outcome:
    return Outcome(
        tenant_id=event.tenant_id,
        event_type=event_type,
        source_id=str(event.event_id),
        occurred_at=event.occurred_at,
        data=data,
        call_id=event.call_id,
    )


_ANALYZED_COLUMNS = (
    "call_id",
    "agent_id",
    "twilio_call_sid",
    "disposition",
    "summary",
    "slots",
    "primary_intent",
    "intents",
    "escalation_reason",
    "end_reason",
    "duration_ms",
    "voice_to_voice_p50_ms",
    "asr_audio_ms",
    "tts_chars",
    "llm_tokens",
    "tool_calls",
    "tool_failures",
    "tools",
)


async def analyzed(
    conn: AsyncConnection[Any], tenant_id: str, call_id: str, analysis: dict[str, Any]
) -> Outcome | None:
    """``call.analyzed`` for one stored analysis (in the transaction that stored it): the call's
    outcome as projected (disposition, slots, intents, why it was escalated, what it used) with
    the analysis (summary, success, sentiment, extracted fields, its version). A re-run is a
    new version, so a new event."""
    cur = await conn.execute(
        f"SELECT {', '.join(_ANALYZED_COLUMNS)} FROM calls WHERE call_id = %s AND tenant_id = %s",
        (call_id, tenant_id),
    )
    row = await cur.fetchone()
    if row is None:
        return None
    values = dict(zip(_ANALYZED_COLUMNS, _fields(row, *_ANALYZED_COLUMNS), strict=True))
    usage = {k: values.pop(k) for k in ("asr_audio_ms", "tts_chars", "llm_tokens")}
    values["usage"] = usage
    values["summary"] = analysis["summary"]
    values["analysis"] = analysis
    return Outcome(
        tenant_id=tenant_id,
        event_type=CALL_ANALYZED,
        source_id=f"{call_id}:analysis:{analysis['version']}",
        occurred_at=datetime.now(UTC),
        data=values,
        call_id=call_id,
    )
