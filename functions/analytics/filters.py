"""The filters every call query shares (the list, the aggregate, the export), and one date model.

Multi-value filters take the parameter repeated (``disposition=a&disposition=b``: either); the
filters are ANDed. Dates: ``started_after`` (inclusive) and ``started_before`` (exclusive) take
an ISO date (midnight in the tenant's time zone) or an ISO date-time (without an offset: in the
tenant's time zone). Days and weeks of the aggregate are the tenant's too.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

from fastapi import Depends, Query
from psycopg import sql

from functions.admin.models import TenantSettings
from functions.common.auth import Principal, require
from functions.common.call_metadata import METADATA_KEY
from functions.common.db import db, fetch_one
from functions.common.errors import invalid

NAME = r"^[a-z][a-z0-9_]{0,63}$"
AGENT = r"^[a-z0-9][a-z0-9_-]{0,63}$"
CAMPAIGN = r"^cmp_[A-Za-z0-9_-]{1,64}$"
STATE = r"^[A-Za-z0-9_.-]{1,128}$"
# Words, spaces and speech punctuation only: no quotes beyond apostrophes, no SQL syntax.
SEARCH = re.compile(r"^[\w\s'.,?!-]{1,200}$")
SLOT = re.compile(r"^([a-z][a-z0-9_]{0,63})(?::(.{0,200}))?$")
METADATA = re.compile(r"^(" + METADATA_KEY.strip("^$") + r")(?::(.{0,500}))?$", re.DOTALL)
MAX_DURATION_MS = 86_400_000
MAX_LATENCY_MS = 600_000
MAX_VALUES = 50
Status = Literal[
    "queued",
    "initiated",
    "ringing",
    "in-progress",
    "completed",
    "busy",
    "no-answer",
    "canceled",
    "failed",
]
Sentiment = Literal["positive", "neutral", "negative"]
Names = Annotated[list[str] | None, Query(max_length=MAX_VALUES)]
# A column of the call's latest analysis (call_analyses only grows: the highest version wins).
LATEST_ANALYSIS = (
    "(SELECT a.{} FROM call_analyses a WHERE a.call_id = c.call_id ORDER BY a.version DESC LIMIT 1)"
)
# The same latest analysis as a row, for a LEFT JOIN LATERAL over ``calls c`` (alias it ``la``).
LATEST_ANALYSIS_ROW = (
    "SELECT a.sentiment, a.success FROM call_analyses a WHERE a.call_id = c.call_id "
    "ORDER BY a.version DESC LIMIT 1"
)


@dataclass
class CallFilter:
    """A tenant's filters as SQL over ``calls c``, plus the tenant's settings."""

    settings: TenantSettings
    where: list[sql.Composable] = field(default_factory=list)
    params: list[Any] = field(default_factory=list)
    started_after: datetime | None = None
    started_before: datetime | None = None
    # The clauses the aggregate rollup can answer too (it has the same column names, and no
    # time bounds: those are cut at days), and whether any clause is one it cannot answer.
    rollup_where: list[sql.Composable] = field(default_factory=list)
    rollup_params: list[Any] = field(default_factory=list)
    exact_only: bool = False
    # The filter's own parameters as given (JSON values): an export job evaluates them again
    # where it runs, by the same function.
    arguments: dict[str, Any] = field(default_factory=dict)

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.settings.timezone)

    def add(self, clause: str, *values: Any, rollup: bool = False) -> None:
        """``rollup``: the clause reads only columns the aggregate rollup has."""
        self.where.append(sql.SQL(clause))
        self.params.extend(values)
        if rollup:
            self.rollup_where.append(sql.SQL(clause))
            self.rollup_params.extend(values)

    def add_bound(self, clause: str, value: datetime) -> None:
        """A time bound: the rollup path cuts it at the tenant's days itself."""
        self.where.append(sql.SQL(clause))
        self.params.append(value)

    def add_exact(self, clause: str, *values: Any) -> None:
        """A clause only the calls rows can answer."""
        self.add(clause, *values)
        self.exact_only = True

    def sql(self) -> sql.Composable:
        return sql.SQL(" AND ").join(self.where)


