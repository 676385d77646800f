"""The disposition taxonomy: how a call ended, exactly one per call.

Agents may add their own dispositions (``dispositions:`` in the definition); the standard ones
below always exist and keep their meaning, so analytics can compare agents.
"""

from __future__ import annotations

STANDARD_DISPOSITIONS: dict[str, str] = {
    "resolved": "The agent met the caller's need (answered, looked up, completed the flow).",
    "escalated_to_human": "The call was handed to a human (transfer to a number or SIP URI).",
    "callback_requested": "The caller asked to be called back later.",
    "caller_hung_up": "The caller hung up before the call was resolved.",
    "no_input": "The caller stayed silent and the agent ended the call.",
    "voicemail": "An answering machine or voicemail picked up (outbound calls).",
    "failed": "A technical failure ended the call (error, shutdown, tool failure with no route).",
    "screened": "A call-screening assistant answered and the agent hung up rather than announce "
    "itself (the agent's screening action hang_up).",
    "do_not_call": "The person asked not to be called again; the number joins the tenant's "
    "do-not-call list.",
}

RESOLVED = "resolved"
ESCALATED = "escalated_to_human"
CALLBACK = "callback_requested"
HUNG_UP = "caller_hung_up"
NO_INPUT = "no_input"
VOICEMAIL = "voicemail"
FAILED = "failed"
DO_NOT_CALL = "do_not_call"
SCREENED = "screened"
