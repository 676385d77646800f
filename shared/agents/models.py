"""Pydantic models of an agent definition (the YAML/JSON document teams write and version).

An agent is a set of named states. Each state may ``say`` something (templated with the collected
slots: ``{{ order_number }}``) and then does exactly one thing: waits for an intent, collects
slots, answers from the knowledge base, runs an action, or moves on to ``next``. The graph checks
(unknown or unreachable states, dead ends) live in :mod:`shared.agents.validation`.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from shared.agents.dispositions import STANDARD_DISPOSITIONS

Name = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$", max_length=64)]
"""A state, intent, slot or disposition name: lower_snake_case."""

AgentId = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]*$", max_length=64)]
"""An agent id: lower case, digits, '-' and '_' (acme-shop)."""

RETURN = "return"
"""Target that ends a sub-flow entered by an intent's ``call``: the call goes back where it was."""

SlotType = Literal[
    "digits", "number", "date", "time", "yes_no", "email", "phone", "choice", "free_text", "name"
]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


TRANSFER_TARGET = re.compile(r"^(\+[1-9]\d{6,14}|sips?:[^\s@]+@[^\s]+|\{\{\s*vars\.\w+\s*\}\})$")


def _check_target(value: str | None) -> str | None:
    if value is not None and not TRANSFER_TARGET.match(value):
        raise ValueError(
            f"'{value}' is not an E.164 number (+15550100200), a SIP URI (sip:queue@host) "
            "or {{ vars.NAME }}"
        )
    return value


SLOT_TYPE_OPTIONS: dict[str, tuple[str, ...]] = {
    "min_length": ("digits",),
    "max_length": ("digits",),
    "minimum": ("number",),
    "maximum": ("number",),
    "region": ("phone",),
    "future_only": ("date",),
    "weekdays_only": ("date",),
    "business_hours": ("time",),
    "parts_of_day": ("time",),
}
"""Options that mean something only for some slot types (set elsewhere they are an error)."""


class Slot(_Model):
    """A value to collect from the caller, parsed from spoken text (or DTMF for digits)."""

    name: Name = Field(description="Slot name: {{ name }} in templates, the key in outcomes.")
    type: SlotType = Field(description="How the value is parsed and read back.")
    prompt: str = Field(min_length=1, description="Asks for the value.")
    reprompt: str | None = Field(None, description="Said after a value could not be understood.")
    invalid_reprompt: str | None = Field(
        None,
        description="Said when a value was understood but a rule refused it (future_only, "
        "weekdays_only, business_hours, minimum/maximum, min/max_length); empty: 'reprompt'.",
    )
    confirm: bool = Field(
        False, description="Read the value back and ask yes/no before keeping it."
    )
    confirm_prompt: str | None = Field(
        None, description="Confirmation question; {{ value }} is the heard value."
    )
    max_attempts: int = Field(3, ge=1, le=10, description="Failed attempts before escalation.")
    prefill: bool = Field(
        False, description="Try to take the value from the utterance that entered the state."
    )
    min_length: int | None = Field(None, ge=1, le=64, description="digits: fewest digits.")
    max_length: int | None = Field(None, ge=1, le=64, description="digits: most digits.")
    minimum: float | None = Field(None, description="number: smallest accepted value.")
    maximum: float | None = Field(None, description="number: largest accepted value.")
    choices: dict[Name, list[str]] | None = Field(
        None, description="choice: option -> words that select it (the option name counts too)."
    )
    region: str = Field(
        "US",
        min_length=2,
        max_length=2,
        description="phone: the caller's region; numbers without a country code are taken "
        "from it and read back without one.",
    )
    future_only: bool = Field(False, description="date: refuse days before the call's date.")
    weekdays_only: bool = Field(False, description="date: refuse Saturdays and Sundays.")
    business_hours: str | None = Field(
        None,
        pattern=r"^([01]\d|2[0-3]):[0-5]\d-([01]\d|2[0-3]):[0-5]\d$",
        description="time: 'HH:MM-HH:MM'. Refuses times outside; an hour said without AM/PM "
        "(and a bare 'at 3') is read inside these hours.",
    )
    parts_of_day: bool = Field(
        False, description="time: accept 'morning', 'afternoon' or 'evening' as the value."
    )

    @model_validator(mode="after")
    def _type_options(self) -> Slot:
        if self.type == "choice" and not self.choices:
            raise ValueError("a 'choice' slot needs 'choices'")
        if self.type != "choice" and self.choices:
            raise ValueError(f"'choices' only applies to 'choice' slots, not '{self.type}'")
        if self.min_length and self.max_length and self.min_length > self.max_length:
            raise ValueError("min_length is greater than max_length")
        if self.minimum is not None and self.maximum is not None and self.minimum > self.maximum:
            raise ValueError("minimum is greater than maximum")
        if self.business_hours:
            start, end = self.business_hours.split("-")
            if start >= end:
                raise ValueError("business_hours must start before they end")
        if self.confirm_prompt and not self.confirm:
            raise ValueError("confirm_prompt has no effect without 'confirm: true'")
        # Only options that differ from their default: a stored definition comes back with
        # every default spelled out (the admin API's JSON), and a default changes nothing.
        defaults = type(self).model_fields
        useless = sorted(
            name
            for name in self.model_fields_set
            if name in SLOT_TYPE_OPTIONS
            and self.type not in SLOT_TYPE_OPTIONS[name]
            and getattr(self, name) != defaults[name].default
        )
        if useless:
            raise ValueError(
                f"{', '.join(useless)} has no effect on a '{self.type}' slot ("
                + "; ".join(f"{n}: {'/'.join(SLOT_TYPE_OPTIONS[n])}" for n in useless)
                + ")"
            )
        return self