def parse_instant(value: str | None, field_name: str, zone: ZoneInfo) -> datetime | None:
    """An ISO date (midnight in ``zone``) or date-time (``zone`` when it has no offset), in UTC."""
    if value is None:
        return None
    text = value.strip()
    try:
        if len(text) == 10:
            moment = datetime.combine(date.fromisoformat(text), time(), tzinfo=zone)
        else:
            moment = datetime.fromisoformat(text)
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=zone)
    except ValueError:
        raise invalid(field_name, "an ISO date (2026-11-23) or date-time expected") from None
    try:  # in UTC, so an offset cannot carry the instant past year 9999 (or before 1970)
        utc = moment.astimezone(UTC)
    except OverflowError:
        utc = None
    if utc is None or not 1970 <= utc.year <= 9999:
        raise invalid(field_name, "must be between 1970 and 9999 (UTC)")
    return utc


async def tenant_settings(tenant_id: str) -> TenantSettings:
    async with db() as conn:
        row = await fetch_one(
            conn, "SELECT settings FROM tenants WHERE tenant_id = %s", (tenant_id,)
        )
    return TenantSettings.model_validate((row or {}).get("settings") or {})


def _names(values: list[str] | None, field_name: str, pattern: str = NAME) -> list[str]:
    out = []
    for value in values or []:
        if not re.match(pattern, value):
            raise invalid(field_name, f"'{value[:40]}' does not match {pattern}")
        out.append(value)
    return out


def _slot_values(name: str, value: str) -> list[str]:
    """The JSON objects a slot filled with ``value`` (compared as text) can be stored as."""
    found = [json.dumps({name: value})]
    try:
        parsed = json.loads(value)
    except ValueError:
        return found
    if isinstance(parsed, bool | int) or (isinstance(parsed, float) and math.isfinite(parsed)):
        found.append(json.dumps({name: parsed}))
    return found


def _range(low: int | None, high: int | None, field_name: str) -> None:
    if low is not None and high is not None and low > high:
        raise invalid(field_name, "the maximum must be at least the minimum")


