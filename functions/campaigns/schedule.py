"""Pure scheduling rules of a campaign: the recipient's timezone, calling windows, the outcome of
a finished call and what the retry policy makes of it. No I/O here, so every rule is unit-tested."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from phonenumbers import timezone as number_timezones

UNKNOWN_ZONE = "Etc/Unknown"

# Outcomes of one attempt. `answered` is a person (or nobody said otherwise) on the line.
ANSWERED = "answered"
BUSY = "busy"
NO_ANSWER = "no_answer"
VOICEMAIL = "voicemail"
FAILED = "failed"
CANCELED = "canceled"
LOST = "lost"  # claimed, then no word of the call: dialled again as a new attempt
LOST_REDIALS = 3  # lost attempts of one contact that are dialled again; later ones count as failed
DNC = "dnc"
OUTCOMES = (ANSWERED, BUSY, NO_ANSWER, VOICEMAIL, FAILED, CANCELED, LOST, DNC)
RETRYABLE = (BUSY, NO_ANSWER, VOICEMAIL, FAILED)

MEDIA_NODE_VERDICT = "media_node:"  # shared/cache/verdicts.py: the media node heard a machine
MACHINE_ANSWERS = ("machine_start", "machine_end_beep", "machine_end_silence", "machine_end_other")


class TimezoneUnknown(ValueError):
    """Neither the contact, the number nor the campaign names one timezone."""


def zone_for(number: str, given: str | None, default: str | None) -> str:
    """The contact's IANA timezone: given, else the number's only zone, else the campaign's."""
    if given:
        _check_zone(given)
        return given
    try:
        parsed = phonenumbers.parse(number, None)
        zones = [z for z in number_timezones.time_zones_for_number(parsed) if z != UNKNOWN_ZONE]
    except phonenumbers.NumberParseException:
        zones = []
    if len(zones) == 1:
        return zones[0]
    if default:
        _check_zone(default)
        return default
    which = f"one of {', '.join(zones[:4])}" if zones else "unknown"
    raise TimezoneUnknown(
        f"the timezone of {number} is {which}: give the contact a timezone or the campaign "
        "a default_timezone"
    )


def _check_zone(name: str) -> None:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise TimezoneUnknown(f"unknown timezone '{name}' (use an IANA name)") from None


@dataclass(frozen=True)
class Window:
    start: time
    end: time
    days: tuple[int, ...]  # ISO weekdays, 1 = Monday

    def opens(self, now: datetime, zone: str) -> datetime:
        """``now`` if the window is open in ``zone`` at ``now``, else when it next opens (UTC
        aware, like ``now``)."""
        local = now.astimezone(ZoneInfo(zone))
        if local.isoweekday() in self.days and self.start <= local.time() < self.end:
            return now
        for ahead in range(8):
            day = (local + timedelta(days=ahead)).date()
            if day.isoweekday() not in self.days:
                continue
            opening = datetime.combine(day, self.start, tzinfo=ZoneInfo(zone))
            if opening > local:
                return opening.astimezone(now.tzinfo)
        raise ValueError("a calling window needs at least one day")


def outcome_of(status: str, answered_by: str | None) -> str:
    """The attempt's outcome from Twilio's final call status and the machine verdict: Twilio's
    AMD answer, or the media node's (``media_node:<evidence>``) when it decided first."""
    if status == "completed":
        machine = answered_by in MACHINE_ANSWERS or answered_by == "fax"
        if machine or (answered_by or "").startswith(MEDIA_NODE_VERDICT):
            return VOICEMAIL
        return ANSWERED
    return {"busy": BUSY, "no-answer": NO_ANSWER, "canceled": CANCELED}.get(status, FAILED)


@dataclass(frozen=True)
class Retry:
    max_attempts: int
    backoff_s: float
    multiplier: float


def retry_rules(policy: dict[str, Any]) -> dict[str, Retry]:
    rules = {}
    for outcome, rule in policy.items():
        rules[outcome] = Retry(
            int(rule["max_attempts"]), float(rule["backoff_s"]), float(rule.get("multiplier", 2))
        )
    return rules


def next_attempt(
    policy: dict[str, Any], outcome: str, attempts: int, now: datetime
) -> datetime | None:
    """When to call again after ``attempts`` attempts ended with ``outcome``; None: never.
    A lost attempt past :data:`LOST_REDIALS` follows the rule for ``failed``."""
    rule = retry_rules(policy).get(FAILED if outcome == LOST else outcome)
    if rule is None or attempts >= rule.max_attempts:
        return None
    return now + timedelta(seconds=rule.backoff_s * rule.multiplier ** max(attempts - 1, 0))