class IntentRoute(_Model):
    """An intent: example utterances and where it leads (a state, or a built-in behaviour)."""

    examples: list[Annotated[str, Field(min_length=1)]] = Field(
        min_length=1, description="What callers say for it; the classifier learns from these."
    )
    next: Name | None = Field(None, description="State to go to.")
    do: Literal["repeat", "escalate"] | None = Field(
        None, description="Built-in behaviour instead of a state."
    )
    call: Name | None = Field(
        None,
        description="Sub-flow to run, then come back: it starts at this state and ends at a "
        "'next: return'; the calling state resumes with its slots (and a pending confirmation) "
        "kept, and asks its question again.",
    )
    dtmf: str | None = Field(None, pattern=r"^[0-9*#]$", description="Keypad key that selects it.")
    description: str | None = Field(None, description="Tells the LLM what the intent means.")

    @model_validator(mode="after")
    def _one_target(self) -> IntentRoute:
        if sum(target is not None for target in (self.next, self.do, self.call)) != 1:
            raise ValueError("an intent needs exactly one of 'next', 'do' or 'call'")
        return self


class HttpAction(_Model):
    """Call an HTTP API (a tool); map fields of its JSON answer into slots."""

    type: Literal["http"] = Field(description="Call an HTTP API.")
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = Field(
        "GET", description="HTTP method."
    )
    url: str = Field(min_length=1, description="Templated with slots and variables.")
    headers: dict[str, str] = Field(
        default_factory=dict, description="Request headers; values are templated."
    )
    body: dict[str, Any] | None = Field(None, description="JSON body; string values are templated.")
    timeout_s: float = Field(3.0, gt=0, le=30, description="Seconds before it counts as failed.")
    result: dict[Name, str] = Field(
        default_factory=dict, description="slot -> dotted path in the JSON answer (items.0.name)."
    )
    on_success: Name = Field(description="State after a 2xx answer (see also 'branches').")
    on_failure: Name | None = Field(
        None, description="State after an error or timeout; empty applies the escalation policy."
    )

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://", "{{")):
            raise ValueError("must start with http://, https:// or a {{ vars.NAME }} base URL")
        return value


class TransferAction(_Model):
    """Hand the call to a human."""

    type: Literal["transfer"] = Field(description="Transfer the call to a person.")
    target: str | None = Field(
        None, description="E.164 number or SIP URI; empty uses escalation.target."
    )
    disposition: Name = Field("escalated_to_human", description="The call's disposition.")

    @field_validator("target")
    @classmethod
    def _target(cls, value: str | None) -> str | None:
        return _check_target(value)


class EndAction(_Model):
    """Hang up with a disposition."""

    type: Literal["end"] = Field(description="Hang up.")
    disposition: Name | None = Field(
        None, description="Empty: the last state's disposition if one was reached, else resolved."
    )


Action = Annotated[HttpAction | TransferAction | EndAction, Field(discriminator="type")]


