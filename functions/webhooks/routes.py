"""The webhook API: subscriptions, their deliveries (the delivery log and the dead-letter list)
and redelivery. Creating, changing and deleting a subscription are admin actions, audited."""

from __future__ import annotations

import base64
import binascii
import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Response
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

from functions.common.auth import Principal, require
from functions.common.db import db, fetch_all, fetch_one
from functions.common.errors import ERROR_RESPONSES, ApiError, invalid
from functions.common.runtime import runtime
from functions.webhooks import urls
from functions.webhooks.outcomes import EVENT_NAMES, FAMILIES, unknown_events
from functions.webhooks.signing import new_secret
from shared.retention import audit

router = APIRouter(tags=["webhooks"], responses=ERROR_RESPONSES)

MAX_SUBSCRIPTIONS = 20
MAX_PAGE = 500
MAX_OVERLAP_S = 7 * 86400
SubscriptionId = Path(pattern=r"^wh_[0-9a-f]{32}$", description="A subscription's id.")
DeliveryId = Path(pattern=r"^wd_[0-9a-f]{32}$", description="A delivery's id.")
DeliveryStatus = Literal["pending", "delivered", "dead", "canceled"]
EVENTS_HELP = f"Any of {', '.join(EVENT_NAMES)}, or a family: {', '.join(FAMILIES)}."


def _events(value: list[str]) -> list[str]:
    unknown = unknown_events(value)
    if unknown:
        names = ", ".join(u[:60] for u in unknown[:5])
        raise ValueError(f"unknown event(s) {names}; {EVENTS_HELP}")
    return sorted(set(value))


class WebhookCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: str = Field(max_length=urls.MAX_URL_LENGTH, description="Where deliveries are POSTed.")
    events: list[str] = Field(min_length=1, max_length=len(EVENT_NAMES), description=EVENTS_HELP)
    description: str = Field("", max_length=500)

    _check_events = field_validator("events")(_events)


class WebhookUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    url: str | None = Field(None, max_length=urls.MAX_URL_LENGTH)
    events: list[str] | None = Field(None, min_length=1, max_length=len(EVENT_NAMES))
    description: str | None = Field(None, max_length=500)
    active: bool | None = Field(None, description="false pauses it: nothing new is recorded.")

    @field_validator("events")
    @classmethod
    def _known(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else _events(value)


class Webhook(BaseModel):
    subscription_id: str
    url: str
    events: list[str]
    description: str
    active: bool
    created_at: datetime
    updated_at: datetime
    secret_rotated_at: datetime | None = Field(
        None, description="When the secret was last rotated (POST /v1/webhooks/{id}/secret)."
    )
    previous_secret_expires_at: datetime | None = Field(
        None,
        description="Until then deliveries carry a second signature, by the secret the last "
        "rotation replaced; null when they carry one.",
    )


class WebhookCreated(Webhook):
    secret: str = Field(
        description="The HMAC key of the signatures. Shown only now: store it with the receiver."
    )


class SecretRotation(BaseModel):
    model_config = ConfigDict(extra="forbid")
    overlap_s: int | None = Field(
        None,
        ge=0,
        le=MAX_OVERLAP_S,
        description="Seconds the replaced secret keeps signing deliveries beside the new one; "
        "default PARLEY_WEBHOOK_SECRET_OVERLAP_S (24 h). 0: it stops now (a leaked secret).",
    )


class RotatedSecret(BaseModel):
    subscription_id: str
    secret: str = Field(description="The new HMAC key. Shown only now: give it to the receiver.")
    secret_rotated_at: datetime
    previous_secret_expires_at: datetime | None = Field(
        description="Until then deliveries are signed with the new and the previous secret "
        "(two v1= entries); null with overlap_s 0."
    )


class Delivery(BaseModel):
    delivery_id: str = Field(description="Also the Parley-Webhook-Id header: the idempotency key.")
    subscription_id: str
    event_type: str
    call_id: str | None
    status: DeliveryStatus = Field(
        description="pending (due or waiting for a retry), delivered, dead (out of attempts: "
        "the dead-letter list) or canceled (its subscription was paused or deleted)."
    )
    attempts: int = Field(description="Attempts since it was recorded or last redelivered.")
    next_attempt_at: datetime | None
    last_status: int | None = Field(description="HTTP status of the last answer, if any.")
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None


class Attempt(BaseModel):
    attempt: int
    started_at: datetime
    duration_ms: int
    status_code: int | None = Field(description="null: no HTTP answer (refused, timed out).")
    error: str | None


class DeliveryDetail(Delivery):
    payload: dict[str, Any] = Field(description="The body POSTed (signed as docs/api.md says).")
    log: list[Attempt] = Field(description="Every attempt, oldest first.")


class DeliveryPage(BaseModel):
    items: list[Delivery]
    next_cursor: str | None = Field(description="Pass as cursor for the next (older) page.")


_SUBSCRIPTION = (
    "subscription_id, url, events, description, active, created_at, updated_at, secret, "
    "secret_rotated_at, "
    "CASE WHEN previous_secret_expires_at > now() THEN previous_secret_expires_at END "
    "AS previous_secret_expires_at"
)
_DELIVERY = (
    "delivery_id, subscription_id, event_type, call_id, status, attempts, last_status, "
    "last_error, created_at, delivered_at, "
    "CASE WHEN status = 'pending' THEN next_attempt_at END AS next_attempt_at"
)


def _check_url(url: str) -> None:
    why = urls.problem(url, production=runtime().settings.production)
    if why is not None:
        raise invalid("body.url", why)


async def _subscription(conn: Any, tenant_id: str, subscription_id: str) -> dict[str, Any]:
    row = await fetch_one(
        conn,
        f"SELECT {_SUBSCRIPTION} FROM webhook_subscriptions "
        "WHERE subscription_id = %s AND tenant_id = %s AND deleted_at IS NULL",
        (subscription_id, tenant_id),
    )
    if row is None:
        raise ApiError(404, f"no webhook '{subscription_id}'")
    return row


def _webhook(row: dict[str, Any]) -> Webhook:
    return Webhook(**{k: v for k, v in row.items() if k != "secret"})


@router.post(
    "/v1/webhooks",
    status_code=201,
    response_model=WebhookCreated,
    summary="Subscribe a URL to call, transfer and campaign events (answers its secret once)",
)
async def create_webhook(
    body: WebhookCreate, principal: Principal = Depends(require("admin"))
) -> WebhookCreated:
    _check_url(body.url)
    subscription_id = "wh_" + uuid.uuid4().hex
    async with db() as conn, conn.transaction():
        count = await fetch_one(
            conn,
            "SELECT count(*) AS n FROM webhook_subscriptions "
            "WHERE tenant_id = %s AND deleted_at IS NULL",
            (principal.tenant_id,),
        )
        if count is not None and count["n"] >= MAX_SUBSCRIPTIONS:
            raise ApiError(409, f"a tenant has at most {MAX_SUBSCRIPTIONS} webhooks")
        row = await fetch_one(
            conn,
            "INSERT INTO webhook_subscriptions (subscription_id, tenant_id, url, events, secret, "
            f"description) VALUES (%s, %s, %s, %s, %s, %s) RETURNING {_SUBSCRIPTION}",
            (
                subscription_id,
                principal.tenant_id,
                body.url,
                body.events,
                new_secret(),
                body.description,
            ),
        )
        assert row is not None
        await audit(
            conn,
            principal.tenant_id,
            principal.key_id,
            "webhook_created",
            {"subscription_id": subscription_id, "url": body.url, "events": body.events},
        )
    return WebhookCreated(**row)


@router.get("/v1/webhooks", response_model=list[Webhook], summary="The tenant's webhooks")
async def list_webhooks(principal: Principal = Depends(require("admin"))) -> list[Webhook]:
    async with db() as conn:
        rows = await fetch_all(
            conn,
            f"SELECT {_SUBSCRIPTION} FROM webhook_subscriptions "
            "WHERE tenant_id = %s AND deleted_at IS NULL ORDER BY created_at, subscription_id",
            (principal.tenant_id,),
        )
    return [_webhook(r) for r in rows]


@router.get("/v1/webhooks/{subscription_id}", response_model=Webhook, summary="One webhook")
async def get_webhook(
    subscription_id: str = SubscriptionId, principal: Principal = Depends(require("admin"))
) -> Webhook:
    async with db() as conn:
        return _webhook(await _subscription(conn, principal.tenant_id, subscription_id))


@router.patch(
    "/v1/webhooks/{subscription_id}",
    response_model=Webhook,
    summary="Change a webhook's URL, events or description, or pause it (active: false)",
)
async def update_webhook(
    body: WebhookUpdate,
    subscription_id: str = SubscriptionId,
    principal: Principal = Depends(require("admin")),
) -> Webhook:
    changes = body.model_dump(exclude_none=True)
    if not changes:
        raise invalid("body", "name at least one of url, events, description, active")
    if body.url is not None:
        _check_url(body.url)
    async with db() as conn, conn.transaction():
        await _subscription(conn, principal.tenant_id, subscription_id)
        assignments = ", ".join(f"{name} = %s" for name in changes)
        row = await fetch_one(
            conn,
            f"UPDATE webhook_subscriptions SET {assignments}, updated_at = now() "
            f"WHERE subscription_id = %s RETURNING {_SUBSCRIPTION}",
            (*changes.values(), subscription_id),
        )
        assert row is not None
        await audit(
            conn,
            principal.tenant_id,
            principal.key_id,
            "webhook_updated",
            {"subscription_id": subscription_id, **changes},
        )
    return _webhook(row)


@router.post(
    "/v1/webhooks/{subscription_id}/secret",
    response_model=RotatedSecret,
    summary="Rotate a webhook's secret (answers the new one once); the old one keeps signing "
    "beside it for the overlap",
)
async def rotate_secret(
    body: SecretRotation | None = None,
    subscription_id: str = SubscriptionId,
    principal: Principal = Depends(require("admin")),
) -> RotatedSecret:
    overlap_s = body.overlap_s if body and body.overlap_s is not None else None
    if overlap_s is None:
        overlap_s = int(runtime().settings.webhook_secret_overlap_s)
    secret = new_secret()
    async with db() as conn, conn.transaction():
        await _subscription(conn, principal.tenant_id, subscription_id)
        # The row is locked by the UPDATE: two rotations at once take turns, and the second
        # keeps the first one's secret as its previous one. Only the secret being replaced
        # keeps signing: one rotated out earlier stops now.
        row = await fetch_one(
            conn,
            """UPDATE webhook_subscriptions SET
                   previous_secret = CASE WHEN %(overlap)s > 0 THEN secret END,
                   previous_secret_expires_at = CASE WHEN %(overlap)s > 0
                       THEN now() + make_interval(secs => %(overlap)s) END,
                   secret = %(secret)s, secret_rotated_at = now(), updated_at = now()
               WHERE subscription_id = %(id)s
               RETURNING secret_rotated_at, previous_secret_expires_at""",
            {"overlap": overlap_s, "secret": secret, "id": subscription_id},
        )
        assert row is not None
        await audit(
            conn,
            principal.tenant_id,
            principal.key_id,
            "webhook_secret_rotated",
            {"subscription_id": subscription_id, "overlap_s": overlap_s},
        )
    return RotatedSecret(subscription_id=subscription_id, secret=secret, **row)


@router.delete(
    "/v1/webhooks/{subscription_id}",
    status_code=204,
    response_model=None,
    summary="Delete a webhook; its pending deliveries are canceled (its log stays readable)",
)
async def delete_webhook(
    subscription_id: str = SubscriptionId, principal: Principal = Depends(require("admin"))
) -> Response:
    async with db() as conn, conn.transaction():
        await _subscription(conn, principal.tenant_id, subscription_id)
        await conn.execute(
            "UPDATE webhook_subscriptions SET deleted_at = now(), active = false, "
            "updated_at = now() WHERE subscription_id = %s",
            (subscription_id,),
        )
        await conn.execute(
            "UPDATE webhook_deliveries SET status = 'canceled', lease_token = NULL, "
            "last_error = 'the subscription was deleted' "
            "WHERE subscription_id = %s AND status = 'pending'",
            (subscription_id,),
        )
        await audit(
            conn,
            principal.tenant_id,
            principal.key_id,
            "webhook_deleted",
            {"subscription_id": subscription_id},
        )
    return Response(status_code=204)


def _encode_cursor(row: dict[str, Any]) -> str:
    raw = f"{row['created_at'].isoformat()}|{row['delivery_id']}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        at, delivery_id = raw.split("|")
        when = datetime.fromisoformat(at)
        if when.tzinfo is None or not delivery_id.startswith("wd_"):
            raise ValueError
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise invalid("query.cursor", "not a cursor returned by this API") from None
    return when, delivery_id


@router.get(
    "/v1/webhook-deliveries",
    response_model=DeliveryPage,
    summary="The delivery log, newest first; status=dead is the dead-letter list",
)
async def list_deliveries(
    principal: Principal = Depends(require("read")),
    subscription_id: Annotated[str | None, Query(pattern=r"^wh_[0-9a-f]{32}$")] = None,
    status: Annotated[list[DeliveryStatus] | None, Query()] = None,
    event_type: Annotated[list[str] | None, Query(max_length=len(EVENT_NAMES))] = None,
    call_id: Annotated[str | None, Query(min_length=1, max_length=128)] = None,
    since: Annotated[AwareDatetime | None, Query(description="Recorded at or after.")] = None,
    until: Annotated[AwareDatetime | None, Query(description="Recorded before.")] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> DeliveryPage:
    if event_type:
        unknown = [e for e in event_type if e not in EVENT_NAMES]
        if unknown:
            raise invalid("query.event_type", f"unknown event {unknown[0][:60]!r}")
    after = _decode_cursor(cursor) if cursor else None
    async with db() as conn:
        rows = await fetch_all(
            conn,
            f"""SELECT {_DELIVERY} FROM webhook_deliveries
                WHERE tenant_id = %(tenant)s
                  AND (%(sub)s::text IS NULL OR subscription_id = %(sub)s)
                  AND (%(status)s::text[] IS NULL OR status = ANY(%(status)s))
                  AND (%(types)s::text[] IS NULL OR event_type = ANY(%(types)s))
                  AND (%(call)s::text IS NULL OR call_id = %(call)s)
                  AND (%(since)s::timestamptz IS NULL OR created_at >= %(since)s)
                  AND (%(until)s::timestamptz IS NULL OR created_at < %(until)s)
                  AND (%(at)s::timestamptz IS NULL OR (created_at, delivery_id) < (%(at)s, %(id)s))
                ORDER BY created_at DESC, delivery_id DESC LIMIT %(limit)s""",
            {
                "tenant": principal.tenant_id,
                "sub": subscription_id,
                "status": status,
                "types": event_type,
                "call": call_id,
                "since": since,
                "until": until,
                "at": after[0] if after else None,
                "id": after[1] if after else None,
                "limit": limit + 1,
            },
        )
    more = len(rows) > limit
    rows = rows[:limit]
    return DeliveryPage(
        items=[Delivery(**r) for r in rows],
        next_cursor=_encode_cursor(rows[-1]) if more else None,
    )


async def _delivery(conn: Any, tenant_id: str, delivery_id: str) -> dict[str, Any]:
    row = await fetch_one(
        conn,
        f"SELECT {_DELIVERY}, payload FROM webhook_deliveries "
        "WHERE delivery_id = %s AND tenant_id = %s",
        (delivery_id, tenant_id),
    )
    if row is None:
        raise ApiError(404, f"no delivery '{delivery_id}'")
    return row


@router.get(
    "/v1/webhook-deliveries/{delivery_id}",
    response_model=DeliveryDetail,
    summary="One delivery: its payload and every attempt",
)
async def get_delivery(
    delivery_id: str = DeliveryId, principal: Principal = Depends(require("read"))
) -> DeliveryDetail:
    async with db() as conn:
        row = await _delivery(conn, principal.tenant_id, delivery_id)
        attempts = await fetch_all(
            conn,
            "SELECT attempt, started_at, duration_ms, status_code, error FROM webhook_attempts "
            "WHERE delivery_id = %s ORDER BY attempt",
            (delivery_id,),
        )
    return DeliveryDetail(**row, log=[Attempt(**a) for a in attempts])


@router.post(
    "/v1/webhook-deliveries/{delivery_id}/redeliver",
    status_code=202,
    response_model=Delivery,
    summary="Send a delivery again now, with a fresh set of attempts (same id and payload)",
)
async def redeliver(
    delivery_id: str = DeliveryId, principal: Principal = Depends(require("admin"))
) -> Delivery:
    async with db() as conn, conn.transaction():
        row = await _delivery(conn, principal.tenant_id, delivery_id)
        live = await fetch_one(
            conn,
            "SELECT 1 AS ok FROM webhook_subscriptions "
            "WHERE subscription_id = %s AND deleted_at IS NULL AND active",
            (row["subscription_id"],),
        )
        if live is None:
            raise ApiError(409, "its webhook is paused or deleted: resume it first")
        updated = await fetch_one(
            conn,
            "UPDATE webhook_deliveries SET status = 'pending', attempts = 0, "
            "next_attempt_at = now(), lease_token = NULL, leased_until = NULL "
            f"WHERE delivery_id = %s RETURNING {_DELIVERY}",
            (delivery_id,),
        )
        assert updated is not None
        await audit(
            conn,
            principal.tenant_id,
            principal.key_id,
            "webhook_redelivered",
            {"delivery_id": delivery_id, "was": row["status"]},
        )
    return Delivery(**updated)
