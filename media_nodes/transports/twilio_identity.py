"""Who is calling: the identity of a stream, from its signed session token (or dev defaults)."""

from __future__ import annotations

import re
import uuid

from media_nodes.pipeline.call import CallIdentity
from media_nodes.transports.twilio import Start
from shared.settings import Settings
from shared.tokens import TokenError, verify
from shared.tracing import TRACEPARENT

TOKEN_PARAMETER = "token"
# customParameters that describe the call; every other parameter becomes a dialogue variable.
RESERVED = frozenset(
    {
        TOKEN_PARAMETER,
        "call_id",
        "tenant_id",
        "agent_id",
        "record",
        "from",
        "to",
        "channel",
        "direction",
        TRACEPARENT,
    }
)
DEFAULT_TENANT = "default"
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$")


def _checked(kind: str, value: str) -> str:
    """Ids end up in event keys, database rows and recording paths: keep them plain."""
    if not _ID.fullmatch(value):
        raise TokenError(f"invalid {kind} {value[:40]!r}")
    return value


def _flag(value: str | None, default: bool) -> bool:
    if value is None:
        return default
    return value.strip().lower() in ("1", "true", "yes", "on")


def identify(start: Start, settings: Settings) -> CallIdentity:
    """The call's identity; :class:`TokenError` when the stream may not be answered."""
    params = start.custom_parameters
    token = params.get(TOKEN_PARAMETER, "")
    variables = {k: v for k, v in params.items() if k not in RESERVED}
    common = {
        "stream_sid": start.stream_sid,
        "call_sid": start.call_sid,
        "from_number": params.get("from", ""),
        "to_number": params.get("to", ""),
        "variables": variables,
        "record": _flag(params.get("record"), default=False),
        "direction": "outbound" if params.get("direction") == "outbound" else "inbound",
        "channel": params.get("channel", "twilio")
        if params.get("channel") in ("twilio", "simulator")
        else "twilio",
    }
    if token:
        claims = verify(token, secret=settings.session_token_secret)
        if claims.call_sid is not None and claims.call_sid != start.call_sid:
            raise TokenError("session token is for another Twilio call")
        return CallIdentity(
            call_id=claims.call_id,
            tenant_id=claims.tenant_id,
            agent_id=claims.agent_id,
            **common,  # type: ignore[arg-type]
        )
    if settings.production or not settings.allow_unsigned_streams:
        raise TokenError("missing session token")
    return CallIdentity(
        call_id=_checked(
            "call_id", params.get("call_id") or start.call_sid or f"dev-{uuid.uuid4().hex[:16]}"
        ),
        tenant_id=_checked("tenant_id", params.get("tenant_id") or DEFAULT_TENANT),
        agent_id=_checked("agent_id", params.get("agent_id") or settings.default_agent),
        **common,  # type: ignore[arg-type]
    )