class Answer(_Model):
    """Answer the caller's question from the agent's knowledge base."""

    prompt: str | None = Field(
        None, description="Asks for the question when the state is not entered by one."
    )
    next: Name = Field(description="State after the answer.")
    min_score: float | None = Field(
        None, ge=0, le=1, description="Retrieval score below which the agent says it does not know."
    )
    top_k: int = Field(3, ge=1, le=10, description="Passages retrieved (the LLM reads them all).")
    entry_margin: float = Field(
        0.1,
        ge=0,
        le=1,
        description="The utterance that entered the state ('I have a billing question') is "
        "answered only if it scores min_score + entry_margin; otherwise 'prompt' asks.",
    )


class Branch(_Model):
    """Go elsewhere than ``next`` (or ``on_success``) when a slot or tool result has a value."""

    slot: Name = Field(description="Slot or HTTP result to test.")
    equals: str | float | bool | None = Field(
        None, description="Taken when the value equals this (numbers and yes/no compare as such)."
    )
    one_of: list[str | float | bool] | None = Field(
        None, description="Taken when the value is one of these."
    )
    missing: bool | None = Field(
        None, description="true: taken when the value is missing (a tool did not return it)."
    )
    next: Name = Field(description="State to go to (or 'return').")

    @model_validator(mode="after")
    def _one_test(self) -> Branch:
        tests = [self.equals is not None, self.one_of is not None, self.missing is not None]
        if sum(tests) != 1:
            raise ValueError("a branch needs exactly one of 'equals', 'one_of' or 'missing'")
        return self

    def matches(self, value: Any) -> bool:
        if self.missing is not None:
            return (value is None) == self.missing
        wanted = [self.equals] if self.one_of is None else self.one_of
        return any(_same(value, w) for w in wanted)


def _same(value: Any, wanted: Any) -> bool:
    if isinstance(wanted, bool) or isinstance(value, bool):
        return value is wanted or str(value).lower() == str(wanted).lower()
    if isinstance(wanted, int | float) and not isinstance(value, str):
        return bool(value == wanted)
    return str(value).strip().lower() == str(wanted).strip().lower()


class State(_Model):
    say: str | None = Field(None, description="Spoken on entry; templated with slots.")
    intents: dict[Name, IntentRoute] | None = Field(
        None, description="Wait for the caller and route by intent (global intents too)."
    )
    collect: list[Slot] | None = Field(
        None, description="Ask for these slots in order, then go to 'next'."
    )
    answer: Answer | None = Field(None, description="Answer a question from the knowledge.")
    action: Action | None = Field(None, description="Run an http call, a transfer or a hang-up.")
    next: Name | None = Field(
        None, description="Where to go after 'say' (or after 'collect' has every slot)."
    )
    reprompt: str | None = Field(None, description="Said when the caller was not understood.")
    disposition: Name | None = Field(
        None, description="Disposition the call gets if it ends after reaching this state."
    )
    branches: list[Branch] | None = Field(
        None,
        description="Checked in order where the state would go to 'next' (after 'say' or a "
        "filled 'collect') or an HTTP action's 'on_success': the first that matches wins.",
    )
    llm_instructions: str | None = Field(
        None,
        description="Added to llm.instructions for the LLM's choices, slot extraction and "
        "answers in this state.",
    )

    @model_validator(mode="after")
    def _one_behaviour(self) -> State:
        kinds = [k for k in ("intents", "collect", "answer", "action") if getattr(self, k)]
        if len(kinds) > 1:
            raise ValueError(f"a state does one thing; it has {' and '.join(kinds)}")
        if self.collect is not None and not self.collect:
            raise ValueError("'collect' needs at least one slot")
        if self.collect and not self.next:
            raise ValueError(
                "a 'collect' state needs 'next' (where to go when every slot is filled)"
            )
        if (self.intents or self.answer or self.action) and self.next:
            raise ValueError(f"'next' does not apply to a state with {kinds[0]}")
        if not kinds and not self.next:
            raise ValueError("a state needs one of intents, collect, answer, action or next")
        if self.branches and not (self.next or isinstance(self.action, HttpAction)):
            raise ValueError("'branches' apply to a state with 'next' or an http action")
        return self


