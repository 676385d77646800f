"""Calls to Twilio's REST API through the ``twilio`` client (base URL from settings, so tests can
point it at a fake). Synchronous: routes run it in a worker thread."""

from __future__ import annotations

from dataclasses import dataclass

from twilio.base.exceptions import TwilioException

from functions.common.config import FunctionSettings
from shared.twilio_rest import (
    TRANSFER_MESSAGE,
    TwilioFailed,
    TwilioNotConfigured,
    failed,
    transfer_call,
)
from shared.twilio_rest import rest_client as client_for

__all__ = [
    "TRANSFER_MESSAGE",
    "PlacedCall",
    "TwilioFailed",
    "TwilioNotConfigured",
    "client_for",
    "place_call",
    "transfer_call",
]


@dataclass(frozen=True)
class PlacedCall:
    call_sid: str
    status: str


def place_call(
    settings: FunctionSettings,
    *,
    to: str,
    from_number: str,
    voice_url: str,
    status_url: str,
    amd_url: str | None = None,
) -> PlacedCall:
    """Ask Twilio to dial ``to``; when answered it fetches TwiML from our voice webhook. With
    ``amd_url``, Twilio's answering-machine detection runs alongside the call (async AMD) and
    posts its verdict there once the greeting ended (DetectMessageEnd: after the beep)."""
    amd: dict[str, str] = {}
    if amd_url:
        amd = {
            "machine_detection": "DetectMessageEnd",
            "async_amd": "true",
            "async_amd_status_callback": amd_url,
            "async_amd_status_callback_method": "POST",
        }
    try:
        call = client_for(settings).calls.create(
            to=to,
            from_=from_number,
            url=voice_url,
            method="POST",
            status_callback=status_url,
            status_callback_method="POST",
            status_callback_event=["initiated", "ringing", "answered", "completed"],
            **amd,
        )
    except (TwilioException, OSError) as exc:
        raise failed(exc) from None
    return PlacedCall(call_sid=str(call.sid), status=str(call.status or "queued"))
