"""/v1/campaigns, /v1/dnc and /v1/call-limits: outbound campaigns of the key's tenant."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from datetime import datetime, time
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from functions.campaigns import schedule, store
from functions.common.auth import Principal, require
from functions.common.call_metadata import VARIABLE
from functions.common.db import db, fetch_all, fetch_one
from functions.common.errors import ERROR_RESPONSES, ApiError, invalid
from functions.common.runtime import runtime
from functions.jobs.app import TICK, send
from functions.webhooks import outcomes

router = APIRouter(tags=["campaigns"], responses=ERROR_RESPONSES)

E164 = r"^\+[1-9][0-9]{6,14}$"
MAX_CONTACTS = 10_000
MAX_UPLOAD_BYTES = 2_000_000


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Contact(_Body):
    number: str = Field(pattern=E164, description="E.164 number to call.")
    timezone: str | None = Field(
        None, description="IANA timezone; default: the number's, else the campaign's default."
    )
    variables: dict[str, str] = Field(
        default_factory=dict, description="Passed to the agent as {{ vars.NAME }}."
    )

    @field_validator("variables")
    @classmethod
    def _names(cls, value: dict[str, str]) -> dict[str, str]:
        import re

        bad = [k for k in value if not re.match(VARIABLE, k)]
        if bad or len(value) > 50 or any(len(v) > 500 for v in value.values()):
            raise ValueError("variables: at most 50, lower_snake_case names, values <= 500 chars")
        return value


class RetryRule(_Body):
    max_attempts: int = Field(ge=1, le=10, description="Attempts in all, the first included.")
    backoff_s: float = Field(ge=0, le=7 * 86400, description="Wait before the second attempt.")
    multiplier: float = Field(2.0, ge=1, le=10, description="Each later wait is this much longer.")


def default_retry() -> dict[str, RetryRule]:
    """The retry policy of a campaign created without one (a rule per outcome retried)."""
    return {
        "no_answer": RetryRule(max_attempts=3, backoff_s=3600),
        "busy": RetryRule(max_attempts=3, backoff_s=600),
        "voicemail": RetryRule(max_attempts=2, backoff_s=14400),
        "failed": RetryRule(max_attempts=2, backoff_s=300),
    }


class CallingWindow(_Body):
    start: time = Field(time(9), description="Local time of the recipient the window opens.")
    end: time = Field(time(20), description="Local time it closes (exclusive).")
    days: list[int] = Field(
        [1, 2, 3, 4, 5], min_length=1, max_length=7, description="ISO weekdays, 1 = Monday."
    )

    @field_validator("start", "end")
    @classmethod
    def _local(cls, value: time) -> time:
        if value.tzinfo is not None:
            raise ValueError("a local time of the recipient, without an offset")
        return value

    @field_validator("days")
    @classmethod
    def _weekdays(cls, value: list[int]) -> list[int]:
        if any(d < 1 or d > 7 for d in value):
            raise ValueError("weekdays are 1 (Monday) to 7 (Sunday)")
        return sorted(set(value))


class CampaignCreate(_Body):
    name: str = Field(min_length=1, max_length=200)
    agent_id: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$", max_length=64)
    from_number: str | None = Field(
        None, pattern=E164, description="One of the agent's numbers; default: its first."
    )
    window: CallingWindow = Field(default_factory=CallingWindow)
    default_timezone: str | None = Field(
        None, description="For numbers whose timezone cannot be told (several in a country)."
    )
    max_concurrency: int = Field(5, ge=1, le=1000, description="Calls of this campaign at once.")
    calls_per_second: float = Field(1.0, gt=0, le=100, description="Dial rate (Twilio's limit).")
    retry: dict[Literal["no_answer", "busy", "voicemail", "failed"], RetryRule] = Field(
        default_factory=default_retry,  # type: ignore[arg-type]
        description="Retry policy by outcome; an outcome not listed is not retried.",
    )
    contacts: list[Contact] = Field(default_factory=list, max_length=MAX_CONTACTS)


class Campaign(BaseModel):
    campaign_id: str
    name: str
    agent_id: str
    from_number: str
    status: str
    max_concurrency: int
    calls_per_second: float
    contacts: int
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class Progress(BaseModel):
    campaign_id: str
    status: str
    contacts: dict[str, int] = Field(description="Contacts by state.")
    outcomes: dict[str, int] = Field(description="Finished contacts by their last outcome.")
    dispositions: dict[str, int] = Field(description="Finished contacts by call disposition.")
    attempts: dict[str, int] = Field(description="Attempts by outcome (or state while open).")
    failures: dict[str, int] = Field(
        default_factory=dict,
        description="Failed and lost attempts by what went wrong (Twilio's answer, an "
        "unreachable Twilio with the connection error, no word of the call), most frequent "
        "first; at most 20 distinct reasons.",
    )


ContactState = Literal[
    "pending", "queued", "in_call", "waiting_retry", "done", "skipped", "canceled"
]


class AttemptStatus(BaseModel):
    attempt_no: int
    state: str = Field(description="queued, dialing, placed or finished.")
    outcome: str | None = Field(description="answered, busy, no_answer, voicemail, failed, lost…")
    error: str | None = Field(description="What went wrong, for a failed or lost attempt.")
    call_sid: str | None
    answered_by: str | None
    queued_at: datetime
    finished_at: datetime | None


class ContactStatus(BaseModel):
    contact_id: str
    number: str
    timezone: str
    state: ContactState
    next_attempt_at: datetime | None = Field(description="When the next attempt falls due.")
    last_outcome: str | None
    disposition: str | None = Field(description="The answered call's disposition.")
    variables: dict[str, str]
    attempts: list[AttemptStatus]


class ContactPage(BaseModel):
    contacts: list[ContactStatus]
    next: str | None = Field(description="Pass as `after` for the next page; null: the last.")


class ContactsAdded(BaseModel):
    added: int
    duplicates: int


class DncNumbers(_Body):
    numbers: list[str] = Field(min_length=1, max_length=MAX_CONTACTS)

    @field_validator("numbers")
    @classmethod
    def _e164(cls, value: list[str]) -> list[str]:
        import re

        bad = [n for n in value if not re.match(E164, n)]
        if bad:
            raise ValueError(f"not E.164: {', '.join(b[:20] for b in bad[:5])}")
        return value


class DncAdded(BaseModel):
    added: int


class CallLimits(_Body):
    max_concurrent_calls: int = Field(ge=1, le=10_000, description="Campaign calls at once.")


_SELECT = """SELECT c.campaign_id, c.name, c.agent_id, c.from_number, c.status,
                    c.max_concurrency, c.calls_per_second, c.created_at, c.started_at,
                    c.finished_at,
                    (SELECT count(*) FROM campaign_contacts k
                     WHERE k.campaign_id = c.campaign_id) AS contacts
             FROM campaigns c"""


async def read_campaign(conn: Any, tenant_id: str, campaign_id: str) -> Campaign:
    row = await fetch_one(
        conn, _SELECT + " WHERE c.campaign_id = %s AND c.tenant_id = %s", (campaign_id, tenant_id)
    )
    if row is None:
        raise ApiError(404, f"no campaign '{campaign_id}'")
    return Campaign(**row)


async def _insert_contacts(
    conn: Any, tenant_id: str, campaign_id: str, default_tz: str | None, contacts: list[Contact]
) -> ContactsAdded:
    rows = []
    for i, contact in enumerate(contacts):
        try:
            zone = schedule.zone_for(contact.number, contact.timezone, default_tz)
        except schedule.TimezoneUnknown as exc:
            raise invalid(f"body.contacts.{i}.timezone", str(exc)) from None
        rows.append((contact, zone))
    added = 0
    for contact, zone in rows:
        cursor = await conn.execute(
            """INSERT INTO campaign_contacts
                   (contact_id, campaign_id, tenant_id, number, timezone, variables)
               VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (campaign_id, number) DO NOTHING""",
            (
                store.new_id("cnt"),
                campaign_id,
                tenant_id,
                contact.number,
                zone,
                store.as_json(contact.variables),
            ),
        )
        added += cursor.rowcount
    return ContactsAdded(added=added, duplicates=len(rows) - added)


def parse_contacts_csv(text: str) -> list[Contact]:
    """``number`` column required; ``timezone`` optional; every other column is a variable."""
    reader = csv.DictReader(io.StringIO(text))
    if not reader.fieldnames or "number" not in reader.fieldnames:
        raise invalid("body", "a CSV header with a 'number' column is needed")
    contacts: list[Contact] = []
    for line, row in enumerate(reader, start=2):
        if len(contacts) >= MAX_CONTACTS:
            raise invalid("body", f"at most {MAX_CONTACTS} contacts per upload")
        variables = {
            k.strip(): (v or "").strip()
            for k, v in row.items()
            if k and k not in ("number", "timezone")
        }
        try:
            contacts.append(
                Contact(
                    number=(row.get("number") or "").strip(),
                    timezone=(row.get("timezone") or "").strip() or None,
                    variables=variables,
                )
            )
        except ValidationError as exc:
            first = exc.errors()[0]
            field = str(first["loc"][0]) if first["loc"] else "row"
            if field == "number" and first["type"] == "string_pattern_mismatch":
                message = "not an E.164 number (a + and 7 to 15 digits, e.g. +12125550199)"
            else:
                message = str(first["msg"])
            raise invalid(
                f"body.line{line}", f"{field} {str(first['input'])[:40]!r}: {message}"
            ) from None
    return contacts


async def _body_text(request: Request) -> str:
    body = await request.body()
    if len(body) > MAX_UPLOAD_BYTES:
        raise ApiError(413, f"at most {MAX_UPLOAD_BYTES} bytes")
    try:
        return body.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise invalid("body", "not UTF-8 text") from None


@router.post("/v1/campaigns", status_code=201, response_model=Campaign, summary="Create a campaign")
async def create_campaign(
    body: CampaignCreate, principal: Principal = Depends(require("write"))
) -> Campaign:
    if body.window.start >= body.window.end:
        raise invalid("body.window", "start must be before end (local time, same day)")
    if body.default_timezone:
        try:
            schedule.zone_for("", body.default_timezone, None)
        except schedule.TimezoneUnknown as exc:
            raise invalid("body.default_timezone", str(exc)) from None
    campaign_id = store.new_id("cmp")
    async with db() as conn:
        number = await fetch_one(
            conn,
            """SELECT p.number, a.active_version FROM agents a
               LEFT JOIN phone_numbers p ON p.tenant_id = a.tenant_id AND p.agent_id = a.agent_id
                   AND (%s::text IS NULL OR p.number = %s)
               WHERE a.tenant_id = %s AND a.agent_id = %s ORDER BY p.number LIMIT 1""",
            (body.from_number, body.from_number, principal.tenant_id, body.agent_id),
        )
        if number is None:
            raise ApiError(404, f"no agent '{body.agent_id}'")
        if number["number"] is None:
            which = body.from_number or "no number"
            raise ApiError(409, f"{which} is not routed to agent '{body.agent_id}'")
        await conn.execute(
            """INSERT INTO campaigns (campaign_id, tenant_id, agent_id, name, from_number,
                   window_start, window_end, window_days, default_timezone, max_concurrency,
                   calls_per_second, retry_policy)
               VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)""",
            (
                campaign_id,
                principal.tenant_id,
                body.agent_id,
                body.name,
                number["number"],
                body.window.start,
                body.window.end,
                body.window.days,
                body.default_timezone,
                body.max_concurrency,
                body.calls_per_second,
                store.as_json({k: v.model_dump() for k, v in body.retry.items()}),
            ),
        )
        await _insert_contacts(
            conn, principal.tenant_id, campaign_id, body.default_timezone, body.contacts
        )
        return await read_campaign(conn, principal.tenant_id, campaign_id)


@router.get("/v1/campaigns", response_model=list[Campaign], summary="List campaigns")
async def list_campaigns(principal: Principal = Depends(require("read"))) -> list[Campaign]:
    async with db() as conn:
        rows = await fetch_all(
            conn,
            _SELECT + " WHERE c.tenant_id = %s ORDER BY c.created_at DESC LIMIT 200",
            (principal.tenant_id,),
        )
    return [Campaign(**r) for r in rows]


CampaignId = Path(min_length=1, max_length=64)


@router.get("/v1/campaigns/{campaign_id}", response_model=Campaign, summary="One campaign")
async def get_campaign(
    campaign_id: str = CampaignId, principal: Principal = Depends(require("read"))
) -> Campaign:
    async with db() as conn:
        return await read_campaign(conn, principal.tenant_id, campaign_id)


@router.post(
    "/v1/campaigns/{campaign_id}/contacts",
    response_model=ContactsAdded,
    summary="Add contacts: JSON list or CSV (number, timezone, any variable columns)",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {"type": "array", "items": Contact.model_json_schema()}
                },
                "text/csv": {"schema": {"type": "string"}},
            },
        }
    },
)
async def add_contacts(
    request: Request,
    campaign_id: str = CampaignId,
    principal: Principal = Depends(require("write")),
) -> ContactsAdded:
    text = await _body_text(request)
    if request.headers.get("content-type", "").split(";")[0].strip() == "text/csv":
        contacts = parse_contacts_csv(text)
    else:
        try:
            raw = json.loads(text)
        except json.JSONDecodeError:
            raise invalid("body", "not JSON (send text/csv for a CSV upload)") from None
        if not isinstance(raw, list) or len(raw) > MAX_CONTACTS:
            raise invalid("body", f"a JSON list of at most {MAX_CONTACTS} contacts")
        try:
            contacts = [Contact.model_validate(c) for c in raw]
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise invalid(f"body.{where}", str(first["msg"])) from None
    async with db() as conn:
        campaign = await fetch_one(
            conn,
            "SELECT status, default_timezone AS tz FROM campaigns "
            "WHERE campaign_id = %s AND tenant_id = %s",
            (campaign_id, principal.tenant_id),
        )
        if campaign is None:
            raise ApiError(404, f"no campaign '{campaign_id}'")
        if campaign["status"] in ("canceled", "completed"):
            raise ApiError(409, f"the campaign is {campaign['status']}")
        return await _insert_contacts(
            conn, principal.tenant_id, campaign_id, campaign["tz"], contacts
        )


_MOVES: dict[str, tuple[tuple[str, ...], str]] = {
    "start": (("draft",), "running"),
    "pause": (("running",), "paused"),
    "resume": (("paused",), "running"),
    "cancel": (("draft", "running", "paused"), "canceled"),
}

_MOVE_EVENTS = {
    "start": outcomes.CAMPAIGN_STARTED,
    "pause": outcomes.CAMPAIGN_PAUSED,
    "resume": outcomes.CAMPAIGN_RESUMED,
    "cancel": outcomes.CAMPAIGN_CANCELED,
}


async def move_campaign(principal: Principal, campaign_id: str, action: str) -> Campaign:
    """Start, pause, resume or cancel a campaign (409 when its status does not allow it)."""
    allowed, target = _MOVES[action]
    async with db() as conn:
        current = await read_campaign(conn, principal.tenant_id, campaign_id)
        if current.status not in allowed:
            raise ApiError(409, f"cannot {action} a campaign that is {current.status}")
        await conn.execute(
            """UPDATE campaigns SET status = %s, updated_at = now(),
                   started_at = COALESCE(started_at, CASE WHEN %s = 'running' THEN now() END),
                   finished_at = CASE WHEN %s = 'canceled' THEN now() ELSE finished_at END
               WHERE campaign_id = %s""",
            (target, target, target, campaign_id),
        )
        if target == "canceled":
            # Contacts with no call out are over; those in a call finish when it does.
            await conn.execute(
                "UPDATE campaign_contacts SET state = 'canceled', next_attempt_at = NULL "
                "WHERE campaign_id = %s AND state IN ('pending', 'waiting_retry')",
                (campaign_id,),
            )
        result = await read_campaign(conn, principal.tenant_id, campaign_id)
        moved = outcomes.happened_now(
            principal.tenant_id,
            _MOVE_EVENTS[action],
            {"campaign_id": campaign_id, "name": result.name, "status": target,
             "previous_status": current.status},
        )  # fmt: skip
        await outcomes.record(conn, [moved])
    if target == "running":
        # Dispatch now rather than at the next beat tick.
        await asyncio.to_thread(send, runtime().settings, TICK)
    return result


def _action(action: str) -> Any:
    async def move(
        campaign_id: str = CampaignId, principal: Principal = Depends(require("write"))
    ) -> Campaign:
        return await move_campaign(principal, campaign_id, action)

    move.__name__ = f"{action}_campaign"
    return move


for _name in _MOVES:
    router.post(
        f"/v1/campaigns/{{campaign_id}}/{_name}",
        response_model=Campaign,
        summary=f"{_name.capitalize()} the campaign",
    )(_action(_name))


@router.get(
    "/v1/campaigns/{campaign_id}/progress",
    response_model=Progress,
    summary="Counts by contact state, outcome and disposition",
)
async def campaign_progress(
    campaign_id: str = CampaignId, principal: Principal = Depends(require("read"))
) -> Progress:
    async with db() as conn:
        campaign = await read_campaign(conn, principal.tenant_id, campaign_id)
        counts = await store.progress(conn, campaign_id)
    return Progress(campaign_id=campaign_id, status=campaign.status, **counts)


@router.get(
    "/v1/campaigns/{campaign_id}/contacts",
    response_model=ContactPage,
    summary="The campaign's contacts with every attempt (outcome, error, Call SID)",
)
async def campaign_contacts(
    campaign_id: str = CampaignId,
    state: Annotated[list[ContactState] | None, Query(max_length=7)] = None,
    outcome: Annotated[
        list[str] | None,
        Query(max_length=10, description="Contacts whose last outcome is any of these."),
    ] = None,
    after: Annotated[
        str | None, Query(min_length=1, max_length=64, description="`next` of the last page.")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    principal: Principal = Depends(require("read")),
) -> ContactPage:
    unknown = sorted(set(outcome or ()) - set(schedule.OUTCOMES))
    if unknown:
        raise invalid(
            "query.outcome", f"unknown: {', '.join(unknown)}; known: {', '.join(schedule.OUTCOMES)}"
        )
    async with db() as conn:
        await read_campaign(conn, principal.tenant_id, campaign_id)
        rows = await store.contacts_with_attempts(
            conn, campaign_id, states=state, outcomes=outcome, after=after, limit=limit + 1
        )
    more = len(rows) > limit
    rows = rows[:limit]
    return ContactPage(
        contacts=[ContactStatus(**r) for r in rows],
        next=rows[-1]["contact_id"] if more else None,
    )


@router.post(
    "/v1/dnc",
    response_model=DncAdded,
    summary="Add numbers to the do-not-call list: JSON {numbers: [...]} or CSV with 'number'",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": DncNumbers.model_json_schema()},
                "text/csv": {"schema": {"type": "string"}},
            },
        }
    },
)
async def add_dnc(request: Request, principal: Principal = Depends(require("write"))) -> DncAdded:
    text = await _body_text(request)
    source = "api"
    try:
        if request.headers.get("content-type", "").split(";")[0].strip() == "text/csv":
            source = "csv"
            reader = csv.DictReader(io.StringIO(text))
            if not reader.fieldnames or "number" not in reader.fieldnames:
                raise invalid("body", "a CSV header with a 'number' column is needed")
            body = DncNumbers(numbers=[(r.get("number") or "").strip() for r in reader])
        else:
            body = DncNumbers.model_validate_json(text)
    except ValidationError as exc:
        raise invalid("body.numbers", str(exc.errors()[0]["msg"])) from None
    async with db() as conn:
        added = await store.add_dnc(conn, principal.tenant_id, body.numbers, source)
    return DncAdded(added=added)


@router.get("/v1/dnc", response_model=list[str], summary="The do-not-call list")
async def list_dnc(principal: Principal = Depends(require("read"))) -> list[str]:
    async with db() as conn:
        rows = await fetch_all(
            conn,
            "SELECT number FROM dnc_numbers WHERE tenant_id = %s ORDER BY number LIMIT 10000",
            (principal.tenant_id,),
        )
    return [r["number"] for r in rows]


@router.delete("/v1/dnc/{number}", status_code=204, response_model=None, summary="Remove a number")
async def remove_dnc(
    number: str = Path(pattern=E164), principal: Principal = Depends(require("admin"))
) -> None:
    async with db() as conn:
        cursor = await conn.execute(
            "DELETE FROM dnc_numbers WHERE tenant_id = %s AND number = %s",
            (principal.tenant_id, number),
        )
    if cursor.rowcount == 0:
        raise ApiError(404, f"{number} is not on the list")


@router.put("/v1/call-limits", response_model=CallLimits, summary="The tenant's campaign limits")
async def put_limits(
    body: CallLimits, principal: Principal = Depends(require("admin"))
) -> CallLimits:
    async with db() as conn:
        await conn.execute(
            """INSERT INTO tenant_call_limits (tenant_id, max_concurrent_calls) VALUES (%s, %s)
               ON CONFLICT (tenant_id) DO UPDATE SET
                   max_concurrent_calls = EXCLUDED.max_concurrent_calls""",
            (principal.tenant_id, body.max_concurrent_calls),
        )
    return body
