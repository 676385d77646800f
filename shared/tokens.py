"""Short-lived signed session tokens: the voice webhook signs, the media node verifies.

A token is a JWT (HS256, PyJWT) keyed with ``settings.session_token_secret`` (or an explicit
``secret``), for the audience ``parley-media-stream``. It proves that a media stream was started by
our own webhook for one call, tenant and agent, and only for a short while (``exp``). A token
signed with the call's Twilio CallSid is only good for a stream of that CallSid; the media node
also lets only one stream ever start per call (``shared.cache.streams``), so a token is used once.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import jwt
from pydantic import SecretStr

TOKEN_VERSION = 1
AUDIENCE = "parley-media-stream"
ALGORITHM = "HS256"


class TokenError(ValueError):
    """The token is missing, malformed, forged or expired; the message says which."""


@dataclass(frozen=True)
class SessionClaims:
    call_id: str
    tenant_id: str
    agent_id: str
    expires_at: int
    call_sid: str | None = None


def _key(secret: SecretStr | str | None) -> str:
    if secret is None:
        from shared.settings import get_settings

        secret = get_settings().session_token_secret
    raw = secret.get_secret_value() if isinstance(secret, SecretStr) else secret
    if not raw:
        raise TokenError("session token secret is empty")
    return raw


def sign(
    call_id: str,
    tenant_id: str,
    agent_id: str,
    ttl: float,
    *,
    secret: SecretStr | str | None = None,
    now: float | None = None,
    call_sid: str | None = None,
) -> str:
    """A token for one call (and, given, only its Twilio CallSid), valid for ``ttl`` seconds."""
    issued = time.time() if now is None else now
    claims: dict[str, object] = {
        "v": TOKEN_VERSION,
        "aud": AUDIENCE,
        "call_id": call_id,
        "tenant_id": tenant_id,
        "agent_id": agent_id,
        "iat": int(issued),
        "exp": int(issued + ttl),
    }
    if call_sid:
        claims["call_sid"] = call_sid
    return jwt.encode(claims, _key(secret), algorithm=ALGORITHM)


def verify(
    token: str, *, secret: SecretStr | str | None = None, now: float | None = None
) -> SessionClaims:
    """The token's claims, or :class:`TokenError` saying why it is refused."""
    if not token:
        raise TokenError("missing session token")
    try:
        # Expiry is checked below against ``now`` so callers (and tests) control the clock.
        claims = jwt.decode(
            token,
            _key(secret),
            algorithms=[ALGORITHM],
            audience=AUDIENCE,
            options={"verify_exp": False, "verify_iat": False, "require": ["exp", "aud"]},
        )
    except jwt.InvalidSignatureError:
        raise TokenError("session token signature mismatch") from None
    except jwt.DecodeError:
        raise TokenError("malformed session token: bad encoding or signature") from None
    except jwt.InvalidTokenError as exc:
        raise TokenError(f"malformed session token claims: {exc}") from None
    try:
        parsed = SessionClaims(
            call_id=str(claims["call_id"]),
            tenant_id=str(claims["tenant_id"]),
            agent_id=str(claims["agent_id"]),
            expires_at=int(claims["exp"]),
            call_sid=str(claims["call_sid"]) if claims.get("call_sid") else None,
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise TokenError("malformed session token claims") from exc
    if claims.get("v") != TOKEN_VERSION:
        raise TokenError(f"unsupported session token version {claims.get('v')!r}")
    if (time.time() if now is None else now) >= parsed.expires_at:
        raise TokenError("session token expired")
    return parsed
