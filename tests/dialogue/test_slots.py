"""Slot parsers on spoken text as speech recognition writes it."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest

from media_nodes.dialogue.nlu.slots import (
    Parsed,
    Unparsed,
    is_plain_answer,
    is_plain_yes,
    parse_dtmf,
    parse_slot,
    parse_yes_no,
    speakable,
)
from shared.agents.models import Slot

NOW = datetime(2026, 11, 29, 12, 0)  # a Sunday


def slot(kind: str, **options: Any) -> Slot:
    return Slot(name="value", type=kind, prompt="?", **options)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kind", "options", "text", "expected"),
    [
        ("digits", {}, "my order is four five six seven", "4567"),
        ("digits", {}, "1 2 3 4.", "1234"),
        ("digits", {}, "forty five sixty seven", "4567"),
        ("digits", {}, "double five one two", "5512"),
        ("digits", {}, "It's 4567.", "4567"),
        ("number", {}, "about three hundred and twelve dollars", 312),
        ("number", {}, "1,250", 1250),
        ("number", {}, "twelve point five", 12.5),
        ("date", {}, "next tuesday", "2026-12-01"),
        ("date", {}, "on the fifth of march", "2027-03-05"),
        ("time", {}, "three thirty pm", "15:30"),
        ("time", {}, "at 3 30 in the afternoon", "15:30"),
        ("time", {}, "half past two", "02:30"),
        ("time", {}, "quarter to ten", "09:45"),
        ("time", {}, "nine o'clock in the evening", "21:00"),
        ("time", {}, "noon", "12:00"),
        ("yes_no", {}, "Yeah, that's right.", True),
        ("yes_no", {}, "No, that's wrong.", False),
        ("email", {}, "john at example dot com", "john@example.com"),
        ("email", {}, "my email is john dot smith at gmail dot com", "john.smith@gmail.com"),
        ("email", {}, "j o h n at e x a m p l e dot co dot uk", "john@example.co.uk"),
        ("email", {}, "John@Example.com.", "john@example.com"),
        (
            "email",
            {},
            "john underscore doe at acme dash shop dot com please",
            "john_doe@acme-shop.com",
        ),
        ("phone", {}, "five five five one two three four five six seven", "+15551234567"),
        ("phone", {}, "555-123-4567", "+15551234567"),
        (
            "phone",
            {"region": "GB"},
            "plus forty four twenty seven nine four six zero zero zero zero zero",
            "+442794600000",
        ),
        (
            "choice",
            {"choices": {"standard": ["regular"], "express": ["next day"]}},
            "next day delivery please",
            "express",
        ),
        ("free_text", {}, "  it arrived   broken ", "it arrived broken"),
    ],
)
def test_parses_spoken_values(kind: str, options: dict[str, Any], text: str, expected: Any) -> None:
    assert parse_slot(slot(kind, **options), text, now=NOW) == Parsed(expected)


@pytest.mark.parametrize(
    ("kind", "options", "text"),
    [
        ("digits", {"min_length": 4}, "one two"),
        ("digits", {"max_length": 4}, "1 2 3 4 5 6"),
        ("digits", {}, "I don't know"),
        ("number", {"maximum": 10}, "a thousand"),
        ("date", {}, "purple"),
        ("time", {}, "7"),
        ("yes_no", {}, "hmm let me think"),
        ("email", {}, "john example com"),
        ("phone", {}, "one two three"),
        ("choice", {"choices": {"standard": [], "express": []}}, "the blue one"),
        ("free_text", {}, "..."),
        ("digits", {}, ""),
        ("email", {}, "@" * 5000),
    ],
)
def test_rejects_absurd_or_missing_values(kind: str, options: dict[str, Any], text: str) -> None:
    assert isinstance(parse_slot(slot(kind, **options), text, now=NOW), Unparsed)


def test_dtmf_and_speakable() -> None:
    assert parse_dtmf(slot("digits"), "98765#") == Parsed("98765")
    assert parse_dtmf(slot("yes_no"), "1") == Parsed(True)
    assert isinstance(parse_dtmf(slot("email"), "1"), Unparsed)
    assert speakable("digits", "4567") == "4 5 6 7"
    assert speakable("email", "a.b@x.com") == "a dot b at x dot com"
    assert speakable("time", "15:30") == "3:30 PM"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("um, I don't know", None),
        ("I'm not sure, let me check", None),
        ("no idea honestly", None),
        ("hold on one second", None),
        ("I don't think so", False),
        ("nah", False),
        ("not really", False),
        ("uh huh", True),
        ("sure thing", True),
        ("I do", True),
        ("I don't", False),
        ("that's correct", True),
    ],
)
def test_yes_no_tells_unsure_from_no(text: str, expected: bool | None) -> None:
    assert parse_yes_no(text) is expected


@pytest.mark.parametrize(
    ("text", "plain"),
    [
        ("yes", True),
        ("Yeah, that's right, thanks.", True),
        ("um yep", True),
        ("okay", True),
        ("yes please", True),
        ("okay bye", False),
        ("agent please", False),
        ("right, can I talk to a real person", False),
        ("yes but the number is different", False),
        ("no", False),
    ],
)
def test_plain_yes_is_affirmation_and_nothing_else(text: str, plain: bool) -> None:
    assert is_plain_yes(text) is plain


def test_plain_answers_include_a_plain_no() -> None:
    assert is_plain_answer("nope, thanks")
    assert is_plain_answer("No.")
    assert not is_plain_answer("no, I want a person")
    assert not is_plain_answer("I'm not sure")
