"""Dates and times as callers say them, relative to the call's own date.

"the 3rd", "Friday the 11th", "Dec. 14", "the day after tomorrow", "Tuesday" all mean the next
matching date from ``today`` (the call's date in the agent's timezone), never a date in a past
month and never today by default. Words that are no date at all ("Sorry, one second.", "make it
4 pm instead") are refused, so the caller is asked again instead of booked on the wrong day.

Times: "3:30 pm", "half past ten", "quarter to four", "three o'clock", "noon". A bare "3" or "at
3" is a time only when the slot gives business hours, which also decide AM or PM for an hour said
without them ("quarter to four" is 15:45 for a 9-to-5 office, 03:45 otherwise).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, time, timedelta

from media_nodes.dialogue.nlu.spoken import numbers_to_digits

MONTHS = {
    "january": 1,
    "february": 2,
    "march": 3,
    "april": 4,
    "may": 5,
    "june": 6,
    "july": 7,
    "august": 8,
    "september": 9,
    "october": 10,
    "november": 11,
    "december": 12,
}
# Short forms only with their dot ("Dec. 14") or before a day number: "may" and "sat" are words.
MONTH_ABBREVIATIONS = {
    "jan": 1,
    "feb": 2,
    "mar": 3,
    "apr": 4,
    "jun": 6,
    "jul": 7,
    "aug": 8,
    "sep": 9,
    "sept": 9,
    "oct": 10,
    "nov": 11,
    "dec": 12,
}
WEEKDAYS = {
    "monday": 0,
    "tuesday": 1,
    "wednesday": 2,
    "thursday": 3,
    "friday": 4,
    "saturday": 5,
    "sunday": 6,
}
SMALL_NUMBERS = {
    "a": 1,
    "an": 1,
    "one": 1,
    "two": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "six": 6,
    "seven": 7,
    "eight": 8,
    "nine": 9,
    "ten": 10,
}
# What text2num leaves as words; "second" only counts after "the" (see _normal).
ORDINAL_WORDS = {
    "first": 1,
    "third": 3,
    "fourth": 4,
    "fifth": 5,
    "sixth": 6,
    "seventh": 7,
    "eighth": 8,
    "ninth": 9,
    "tenth": 10,
}

MONTH_NAME = "|".join([*MONTHS, *(rf"{a}\." for a in MONTH_ABBREVIATIONS), *MONTH_ABBREVIATIONS])
WEEKDAY_NAME = "|".join(WEEKDAYS)
DAY_NUMBER = r"(\d{1,2})(?:st|nd|rd|th)?"


@dataclass(frozen=True)
class DateFound:
    day: date | None
    problem: str = ""


def _normal(text: str) -> str:
    lowered = text.lower().replace("\u2019", "'")
    lowered = re.sub(r"\bthe second\b", "the 2nd", lowered)
    lowered = re.sub(
        r"\b(" + "|".join(ORDINAL_WORDS) + r")\b",
        lambda m: f"{ORDINAL_WORDS[m.group(1)]}th",
        lowered,
    )
    lowered = numbers_to_digits(lowered)
    lowered = re.sub(r"[,!?;]", " ", lowered)
    return " ".join(lowered.split())


def _month(word: str) -> int:
    word = word.rstrip(".")
    return MONTHS.get(word) or MONTH_ABBREVIATIONS[word]


def _next_day_of_month(today: date, day: int, weekday: int | None = None) -> date | None:
    """The first date from today on with this day of the month (and weekday, if given)."""
    year, month = today.year, today.month
    for _ in range(12 * 8):  # a weekday and day of month meet within a few years
        try:
            candidate = date(year, month, day)
        except ValueError:
            candidate = None
        if (
            candidate is not None
            and candidate >= today
            and (weekday is None or candidate.weekday() == weekday)
        ):
            return candidate
        month += 1
        if month > 12:
            year, month = year + 1, 1
    return None


def _next_weekday(today: date, weekday: int, *, this: bool = False) -> date:
    ahead = (weekday - today.weekday()) % 7
    if ahead == 0 and not this:
        ahead = 7
    return today + timedelta(days=ahead)


def find_date(text: str, today: date) -> DateFound:
    """The date the caller meant, or ``DateFound(None, why)``."""
    said = _normal(text)
    if re.search(r"\bday after tomorrow\b", said):
        return DateFound(today + timedelta(days=2))
    if re.search(r"\btomorrow\b", said):
        return DateFound(today + timedelta(days=1))
    if re.search(r"\b(today|tonight|this (morning|afternoon|evening))\b", said):
        return DateFound(today)
    if re.search(r"\byesterday\b", said):
        return DateFound(today - timedelta(days=1))
    ahead = re.search(r"\bin (\d+|" + "|".join(SMALL_NUMBERS) + r") (day|week)s?\b", said)
    if ahead:
        count = int(ahead.group(1)) if ahead.group(1).isdigit() else SMALL_NUMBERS[ahead.group(1)]
        days = count * (7 if ahead.group(2) == "week" else 1)
        return DateFound(today + timedelta(days=days))
    iso = re.search(r"\b(\d{4})-(\d{2})-(\d{2})\b", said)
    if iso:
        try:
            return DateFound(date(int(iso.group(1)), int(iso.group(2)), int(iso.group(3))))
        except ValueError:
            return DateFound(None, "not a calendar date")
    explicit = re.search(
        rf"\b(?:({MONTH_NAME})\s+(?:the\s+)?{DAY_NUMBER}|(?:the\s+)?{DAY_NUMBER}\s+(?:of\s+)?"
        rf"({MONTH_NAME}))(?:\s+(\d{{4}}))?(?!\w)",
        said,
    )
    slashed = re.search(r"\b(\d{1,2})/(\d{1,2})(?:/(\d{2}|\d{4}))?\b", said)
    if explicit or slashed:
        if explicit:
            month = _month(explicit.group(1) or explicit.group(4))
            day = int(explicit.group(2) or explicit.group(3))
            year_text = explicit.group(5)
        else:
            assert slashed is not None
            month, day, year_text = int(slashed.group(1)), int(slashed.group(2)), slashed.group(3)
        if year_text:
            year = int(year_text) + (2000 if len(year_text) == 2 else 0)
            try:
                return DateFound(date(year, month, day))
            except ValueError:
                return DateFound(None, "not a calendar date")
        for year in (today.year, today.year + 1, today.year + 2):
            try:
                candidate = date(year, month, day)
            except ValueError:
                continue  # 29 February: the next leap year
            if candidate >= today:
                return DateFound(candidate)
        return DateFound(None, "not a calendar date")
    weekday_match = re.search(rf"\b(?:(this|next|on|coming)\s+)?({WEEKDAY_NAME})\b", said)
    day_of_month = re.search(rf"\bthe\s+{DAY_NUMBER}\b(?!\s*(?:day|week|hour|minute|time))", said)
    if day_of_month:
        day = int(day_of_month.group(1))
        if not 1 <= day <= 31:
            return DateFound(None, "not a day of the month")
        weekday = WEEKDAYS[weekday_match.group(2)] if weekday_match else None
        found = _next_day_of_month(today, day, weekday)
        if found is None:
            return DateFound(None, "no such date")
        return DateFound(found)
    if weekday_match:
        this = weekday_match.group(1) == "this"
        return DateFound(_next_weekday(today, WEEKDAYS[weekday_match.group(2)], this=this))
    if re.search(r"\b(next|this|coming) (week|month)\b", said):
        return DateFound(None, "a week or month, not a day")
    return DateFound(None, "no date heard")


@dataclass(frozen=True)
class TimeFound:
    moment: time | None
    part_of_day: str | None = None
    problem: str = ""


PM = re.compile(r"\b(p\.?\s?m\b\.?|afternoon|evening|tonight|at night)")
AM = re.compile(r"\b(a\.?\s?m\b\.?|morning)")
PARTS_OF_DAY = {"morning": "morning", "afternoon": "afternoon", "evening": "evening"}
HOUR_WORDS = {
    w: str(i)
    for i, w in enumerate(
        "zero one two three four five six seven eight nine ten eleven twelve".split()
    )
}


def parse_hours(spec: str | None) -> tuple[time, time] | None:
    if not spec:
        return None
    start, end = spec.split("-")
    return time.fromisoformat(start), time.fromisoformat(end)


def within(moment: time, hours: tuple[time, time]) -> bool:
    return hours[0] <= moment <= hours[1]


def _biased(hour: int, minutes: int, hours: tuple[time, time] | None) -> int:
    """An hour said without AM/PM: the reading inside business hours, if there are any."""
    if hours is None or not 1 <= hour <= 12:
        return hour
    morning, afternoon = hour % 12, hour % 12 + 12
    fits = [h for h in (morning, afternoon) if within(time(h, minutes), hours)]
    if len(fits) == 1:
        return fits[0]
    return afternoon if 1 <= hour <= 7 else morning


def find_time(text: str, *, business_hours: str | None = None) -> TimeFound:
    """The time of day the caller meant (``part_of_day`` for a bare "in the morning")."""
    hours = parse_hours(business_hours)
    lowered = re.sub(r"\bo\s?'?\s?clock\b", " oclock", text.lower().replace("\u2019", "'"))
    lowered = numbers_to_digits(lowered)
    lowered = re.sub(
        r"\b(" + "|".join(HOUR_WORDS) + r")\b", lambda m: HOUR_WORDS[m.group(1)], lowered
    )
    # Day numbers of a date said in the same breath ("December 14 at 10") are no hours.
    lowered = re.sub(rf"\b({MONTH_NAME})\s+(?:the\s+)?{DAY_NUMBER}", " ", lowered)
    lowered = re.sub(rf"\bthe\s+{DAY_NUMBER}", " ", lowered)
    lowered = re.sub(r"\b\d{1,2}/\d{1,2}(?:/\d{2,4})?\b", " ", lowered)
    if re.search(r"\b(noon|midday)\b", lowered):
        return TimeFound(time(12, 0))
    if re.search(r"\bmidnight\b", lowered):
        return TimeFound(time(0, 0))
    pm, am = PM.search(lowered), AM.search(lowered)
    relative = re.search(
        r"\b(half|quarter|\d{1,2}) (?:minutes )?(past|after|to|till) (\d{1,2})\b", lowered
    )
    marked = bool(pm or am)
    if relative:
        hour = int(relative.group(3))
        amount = relative.group(1)
        minutes = 30 if amount == "half" else 15 if amount == "quarter" else int(amount)
        if minutes >= 60 or hour > 23:
            return TimeFound(None, problem="not a time of day")
        if relative.group(2) in ("to", "till"):
            hour, minutes = (hour - 1) % 24, 60 - minutes
    else:
        found = None
        for match in re.finditer(
            r"\b(\d{1,2})(?:(?::|\.|\s)(\d{2}))?(\s*oclock)?(?![\d/]|st|nd|rd|th)", lowered
        ):
            if match.group(2) or match.group(3) or marked or hours is not None:
                found = match
                break
        if found is None:
            for part in PARTS_OF_DAY:
                if re.search(rf"\b{part}\b", lowered):
                    return TimeFound(None, part_of_day=PARTS_OF_DAY[part])
            return TimeFound(None, problem="no time heard")
        hour, minutes = int(found.group(1)), int(found.group(2) or 0)
        if hour > 23 or minutes > 59:
            return TimeFound(None, problem="not a time of day")
    if pm and hour < 12:
        hour += 12
    elif am and hour == 12:
        hour = 0
    elif not marked:
        hour = _biased(hour, minutes, hours)
    return TimeFound(time(hour % 24, minutes))
