"""Conversation tests: text scripts run against an agent, checked turn by turn.

A script (YAML) lists turns (``user``, ``dtmf``, ``no_input`` or ``hangup``) each with an optional
``expect`` block, plus canned answers for the agent's HTTP tools keyed by the action's state::

    name: order status by voice
    tools:
      lookup_order: {status: 200, json: {status: shipped, eta: Friday}}
    turns:
      - expect: {state: main_menu, say: [Acme]}          # the greeting
      - user: where is my order
        expect: {intent: order_status, state: get_order_number}
    end:
      disposition: resolved
      slots: {order_number: "4567"}

The run stops at the first mismatch and reports it as a readable expected/actual diff.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from media_nodes.dialogue.engine import AgentSession
from media_nodes.dialogue.protocol import (
    GREETING_TURN_INDEX,
    AgentOutput,
    AgentText,
    DialogueInput,
    DtmfInput,
    EndCall,
    NoInput,
    Outcome,
    StateEntered,
    Transfer,
    UserTurn,
)
from shared.agents.loader import _LineMap as LineMap
from shared.events.models import EscalationRequested, IntentDetected, SlotFilled


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ToolAnswer(_Strict):
    status: int = 200
    json_body: Any = Field(None, alias="json")
    url_contains: str | None = Field(None, description="Fail if the request URL lacks this.")


class Expect(_Strict):
    state: str | None = Field(None, description="State after the turn.")
    states: list[str] | None = Field(None, description="States entered in the turn, in order.")
    intent: str | None = None
    say: list[str] | str | None = Field(None, description="Substrings of what the agent said.")
    not_say: list[str] | str | None = None
    slots: dict[str, Any] | None = Field(None, description="Slots that must hold these values.")
    actions: list[str] | None = Field(
        None, description="escalation[:reason], transfer[:target], end_call; all, in order."
    )
    disposition: str | None = None


class ScriptTurn(_Strict):
    user: str | None = None
    dtmf: str | None = None
    no_input: bool = False
    hangup: bool = False
    expect: Expect = Field(default_factory=Expect)

    @model_validator(mode="after")
    def _one_input(self) -> ScriptTurn:
        if sum(self._given()) > 1:
            raise ValueError("a turn has at most one of user, dtmf, no_input, hangup")
        return self

    def _given(self) -> list[bool]:
        return [self.user is not None, self.dtmf is not None, self.no_input, self.hangup]

    @property
    def opens_call(self) -> bool:
        """Nothing from the caller: as the script's first turn, the agent's greeting."""
        return not any(self._given())


class EndExpect(_Strict):
    disposition: str | None = None
    slots: dict[str, Any] | None = None
    states: list[str] | None = Field(None, description="States visited in the call, in order.")
    intents: list[str] | None = Field(None, description="Intents recognised in the call, in order.")
    ended: bool | None = Field(None, description="Whether the agent ended/transferred the call.")


class Script(_Strict):
    name: str = ""
    agent: str | None = None
    tenant: str = "test"
    variables: dict[str, str] = Field(default_factory=dict)
    now: datetime | None = Field(
        None,
        description="When the call starts (2026-12-02T10:00:00-05:00): what the caller's "
        "'tomorrow' counts from. Empty: the real time, so scripts with dates should give it.",
    )
    tools: dict[str, ToolAnswer] = Field(default_factory=dict)
    turns: list[ScriptTurn] = Field(min_length=1)
    end: EndExpect = Field(default_factory=EndExpect)


class ScriptError(ValueError):
    """The script file itself is invalid."""


def load_script(path: Path) -> Script:
    """A script file; its problems say ``file:line: field: message``."""
    try:
        text = path.read_text(encoding="utf-8")
        lines = LineMap(yaml.compose(text, Loader=yaml.SafeLoader))
        data = yaml.safe_load(text)
        return Script.model_validate(data)
    except (OSError, UnicodeDecodeError) as exc:
        raise ScriptError(f"{path}: {exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        raise ScriptError(f"{where}: not valid YAML: {getattr(exc, 'problem', exc)}") from None
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            loc = tuple(error["loc"])
            line = lines.line_of(loc)
            field = ".".join(str(p) for p in loc) or "(document)"
            problems.append(
                f"{path}:{line}: {field}: {error['msg']}"
                if line
                else f"{path}: {field}: {error['msg']}"
            )
        raise ScriptError("\n".join(problems)) from None


@dataclass
class Mismatch:
    turn: int
    label: str
    field: str
    expected: Any
    actual: Any

    def __str__(self) -> str:
        return (
            f"turn {self.turn} ({self.label}): {self.field} differs\n"
            f"  - expected: {_show(self.expected)}\n"
            f"  + actual:   {_show(self.actual)}"
        )


@dataclass
class TurnRecord:
    label: str
    text: str
    outputs: list[AgentOutput]


@dataclass
class ScriptResult:
    script: str
    turns: list[TurnRecord] = field(default_factory=list)
    mismatch: Mismatch | None = None
    tool_errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.mismatch is None


def _show(value: Any) -> str:
    return json.dumps(value, default=str, ensure_ascii=False)


def canned_tools(
    script: Script, state_of: Callable[[], str], errors: list[str]
) -> httpx.AsyncClient:
    """An HTTP client that answers the agent's tool calls from the script, by calling state."""

    def answer(request: httpx.Request) -> httpx.Response:
        state = state_of()
        canned = script.tools.get(state)
        if canned is None:
            errors.append(f"tool call in state '{state}' ({request.url}) has no answer in 'tools'")
            return httpx.Response(599, json={"error": "not scripted"})
        if canned.url_contains and canned.url_contains not in str(request.url):
            errors.append(f"tool URL {request.url} lacks '{canned.url_contains}'")
        return httpx.Response(canned.status, json=canned.json_body)

    return httpx.AsyncClient(transport=httpx.MockTransport(answer))


