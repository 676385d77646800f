"""Twilio's answering-machine detection: what its verdict means for the call.

With ``MachineDetection=DetectMessageEnd`` and async AMD, Twilio posts the verdict once a
machine's greeting has ended (after the beep) while the call already runs with the agent. On a
machine the call's disposition is ``voicemail`` and the agent's ``voicemail`` setting decides:
leave its message (now is after the beep) and hang up, or just hang up.

The media node judges the same calls with its own detectors; whichever sees a machine first
claims the call's one verdict (shared/cache/verdicts.py) and only that one acts. When the media
node's claim came first, Twilio's answer is recorded and nothing else is done."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from psycopg import AsyncConnection
from twilio.base.exceptions import TwilioException
from twilio.twiml.voice_response import VoiceResponse

from functions.campaigns import store
from functions.common.db import fetch_one
from shared.agents.dispositions import VOICEMAIL
from shared.settings import Settings
from shared.twilio_rest import TwilioFailed, failed, rest_client

__all__ = ["ANSWERS", "Action", "TwilioFailed", "act", "record_answer"]

MACHINE = ("machine_start", "machine_end_beep", "machine_end_silence", "machine_end_other", "fax")
ANSWERS = ("human", "unknown", *MACHINE)


@dataclass(frozen=True)
class Action:
    twiml: str | None  # replaces the call's TwiML (the voicemail message, then hang up)
    hang_up: bool


async def record_answer(
    conn: AsyncConnection[Any], call_sid: str, answer: str, *, decides: bool = True
) -> Action | None:
    """Store the verdict; None if the call is not ours. A person, or a machine the media node
    already decided on (``decides`` False): nothing to do."""
    await store.answered_by(conn, call_sid, answer)
    if answer not in MACHINE or not decides:
        row = await fetch_one(conn, "SELECT 1 FROM calls WHERE twilio_call_sid = %s", (call_sid,))
        return None if row is None else Action(None, hang_up=False)
    row = await fetch_one(
        conn,
        """UPDATE calls c SET disposition = %s, end_reason = 'answering_machine',
               updated_at = now()
           WHERE c.twilio_call_sid = %s
           RETURNING (SELECT v.definition->'voicemail' FROM agent_versions v
                      WHERE v.tenant_id = c.tenant_id AND v.agent_id = c.agent_id
                        AND v.version = c.agent_version) AS voicemail""",
        (VOICEMAIL, call_sid),
    )
    if row is None:
        return None
    policy = row["voicemail"] or {}
    message = str(policy.get("message") or "")
    if policy.get("action") == "leave_message" and message and answer != "fax":
        response = VoiceResponse()
        response.say(message)
        response.hangup()
        return Action(str(response), hang_up=False)
    return Action(None, hang_up=True)


def act(settings: Settings, call_sid: str, action: Action) -> None:
    """Tell Twilio: new TwiML for the live call, or end it. Synchronous (the twilio client)."""
    try:
        call = rest_client(settings).calls(call_sid)
        if action.twiml is not None:
            call.update(twiml=action.twiml)
        elif action.hang_up:
            call.update(status="completed")
    except (TwilioException, OSError) as exc:
        raise failed(exc) from None
