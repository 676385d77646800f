"""The campaign scheduling rules: timezones from numbers, calling windows, outcomes, retries."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

import pytest

from functions.campaigns import schedule


def test_the_timezone_comes_from_the_contact_then_the_number_then_the_campaign() -> None:
    assert schedule.zone_for("+12125550100", None, None) == "America/New_York"
    assert schedule.zone_for("+33142685300", None, None) == "Europe/Paris"
    assert schedule.zone_for("+12125550100", "Asia/Tokyo", None) == "Asia/Tokyo"
    # A US number whose area code has no single zone, and a fake 555 exchange: the default.
    assert schedule.zone_for("+15555550100", None, "America/Chicago") == "America/Chicago"
    with pytest.raises(schedule.TimezoneUnknown, match="default_timezone"):
        schedule.zone_for("+15555550100", None, None)
    with pytest.raises(schedule.TimezoneUnknown, match="unknown timezone"):
        schedule.zone_for("+12125550100", "Mars/Olympus", None)


def test_a_window_is_open_in_local_time_or_says_when_it_opens() -> None:
    window = schedule.Window(time(9), time(17), (1, 2, 3, 4, 5))
    # Wednesday 2026-12-02 15:00 UTC is 10:00 in New York: open.
    now = datetime(2026, 12, 2, 15, 0, tzinfo=UTC)
    assert window.opens(now, "America/New_York") == now
    # ... and 00:00 on Thursday in Tokyo: opens at 09:00 Tokyo = 00:00 UTC Thursday.
    assert window.opens(now, "Asia/Tokyo") == datetime(2026, 12, 3, 0, 0, tzinfo=UTC)
    # Friday 23:00 UTC in London: closed until Monday 09:00.
    friday = datetime(2026, 12, 4, 23, 0, tzinfo=UTC)
    assert window.opens(friday, "Europe/London") == datetime(2026, 12, 7, 9, 0, tzinfo=UTC)


def test_outcomes_from_the_final_status_and_the_machine_verdict() -> None:
    assert schedule.outcome_of("completed", "human") == schedule.ANSWERED
    assert schedule.outcome_of("completed", None) == schedule.ANSWERED
    assert schedule.outcome_of("completed", "machine_end_beep") == schedule.VOICEMAIL
    assert schedule.outcome_of("busy", None) == schedule.BUSY
    assert schedule.outcome_of("no-answer", None) == schedule.NO_ANSWER
    assert schedule.outcome_of("failed", None) == schedule.FAILED
    assert schedule.outcome_of("canceled", None) == schedule.CANCELED


def test_retries_back_off_until_the_attempts_run_out() -> None:
    policy = {"busy": {"max_attempts": 3, "backoff_s": 60, "multiplier": 2}}
    now = datetime(2026, 12, 2, tzinfo=UTC)
    assert schedule.next_attempt(policy, "busy", 1, now) == now + timedelta(seconds=60)
    assert schedule.next_attempt(policy, "busy", 2, now) == now + timedelta(seconds=120)
    assert schedule.next_attempt(policy, "busy", 3, now) is None
    assert schedule.next_attempt(policy, "no_answer", 1, now) is None  # not in the policy
    assert schedule.next_attempt(policy, "answered", 1, now) is None
