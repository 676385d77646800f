"""The TwiML the voice webhook answers with."""

from __future__ import annotations

from fastapi.responses import Response
from twilio.twiml.voice_response import VoiceResponse

from shared.twilio_rest import dial_twiml

BUSY_MESSAGE = (
    "Sorry, all of our agents are busy right now. Please call back in a few minutes. Goodbye."
)
NOT_IN_SERVICE_MESSAGE = "Sorry, this number is not in service. Goodbye."
ALREADY_CONNECTED_MESSAGE = "This call is already connected. Goodbye."
UNAVAILABLE_MESSAGE = "Sorry, we cannot take your call right now. Please try again later. Goodbye."


class TwiMLResponse(Response):
    media_type = "application/xml"


def stream(node_url: str, parameters: dict[str, str]) -> str:
    """``<Connect><Stream url="wss://NODE/twilio/stream">`` with the call's parameters."""
    response = VoiceResponse()
    connect = response.connect()
    media = connect.stream(url=f"{node_url.rstrip('/')}/twilio/stream")
    for name, value in parameters.items():
        media.parameter(name=name, value=value)
    return str(response)


def say_and_hang_up(message: str) -> str:
    response = VoiceResponse()
    response.say(message)
    response.hangup()
    return str(response)


def dial(number: str, *, message: str | None = None, caller_id: str | None = None) -> str:
    """Say ``message`` (if any) then connect the caller to ``number`` (or a SIP URI)."""
    return dial_twiml(number, message=message, caller_id=caller_id)
