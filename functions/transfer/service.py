"""Calls to Twilio's REST API through the ``twilio`` client (base URL from settings, so tests can
point it at a fake). Synchronous: routes run it in a worker thread."""

from __future__ import annotations

from dataclasses import dataclass

from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.rest import Client

from functions.common.config import FunctionSettings
from functions.voice import twiml

TRANSFER_MESSAGE = "Please hold while I connect you to a person."


class TwilioNotConfigured(RuntimeError):
    """PARLEY_TWILIO_ACCOUNT_SID or PARLEY_TWILIO_AUTH_TOKEN is missing."""


class TwilioFailed(RuntimeError):
    """Twilio refused or could not be reached; the message says what it answered."""


def client_for(settings: FunctionSettings) -> Client:
    if not settings.twilio_account_sid or settings.twilio_auth_token is None:
        raise TwilioNotConfigured(
            "Twilio REST needs PARLEY_TWILIO_ACCOUNT_SID and PARLEY_TWILIO_AUTH_TOKEN"
        )
    client = Client(settings.twilio_account_sid, settings.twilio_auth_token.get_secret_value())
    client.api.base_url = settings.twilio_api_base.rstrip("/")
    return client


def _failed(exc: Exception) -> TwilioFailed:
    if isinstance(exc, TwilioRestException):
        return TwilioFailed(f"Twilio answered {exc.status}: {exc.msg}")
    return TwilioFailed(f"Twilio could not be reached: {type(exc).__name__}")


def transfer_call(
    settings: FunctionSettings,
    call_sid: str,
    target: str,
    *,
    caller_id: str | None = None,
    message: str = TRANSFER_MESSAGE,
) -> None:
    """Replace the live call's TwiML (our media stream) with ``<Say>`` + ``<Dial>target``."""
    body = twiml.dial(target, message=message, caller_id=caller_id)
    try:
        client_for(settings).calls(call_sid).update(twiml=body)
    except (TwilioException, OSError) as exc:
        raise _failed(exc) from None


@dataclass(frozen=True)
class PlacedCall:
    call_sid: str
    status: str


def place_call(
    settings: FunctionSettings, *, to: str, from_number: str, voice_url: str, status_url: str
) -> PlacedCall:
    """Ask Twilio to dial ``to``; when answered it fetches TwiML from our voice webhook."""
    try:
        call = client_for(settings).calls.create(
            to=to,
            from_=from_number,
            url=voice_url,
            method="POST",
            status_callback=status_url,
            status_callback_method="POST",
            status_callback_event=["initiated", "ringing", "answered", "completed"],
        )
    except (TwilioException, OSError) as exc:
        raise _failed(exc) from None
    return PlacedCall(call_sid=str(call.sid), status=str(call.status or "queued"))
