"""Sub-flows that return, and knowledge answers from any state: the flow resumes where it was."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import httpx
import pytest

from media_nodes.dialogue.engine import AgentSession
from media_nodes.dialogue.factory import AgentDialogueFactory
from media_nodes.dialogue.protocol import UserTurn
from media_nodes.dialogue.runtime import AgentRuntime
from media_nodes.dialogue.testing import Script, run_script
from shared.agents.loader import AgentDefinitionError, LoadedAgent, load_agent_text, read_knowledge
from shared.knowledge.embedder import Embedder
from shared.knowledge.store import KnowledgeBase
from shared.settings import Settings

BOOKING = """\
id: subflow-clinic
name: Sub-flow clinic
greeting: Hello, this is the clinic.
start: menu
escalation:
  target: "+15550000000"
knowledge:
  documents:
    - title: Opening hours
      text: >-
        Opening hours. The clinic is open Monday to Friday from eight in the morning until
        six in the evening, and closed on weekends and public holidays.
    - title: Parking
      text: >-
        Parking. Free parking for patients is behind the building, entrance on Elm Street.
global_intents:
  human:
    do: escalate
    examples: [a person please, let me talk to a human, can I speak to the receptionist]
  prices:
    call: price_list
    examples:
      - how much does it cost
      - what are your prices
      - how much is a cleaning
      - what do you charge for a checkup
      - what's the price
      - is it expensive
      - how much will I have to pay
states:
  menu:
    say: How can I help?
    intents:
      book:
        next: book
        examples:
          - I want to book an appointment
          - make a booking
          - I need to see the dentist
          - can I schedule a visit
          - I'd like to come in
          - get me an appointment please
  book:
    collect:
      - name: service
        type: choice
        choices: {cleaning: [clean, hygienist], checkup: [check up, exam]}
        prompt: Which service, a cleaning or a checkup?
      - name: member
        type: digits
        min_length: 4
        max_length: 6
        confirm: true
        prompt: What's your member number?
      - name: seen_before
        type: yes_no
        prompt: Have you been to the clinic before?
        reprompt: Sorry, have you been to the clinic before? A yes or a no is fine.
    next: done
  price_list:
    say: A cleaning is eighty dollars and a checkup is fifty.
    next: return
  done:
    say: Booked a {{ service }} for member {{ member }}.
    action:
      type: end
"""


@pytest.fixture(scope="module")
def clinic_runtime(
    settings: Settings, knowledge: KnowledgeBase, embedder: Embedder
) -> AgentRuntime:
    definition = load_agent_text(BOOKING, source="clinic.yaml")
    loaded = LoadedAgent(
        definition,
        "clinic.yaml",
        knowledge=read_knowledge(definition, base_dir=None, source="clinic.yaml"),
    )
    factory = AgentDialogueFactory(
        settings, knowledge=knowledge, embedder=embedder, http=httpx.AsyncClient()
    )
    return factory._compile("tenant-sub", loaded)


async def run(runtime: AgentRuntime, turns: list[dict[str, object]]) -> None:
    script = Script.model_validate({"turns": turns})

    async def make(client: httpx.AsyncClient, _state: Callable[[], str]) -> AgentSession:
        return AgentSession(replace(runtime, http=client), call_id="t", variables={})

    result = await run_script(script, make)
    assert result.ok, str(result.mismatch)


async def test_a_called_sub_flow_returns_and_keeps_the_slots(clinic_runtime: AgentRuntime) -> None:
    await run(
        clinic_runtime,
        [
            {"expect": {"state": "menu"}},
            {"user": "hi, I'd like to come in for an appointment", "expect": {"state": "book"}},
            {"user": "the hygienist one", "expect": {"say": ["member number"]}},
            {
                "user": "and how much would that cost me?",
                "expect": {
                    "intent": "prices",
                    "states": ["price_list", "book"],
                    "say": ["eighty dollars", "member number"],
                    "slots": {"service": "cleaning"},
                },
            },
            {"user": "4 4 1 0", "expect": {"say": ["4 4 1 0", "is that right"]}},
            {
                "user": "sorry, what do you charge for an exam",
                "expect": {"states": ["price_list", "book"], "say": ["fifty", "4 4 1 0", "right"]},
            },
            {"user": "yes", "expect": {"say": ["been to the clinic before"]}},
            {"user": "nope, first time", "expect": {"state": "done", "actions": ["end_call"]}},
        ],
    )


async def test_knowledge_is_answered_mid_flow_and_the_step_asks_again(
    clinic_runtime: AgentRuntime,
) -> None:
    await run(
        clinic_runtime,
        [
            {"expect": {"state": "menu"}},
            {
                "user": "are you guys open on saturdays?",
                "expect": {"state": "menu", "say": ["closed on weekends", "How can I help"]},
            },
            {"user": "I'd like to set up a visit", "expect": {"state": "book"}},
            {"user": "a checkup", "expect": {"say": ["member number"]}},
            {
                "user": "where do I leave my car when I get there",
                "expect": {
                    "state": "book",
                    "say": ["Elm Street", "member number"],
                    "slots": {"service": "checkup"},
                },
            },
            {"user": "it's 9 0 0 1", "expect": {"say": ["9 0 0 1", "is that right"]}},
            {"user": "yes", "expect": {"say": ["been to the clinic before"]}},
            {"user": "uh huh", "expect": {"state": "done", "slots": {"seen_before": True}}},
        ],
    )


async def test_unsure_is_no_answer_and_a_person_wins_over_yes_no(
    clinic_runtime: AgentRuntime,
) -> None:
    start = [
        {"expect": {"state": "menu"}},
        {"user": "I'd like to set up a visit", "expect": {"state": "book"}},
        {"user": "checkup", "expect": {"say": ["member number"]}},
        {"user": "1 2 3 4", "expect": {"say": ["is that right"]}},
        {"user": "correct", "expect": {"say": ["been to the clinic before"]}},
    ]
    await run(
        clinic_runtime,
        [
            *start,
            {
                "user": "um, I don't know",
                "expect": {
                    "state": "book",
                    "say": ["A yes or a no is fine"],
                    "not_say": ["Booked"],
                },
            },
            {
                "user": "I think so, yes",
                "expect": {"state": "done", "slots": {"seen_before": True}},
            },
        ],
    )
    await run(
        clinic_runtime,
        [
            *start,
            {
                "user": "can I speak to the receptionist please",
                "expect": {
                    "intent": "human",
                    "actions": ["escalation:explicit_request", "transfer"],
                },
            },
        ],
    )


def test_return_is_no_state_name_and_call_needs_a_state() -> None:
    bad = BOOKING.replace("call: price_list", "call: prices_missing")
    with pytest.raises(AgentDefinitionError) as caught:
        load_agent_text(bad)
    assert any("unknown state 'prices_missing'" in p.message for p in caught.value.problems)
    named = BOOKING.replace("  done:\n", "  return:\n")
    with pytest.raises(AgentDefinitionError) as caught:
        load_agent_text(named)
    assert any("cannot name a state" in p.message for p in caught.value.problems)


async def test_state_instructions_for_the_model_join_the_agents(
    dental_runtime: AgentRuntime,
) -> None:
    session = AgentSession(dental_runtime, call_id="t")
    async for _ in session.greeting():
        pass
    assert session._instructions() == dental_runtime.definition.llm.instructions
    async for _ in session.handle(UserTurn("I'd like to book an appointment"), turn_index=1):
        pass
    assert session.state == "book_visit"
    assert "dental appointment" in session._instructions()
