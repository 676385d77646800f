"""How a delivery is signed, and how a receiver checks it (docs/api.md has the same in a form
to copy).

The signature is HMAC-SHA256, keyed with the subscription's secret, over
``"{timestamp}.{body}"``: the timestamp (Unix seconds, sent in ``Parley-Webhook-Timestamp``) is
signed with the body, so a captured request replayed later fails the receiver's age check, and
one whose timestamp was changed fails the signature."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time

ID_HEADER = "Parley-Webhook-Id"
TIMESTAMP_HEADER = "Parley-Webhook-Timestamp"
SIGNATURE_HEADER = "Parley-Webhook-Signature"
ATTEMPT_HEADER = "Parley-Webhook-Attempt"
VERSION = "v1"
DEFAULT_TOLERANCE_S = 300


def new_secret() -> str:
    return "whsec_" + secrets.token_urlsafe(32)


def sign(secret: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"{VERSION}={mac.hexdigest()}"


def signatures(secrets: list[str], timestamp: int, body: bytes) -> str:
    """The signature header's value: one ``v1=`` entry per secret, comma-separated (the current
    secret first; during a rotation the previous one too), so a receiver that knows either
    accepts the delivery."""
    return ",".join(sign(secret, timestamp, body) for secret in secrets)


def verify(
    secret: str,
    timestamp: str,
    signature: str,
    body: bytes,
    *,
    tolerance_s: int = DEFAULT_TOLERANCE_S,
    now: float | None = None,
) -> bool:
    """True if ``signature`` is ours for this body and timestamp, and the timestamp is within
    ``tolerance_s`` of now (older: a replay)."""
    try:
        sent = int(timestamp)
    except ValueError:
        return False
    if abs((time.time() if now is None else now) - sent) > tolerance_s:
        return False
    expected = sign(secret, sent, body)
    # The header may carry several signatures (during a secret rotation): any one may match.
    return any(hmac.compare_digest(expected, s.strip()) for s in signature.split(","))
