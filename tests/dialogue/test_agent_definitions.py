"""Agent definitions: the example validates; bad ones fail with line and field."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from shared.agents.loader import AgentDefinitionError, load_agent_file, load_agent_text
from shared.agents.models import Voicemail
from shared.agents.phrases import fixed_texts
from shared.agents.schema import SCHEMA_FILE, render_agent_schema

ROOT = Path(__file__).resolve().parents[2]

BASE = """\
id: tiny
name: Tiny
greeting: Hello.
start: menu
escalation:
  target: "+15550000000"
global_intents:
  human:
    do: escalate
    examples: [a person please]
states:
  menu:
    intents:
      leave:
        next: bye
        examples: [goodbye]
  bye:
    say: Bye.
    action:
      type: end
"""


def problems_of(text: str) -> list[tuple[int | None, str, str]]:
    with pytest.raises(AgentDefinitionError) as caught:
        load_agent_text(textwrap.dedent(text), source="agent.yaml")
    return [(p.line, p.field, p.message) for p in caught.value.problems]


def test_example_agent_is_valid() -> None:
    loaded = load_agent_file(ROOT / "examples/agents/acme-shop")
    assert loaded.agent_id == "acme-shop"
    assert {k.doc_id for k in loaded.knowledge} == {
        "knowledge/billing.md",
        "knowledge/shipping.md",
        "knowledge/returns.md",
    }


def test_minimal_agent_is_valid() -> None:
    assert load_agent_text(BASE).start == "menu"


def test_unknown_state_points_at_line_and_field() -> None:
    found = problems_of(BASE.replace("next: bye", "next: byebye"))
    assert found == [
        (15, "states.menu.intents.leave.next", "unknown state 'byebye' (states: bye, menu)")
    ]


def test_unknown_field_and_bad_slot_type() -> None:
    text = BASE + textwrap.indent(
        textwrap.dedent("""\
        ask:
          colour: blue
          collect:
            - name: order
              type: digitz
              prompt: Number?
          next: bye
        """),
        "  ",
    )
    found = problems_of(text)
    fields = {(line, field) for line, field, _ in found}
    assert (22, "states.ask.colour") in fields
    assert (25, "states.ask.collect.0.type") in fields
    assert any("unknown field 'colour'" in message for _, _, message in found)


def test_missing_slot_type() -> None:
    text = BASE.replace(
        "  bye:\n",
        "  ask:\n    collect:\n      - name: order\n        prompt: Number?\n"
        "    next: bye\n  bye:\n",
    )
    found = problems_of(text)
    assert (19, "states.ask.collect.0.type", "Field required") in found


def test_unreachable_state() -> None:
    text = BASE + "  orphan:\n    say: nobody comes here\n    next: bye\n"
    found = problems_of(text)
    assert found == [(21, "states.orphan", "state 'orphan' is unreachable from start 'menu'")]


def test_cycle_with_no_exit() -> None:
    text = BASE.replace("next: bye", "next: spin_a") + (
        "  spin_a:\n    say: a\n    next: spin_b\n  spin_b:\n    say: b\n    next: spin_a\n"
    )
    messages = [m for _, _, m in problems_of(text)]
    assert any(m.startswith("cycle with no exit: spin_a -> spin_b -> spin_a") for m in messages)


def test_state_with_no_way_to_end() -> None:
    stuck = """\
    id: stuck
    name: Stuck
    greeting: Hi.
    start: a
    escalation: {target: "+15550000000"}
    states:
      a:
        intents:
          go: {next: b, examples: [go]}
      b:
        intents:
          back: {next: a, examples: [back]}
    """
    found = problems_of(stuck)
    assert found == [
        (7, "states.a", "no way to end the call from state 'a'"),
        (10, "states.b", "no way to end the call from state 'b'"),
    ]


def test_template_name_must_be_filled() -> None:
    found = problems_of(BASE.replace("say: Bye.", "say: Bye {{ nam }}."))
    assert found[0][1] == "states.bye.say"
    assert "'nam'" in found[0][2]


def test_unknown_disposition_and_custom_one() -> None:
    found = problems_of(BASE.replace("type: end", "type: end\n      disposition: sold"))
    assert found[0][1] == "states.bye.action.disposition"
    ok = BASE.replace("type: end", "type: end\n      disposition: sold") + (
        "dispositions:\n  sold: The caller bought something.\n"
    )
    assert "sold" in load_agent_text(ok).all_dispositions()


def test_duplicate_key_and_bad_yaml() -> None:
    found = problems_of(BASE.replace("name: Tiny\n", "name: Tiny\nname: Again\n"))
    assert (3, "name", "key 'name' appears twice") in found
    broken = problems_of("id: x\nstates: [unclosed\n")
    assert broken[0][1] == "" and "not valid YAML/JSON" in broken[0][2]
    assert problems_of("- a list\n")[0][2] == "expected a mapping of fields, got list"


def test_json_definition_is_accepted() -> None:
    import yaml

    as_json = json.dumps(yaml.safe_load(BASE))
    assert load_agent_text(as_json).id == "tiny"


def test_json_schema_file_is_current() -> None:
    path = ROOT / "events" / "schemas" / SCHEMA_FILE
    assert path.read_text() == render_agent_schema(), "run: parley agent schema"


def test_transfer_targets_and_tool_urls_are_checked() -> None:
    found = problems_of(BASE.replace('target: "+15550000000"', "target: 555-1234"))
    assert found[0][:2] == (6, "escalation.target")
    assert "not an E.164 number" in found[0][2]
    sip = BASE.replace('"+15550000000"', '"sip:support@pbx.example.com"')
    assert load_agent_text(sip).escalation.target == "sip:support@pbx.example.com"
    tool = BASE.replace(
        "    action:\n      type: end\n",
        "    action:\n      type: http\n      url: ftp://x\n      on_success: menu\n",
    )
    assert problems_of(tool)[0][1] == "states.bye.action.http.url"


def test_fixed_texts_are_what_the_agent_says_word_for_word() -> None:
    definition = load_agent_file(ROOT / "examples/agents/acme-shop").definition
    texts = fixed_texts(definition)
    assert texts[0] == definition.greeting.strip()
    assert "Is there anything else I can help you with?" in texts
    assert definition.messages.no_input in texts
    assert not [t for t in texts if "{{" in t], "templated texts differ per call"
    assert len(texts) == len(set(texts))
    # What a machine or a screening assistant hears is said word for word too.
    assert f"This is an automated call from {definition.name}." in texts
    leaving = definition.model_copy(
        update={"voicemail": Voicemail(action="leave_message", message="Please call us back.")}
    )
    assert "Please call us back." in fixed_texts(leaving)
    assert "Please call us back." not in texts  # the default voicemail action hangs up


ALIAS_BOMB = "\n".join(
    [
        'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]',
        *(
            f"{name}: &{name} [{', '.join([f'*{prev}'] * 9)}]"
            for prev, name in zip("abcde", "bcdef", strict=True)
        ),
    ]
)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a: &a [*a]", "alias *a refers to a node holding it"),
        ("x: &x {y: {z: *x}}", "alias *x refers to a node holding it"),
        ("[" * 5000 + "]" * 5000, "nested deeper than 32 levels"),
        ("- " * 5000 + "x", "nested deeper than 32 levels"),
        ("{a: " * 5000 + "1" + "}" * 5000, "nested deeper than 32 levels"),
        (ALIAS_BOMB, "more than 200000 nodes with aliases expanded"),
    ],
    ids=["recursive-alias", "recursive-mapping", "deep-brackets", "deep-list", "deep-map", "bomb"],
)
def test_hostile_yaml_is_refused_before_it_is_built(text: str, message: str) -> None:
    assert len(ALIAS_BOMB) < 300  # about 600,000 nodes once expanded
    with pytest.raises(AgentDefinitionError) as caught:
        load_agent_text(text)
    (problem,) = caught.value.problems
    assert problem.message == message and problem.line is not None


def test_the_cli_names_a_hostile_definitions_problem(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from media_nodes.dialogue.cli import app

    path = tmp_path / "agent.yaml"
    path.write_text("a: &a [*a]\n")
    result = CliRunner().invoke(app, ["validate", str(path)])
    assert result.exit_code == 1
    assert f"{path}:1: (document): alias *a refers to a node holding it" in result.output


def test_a_key_indented_too_far_is_caught_in_the_text() -> None:
    text = BASE.replace(
        "  bye:\n    say: Bye.\n",
        "  bye:\n    say: >-\n      Bye.\n      disposition: resolved\n",
    )
    problems = problems_of(text)
    assert any(
        field == "states.bye.say" and "'disposition:', probably a key indented too far" in message
        for _, field, message in problems
    ), problems


def test_unknown_variables_and_a_templated_greeting_are_errors() -> None:
    text = BASE.replace("greeting: Hello.", "greeting: Hello {{ vars.caller }}.").replace(
        "    say: Bye.", "    say: Bye from {{ vars.shop }}."
    )
    problems = problems_of(text)
    messages = [m for _, _, m in problems]
    assert any("unknown variable 'vars.shop'" in m for m in messages), problems
    assert any("the greeting is fixed text" in m for m in messages), problems
    assert (3, "greeting", next(m for m in messages if "greeting is fixed" in m)) in problems


@pytest.mark.parametrize(
    ("option", "kind"),
    [
        ("min_length: 4", "date"),
        ('business_hours: "09:00-17:00"', "date"),
        ("future_only: true", "time"),
        ("region: GB", "digits"),
        ("confirm_prompt: Right?", "digits"),
    ],
)
def test_an_option_without_effect_on_the_slot_type_is_an_error(option: str, kind: str) -> None:
    text = BASE.replace(
        "      leave:\n        next: bye\n",
        "      leave:\n        next: ask\n",
    ) + (
        "  ask:\n    collect:\n      - name: value\n"
        f"        type: {kind}\n        prompt: Which?\n        {option}\n    next: bye\n"
    )
    problems = problems_of(text)
    assert any("has no effect" in m for _, _, m in problems), problems


def test_script_errors_carry_their_line(tmp_path: Path) -> None:
    from media_nodes.dialogue.testing import ScriptError, load_script

    script = tmp_path / "s.yaml"
    script.write_text("turns:\n  - user: hi\n  - user: yes\n    expect: {stat: menu}\n")
    with pytest.raises(ScriptError) as caught:
        load_script(script)
    message = str(caught.value)
    assert f"{script}:3: turns.1.user:" in message
    assert f"{script}:4: turns.1.expect.stat:" in message


def test_branches_need_a_filled_slot_and_one_test() -> None:
    text = BASE.replace(
        "    say: Bye.\n",
        "    say: Bye.\n",
    ).replace(
        "      leave:\n        next: bye\n",
        "      leave:\n        next: route\n",
    ) + ("  route:\n    next: bye\n    branches:\n      - {slot: tier, equals: gold, next: bye}\n")
    assert any("branch tests 'tier'" in m for _, _, m in problems_of(text))
    both = text.replace("{slot: tier, equals: gold, next: bye}", "{slot: tier, next: bye}")
    assert any("exactly one of 'equals'" in m for _, _, m in problems_of(both))


def test_per_state_instructions_for_the_model_load() -> None:
    loaded = load_agent_file(ROOT / "examples/agents/smile-dental")
    state = loaded.definition.states["book_visit"]
    assert state.llm_instructions and "dental appointment" in state.llm_instructions


def test_docs_document_every_field() -> None:
    from shared.agents.schema import REFERENCE_END, REFERENCE_START, field_reference

    doc = (ROOT / "docs" / "dialogue.md").read_text()
    block = doc[doc.index(REFERENCE_START) : doc.index(REFERENCE_END) + len(REFERENCE_END)]
    assert block == field_reference(), "run: parley agent schema --docs docs/dialogue.md"
    from shared.agents import models

    for model in (models.AgentDefinition, models.State, models.Slot, models.HttpAction):
        for name, field in model.model_fields.items():
            assert field.description, f"{model.__name__}.{name} has no description"
            assert f"| `{name}` |" in block


@pytest.mark.parametrize("agent", ["acme-shop", "smile-dental"])
def test_a_shipped_agent_survives_the_json_the_admin_api_stores(agent: str) -> None:
    # The admin API and the demo send model_dump(mode="json"): every default spelled out.
    from shared.agents.loader import load_agent_file
    from shared.agents.models import AgentDefinition

    definition = load_agent_file(ROOT / "examples" / "agents" / agent).definition
    stored = definition.model_dump(mode="json", exclude_none=True)
    assert AgentDefinition.model_validate(stored) == definition
