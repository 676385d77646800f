"""Hand a live Twilio call to a human once the agent's announcement has been heard.

Needs the call's CallSid and Twilio REST credentials (``PARLEY_TWILIO_ACCOUNT_SID`` /
``PARLEY_TWILIO_AUTH_TOKEN``); without them (the development simulator) the node only records the
escalation and ends the stream.
"""

from __future__ import annotations

import asyncio

from shared.settings import Settings
from shared.twilio_rest import TwilioFailed as TransferFailed
from shared.twilio_rest import configured, transfer_call

__all__ = ["TransferFailed", "can_transfer", "transfer"]


def can_transfer(settings: Settings, call_sid: str) -> bool:
    return bool(call_sid) and configured(settings)


async def transfer(settings: Settings, call_sid: str, target: str) -> None:
    """Redirect the call to ``target`` (E.164 number or SIP URI); the caller already heard the
    agent announce it, so no extra message is spoken."""
    await asyncio.to_thread(transfer_call, settings, call_sid, target, message=None)