async def run_script(
    script: Script,
    new_session: Callable[[httpx.AsyncClient, Callable[[], str]], Awaitable[AgentSession]],
    *,
    name: str = "",
) -> ScriptResult:
    """Play ``script``; stop at the first mismatch."""
    result = ScriptResult(name or script.name)
    holder: dict[str, AgentSession] = {}
    client = canned_tools(
        script, lambda: holder["s"].state if "s" in holder else "", result.tool_errors
    )
    try:
        session = await new_session(client, lambda: holder["s"].state)
        holder["s"] = session
        # The script's turns are the call's: the greeting is turn 0, and a script that opens with
        # the caller's words has none.
        first = 0 if script.turns[0].opens_call else 1
        for index, turn in enumerate(script.turns):
            label, outputs = await _play(session, turn, index + first)
            text = "".join(o.text for o in outputs if isinstance(o, AgentText))
            result.turns.append(TurnRecord(label, text, outputs))
            mismatch = _check_turn(index, label, turn.expect, session, outputs, text)
            if mismatch is None and result.tool_errors:
                mismatch = Mismatch(
                    index, label, "tools", "scripted tool answers", result.tool_errors
                )
            if mismatch:
                result.mismatch = mismatch
                return result
        result.mismatch = _check_end(len(script.turns), script.end, session)
        return result
    finally:
        await client.aclose()


async def _play(
    session: AgentSession, turn: ScriptTurn, turn_index: int
) -> tuple[str, list[AgentOutput]]:
    user_input: DialogueInput | None = None
    if turn.user is not None:
        user_input, label = UserTurn(turn.user), f"user: {turn.user}"
    elif turn.dtmf is not None:
        user_input, label = DtmfInput(turn.dtmf), f"dtmf: {turn.dtmf}"
    elif turn.no_input:
        user_input, label = NoInput(), "no input"
    elif turn.hangup:
        return "caller hangs up", [session.finish("caller_hung_up")]
    elif turn_index == GREETING_TURN_INDEX:
        return "greeting", [item async for item in session.greeting()]
    else:
        return "nothing", []
    return label, [item async for item in session.handle(user_input, turn_index=turn_index)]


def _actions(outputs: list[AgentOutput]) -> list[str]:
    found = []
    for item in outputs:
        if isinstance(item, EscalationRequested):
            found.append(f"escalation:{item.reason}")
        elif isinstance(item, Transfer):
            found.append(f"transfer:{item.target}")
        elif isinstance(item, EndCall):
            found.append("end_call")
    return found


