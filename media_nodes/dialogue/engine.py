"""One call's conversation: the state machine that implements :class:`DialogueSession`.

Each input is handled in two phases. *Decide* runs the understanding (classifier, parsers, LLM
choices with fallback), tool calls and every state change, buffering what to say. *Speak* then
yields the buffer, streaming LLM answers as they come. All state changes happen before the first
yield, so a caller who barges in (the media node stops iterating) leaves the session consistent.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import math
import re
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo

from media_nodes.dialogue.actions import ToolResult, call_http
from media_nodes.dialogue.llm import NONE_OPTION, LlmFailure, Message
from media_nodes.dialogue.nlu.intents import accepted
from media_nodes.dialogue.nlu.slots import (
    Parsed,
    ParseResult,
    Unparsed,
    is_plain_answer,
    is_plain_yes,
    parse_dtmf,
    parse_slot,
    parse_yes_no,
    speakable,
)
from media_nodes.dialogue.outcomes import disposition_for_end, template_summary
from media_nodes.dialogue.protocol import (
    GREETING_TURN_INDEX,
    AgentOutput,
    AgentText,
    DialogueInput,
    DtmfInput,
    EndCall,
    EndReason,
    MachinePolicy,
    NoInput,
    Outcome,
    SpeculationRefused,
    StateEntered,
    Transfer,
    UserTurn,
)
from media_nodes.dialogue.runtime import AgentRuntime
from media_nodes.dialogue.templates import render
from shared.agents.dispositions import ESCALATED, FAILED, NO_INPUT, RESOLVED
from shared.agents.models import (
    RETURN,
    EndAction,
    HttpAction,
    IntentRoute,
    Slot,
    State,
    TransferAction,
)
from shared.agents.phrases import fixed_texts, screening_message, voicemail_message
from shared.events.models import (
    TOOL_ERROR_MAX_CHARS,
    EscalationReason,
    EscalationRequested,
    IntentDetected,
    IntentSource,
    SlotFilled,
    ToolCalled,
)
from shared.knowledge.embedder import Vectors
from shared.knowledge.store import Passage

log = logging.getLogger(__name__)

NO_MATCH = "no_match"
MAX_MOVES_PER_TURN = 25
MAX_UTTERANCE_CHARS = 2000
# While the caller is giving a value (or asking the knowledge), a global intent needs this much
# more confidence to win over a value that parsed; a value that did not parse needs none.
GLOBAL_OVER_VALUE_MARGIN = 0.1
# Slot types whose values are told apart from each other's words (a day, a time, an option), so
# one utterance may fill several of them ("Tuesday at 3") or correct an earlier one.
ALONGSIDE_TYPES = frozenset({"date", "time", "choice"})
CORRECTION = re.compile(
    r"^\W*(no|nope|actually|sorry|wait|oh|hmm|make it|change|instead|rather|can we do|"
    r"could we do|let's do|lets do)\b|\b(instead|rather|make it|change it|change that)\b",
    re.IGNORECASE,
)
# Below threshold + this, an intent may lose to a knowledge passage that fits the words better;
# a question ("do you ...?") gets a small head start, since questions are what knowledge answers.
CONFIDENT_INTENT_MARGIN = 0.2
QUESTION_BONUS = 0.05
QUESTION_WORDS = frozenset(
    "do does did can could is are was will would how what which when where why who".split()
)


@dataclass(frozen=True)
class TraceEntry:
    """A fact about how a turn was decided (LLM fallbacks, guardrail rejections, tool errors)."""

    kind: str
    detail: str
    at_ms: float = field(default_factory=lambda: time.time() * 1000)


@dataclass(frozen=True)
class _Stream:
    """An LLM answer to stream during the speak phase, with what to say if it fails."""

    start: Callable[[], AsyncIterator[str]]
    fallback: str


@dataclass(frozen=True)
class _ConfirmSlot:
    slot: Slot
    value: Any


@dataclass(frozen=True)
class _OfferHuman:
    then: str


@dataclass(frozen=True)
class _ReturnPoint:
    """Where a sub-flow (an intent's ``call``) goes back to: the state and what it waited for."""

    state: str
    pending: _ConfirmSlot | _OfferHuman | None


class _Turn:
    def __init__(self, index: int) -> None:
        self.index = index  # the call's turn: what the facts decided in it carry
        self.items: list[AgentOutput | _Stream] = []
        self.moves = 0

    def say(self, text: str | None) -> None:
        if text and text.strip():
            self.items.append(AgentText(text.strip()))

    def add(self, item: AgentOutput | _Stream) -> None:
        self.items.append(item)


class AgentSession:
    """Implements :class:`media_nodes.dialogue.protocol.DialogueSession` for one call."""

    def __init__(
        self,
        runtime: AgentRuntime,
        *,
        call_id: str,
        variables: dict[str, str] | None = None,
        started_at: datetime | None = None,
    ) -> None:
        self.runtime = runtime
        self.agent = runtime.definition
        self.call_id = call_id
        # Dates the caller says count from the call's start in the business's timezone.
        zone = ZoneInfo(self.agent.timezone)
        start = started_at or datetime.now(UTC)
        self.started_at = (
            start.replace(tzinfo=zone) if start.tzinfo is None else start.astimezone(zone)
        )
        self.variables = {**self.agent.variables, **(variables or {})}
        self._state = self.agent.start
        self.slots: dict[str, Any] = {}
        self.history: list[Message] = []
        self.trace: list[TraceEntry] = []
        self.intents: list[IntentDetected] = []
        self.states_visited: list[str] = []
        self.outcome: Outcome | None = None
        self._tentative: str | None = None
        self._escalation: str | None = None
        self._pending: _ConfirmSlot | _OfferHuman | None = None
        self._returns: list[_ReturnPoint] = []
        self._regions = {
            slot.name: slot.region
            for state in self.agent.states.values()
            for slot in state.collect or []
            if slot.type == "phone"
        }
        self._failed = 0
        self._silent = 0
        self._slot_attempts: dict[str, int] = {}
        self._last_said = ""
        self._ended = False
        self._greeted = False
        self._embedded: tuple[str, Vectors] | None = None
        self._backlog: list[AgentOutput | _Stream] = []
        self._deciding: asyncio.Future[None] | None = None
        self._trial = False  # a fork trying a turn: actions with outside effects are refused

    # ---- DialogueSession ------------------------------------------------------------------

    @property
    def state(self) -> str:
        return self._state

    @property
    def agent_version(self) -> int | None:
        return self.runtime.loaded.version

    @property
    def expecting(self) -> Literal["digits", "yes_no"] | None:
        if self._pending is not None:  # a read-back or an offer of a human waits for yes or no
            return "yes_no"
        slot = self._next_slot(self._current())
        if slot is not None and slot.type in ("digits", "phone"):
            return "digits"
        if slot is not None and slot.type == "yes_no":
            return "yes_no"
        return None

    @property
    def ended(self) -> bool:
        return self._ended

    async def greeting(self) -> AsyncIterator[AgentOutput]:
        turn = _Turn(GREETING_TURN_INDEX)
        if not self._greeted:
            self._greeted = True
            turn.say(self._render(self.agent.greeting))
            await self._enter(self.agent.start, turn, greeting=True)
        async for item in self._speak(turn):
            yield item

    async def handle(
        self, user_input: DialogueInput, *, turn_index: int
    ) -> AsyncIterator[AgentOutput]:
        if self._deciding is not None and not self._deciding.done():
            # The previous turn was abandoned mid-decision: let it land before this one.
            await asyncio.shield(self._deciding)
        for item in self._take_backlog():
            yield item
        if self._ended:
            return
        turn = _Turn(turn_index)
        self._deciding = asyncio.ensure_future(self._decide_safely(user_input, turn))
        try:
            # Shielded: a barge-in that cancels the media node's task must not cut a decision
            # (a tool call, a state change) in half. What it decided is delivered next turn.
            await asyncio.shield(self._deciding)
        except asyncio.CancelledError:
            self._deciding.add_done_callback(lambda _: self._backlog.extend(turn.items))
            raise
        async for item in self._speak(turn):
            yield item

    async def _decide_safely(self, user_input: DialogueInput, turn: _Turn) -> None:
        if not self._greeted:
            self._greeted = True
            await self._enter(self.agent.start, turn, greeting=True)
        try:
            await self._decide(user_input, turn)
            self._trial = False  # only a fork's first turn is a trial: once adopted, it acts
        except SpeculationRefused:
            raise
        except Exception:
            # A bug or an unexpected failure must not leave the caller in silence.
            log.exception("dialogue turn failed (call %s, state %s)", self.call_id, self._state)
            self._record("error", f"turn failed in state {self._state}")
            turn.items.clear()
            await self._escalate("other", turn)

    def _take_backlog(self) -> list[AgentOutput]:
        """What a barge-in kept from the caller last turn: the facts (intents, slots, states,
        actions) always count; once the call is over, the words that go with its end too."""
        backlog, self._backlog = self._backlog, []
        if self._ended:
            return [i for i in backlog if not isinstance(i, _Stream)]
        return [i for i in backlog if not isinstance(i, AgentText | _Stream)]

    def fixed_texts(self) -> list[str]:
        return fixed_texts(self.agent)

    def interrupted(self, heard_text: str) -> None:
        heard = Message("assistant", heard_text.strip() + " ...")
        if self.history and self.history[-1].role == "assistant":
            self.history[-1] = heard
        elif heard_text.strip():
            self.history.append(heard)

    def fork(self) -> AgentSession | None:
        if self._deciding is not None and not self._deciding.done():
            return None
        # Everything the call has gathered is copied; what all calls share is not.
        shared: dict[int, Any] = {id(self.runtime): self.runtime, id(self.agent): self.agent}
        if self._deciding is not None:
            shared[id(self._deciding)] = None
        twin = copy.deepcopy(self, shared)
        twin._trial = True
        return twin

    def machine_policy(self) -> MachinePolicy:
        return MachinePolicy(
            voicemail_message=voicemail_message(self.agent),
            screening_message=screening_message(self.agent),
        )

    def finish(self, reason: EndReason) -> Outcome:
        self._ended = True
        if self.outcome is None:
            disposition = disposition_for_end(reason, self._tentative)
            self.outcome = self._make_outcome(disposition)
        return self.outcome

    async def summarize(self) -> str:
        """The call's summary: the LLM's when configured, else the template's. Call after finish().

        Not part of the protocol (finish() must return at once with the template summary); the
        media node may call this afterwards to store a richer note. Never raises.
        """
        outcome = self.outcome or self.finish("caller_hung_up")
        if not self.runtime.llm_enabled:
            return outcome.summary
        assert self.runtime.llm is not None
        try:
            return await self.runtime.llm.summarize(transcript=self.history, facts=outcome.summary)
        except LlmFailure as failure:
            self._record(f"llm_{failure.kind}", f"summary: {failure.detail}")
            return outcome.summary

    # ---- speak phase ----------------------------------------------------------------------

    async def _speak(self, turn: _Turn) -> AsyncIterator[AgentOutput]:
        said: list[str] = []
        # Items leave the backlog as they are handed over; what a barge-in leaves behind is
        # delivered at the start of the next turn.
        self._backlog = list(turn.items)
        while self._backlog:
            item = self._backlog.pop(0)
            if isinstance(item, _Stream):
                async for piece in self._stream(item):
                    said.append(piece)
                    yield AgentText(piece)
                continue
            if isinstance(item, AgentText):
                text = item.text if not said else " " + item.text
                said.append(text)
                self._remember_said("".join(said))
                yield AgentText(text)
                continue
            yield item
        self._remember_said("".join(said))

    async def _stream(self, stream: _Stream) -> AsyncIterator[str]:
        first = True
        try:
            async for piece in stream.start():
                yield (" " + piece.lstrip()) if first else piece
                first = False
        except LlmFailure as failure:
            self._record(f"llm_{failure.kind}", failure.detail)
            if first:
                yield " " + stream.fallback
            else:
                yield "."

    def _remember_said(self, text: str) -> None:
        if not text.strip():
            return
        self._last_said = text.strip()
        if self.history and self.history[-1].role == "assistant":
            self.history[-1] = Message("assistant", self._last_said)
        else:
            self.history.append(Message("assistant", self._last_said))

    # ---- decide phase -----------------------------------------------------------------------

    async def _decide(self, user_input: DialogueInput, turn: _Turn) -> None:
        if isinstance(user_input, NoInput):
            await self._no_input(turn)
            return
        self._silent = 0
        if isinstance(user_input, DtmfInput):
            self.history.append(Message("user", f"(pressed {user_input.digits})"))
            await self._dtmf(user_input.digits, turn)
            return
        assert isinstance(user_input, UserTurn)
        text = " ".join(user_input.text.split())[:MAX_UTTERANCE_CHARS]
        self.history.append(Message("user", text))
        if not any(ch.isalnum() for ch in text):
            await self._not_understood(turn)
            return
        await self._text(text, turn)

    async def _text(self, text: str, turn: _Turn) -> None:
        if isinstance(self._pending, _ConfirmSlot):
            await self._confirm_reply(text, turn)
            return
        if isinstance(self._pending, _OfferHuman):
            offer = self._pending
            if is_plain_yes(text):
                self._pending = None
                await self._escalate("explicit_request", turn)
                return
            if await self._global_intent(text, turn, margin=0.0):
                return
            if parse_yes_no(text) is False:
                self._pending = None
                await self._enter(offer.then, turn)
                return
            # Neither: most likely another question, which the state below answers.
        state = self._current()
        if state.collect:
            await self._collect_reply(text, turn)
        elif state.answer:
            self._pending = None
            if await self._global_intent(text, turn, margin=GLOBAL_OVER_VALUE_MARGIN):
                return
            await self._answer_then_next(text, turn)
        elif state.intents or self.runtime.definition.global_intents:
            await self._route(text, turn)
        else:
            await self._not_understood(turn)

    async def _route(self, text: str, turn: _Turn) -> None:
        routes = self.runtime.routes(self._state)
        vector = await self._embed(text)
        ranked = self.runtime.classifier.rank(vector, routes, text)
        best = ranked[0] if ranked else None
        best_score = best.score if best else 0.0
        # Knowledge competes with the intent's plain similarity: retrieval scores are the same
        # kind of number, the classifier's contrasts are not.
        similarity = best.similarity if best else 0.0
        if similarity < self.runtime.threshold + CONFIDENT_INTENT_MARGIN:
            # Not a confident intent: a question the knowledge answers better is answered here
            # ("do you ship to Canada?" is no order-status request), and the state stays.
            bonus = QUESTION_BONUS if _looks_like_question(text) else 0.0
            if await self._side_answer(text, turn, better_than=similarity - bonus):
                if best is not None:
                    self._record("knowledge_over_intent", f"{best.label} {best.score:.3f}")
                return
        chosen = accepted(ranked, self.runtime.threshold)
        if chosen is not None:
            name, route = routes[chosen.label]
            self._failed = 0
            await self._follow(name, route, chosen.score, "classifier", text, turn)
            return
        if self.runtime.llm_enabled:
            picked = await self._llm_choose(text, routes, turn)
            if picked is not None:
                name, route = routes[picked]
                self._failed = 0
                await self._follow(name, route, 1.0, "llm", text, turn)
                return
            if self._escalation:  # the LLM failure escalated the call
                return
        self._note_intent(NO_MATCH, best_score, "classifier", turn)
        await self._not_understood(turn)

    async def _llm_choose(
        self, text: str, routes: dict[str, tuple[str, IntentRoute]], turn: _Turn
    ) -> str | None:
        """The LLM's pick among the allowed routes, or None (no match, or failure recorded)."""
        assert self.runtime.llm is not None
        options = {label: _describe(name, route) for label, (name, route) in routes.items()}
        try:
            choice = await self.runtime.llm.choose(
                instructions=self._instructions(),
                history=self.history[:-1],
                utterance=text,
                options=options,
                mode=self.agent.llm.mode,
            )
        except LlmFailure as failure:
            self._record(f"llm_{failure.kind}", failure.detail)
            if self.agent.escalation.on_llm_failure:
                await self._escalate("llm_failure", turn)
            return None
        self._record("llm_choice", f"{choice.option} in {choice.elapsed_ms:.0f} ms")
        return None if choice.option == NONE_OPTION else choice.option

    async def _global_intent(
        self, text: str, turn: _Turn, *, margin: float, over_value: bool = False
    ) -> bool:
        """Follow a global intent (human, goodbye, ...) if the caller clearly asked for one.

        Checked where the step expects a value or a question. Every intent of the agent
        competes, so that a global intent wins only by pointing at it rather than at anything
        else the agent knows ("I have a billing question" is nearer "human" than "goodbye",
        but much nearer the billing intent: no request for a person). Over a value that
        parsed (``over_value``) only the plain similarity counts.
        """
        routes = self.runtime.global_routes()
        if not routes:
            return False
        vector = await self._embed(text)
        others = [label for label in self.runtime.classifier.labels if label not in routes]
        ranked = self.runtime.classifier.rank(vector, [*routes, *others], text, contrastive=False)
        chosen = accepted(ranked, self.runtime.threshold, margin=margin, strict=over_value)
        if chosen is None or chosen.label not in routes:
            return False
        name, route = routes[chosen.label]
        await self._follow(name, route, chosen.score, "classifier", text, turn)
        return True

    async def _follow(
        self,
        name: str,
        route: IntentRoute,
        score: float,
        source: IntentSource,
        text: str,
        turn: _Turn,
    ) -> None:
        self._note_intent(name, score, source, turn)
        if route.do == "repeat":
            turn.say(self._last_said or self._prompt_of(self._current()))
        elif route.do == "escalate":
            await self._escalate("explicit_request", turn)
        elif route.call is not None:
            self._returns.append(_ReturnPoint(self._state, self._pending))
            await self._enter(route.call, turn, utterance=text)
        else:
            assert route.next is not None
            await self._enter(route.next, turn, utterance=text)

    def _note_intent(self, name: str, score: float, source: IntentSource, turn: _Turn) -> None:
        result = IntentDetected(
            turn_index=turn.index, intent=name, confidence=confidence(score), source=source
        )
        self.intents.append(result)
        turn.add(result)

    async def _dtmf(self, digits: str, turn: _Turn) -> None:
        state = self._current()
        if isinstance(self._pending, _ConfirmSlot | _OfferHuman) and digits[:1] in ("1", "2"):
            await self._text("yes" if digits[:1] == "1" else "no", turn)
            return
        if state.collect and not self._pending:
            slot = self._next_slot(state)
            if slot is not None:
                result = parse_dtmf(slot, digits, now=self.started_at)
                if isinstance(result, Parsed):
                    await self._got_value(slot, result.value, turn)
                    return
        for name, route in self.runtime.routes(self._state).values():
            if route.dtmf and route.dtmf == digits[:1]:
                self._failed = 0
                await self._follow(name, route, 1.0, "dtmf", digits, turn)
                return
        await self._not_understood(turn)

    async def _no_input(self, turn: _Turn) -> None:
        self._silent += 1
        policy = self.agent.escalation
        if self._silent >= policy.max_no_input:
            if policy.on_no_input == "escalate":
                await self._escalate("no_input", turn)
            else:
                turn.say(self._render(self.agent.messages.goodbye))
                self._end(NO_INPUT, turn)
            return
        turn.say(self._render(self.agent.messages.no_input))
        turn.say(self._prompt_of(self._current()))

    async def _not_understood(self, turn: _Turn) -> None:
        self._failed += 1
        if self._failed >= self.agent.escalation.max_failed_attempts:
            await self._escalate("failed_attempts", turn)
            return
        state = self._current()
        slot = self._next_slot(state) if state.collect else None
        if slot is not None:
            turn.say(self._render(slot.reprompt) if slot.reprompt else None)
            if not slot.reprompt:
                turn.say(self._render(self.agent.messages.not_understood))
                turn.say(self._render(slot.prompt))
            return
        turn.say(self._render(state.reprompt or self.agent.messages.not_understood))

    # ---- states -----------------------------------------------------------------------------

    def _current(self) -> State:
        return self.agent.states[self._state]

    async def _enter(
        self, name: str, turn: _Turn, *, utterance: str | None = None, greeting: bool = False
    ) -> None:
        turn.moves += 1
        if turn.moves > MAX_MOVES_PER_TURN:
            raise RuntimeError(f"more than {MAX_MOVES_PER_TURN} state moves in one turn")
        if name == RETURN:
            await self._return(turn)
            return
        self._state = name
        self._pending = None
        self.states_visited.append(name)
        turn.add(StateEntered(name))
        state = self.agent.states[name]
        if state.disposition:
            self._tentative = state.disposition
        if not greeting:
            turn.say(self._render(state.say))
        if state.collect:
            for slot in state.collect:
                self.slots.pop(slot.name, None)
                self._slot_attempts[slot.name] = 0
            for slot in state.collect if utterance else []:
                result = self._parse(slot, utterance or "") if slot.prefill else None
                if not isinstance(result, Parsed):
                    continue
                if slot.confirm:
                    self._pending = _ConfirmSlot(slot, result.value)
                    turn.say(self._confirm_question(slot, result.value))
                    return
                self._fill(slot, result.value, turn)
            await self._ask_next_slot(turn)
        elif state.answer:
            if utterance:
                await self._answer_then_next(utterance, turn, entering=True)
            else:
                turn.say(self._render(state.answer.prompt))
        elif state.action:
            await self._act(state, turn)
        elif state.next:
            await self._enter(self._branch(state, state.next), turn)

    async def _return(self, turn: _Turn) -> None:
        """End a sub-flow: back to the calling state as it was, which asks its question again."""
        if not self._returns:
            # Reached without a call (a caller may arrive by an ordinary 'next'): start over.
            self._record("return_without_call", f"from {self._state}")
            await self._enter(self.agent.start, turn)
            return
        point = self._returns.pop()
        self._state = point.state
        self._pending = point.pending
        self.states_visited.append(point.state)
        turn.add(StateEntered(point.state))
        turn.say(self._prompt_of(self._current()))

    def _branch(self, state: State, default: str) -> str:
        """Where a state goes on: the first matching branch on a slot's value, else ``default``."""
        for branch in state.branches or []:
            if branch.matches(self.slots.get(branch.slot)):
                self._record("branch", f"{self._state}: {branch.slot} -> {branch.next}")
                return branch.next
        return default

    def _instructions(self) -> str:
        extra = self._current().llm_instructions
        base = self.agent.llm.instructions
        return f"{base}\n{extra}".strip() if extra else base

    def _prompt_of(self, state: State) -> str:
        if isinstance(self._pending, _ConfirmSlot):
            return self._confirm_question(self._pending.slot, self._pending.value)
        if state.collect:
            slot = self._next_slot(state)
            return self._render(slot.prompt) if slot else ""
        if state.answer and state.answer.prompt:
            return self._render(state.answer.prompt)
        return self._render(state.say) if state.say else ""

    # ---- slots ------------------------------------------------------------------------------

    def _next_slot(self, state: State) -> Slot | None:
        return next((s for s in state.collect or [] if s.name not in self.slots), None)

    async def _ask_next_slot(self, turn: _Turn) -> None:
        state = self._current()
        slot = self._next_slot(state)
        if slot is None:
            assert state.next is not None
            await self._enter(self._branch(state, state.next), turn)
        else:
            turn.say(self._render(slot.prompt))

    async def _collect_reply(self, text: str, turn: _Turn) -> None:
        state = self._current()
        slot = self._next_slot(state)
        assert slot is not None
        result = self._parse(slot, text)
        plain = slot.type == "yes_no" and is_plain_answer(text)
        # A global intent (a person, goodbye, repeat) wins unless the words are a value for
        # the slot; a value that parsed only loses to a clearly stronger global intent.
        parsed = isinstance(result, Parsed)
        margin = GLOBAL_OVER_VALUE_MARGIN if parsed else 0.0
        if not plain and await self._global_intent(text, turn, margin=margin, over_value=parsed):
            return
        from_llm: dict[str, Any] = {}
        if not isinstance(result, Parsed) and not result.refused and self.runtime.llm_enabled:
            result, from_llm = await self._llm_slots(state, slot, text, result)
        if isinstance(result, Parsed):
            self._fill_alongside(state, slot, text, turn)
            for name, value in from_llm.items():
                if name not in self.slots:  # the deterministic parsers come first
                    self._fill(self._slot_named(state, name), value, turn)
            await self._got_value(slot, result.value, turn)
            return
        if self._correct_earlier(state, slot, text, turn):
            turn.say(self._render(slot.prompt))
            return
        self._record("slot_unparsed", f"{slot.name}: {result.reason}")
        if not result.refused and await self._side_answer(text, turn):
            return
        await self._slot_failed(slot, turn, refused=result.refused)

    async def _llm_slots(
        self, state: State, asked: Slot, text: str, unparsed: ParseResult
    ) -> tuple[ParseResult, dict[str, Any]]:
        """Ask the LLM, in one call constrained to these slots' names and types, for the asked
        slot and the state's other empty prefill slots; every value is then held to its slot's
        parser and rules, so the LLM never fills what the parser would refuse. Returns the asked
        slot's result (``unparsed`` when the LLM failed or found nothing) and the other values
        that passed."""
        assert self.runtime.llm is not None
        wanted = [asked] + [
            s
            for s in state.collect or []
            if s is not asked and s.prefill and not s.confirm and s.name not in self.slots
        ]
        try:
            values = await self.runtime.llm.extract_slots(
                instructions=self._instructions(),
                utterance=text,
                slots={s.name: slot_value_schema(s) for s in wanted},
                mode=self.agent.llm.mode,
            )
        except LlmFailure as failure:
            self._record(f"llm_{failure.kind}", failure.detail)
            return unparsed, {}
        offered = {s.name: s for s in wanted}
        accepted_values: dict[str, Any] = {}
        for name, value in values.items():
            slot = offered.get(name)
            if slot is None:
                self._record("llm_guardrail", f"{name!r} is not a slot of {self._state}")
                continue
            if value is None:
                continue
            checked = self._check_llm_value(slot, value, text)
            if isinstance(checked, Parsed):
                accepted_values[name] = checked.value
            else:
                self._record("llm_guardrail", f"{name}: rejected {value!r} ({checked.reason})")
        self._record("llm_slots", ", ".join(sorted(accepted_values)) or "nothing")
        result = accepted_values.pop(asked.name, None)
        if result is None:
            return unparsed, {}
        return Parsed(result), accepted_values

    def _check_llm_value(self, slot: Slot, value: Any, text: str) -> ParseResult:
        """The slot's parser and rules on the LLM's value; a name or free text must also be
        words the caller said (a small model invents names)."""
        if isinstance(value, bool):
            spoken = "yes" if value else "no"
        elif isinstance(value, int | float):
            spoken = f"{value:g}"
        elif isinstance(value, str):
            spoken = value[:MAX_UTTERANCE_CHARS]
        else:
            return Unparsed(f"not a value: {type(value).__name__}")
        if slot.type in ("name", "free_text") and not _said_in(spoken, text):
            return Unparsed("not in the caller's words")
        return self._parse(slot, spoken)

    @staticmethod
    def _slot_named(state: State, name: str) -> Slot:
        return next(s for s in state.collect or [] if s.name == name)

    async def _slot_failed(self, slot: Slot, turn: _Turn, *, refused: bool = False) -> None:
        self._slot_attempts[slot.name] = self._slot_attempts.get(slot.name, 0) + 1
        self._failed += 1
        if (
            self._slot_attempts[slot.name] >= slot.max_attempts
            or self._failed >= self.agent.escalation.max_failed_attempts
        ):
            await self._escalate("failed_attempts", turn)
            return
        if refused and slot.invalid_reprompt:
            turn.say(self._render(slot.invalid_reprompt))
        elif slot.reprompt:
            turn.say(self._render(slot.reprompt))
        else:
            turn.say(self._render(self.agent.messages.not_understood))
            turn.say(self._render(slot.prompt))

    async def _got_value(self, slot: Slot, value: Any, turn: _Turn) -> None:
        self._failed = 0
        if slot.confirm:
            self._pending = _ConfirmSlot(slot, value)
            turn.say(self._confirm_question(slot, value))
            return
        self._fill(slot, value, turn)
        await self._ask_next_slot(turn)

    def _confirm_question(self, slot: Slot, value: Any) -> str:
        template = slot.confirm_prompt or self.agent.messages.confirm
        spoken = speakable(slot.type, value, region=slot.region)
        return render(
            template,
            lambda name: spoken if name == "value" else self._lookup(name),
            formatted=lambda name, spoken_as: (
                speakable(spoken_as, value, region=slot.region)
                if name == "value"
                else self._formatted(name, spoken_as)
            ),
        )

    async def _confirm_reply(self, text: str, turn: _Turn) -> None:
        """Only a clear yes keeps the value; a global intent wins; anything else is a no.

        "No, it's 4 5 6 8" is a correction: it carries the new value, which is confirmed in turn.
        """
        assert isinstance(self._pending, _ConfirmSlot)
        slot, value = self._pending.slot, self._pending.value
        if is_plain_yes(text):
            await self._confirmed(slot, value, turn)
            return
        if await self._global_intent(text, turn, margin=0.0):
            return
        restated = self._parse(slot, text) if slot.type != "yes_no" else None
        if isinstance(restated, Parsed) and restated.value != value:
            self._pending = None
            await self._got_value(slot, restated.value, turn)
            return
        if isinstance(restated, Parsed) and parse_yes_no(text) is True:
            await self._confirmed(slot, value, turn)  # "yes, 7 2 9 1"
            return
        if parse_yes_no(text) is None and await self._side_answer(text, turn):
            return  # the confirmation question is asked again
        self._pending = None
        self._record("confirm_refused", f"{slot.name}: {text[:80]}")
        await self._slot_failed(slot, turn)

    async def _confirmed(self, slot: Slot, value: Any, turn: _Turn) -> None:
        self._pending = None
        self._failed = 0
        self._fill(slot, value, turn)
        await self._ask_next_slot(turn)

    def _fill_alongside(self, state: State, asked: Slot, text: str, turn: _Turn) -> None:
        """Other values said in the same breath ("Tuesday at 3"): the state's other prefill
        slots of another type that are still empty take them."""
        for other in state.collect or []:
            if (
                other is asked
                or not other.prefill
                or other.name in self.slots
                or other.type == asked.type
                or other.type not in ALONGSIDE_TYPES
                or other.confirm
            ):
                continue
            result = self._parse(other, text)
            if isinstance(result, Parsed):
                self._fill(other, result.value, turn)

    def _correct_earlier(self, state: State, asked: Slot, text: str, turn: _Turn) -> bool:
        """ "Actually, make it Thursday" while the time is asked: the day changes, the state
        keeps every other slot and asks its question again."""
        if not CORRECTION.search(text):
            return False
        for earlier in reversed(state.collect or []):
            if earlier.name not in self.slots or earlier.type == asked.type:
                continue
            if earlier.type not in ALONGSIDE_TYPES:
                continue
            result = self._parse(earlier, text)
            if isinstance(result, Parsed) and result.value != self.slots[earlier.name]:
                self._record("slot_corrected", f"{earlier.name}: {result.value}")
                self._fill(earlier, result.value, turn)
                spoken = speakable(earlier.type, result.value, region=earlier.region)
                turn.say(self._render_with_value(self.agent.messages.corrected, spoken))
                return True
        return False

    def _render_with_value(self, template: str, spoken: str) -> str:
        return render(template, lambda name: spoken if name == "value" else self._lookup(name))

    def _parse(self, slot: Slot, text: str) -> ParseResult:
        return parse_slot(slot, text, now=self.started_at)

    def _fill(self, slot: Slot, value: Any, turn: _Turn) -> None:
        self.slots[slot.name] = value
        turn.add(
            SlotFilled(turn_index=turn.index, name=slot.name, value=value, slot_type=slot.type)
        )

    # ---- knowledge --------------------------------------------------------------------------

    async def _answer_then_next(
        self, question: str, turn: _Turn, *, entering: bool = False
    ) -> None:
        """Answer, then move on; after "I don't know" stay for the caller's yes/no to a human.

        The utterance that led here ("I have a billing question") is tried as the question; when
        the knowledge has nothing for it and the state can ask, the agent asks instead.
        """
        state = self._current()
        assert state.answer is not None
        answered = await self._answer(
            question, turn, ask_instead=entering and bool(state.answer.prompt)
        )
        if not answered:
            turn.say(self._render(state.answer.prompt))
        elif not isinstance(self._pending, _OfferHuman):
            await self._enter(state.answer.next, turn)

    async def _answer(self, question: str, turn: _Turn, *, ask_instead: bool = False) -> bool:
        """Say the answer (False: nothing relevant and ``ask_instead``, so nothing was said)."""
        state = self._current()
        assert state.answer is not None
        knowledge = self.agent.knowledge
        min_score = (
            state.answer.min_score if state.answer.min_score is not None else knowledge.min_score
        )
        if ask_instead:
            min_score += state.answer.entry_margin
        good = await self._retrieve(question, top_k=state.answer.top_k, min_score=min_score)
        if not good:
            if ask_instead:
                return False
            turn.say(self._render(self.agent.messages.dont_know))
            self._pending = _OfferHuman(state.answer.next)
            return True
        self._say_answer(question, good, turn)
        return True

    async def _side_answer(self, text: str, turn: _Turn, *, better_than: float = 0.0) -> bool:
        """A knowledge question where the step expected something else: answer it, then ask
        the step's question again. Nothing changes: state, slots and confirmation stay.

        ``better_than``: the best passage must also score above this (the best intent's score).
        """
        knowledge = self.agent.knowledge
        if not knowledge.anywhere or self.runtime.knowledge is None:
            return False
        min_score = knowledge.anywhere_min_score
        if min_score is None:
            min_score = knowledge.min_score
        good = await self._retrieve(text, top_k=knowledge.top_k, min_score=min_score)
        if not good or good[0].score <= better_than:
            return False
        self._record("side_answer", f"in {self._state}: {good[0].doc_id}")
        self._say_answer(text, good, turn)
        turn.say(self._prompt_of(self._current()))
        return True

    async def _retrieve(self, question: str, *, top_k: int, min_score: float) -> list[Passage]:
        """The knowledge passages for ``question`` that score at least ``min_score``."""
        if self.runtime.knowledge is None:
            return []
        passages: list[Passage] = await asyncio.to_thread(
            self.runtime.knowledge.search,
            self.runtime.tenant_id,
            self.runtime.agent_id,
            question,
            top_k=top_k,
            vector=await self._embed(question),
        )
        if passages:
            self._record("retrieval", f"best score {passages[0].score:.3f} ({passages[0].doc_id})")
        return [p for p in passages if p.score >= min_score]

    def _say_answer(self, question: str, good: list[Passage], turn: _Turn) -> None:
        self._failed = 0
        turn.say(self._render(self.agent.messages.answer_intro))
        fallback = _readable(good[0].text)
        if not self.runtime.llm_enabled:
            turn.say(fallback)
            return
        assert self.runtime.llm is not None
        llm = self.runtime.llm
        history = list(self.history[:-1])
        texts = [p.text for p in good]
        turn.add(
            _Stream(
                lambda: llm.stream_answer(
                    instructions=self._instructions(),
                    question=question,
                    passages=texts,
                    history=history,
                ),
                fallback,
            )
        )

    # ---- actions ----------------------------------------------------------------------------

    async def _act(self, state: State, turn: _Turn) -> None:
        action = state.action
        if isinstance(action, HttpAction):
            if self._trial:
                raise SpeculationRefused(f"{self._state}: {action.method} {action.url}")
            result = await call_http(action, self._raw_lookup, self.runtime.http)
            turn.add(tool_called(turn.index, self._state, result))
            if result.ok:
                self._record("tool_ok", f"{action.url} in {result.elapsed_ms:.0f} ms")
                for name, value in result.values.items():
                    self.slots[name] = value
                    turn.add(
                        SlotFilled(turn_index=turn.index, name=name, value=value, slot_type="tool")
                    )
                await self._enter(self._branch(state, action.on_success), turn)
                return
            self._record("tool_failure", f"{self._state}: {result.error}")
            if action.on_failure:
                await self._enter(action.on_failure, turn)
            elif self.agent.escalation.on_tool_failure:
                await self._escalate("tool_failure", turn)
            else:
                turn.say(self._render(self.agent.messages.goodbye))
                self._end(FAILED, turn)
        elif isinstance(action, TransferAction):
            target = action.target or self.agent.escalation.target
            turn.add(Transfer(self._render(target or "")))
            self._set_outcome(action.disposition, turn)
            self._ended = True
        elif isinstance(action, EndAction):
            self._end(action.disposition or self._tentative or RESOLVED, turn)

    async def _escalate(self, reason: EscalationReason, turn: _Turn) -> None:
        policy = self.agent.escalation
        already = self._escalation is not None
        self._escalation = reason
        self._record("escalation", reason)
        turn.add(EscalationRequested(reason=reason, target=policy.target))
        if policy.state and not already and self._state != policy.state:
            await self._enter(policy.state, turn)
            return
        turn.say(self._render(policy.message))
        if policy.target:
            turn.add(Transfer(self._render(policy.target)))
            self._set_outcome(ESCALATED, turn)
            self._ended = True
        else:
            self._end(FAILED, turn)

    def _end(self, disposition: str, turn: _Turn) -> None:
        turn.add(EndCall())
        self._set_outcome(disposition, turn)
        self._ended = True

    def _set_outcome(self, disposition: str, turn: _Turn) -> None:
        if self.outcome is None:
            self.outcome = self._make_outcome(disposition)
            turn.add(self.outcome)

    def _make_outcome(self, disposition: str) -> Outcome:
        summary = template_summary(
            agent_name=self.agent.name,
            disposition=disposition,
            intents=[i.intent for i in self.intents if i.intent != NO_MATCH],
            slots=self.slots,
            escalation=self._escalation,
        )
        return Outcome(disposition, summary, dict(self.slots))

    # ---- helpers ----------------------------------------------------------------------------

    async def _embed(self, text: str) -> Vectors:
        """The utterance's embedding, computed once per turn however many checks use it."""
        if self._embedded is None or self._embedded[0] != text:
            vector = await asyncio.to_thread(self.runtime.classifier.embed, text)
            self._embedded = (text, vector)
        return self._embedded[1]

    def _lookup(self, name: str) -> Any:
        """Template value as spoken: digits one by one, emails with 'at' and 'dot'."""
        if name.startswith("vars."):
            return self.variables.get(name[5:])
        if name in self.slots:
            kind = self.runtime.slot_types.get(name, "tool")
            return speakable(kind, self.slots[name], region=self._regions.get(name, "US"))
        return None

    def _formatted(self, name: str, spoken_as: str) -> Any:
        """``{{ name | filter }}``: the stored value said the filter's way."""
        value = self._raw_lookup(name)
        if value is None or spoken_as == "raw":
            return value
        return speakable(spoken_as, value, region=self._regions.get(name, "US"))

    def _raw_lookup(self, name: str) -> Any:
        if name.startswith("vars."):
            return self.variables.get(name[5:])
        return self.slots.get(name)

    def _render(self, template: str | None) -> str:
        return render(template, self._lookup, formatted=self._formatted) if template else ""

    def _record(self, kind: str, detail: str) -> None:
        self.trace.append(TraceEntry(kind, detail))
        log.info("dialogue %s: %s (call %s)", kind, detail, self.call_id)


def confidence(score: float) -> float:
    """A classifier's score as an intent's confidence: within [0, 1], 4 decimals (NaN: 0)."""
    if math.isnan(score):
        return 0.0
    return round(max(0.0, min(1.0, score)), 4)


def tool_called(turn_index: int, state: str, result: ToolResult) -> ToolCalled:
    """The fact of an http action, within the event's bounds whatever the API answered; never
    its URL or body. ``state`` is an agent state name (1..64 characters by the agent schema)."""
    status = result.status if result.status is not None and 100 <= result.status <= 599 else None
    # The kind of failure only: an exception's text may quote the URL.
    error = result.error.split(":")[0][:TOOL_ERROR_MAX_CHARS] if result.error else ""
    return ToolCalled(
        turn_index=turn_index,
        state=state,
        ok=result.ok,
        status=status,
        elapsed_ms=max(0.0, round(result.elapsed_ms, 1)),
        error=error or None,
    )


def _describe(name: str, route: IntentRoute) -> str:
    if route.description:
        return route.description
    return f"{name.replace('_', ' ')}, e.g. " + "; ".join(f"'{e}'" for e in route.examples[:3])


def _looks_like_question(text: str) -> bool:
    first = text.strip().lower().split(" ", 1)[0].strip(",.")
    return text.rstrip().endswith("?") or first in QUESTION_WORDS


def _readable(passage: str, max_chars: int = 320) -> str:
    """The first sentences of a passage, short enough to read aloud."""
    if len(passage) <= max_chars:
        return passage
    cut = passage[:max_chars]
    end = max(cut.rfind(". "), cut.rfind("? "), cut.rfind("! "))
    return cut[: end + 1] if end > 40 else cut.rsplit(" ", 1)[0] + "."


SLOT_VALUE_HINTS: dict[str, str] = {
    "digits": "a number said digit by digit",
    "number": "a number",
    "date": "a day, as the caller said it (e.g. 'next Tuesday', 'December 14th')",
    "time": "a time of day, as the caller said it (e.g. 'half past ten', '3 pm')",
    "yes_no": "true for yes, false for no",
    "email": "an email address",
    "phone": "a phone number",
    "choice": "one of the listed options",
    "free_text": "the caller's words",
    "name": "a person's name",
}


def slot_value_schema(slot: Slot) -> dict[str, Any]:
    """The JSON schema the LLM's value for ``slot`` must match (null: not given)."""
    description = f"{slot.name.replace('_', ' ')}: {SLOT_VALUE_HINTS[slot.type]}"
    if slot.type == "yes_no":
        return {"type": ["boolean", "null"], "description": description}
    if slot.type == "number":
        return {"type": ["number", "null"], "description": description}
    if slot.type == "choice" and slot.choices:
        return {"enum": [*slot.choices, None], "description": description}
    return {"type": ["string", "null"], "maxLength": 80, "description": description}


def _said_in(value: str, text: str) -> bool:
    """Every word of ``value`` is a word of ``text`` (case and punctuation aside)."""
    said = set(re.findall(r"[a-z0-9']+", text.lower()))
    words = re.findall(r"[a-z0-9']+", value.lower())
    return bool(words) and all(word in said for word in words)
