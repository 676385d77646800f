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


CALL_DAY = datetime(2026, 12, 2, 9, 30)  # a Wednesday: the call's date, never the real today


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("the 3rd", "2026-12-03"),
        ("on the third please", "2026-12-03"),
        ("Tuesday at 3", "2026-12-08"),
        ("Friday the 11th", "2026-12-11"),
        ("Dec. 14", "2026-12-14"),
        ("December 14th at half past ten.", "2026-12-14"),
        ("the fourteenth of December", "2026-12-14"),
        ("the day after tomorrow", "2026-12-04"),
        ("tomorrow morning if you can", "2026-12-03"),
        ("um, how about in two weeks", "2026-12-16"),
        ("January 5th", "2027-01-05"),
        ("the 1st", "2027-01-01"),
        ("Wednesday", "2026-12-09"),
        ("12/24", "2026-12-24"),
    ],
)
def test_dates_are_the_next_matching_day_from_the_call(text: str, expected: str) -> None:
    assert parse_slot(slot("date"), text, now=CALL_DAY) == Parsed(expected)


@pytest.mark.parametrize(
    "text",
    ["Sorry, one second.", "make it 4 pm instead", "uh let me check my calendar", "next week"],
)
def test_words_that_are_no_date_are_refused(text: str) -> None:
    assert isinstance(parse_slot(slot("date"), text, now=CALL_DAY), Unparsed)


def test_date_options_refuse_the_past_and_weekends() -> None:
    assert isinstance(
        parse_slot(slot("date", future_only=True), "yesterday", now=CALL_DAY), Unparsed
    )
    weekdays = slot("date", weekdays_only=True)
    assert isinstance(parse_slot(weekdays, "this Saturday", now=CALL_DAY), Unparsed)
    assert parse_slot(weekdays, "Monday", now=CALL_DAY) == Parsed("2026-12-07")


@pytest.mark.parametrize(
    ("text", "plain", "office"),
    [
        ("3", None, "15:00"),
        ("at 3", None, "15:00"),
        ("quarter to four", "03:45", "15:45"),
        ("three o'clock", "03:00", "15:00"),
        ("half past ten", "10:30", "10:30"),
        ("twenty past two", "02:20", "14:20"),
        ("4:15 pm", "16:15", "16:15"),
        ("nine in the morning", "09:00", "09:00"),
        ("December 14th at half past ten", "10:30", "10:30"),
        ("Tuesday at 3", None, "15:00"),
        ("seven pm", "19:00", None),  # outside the office's hours: refused
    ],
)
def test_times_with_and_without_business_hours(
    text: str, plain: str | None, office: str | None
) -> None:
    bare = parse_slot(slot("time"), text)
    biased = parse_slot(slot("time", business_hours="08:00-18:00"), text)
    assert bare == (Parsed(plain) if plain else bare) and (plain is not None) == isinstance(
        bare, Parsed
    )
    assert (office is not None) == isinstance(biased, Parsed)
    if office:
        assert biased == Parsed(office)


def test_parts_of_day_are_values_only_when_the_slot_takes_them() -> None:
    assert parse_slot(slot("time", parts_of_day=True), "sometime in the afternoon") == Parsed(
        "afternoon"
    )
    assert isinstance(parse_slot(slot("time"), "sometime in the afternoon"), Unparsed)
    assert speakable("time", "afternoon") == "in the afternoon"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("It's Maria Lopez.", "Maria Lopez"),
        ("Maria Lopez Maria Lopez Maria Lopez", "Maria Lopez"),
        ("my name is maria, surname L-O-P-E-Z", None),
        ("Lopez. L-O-P-E-Z.", "Lopez"),
        ("uh, this is Sean O'Neill", "Sean O'Neill"),
        ("yeah it's anne-marie", "Anne-Marie"),
        ("l o p e z", "Lopez"),
    ],
)
def test_names_are_cleaned(text: str, expected: str | None) -> None:
    result = parse_slot(slot("name"), text)
    if expected is None:
        assert isinstance(result, Parsed)  # said, just in an unusual shape: kept, not refused
    else:
        assert result == Parsed(expected)


@pytest.mark.parametrize("text", ["I don't know", "sorry what", "1 2 3 4", "..."])
def test_non_names_are_refused(text: str) -> None:
    assert isinstance(parse_slot(slot("name"), text), Unparsed)


def test_free_text_drops_recognition_loops_and_fillers() -> None:
    text = "um, my crown came off my crown came off my crown came off"
    assert parse_slot(slot("free_text"), text) == Parsed("my crown came off")


def test_a_local_number_without_area_code_is_refused() -> None:
    assert isinstance(parse_slot(slot("phone"), "555 1234"), Unparsed)
    assert isinstance(parse_slot(slot("phone"), "five five five, one two three four"), Unparsed)


def test_values_are_read_back_the_way_people_say_them() -> None:
    assert speakable("phone", "+15551234567") == "5 5 5, 1 2 3, 4 5 6 7"
    assert speakable("phone", "+442079460000") == "plus 4 4, 2 0, 7 9 4 6, 0 0 0 0"
    assert speakable("phone", "+442079460000", region="GB") == "0 2 0, 7 9 4 6, 0 0 0 0"
    assert speakable("date", "2026-12-14") == "Monday, December 14"
    assert speakable("time", "12:00") == "noon"
    assert speakable("spell", "Lopez") == "L o p e z"
