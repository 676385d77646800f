"""The one narrow interface between the media pipeline and the dialogue engine.

The media node feeds a :class:`DialogueSession` user input (a transcribed turn, DTMF digits, or
silence), with the turn's index, and consumes an async stream of :data:`AgentOutput` items: text
chunks to speak, as they are produced (so TTS can start on the first sentence), structured facts
(the call's event payloads, built complete by the dialogue) and actions.
The media node may stop iterating at any time (barge-in cancels the task); a session must then
stay consistent and be ready for the next input.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from shared.events.models import EscalationRequested, IntentDetected, SlotFilled, ToolCalled

GREETING_TURN_INDEX = 0  # the greeting is the call's turn 0; the caller's turns count from 1

# ---- input -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class UserTurn:
    """What the caller said, as transcribed."""

    text: str
    confidence: float | None = None


@dataclass(frozen=True)
class DtmfInput:
    """Keypad digits pressed by the caller (one or more of 0-9 * #)."""

    digits: str


@dataclass(frozen=True)
class NoInput:
    """The caller said nothing for the no-input timeout."""


DialogueInput = UserTurn | DtmfInput | NoInput

# ---- output ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AgentText:
    """A chunk of text to speak; chunks concatenate into the agent's turn."""

    text: str


@dataclass(frozen=True)
class StateEntered:
    state: str


@dataclass(frozen=True)
class Transfer:
    """Hand the call to a human: a phone number (E.164) or a SIP URI. Speak first, then act."""

    target: str


@dataclass(frozen=True)
class EndCall:
    """Hang up after the text already yielded has been played."""


@dataclass(frozen=True)
class Outcome:
    """The call's final disposition: exactly one per call."""

    disposition: str
    summary: str = ""
    slots: dict[str, Any] = field(default_factory=dict)


# The facts a turn establishes are the call's event payloads themselves (one type per fact): the
# media node emits them as they are.
AgentOutput = (
    AgentText
    | StateEntered
    | IntentDetected
    | SlotFilled
    | ToolCalled
    | EscalationRequested
    | Transfer
    | EndCall
    | Outcome
)


@dataclass(frozen=True)
class MachinePolicy:
    """What the agent does when a machine answers instead of a person."""

    voicemail_message: str | None  # left after the beep; None: hang up
    screening_message: str | None  # said to a call-screening assistant; None: hang up


EndReason = Literal[
    "caller_hung_up",
    "transferred",
    "agent_ended",
    "answering_machine",  # voicemail, or a screening assistant the agent hangs up on
    "error",
    "shutdown",
]


class SpeculationRefused(Exception):
    """A trial turn (on a :meth:`DialogueSession.fork`) reached an action with effects outside
    the call, such as an HTTP request: it may only run once the caller's turn is confirmed."""


class DialogueSession(Protocol):
    """One call's conversation."""

    @property
    def state(self) -> str: ...

    @property
    def agent_version(self) -> int | None:
        """The stored version of the agent answering (None for an agent read from a file)."""
        ...

    @property
    def expecting(self) -> Literal["digits", "yes_no"] | None:
        """What the next caller turn should hold, as far as when it ends is concerned: a number
        read in groups ("digits"), a yes or no ("yes_no"), or anything (None)."""
        ...

    def greeting(self) -> AsyncIterator[AgentOutput]:
        """What the agent says when the call is answered (fixed text: cacheable by TTS); its
        facts are those of turn :data:`GREETING_TURN_INDEX`."""
        ...

    def handle(self, user_input: DialogueInput, *, turn_index: int) -> AsyncIterator[AgentOutput]:
        """React to one input, the call's turn ``turn_index`` (>= 1): the facts it decides carry
        that index (a fact a barge-in held back is delivered later, with its own turn's)."""
        ...

    def interrupted(self, heard_text: str) -> None:
        """The caller barged in; only ``heard_text`` of the last agent turn was played."""
        ...

    def fixed_texts(self) -> list[str]:
        """What the agent says word for word, for the TTS to prepare before calls (may be [])."""
        ...

    def fork(self) -> DialogueSession | None:
        """A copy to try the next turn on before the caller has surely finished: what it decides
        changes nothing here, and an action with outside effects raises
        :class:`SpeculationRefused` instead of running. Only the copy's first turn is a trial:
        the media node adopts the copy when the turn is confirmed as tried, and it then acts like
        the session. None when no copy can be made now (a decision is running)."""

    def machine_policy(self) -> MachinePolicy:
        """The agent's voicemail and call-screening settings."""
        ...

    def finish(self, reason: EndReason) -> Outcome:
        """The call is over: return its single disposition (an earlier Outcome wins)."""
        ...


class DialogueFactory(Protocol):
    """Creates sessions for an agent; owned by the media node, shared by all calls."""

    async def new_session(
        self, *, tenant_id: str, agent_id: str, call_id: str, variables: dict[str, str]
    ) -> DialogueSession: ...