class Escalation(_Model):
    """When and where the call goes to a human."""

    target: str | None = Field(None, description="E.164 number or SIP URI of the human queue.")
    state: Name | None = Field(
        None, description="State to enter on escalation; empty says 'message' and transfers."
    )
    message: str = Field(
        "Let me connect you with someone who can help.",
        description="Said before the transfer when there is no escalation 'state'.",
    )
    max_failed_attempts: int = Field(3, ge=1, le=10, description="Not-understood turns in a row.")
    max_no_input: int = Field(2, ge=1, le=10, description="Silent turns in a row.")
    on_no_input: Literal["escalate", "end"] = Field(
        "end", description="After max_no_input silent turns: hang up, or escalate."
    )
    on_llm_failure: bool = Field(
        False, description="Escalate when the LLM fails (otherwise the classifier takes over)."
    )
    on_tool_failure: bool = Field(True, description="Escalate when a tool call fails unrouted.")

    @field_validator("target")
    @classmethod
    def _target(cls, value: str | None) -> str | None:
        return _check_target(value)


class LlmOptions(_Model):
    enabled: bool = Field(True, description="Use the LLM when the deployment configures one.")
    mode: Literal["tools", "json_schema", "json_object", "json"] = Field(
        "tools",
        description="How choices are constrained: a forced tool call (most portable), an OpenAI "
        "JSON schema, JSON mode with the schema attached (llama-cpp-python), or plain JSON mode "
        "(only the guardrail checks the answer).",
    )
    instructions: str = Field("", description="Persona and rules added to the system prompt.")
    max_tokens: int = Field(160, ge=16, le=2048, description="Longest LLM answer, in tokens.")


class Knowledge(_Model):
    documents: list[KnowledgeDocument] = Field(
        default_factory=list, description="Documents indexed for this agent."
    )
    min_score: float = Field(
        0.35, ge=0, le=1, description="Below this the agent says it does not know."
    )
    anywhere: bool = Field(
        True,
        description="When nothing the current step expects fits, answer from the knowledge "
        "in any state, then ask the step's question again (slots and state are kept).",
    )
    anywhere_min_score: float | None = Field(
        None,
        ge=0,
        le=1,
        description="Retrieval score such an answer needs (empty: min_score). In a state with "
        "intents it must also beat the best intent's score, unless that intent is confident.",
    )
    top_k: int = Field(3, ge=1, le=10, description="Passages retrieved for a side question.")


class KnowledgeDocument(_Model):
    """A document: a file next to the definition, or inline text."""

    path: str | None = Field(None, description="File relative to the definition's folder.")
    title: str | None = Field(None, description="Title (default: from the file name).")
    text: str | None = Field(None, description="Inline text instead of a file.")

    @model_validator(mode="after")
    def _path_or_text(self) -> KnowledgeDocument:
        if (self.path is None) == (self.text is None):
            raise ValueError("a knowledge document needs exactly one of 'path' or 'text'")
        return self


class Messages(_Model):
    not_understood: str = Field(
        "Sorry, I didn't catch that. Could you say it another way?",
        description="Said when nothing fits (unless the state or slot has a reprompt).",
    )
    no_input: str = Field("Are you still there?", description="Said after a silent turn.")
    dont_know: str = Field(
        "I'm sorry, I don't have an answer to that. Would you like me to connect you to a person?",
        description="Said when an answer state finds nothing; a yes escalates.",
    )
    confirm: str = Field(
        "I have {{ value }}. Is that right?",
        description="Default confirmation question; {{ value }} is the heard value.",
    )
    corrected: str = Field(
        "Okay, I've changed that to {{ value }}.",
        description="Said when the caller corrects an earlier value of the state "
        "('actually, make it Thursday'); {{ value }} is the new value.",
    )
    answer_intro: str = Field("", description="Said before every knowledge answer.")
    goodbye: str = Field(
        "Thank you for calling. Goodbye!",
        description="Said when the call ends without an end state (no input, tool failure).",
    )


class Voicemail(_Model):
    action: Literal["hang_up", "leave_message"] = Field(
        "hang_up",
        description="When an answering machine picks up an outbound call: hang up, or leave "
        "'message' after the beep and then hang up. Either way the disposition is voicemail.",
    )
    message: str = Field(
        "",
        max_length=1000,
        description="The voicemail message (fixed text, no {{ }} templates).",
    )

    @model_validator(mode="after")
    def _message_to_leave(self) -> Voicemail:
        if self.action == "leave_message" and not self.message.strip():
            raise ValueError("voicemail: 'leave_message' needs a 'message'")
        if "{{" in self.message:
            raise ValueError("voicemail: the message is fixed text, no {{ }} templates")
        return self