def _action_matches(expected: list[str], actual: list[str]) -> bool:
    if len(expected) != len(actual):
        return False
    return all(a == e or a.split(":", 1)[0] == e for e, a in zip(expected, actual, strict=True))


def _as_list(value: list[str] | str | None) -> list[str]:
    return [value] if isinstance(value, str) else list(value or [])


def _check_turn(
    index: int,
    label: str,
    expect: Expect,
    session: AgentSession,
    outputs: list[AgentOutput],
    text: str,
) -> Mismatch | None:
    def miss(name: str, expected: Any, actual: Any) -> Mismatch:
        return Mismatch(index, label, name, expected, actual)

    entered = [o.state for o in outputs if isinstance(o, StateEntered)]
    intents = [o.intent for o in outputs if isinstance(o, IntentDetected)]
    if expect.state is not None and session.state != expect.state:
        return miss("state", expect.state, session.state)
    if expect.states is not None and entered != expect.states:
        return miss("states", expect.states, entered)
    if expect.intent is not None and expect.intent not in intents:
        return miss("intent", expect.intent, intents)
    lowered = text.lower()
    for part in _as_list(expect.say):
        if part.lower() not in lowered:
            return miss("say", f"...{part}...", text)
    for part in _as_list(expect.not_say):
        if part.lower() in lowered:
            return miss("not_say", f"no '{part}'", text)
    if expect.slots is not None:
        actual = {k: session.slots.get(k) for k in expect.slots}
        if actual != expect.slots:
            return miss("slots", expect.slots, actual)
    if expect.actions is not None and not _action_matches(expect.actions, _actions(outputs)):
        return miss("actions", expect.actions, _actions(outputs))
    if expect.disposition is not None:
        outcome = next((o for o in outputs if isinstance(o, Outcome)), None)
        actual_disposition = outcome.disposition if outcome else None
        if actual_disposition != expect.disposition:
            return miss("disposition", expect.disposition, actual_disposition)
    return None


def _check_end(index: int, expect: EndExpect, session: AgentSession) -> Mismatch | None:
    label = "end of call"
    outcome = session.outcome or session.finish("caller_hung_up")
    if expect.disposition is not None and outcome.disposition != expect.disposition:
        return Mismatch(index, label, "disposition", expect.disposition, outcome.disposition)
    if expect.slots is not None:
        actual = {k: outcome.slots.get(k) for k in expect.slots}
        if actual != expect.slots:
            return Mismatch(index, label, "slots", expect.slots, actual)
    if expect.states is not None and not _is_subsequence(expect.states, session.states_visited):
        return Mismatch(index, label, "states", expect.states, session.states_visited)
    intents = [i.intent for i in session.intents]
    if expect.intents is not None and intents != expect.intents:
        return Mismatch(index, label, "intents", expect.intents, intents)
    if expect.ended is not None and session.ended != expect.ended:
        return Mismatch(index, label, "ended", expect.ended, session.ended)
    return None


def _is_subsequence(wanted: list[str], seen: list[str]) -> bool:
    it = iter(seen)
    return all(any(s == w for s in it) for w in wanted)


def format_transcript(result: ScriptResult) -> str:
    lines = []
    for record in result.turns:
        if record.label != "greeting":
            lines.append(f"  caller> {record.label}")
        facts = []
        for item in record.outputs:
            if isinstance(item, IntentDetected):
                facts.append(f"intent {item.intent} ({item.confidence:.2f}, {item.source})")
            elif isinstance(item, SlotFilled):
                facts.append(f"slot {item.name}={item.value!r}")
            elif isinstance(item, StateEntered):
                facts.append(f"-> {item.state}")
            elif isinstance(item, EscalationRequested):
                facts.append("escalation")
            elif isinstance(item, Transfer | EndCall | Outcome):
                facts.append(type(item).__name__.lower())
        if facts:
            lines.append(f"           [{', '.join(facts)}]")
        if record.text:
            lines.append(f"  agent>  {record.text.strip()}")
    return "\n".join(lines)
