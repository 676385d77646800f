"""Checks on an agent's graph that a per-field model cannot make.

Each problem carries the path of the offending field (``states.menu.intents.billing.next``) so
the loader can point at its line in the YAML.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from shared.agents.models import (
    RETURN,
    AgentDefinition,
    EndAction,
    HttpAction,
    State,
    TransferAction,
)

Path = tuple[str | int, ...]

TEMPLATE_NAME = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_.]*)\s*(?:\|\s*([a-z_]+)\s*)?\}\}")
"""``{{ name }}`` or ``{{ name | filter }}``: a slot, tool result or ``vars.NAME``."""

TEMPLATE_FILTERS = {
    "raw": "the value as stored (an ISO date, +15551234567)",
    "digits": "digits one by one",
    "phone": "a phone number grouped as people say it, without the local country code",
    "date": "a date as said: Monday, December 14",
    "time": "a time as said: 3:30 PM",
    "email": "an email address with 'at' and 'dot'",
    "spell": "letter by letter",
}
"""How a template may say a value; without a filter a slot is said as its type says it."""


@dataclass(frozen=True)
class Problem:
    path: Path
    message: str


def state_edges(state: State) -> Iterator[tuple[Path, str, bool]]:
    """(field path inside the state, target state, automatic?) for every way out of ``state``.

    Automatic edges are taken without waiting for the caller.
    """
    if state.next:
        yield ("next",), state.next, not state.collect
    for name, route in (state.intents or {}).items():
        if route.next:
            yield ("intents", name, "next"), route.next, False
        if route.call:
            yield ("intents", name, "call"), route.call, False
    if state.answer:
        yield ("answer", "next"), state.answer.next, state.answer.prompt is None
    for index, branch in enumerate(state.branches or []):
        yield ("branches", index, "next"), branch.next, not state.collect
    if isinstance(state.action, HttpAction):
        yield ("action", "on_success"), state.action.on_success, True
        if state.action.on_failure:
            yield ("action", "on_failure"), state.action.on_failure, True


def waits_for_caller(state: State) -> bool:
    return bool(state.intents or state.collect or (state.answer and state.answer.prompt))


def ends_call(state: State) -> bool:
    return isinstance(state.action, EndAction | TransferAction)


def validate_agent(agent: AgentDefinition) -> list[Problem]:
    """Every graph problem of ``agent`` (empty when it is sound)."""
    problems: list[Problem] = []
    states = agent.states

    def need_state(path: Path, name: str | None, *, may_return: bool = False) -> None:
        if may_return and name == RETURN:
            return
        if name is not None and name not in states:
            known = ", ".join(sorted(states))
            problems.append(Problem(path, f"unknown state '{name}' (states: {known})"))

    need_state(("start",), agent.start)
    need_state(("escalation", "state"), agent.escalation.state)
    for intent, route in agent.global_intents.items():
        need_state(("global_intents", intent, "next"), route.next)
        need_state(("global_intents", intent, "call"), route.call)
    for name, state in states.items():
        if name == RETURN:
            problems.append(
                Problem(("states", name), f"'{RETURN}' ends a sub-flow; it cannot name a state")
            )
        for path, target, _ in state_edges(state):
            need_state(("states", name, *path), target, may_return=path[-1] != "call")

    problems += _text_problems(agent)
    problems += _disposition_problems(agent)
    problems += _slot_problems(agent)
    problems += _escalation_problems(agent)
    if any(p.message.startswith("unknown state") for p in problems):
        return problems  # the graph checks below need every reference to resolve
    problems += _reachability_problems(agent)
    problems += _cycle_problems(agent)
    problems += _exit_problems(agent)
    return problems


# A field name followed by ": " inside spoken text: most likely a key indented too far, which
# YAML then folds into the text above it ("say: >-" swallowing "next: menu").
SWALLOWED_KEY = re.compile(
    r"(?:^|\s)(say|next|collect|intents|answer|action|prompt|reprompt|disposition|examples|"
    r"type|on_success|on_failure|confirm|prefill|name|url|method|result|dtmf|do|call):\s"
)
NOT_SPOKEN = {"examples", "body", "headers", "variables", "documents", "description", "result"}


def _strings(
    value: object, path: Path, skip: frozenset[str] | set[str] = frozenset()
) -> Iterator[tuple[Path, str]]:
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for key, item in value.items():
            if key not in skip:
                yield from _strings(item, (*path, key), skip)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _strings(item, (*path, index), skip)


def _text_problems(agent: AgentDefinition) -> list[Problem]:
    problems = []
    dumped = agent.model_dump(exclude_none=True)
    for path, text in _strings(dumped, (), NOT_SPOKEN):
        found = SWALLOWED_KEY.search(text)
        if found:
            problems.append(
                Problem(
                    path,
                    f"the text contains '{found.group(1)}:', probably a key indented too far "
                    "and folded into the text; indent it like its siblings",
                )
            )
    if TEMPLATE_NAME.search(agent.greeting):
        problems.append(
            Problem(
                ("greeting",),
                "the greeting is fixed text (synthesized once and cached): move {{ }} to the "
                f"'say' of the start state '{agent.start}'",
            )
        )
    for path, text in _strings(dumped, ()):
        for match in TEMPLATE_NAME.finditer(text):
            ref = match.group(1)
            if ref.startswith("vars.") and ref[5:] not in agent.variables:
                declared = ", ".join(sorted(agent.variables)) or "none"
                problems.append(
                    Problem(
                        path,
                        f"unknown variable '{ref}': declare it under 'variables' with a default "
                        f"(declared: {declared})",
                    )
                )
    return problems


def _disposition_problems(agent: AgentDefinition) -> list[Problem]:
    known = agent.all_dispositions()
    problems = []
    for name, state in agent.states.items():
        used: list[tuple[Path, str]] = []
        if state.disposition:
            used.append((("states", name, "disposition"), state.disposition))
        if isinstance(state.action, EndAction | TransferAction) and state.action.disposition:
            used.append((("states", name, "action", "disposition"), state.action.disposition))
        for path, disposition in used:
            if disposition not in known:
                problems.append(
                    Problem(
                        path,
                        f"unknown disposition '{disposition}' (declare it under 'dispositions')",
                    )
                )
    return problems


def _slot_problems(agent: AgentDefinition) -> list[Problem]:
    problems = []
    filled = {"value"}
    for state in agent.states.values():
        filled |= {slot.name for slot in state.collect or []}
        if isinstance(state.action, HttpAction):
            filled |= set(state.action.result)
    for name, state in agent.states.items():
        seen: set[str] = set()
        for index, slot in enumerate(state.collect or []):
            if slot.name in seen:
                problems.append(
                    Problem(("states", name, "collect", index, "name"), f"slot '{slot.name}' twice")
                )
            seen.add(slot.name)
        for index, branch in enumerate(state.branches or []):
            if branch.slot not in filled:
                problems.append(
                    Problem(
                        ("states", name, "branches", index, "slot"),
                        f"branch tests '{branch.slot}', which no slot or tool result fills",
                    )
                )
        for path, text in _templates(state):
            for match in TEMPLATE_NAME.finditer(text):
                ref, spoken_as = match.group(1), match.group(2)
                if spoken_as and spoken_as not in TEMPLATE_FILTERS:
                    problems.append(
                        Problem(
                            ("states", name, *path),
                            f"unknown filter '{spoken_as}' (filters: "
                            + ", ".join(sorted(TEMPLATE_FILTERS))
                            + ")",
                        )
                    )
                if ref.startswith("vars.") or ref in filled:
                    continue
                problems.append(
                    Problem(
                        ("states", name, *path),
                        f"template uses '{ref}', which no slot or tool result fills "
                        "(use vars.NAME for call variables)",
                    )
                )
        keys: dict[str, str] = {}
        for intent, route in {**agent.global_intents, **(state.intents or {})}.items():
            if route.dtmf and route.dtmf in keys and state.intents:
                problems.append(
                    Problem(
                        ("states", name, "intents"),
                        f"DTMF key '{route.dtmf}' selects both '{keys[route.dtmf]}' and '{intent}'",
                    )
                )
            if route.dtmf:
                keys[route.dtmf] = intent
    return problems


def _templates(state: State) -> Iterator[tuple[Path, str]]:
    if state.say:
        yield ("say",), state.say
    for index, slot in enumerate(state.collect or []):
        yield ("collect", index, "prompt"), slot.prompt
    if isinstance(state.action, HttpAction):
        yield ("action", "url"), state.action.url


def _escalation_problems(agent: AgentDefinition) -> list[Problem]:
    esc = agent.escalation
    if esc.target or esc.state:
        return []
    problems = []
    for name, state in agent.states.items():
        if isinstance(state.action, TransferAction) and not state.action.target:
            problems.append(
                Problem(
                    ("states", name, "action", "target"),
                    "a transfer needs a target here or in escalation.target",
                )
            )
    if not problems:
        problems.append(
            Problem(
                ("escalation",),
                "escalation needs a 'target' (number or SIP URI) or a 'state' to hand calls to",
            )
        )
    return problems


def _reachability_problems(agent: AgentDefinition) -> list[Problem]:
    roots = [agent.start]
    roots += [r.next for r in agent.global_intents.values() if r.next]
    roots += [r.call for r in agent.global_intents.values() if r.call]
    if agent.escalation.state:
        roots.append(agent.escalation.state)
    seen: set[str] = set()
    stack = list(roots)
    while stack:
        name = stack.pop()
        if name in seen:
            continue
        seen.add(name)
        stack += [t for _, t, _ in state_edges(agent.states[name]) if t != RETURN]
    return [
        Problem(("states", name), f"state '{name}' is unreachable from start '{agent.start}'")
        for name in agent.states
        if name not in seen
    ]


def _cycle_problems(agent: AgentDefinition) -> list[Problem]:
    """Loops of automatic moves: the call would spin without ever waiting for the caller."""
    auto = {
        name: [t for _, t, automatic in state_edges(state) if automatic and t != RETURN]
        for name, state in agent.states.items()
    }
    problems: list[Problem] = []
    done: set[str] = set()

    def visit(name: str, path: list[str]) -> None:
        if name in path:
            loop = path[path.index(name) :]
            problems.append(
                Problem(
                    ("states", loop[0]),
                    "cycle with no exit: "
                    + " -> ".join([*loop, name])
                    + " (no state in it waits for the caller)",
                )
            )
            return
        if name in done:
            return
        for target in auto[name]:
            visit(target, [*path, name])
        done.add(name)

    for name in agent.states:
        visit(name, [])
    return problems


def _exit_problems(agent: AgentDefinition) -> list[Problem]:
    """Every state must be able to lead to the end of the call (hang-up or transfer)."""
    global_exit = any(route.do == "escalate" for route in agent.global_intents.values())
    edges = {n: [t for _, t, _ in state_edges(s)] for n, s in agent.states.items()}
    global_targets = [t for r in agent.global_intents.values() for t in (r.next, r.call) if t]
    # A sub-flow's return goes back to a state that waits for the caller, and so can end.
    can_end = {n for n, s in agent.states.items() if ends_call(s)} | {RETURN}
    changed = True
    while changed:
        changed = False
        for name, state in agent.states.items():
            if name in can_end:
                continue
            outs = list(edges[name])
            if waits_for_caller(state):
                if global_exit:
                    can_end.add(name)
                    changed = True
                    continue
                outs += global_targets
                outs += [t for t in (agent.escalation.state,) if t]
            if any(t in can_end for t in outs):
                can_end.add(name)
                changed = True
    return [
        Problem(("states", name), f"no way to end the call from state '{name}'")
        for name in agent.states
        if name not in can_end
    ]