class Screening(_Model):
    action: Literal["announce", "hang_up"] = Field(
        "announce",
        description="When a call-screening assistant answers ('the person you are calling is "
        "using a screening service, say your name and why you are calling'): say 'message' "
        "and go on listening for the person, or hang up (disposition screened).",
    )
    message: str = Field(
        "",
        max_length=500,
        description="Who is calling and why, for the screening assistant (fixed text); "
        "empty says 'This is an automated call from <the agent's name>.'",
    )

    @model_validator(mode="after")
    def _fixed_text(self) -> Screening:
        if "{{" in self.message:
            raise ValueError("screening: the message is fixed text, no {{ }} templates")
        return self


class Analysis(_Model):
    """What the post-call analysis looks for (run by the job workers after the call ended)."""

    summary_prompt: str = Field(
        "",
        max_length=2000,
        description="With an LLM: how to write the call's summary (what to put in, for whom); "
        "empty: two short sentences. Without an LLM the template summary is kept.",
    )
    rubric: str = Field(
        "",
        max_length=4000,
        description="With an LLM: what a successful call is, judged pass/fail with a reason. "
        "Without one, success is read from the caller's words (the local model).",
    )
    success_criteria: list[Annotated[str, Field(min_length=1, max_length=300)]] = Field(
        default_factory=list,
        max_length=20,
        description="Criteria the LLM checks, each a sentence ('the caller got an order status').",
    )
    extraction_schema: dict[str, Any] | None = Field(
        None,
        description="A JSON Schema (draft 2020-12) of type object: the fields to extract from "
        "the call. An LLM fills it from the transcript; without one it is filled from the "
        "call's slots. A result that does not match is stored as a recorded failure.",
    )

    @field_validator("extraction_schema")
    @classmethod
    def _valid_schema(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is None:
            return None
        from shared.agents.extraction import schema_problem

        problem = schema_problem(value)
        if problem:
            raise ValueError(f"extraction_schema: {problem}")
        return value


class AgentDefinition(_Model):
    """A complete agent: the document stored per tenant and version."""

    id: AgentId = Field(description="Agent id, unique per tenant.")
    name: str = Field(min_length=1, max_length=200, description="Display name.")
    description: str = Field("", description="What the agent is for (for people).")
    language: str = Field("en", description="Language of the agent (English parsers today).")
    timezone: str = Field(
        "UTC",
        description="IANA timezone of the business (America/New_York): the call's date in it "
        "is what 'tomorrow' and 'the 3rd' are counted from.",
    )
    greeting: str = Field(
        min_length=1,
        description="First words of the call: fixed text (synthesized once and cached), so no "
        "{{ }} templates; greet by slot or variable in the start state's 'say'.",
    )
    start: Name = Field(description="State the call is in after the greeting.")
    variables: dict[str, str] = Field(
        default_factory=dict, description="Defaults for {{ vars.x }}; calls may override them."
    )
    dispositions: dict[Name, str] = Field(
        default_factory=dict, description="Custom dispositions: name -> meaning."
    )
    intent_threshold: float | None = Field(
        None, ge=0, le=1, description="Classifier confidence needed; empty uses the setting."
    )
    messages: Messages = Field(default_factory=Messages, description="Built-in phrases.")
    llm: LlmOptions = Field(default_factory=LlmOptions, description="How the LLM is used.")
    knowledge: Knowledge = Field(default_factory=Knowledge, description="Knowledge base.")
    escalation: Escalation = Field(
        default_factory=Escalation, description="When and where calls go to a person."
    )
    voicemail: Voicemail = Field(
        default_factory=Voicemail, description="What to do on an answering machine."
    )
    screening: Screening = Field(
        default_factory=Screening, description="What to do when a call-screening assistant answers."
    )
    analysis: Analysis = Field(
        default_factory=Analysis,
        description="Post-call analysis: summary prompt, success rubric, extraction schema.",
    )
    global_intents: dict[Name, IntentRoute] = Field(
        default_factory=dict, description="Understood in every state (human, repeat, goodbye)."
    )
    states: dict[Name, State] = Field(min_length=1, description="The states, by name.")

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown timezone '{value}' (use an IANA name: Europe/Paris)"
            ) from None
        return value

    @model_validator(mode="after")
    def _custom_dispositions(self) -> AgentDefinition:
        clash = sorted(set(self.dispositions) & set(STANDARD_DISPOSITIONS))
        if clash:
            raise ValueError(f"custom dispositions redefine standard ones: {', '.join(clash)}")
        return self

    def all_dispositions(self) -> set[str]:
        return set(STANDARD_DISPOSITIONS) | set(self.dispositions)


Knowledge.model_rebuild()
