"""Twilio REST calls both sides make: the media node hands a live call to a human, the functions
transfer and place calls. One client setup (base URL from settings, so tests point it at an HTTP
fake) and one ``<Dial>`` builder that knows phone numbers from SIP URIs."""

from __future__ import annotations

import functools

from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.http.http_client import TwilioHttpClient
from twilio.rest import Client
from twilio.twiml.voice_response import Dial, VoiceResponse

from shared.settings import Settings

TRANSFER_MESSAGE = "Please hold while I connect you to a person."
REQUEST_TIMEOUT_S = 15.0


class TwilioNotConfigured(RuntimeError):
    """PARLEY_TWILIO_ACCOUNT_SID or PARLEY_TWILIO_AUTH_TOKEN is missing."""


class TwilioFailed(RuntimeError):
    """Twilio refused or could not be reached; the message says what it answered."""


def configured(settings: Settings) -> bool:
    return bool(settings.twilio_account_sid and settings.twilio_auth_token)


def rest_client(settings: Settings) -> Client:
    if not settings.twilio_account_sid or settings.twilio_auth_token is None:
        raise TwilioNotConfigured(
            "Twilio REST needs PARLEY_TWILIO_ACCOUNT_SID and PARLEY_TWILIO_AUTH_TOKEN"
        )
    return _client(
        settings.twilio_account_sid,
        settings.twilio_auth_token.get_secret_value(),
        settings.twilio_api_base.rstrip("/"),
    )


@functools.lru_cache(maxsize=8)
def _client(account_sid: str, auth_token: str, base_url: str) -> Client:
    # One client per account and process: its session keeps connections to Twilio open, so a
    # campaign's dials do not each pay a new TCP and TLS handshake. A bounded timeout: a dial
    # that hangs must fail (and be retried by the schedule), not hold a worker forever.
    http = TwilioHttpClient(pool_connections=True, timeout=REQUEST_TIMEOUT_S)
    client = Client(account_sid, auth_token, http_client=http)
    client.api.base_url = base_url
    return client


def failed(exc: Exception) -> TwilioFailed:
    if isinstance(exc, TwilioRestException):
        return TwilioFailed(f"Twilio answered {exc.status}: {exc.msg}")
    detail = str(exc).strip()
    if len(detail) > 300:
        detail = detail[:300] + "…"
    return TwilioFailed(
        f"Twilio could not be reached: {type(exc).__name__}" + (f": {detail}" if detail else "")
    )


def dial_twiml(target: str, *, message: str | None = None, caller_id: str | None = None) -> str:
    """Say ``message`` (if any), then connect the caller to a number or a SIP URI."""
    response = VoiceResponse()
    if message:
        response.say(message)
    if target.lower().startswith("sip:"):
        dial = Dial(caller_id=caller_id)
        dial.sip(target)
        response.append(dial)
    else:
        response.dial(target, caller_id=caller_id)
    return str(response)


def transfer_call(
    settings: Settings,
    call_sid: str,
    target: str,
    *,
    caller_id: str | None = None,
    message: str | None = TRANSFER_MESSAGE,
) -> None:
    """Replace the live call's TwiML (our media stream) with ``<Dial>`` to ``target``.
    Synchronous (the ``twilio`` client is): run it in a worker thread from async code."""
    body = dial_twiml(target, message=message, caller_id=caller_id)
    try:
        rest_client(settings).calls(call_sid).update(twiml=body)
    except (TwilioException, OSError) as exc:
        raise failed(exc) from None