async def call_filter(
    principal: Principal = Depends(require("read")),
    agent_id: Annotated[list[str] | None, Query(max_length=MAX_VALUES)] = None,
    disposition: Names = None,
    intent: Annotated[
        list[str] | None,
        Query(max_length=MAX_VALUES, description="Calls that showed any of these intents."),
    ] = None,
    primary_intent: Names = None,
    end_reason: Names = None,
    escalation_reason: Names = None,
    status: Annotated[list[Status] | None, Query(max_length=MAX_VALUES)] = None,
    escalated: Annotated[
        bool | None, Query(description="Handed to a human (or asked for one), or not.")
    ] = None,
    voicemail: Annotated[bool | None, Query(description="A voicemail picked up, or not.")] = None,
    number: Annotated[
        str | None, Query(pattern=r"^\+[1-9][0-9]{6,14}$", description="Caller or dialled number.")
    ] = None,
    started_after: Annotated[
        str | None, Query(max_length=40, description="ISO date or date-time; inclusive.")
    ] = None,
    started_before: Annotated[
        str | None, Query(max_length=40, description="ISO date or date-time; exclusive.")
    ] = None,
    min_duration_ms: Annotated[int | None, Query(ge=0, le=MAX_DURATION_MS)] = None,
    max_duration_ms: Annotated[int | None, Query(ge=0, le=MAX_DURATION_MS)] = None,
    min_latency_ms: Annotated[
        int | None,
        Query(ge=0, le=MAX_LATENCY_MS, description="The call's median voice-to-voice latency."),
    ] = None,
    max_latency_ms: Annotated[int | None, Query(ge=0, le=MAX_LATENCY_MS)] = None,
    slot: Annotated[
        list[str] | None,
        Query(
            max_length=MAX_VALUES,
            description="An extracted field: 'name' (it was filled) or 'name:value' (to this "
            "value, compared as text). Repeated: all of them.",
        ),
    ] = None,
    q: Annotated[
        str | None, Query(max_length=200, description="Words to find in the transcripts.")
    ] = None,
    tool_calls: Annotated[
        bool | None, Query(description="The agent called a tool (an http action), or not.")
    ] = None,
    tool_failed: Annotated[
        bool | None, Query(description="At least one of the call's tool calls failed, or none.")
    ] = None,
    tool: Annotated[
        list[str] | None,
        Query(max_length=MAX_VALUES, description="A tool called in any of these agent states."),
    ] = None,
    campaign_id: Annotated[
        list[str] | None,
        Query(max_length=MAX_VALUES, description="Calls placed by any of these campaigns."),
    ] = None,
    variable: Annotated[
        list[str] | None,
        Query(
            max_length=MAX_VALUES,
            description="A campaign call's contact variable: 'name' (it is set) or "
            "'name:value' (to this value, as text). Repeated: all of them.",
        ),
    ] = None,
    sentiment: Annotated[
        list[Sentiment] | None,
        Query(max_length=3, description="The caller's sentiment in the call's latest analysis."),
    ] = None,
    success: Annotated[
        bool | None,
        Query(description="The latest analysis judged the call a success, or a failure."),
    ] = None,
    analyzed: Annotated[
        bool | None, Query(description="The call has an analysis, or none yet.")
    ] = None,
    extracted: Annotated[
        list[str] | None,
        Query(
            max_length=MAX_VALUES,
            description="A field the latest analysis extracted: 'name' (it is there) or "
            "'name:value' (to this value, compared as text). Repeated: all of them.",
        ),
    ] = None,
    metadata: Annotated[
        list[str] | None,
        Query(
            max_length=MAX_VALUES,
            description="What the API client attached to the call: 'KEY' (it is set) or "
            "'KEY:VALUE' (exactly this value). Repeated: all of them.",
        ),
    ] = None,
) -> CallFilter:
    arguments = {k: v for k, v in locals().items() if k != "principal" and v is not None}
    settings = await tenant_settings(principal.tenant_id)
    f = CallFilter(settings=settings, arguments=arguments)
    f.add("c.tenant_id = %s", principal.tenant_id, rollup=True)
    f.started_after = parse_instant(started_after, "query.started_after", f.zone)
    f.started_before = parse_instant(started_before, "query.started_before", f.zone)
    if f.started_after and f.started_before and f.started_after >= f.started_before:
        raise invalid("query.started_before", "must be after started_after")
    _range(min_duration_ms, max_duration_ms, "query.max_duration_ms")
    _range(min_latency_ms, max_latency_ms, "query.max_latency_ms")
    if q is not None and (not SEARCH.match(q) or "--" in q or not q.strip()):
        raise invalid("query.q", "use words, spaces and . , ? ! ' - only")

    for column, values, pattern in (
        ("agent_id", agent_id, AGENT),
        ("disposition", disposition, NAME),
        ("primary_intent", primary_intent, NAME),
        ("end_reason", end_reason, NAME),
        ("escalation_reason", escalation_reason, NAME),
    ):
        chosen = _names(values, f"query.{column}", pattern)
        if chosen:
            f.add(f"c.{column} = ANY(%s)", chosen, rollup=True)
    if intent:
        f.add_exact("c.intents && %s::text[]", _names(intent, "query.intent"))
    if status:
        f.add_exact("c.status = ANY(%s)", list(status))
    if escalated is not None:
        clause = "(c.escalation_reason IS NOT NULL OR c.disposition = 'escalated_to_human')"
        f.add(clause if escalated else f"NOT {clause}", rollup=True)
    if voicemail is not None:
        f.add(
            "c.disposition = 'voicemail'"
            if voicemail
            else "c.disposition IS DISTINCT FROM 'voicemail'",
            rollup=True,
        )
    if number is not None:
        f.add_exact("(c.from_number = %s OR c.to_number = %s)", number, number)
    if f.started_after is not None:
        f.add_bound("c.started_at >= %s", f.started_after)
    if f.started_before is not None:
        f.add_bound("c.started_at < %s", f.started_before)
    if min_duration_ms is not None:
        f.add_exact("c.duration_ms >= %s", min_duration_ms)
    if max_duration_ms is not None:
        f.add_exact("c.duration_ms <= %s", max_duration_ms)
    if min_latency_ms is not None:
        f.add_exact("c.voice_to_voice_p50_ms >= %s", min_latency_ms)
    if max_latency_ms is not None:
        f.add_exact("c.voice_to_voice_p50_ms <= %s", max_latency_ms)
    for item in slot or []:
        match = SLOT.match(item)
        if match is None:
            raise invalid("query.slot", "use name or name:value (name: lowercase, digits, _)")
        name, value = match.group(1), match.group(2)
        if value is None:
            f.add_exact("c.slots ? %s", name)
        else:
            # Containment is what the GIN index on slots answers: {name: value} as a string,
            # or as the number or boolean it spells; the text comparison keeps the meaning.
            contained = _slot_values(name, value)
            either = " OR ".join(["c.slots @> %s::jsonb"] * len(contained))
            f.add_exact(f"({either}) AND c.slots ->> %s = %s", *contained, name, value)
    if q is not None:
        f.add_exact("c.transcript @@ websearch_to_tsquery('english', %s)", q)
    if tool_calls is not None:
        f.add_exact("c.tool_calls > 0" if tool_calls else "c.tool_calls = 0")
    if tool_failed is not None:
        f.add_exact("c.tool_failures > 0" if tool_failed else "c.tool_failures = 0")
    states = _names(tool, "query.tool", STATE)
    if states:
        f.add_exact("c.tools && %s::text[]", states)
    campaigns = _names(campaign_id, "query.campaign_id", CAMPAIGN)
    if campaigns:
        # A campaign's calls are its attempts' Call SIDs (the attempt is the campaign's record).
        f.add_exact(
            "EXISTS (SELECT 1 FROM campaign_attempts a WHERE a.call_sid = c.twilio_call_sid "
            "AND a.campaign_id = ANY(%s) AND a.tenant_id = c.tenant_id)",
            campaigns,
        )
    for item in variable or []:
        match = SLOT.match(item)
        if match is None:
            raise invalid("query.variable", "use name or name:value (name: lowercase, digits, _)")
        name, value = match.group(1), match.group(2)
        condition = "k.variables ? %s" if value is None else "k.variables ->> %s = %s"
        f.add_exact(
            "EXISTS (SELECT 1 FROM campaign_attempts a JOIN campaign_contacts k "
            "ON k.contact_id = a.contact_id WHERE a.call_sid = c.twilio_call_sid "
            f"AND a.tenant_id = c.tenant_id AND {condition})",
            *((name,) if value is None else (name, value)),
        )
    _analysis_filters(f, sentiment, success, analyzed, extracted)
    for item in metadata or []:
        match = METADATA.match(item)
        if match is None:
            raise invalid("query.metadata", f"use KEY or KEY:VALUE (KEY: {METADATA_KEY})")
        key, value = match.group(1), match.group(2)
        # Both forms are answered by the GIN index on calls.metadata.
        if value is None:
            f.add_exact("c.metadata ? %s", key)
        else:
            f.add_exact("c.metadata @> jsonb_build_object(%s::text, %s::text)", key, value)
    return f


def _analysis_filters(
    f: CallFilter,
    sentiment: list[Sentiment] | None,
    success: bool | None,
    analyzed: bool | None,
    extracted: list[str] | None,
) -> None:
    if sentiment:
        f.add_exact(f"{LATEST_ANALYSIS.format('sentiment')} = ANY(%s)", list(sentiment))
    if success is not None:
        f.add_exact(f"{LATEST_ANALYSIS.format('success')} IS {'TRUE' if success else 'FALSE'}")
    if analyzed is not None:
        exists = "EXISTS (SELECT 1 FROM call_analyses a WHERE a.call_id = c.call_id)"
        f.add_exact(exists if analyzed else f"NOT {exists}")
    for item in extracted or []:
        match = SLOT.match(item)
        if match is None:
            raise invalid("query.extracted", "use name or name:value (name: lowercase, digits, _)")
        name, value = match.group(1), match.group(2)
        fields = LATEST_ANALYSIS.format("extracted")
        if value is None:
            f.add_exact(f"{fields} ? %s", name)
        else:
            f.add_exact(f"{fields} ->> %s = %s", name, value)
