"""Hand a live Twilio call to a human: replace its TwiML (our stream) with ``<Dial>``.

Runs after the agent's announcement has been heard. Needs the call's CallSid and Twilio REST
credentials (``PARLEY_TWILIO_ACCOUNT_SID``/``PARLEY_TWILIO_AUTH_TOKEN``); without them (the
development simulator) the node only records the escalation and ends the stream.
"""

from __future__ import annotations

import asyncio
import logging

from twilio.base.exceptions import TwilioException
from twilio.rest import Client
from twilio.twiml.voice_response import VoiceResponse

from shared.settings import Settings

log = logging.getLogger(__name__)


class TransferFailed(RuntimeError):
    """Twilio refused the transfer or could not be reached."""


def dial_twiml(target: str) -> str:
    response = VoiceResponse()
    if target.startswith("sip"):
        response.dial().sip(target)
    else:
        response.dial(target)
    return str(response)


def can_transfer(settings: Settings, call_sid: str) -> bool:
    return bool(call_sid and settings.twilio_account_sid and settings.twilio_auth_token)


def _update(settings: Settings, call_sid: str, target: str) -> None:
    token = settings.twilio_auth_token
    assert token is not None
    client = Client(settings.twilio_account_sid, token.get_secret_value())
    client.api.base_url = settings.twilio_api_base.rstrip("/")
    try:
        client.calls(call_sid).update(twiml=dial_twiml(target))
    except (TwilioException, OSError) as exc:
        raise TransferFailed(f"Twilio did not transfer {call_sid}: {exc}") from None


async def transfer(settings: Settings, call_sid: str, target: str) -> None:
    """Redirect the call to ``target`` (E.164 number or SIP URI)."""
    await asyncio.to_thread(_update, settings, call_sid, target)
