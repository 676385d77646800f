"""Twilio REST calls both sides make: the media node hands a live call to a human, the functions
transfer and place calls. One client setup (base URL from settings, so tests point it at an HTTP
fake) and one ``<Dial>`` builder that knows phone numbers from SIP URIs."""

from __future__ import annotations

from twilio.base.exceptions import TwilioException, TwilioRestException
from twilio.rest import Client
from twilio.twiml.voice_response import Dial, VoiceResponse

from shared.settings import Settings

TRANSFER_MESSAGE = "Please hold while I connect you to a person."


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
    client = Client(settings.twilio_account_sid, settings.twilio_auth_token.get_secret_value())
    client.api.base_url = settings.twilio_api_base.rstrip("/")
    return client


def failed(exc: Exception) -> TwilioFailed:
    if isinstance(exc, TwilioRestException):
        return TwilioFailed(f"Twilio answered {exc.status}: {exc.msg}")
    return TwilioFailed(f"Twilio could not be reached: {type(exc).__name__}")


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
