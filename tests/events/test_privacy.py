"""PII redaction with spoken-style transcripts, per tenant."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from shared.events import DispositionSet, Event, SlotFilled, TurnAgent, TurnUser
from shared.privacy import TenantPrivacy, redact_event, redact_text


@pytest.mark.parametrize(
    ("said", "expected"),
    [
        (
            "my card is four one one one one one one one one one one one one one one one thanks",
            "my card is [CARD] thanks",
        ),
        (
            "card number 4111 1111 1111 1111 expiring twelve twenty five",
            "card number [CARD] expiring twelve twenty five",
        ),
        (
            "it's five five five five, five five five five, five five five five, "
            "four four four four",
            "it's [CARD]",
        ),
        ("forty one eleven eleven eleven eleven eleven eleven eleven", "[CARD]"),
        ("my social is one two three, four five, six seven eight nine", "my social is [SSN]"),
        ("ssn 123-45-6789 ok", "ssn [SSN] ok"),
        ("email me at john dot smith at gmail dot com please", "email me at [EMAIL] please"),
        ("it is j o h n at example dot org", "it is [EMAIL]"),
        ("send it to jane.doe@example.co.uk", "send it to [EMAIL]"),
        (
            "call me back at five five five, one two three, four five six seven",
            "call me back at [PHONE]",
        ),
        ("double five five one two three four five six seven", "[PHONE]"),
        ("my number is (415) 555-2671 or +44 20 7946 0958", "my number is [PHONE] or [PHONE]"),
    ],
)
def test_pii_is_masked(said: str, expected: str) -> None:
    assert redact_text(said).text == expected


@pytest.mark.parametrize(
    "said",
    [
        "order number four five six seven and I want two pizzas at 7 pm",
        "the total was $1,250.00 on 12/25/2024",
        "it is 4111-1111-1111-1112",  # fails the Luhn check: not a card
        "oh one more thing, I'm at the store",
        "we have 3 items for 19 dollars",
    ],
)
def test_ordinary_numbers_and_words_are_kept(said: str) -> None:
    result = redact_text(said)
    assert result.text == said and not result.changed


def event(payload: Any, tenant: str = "t1") -> Event:
    return Event(tenant_id=tenant, call_id="c1", seq=1, payload=payload)


def test_events_are_redacted_field_by_field() -> None:
    user = redact_event(
        event(
            TurnUser(
                turn_index=0,
                text="four one one one one one one one one one one one one one one one",
                start_ms=0,
                end_ms=1,
            )
        )
    )
    assert user.payload.text == "[CARD]" and user.payload.redacted is True  # type: ignore[union-attr]
    agent = redact_event(
        event(
            TurnAgent(
                turn_index=0,
                text="I'll email jane@example.com",
                planned_text="jane@example.com ok",
                start_ms=0,
                end_ms=1,
            )
        )
    )
    assert agent.payload.text == "I'll email [EMAIL]"  # type: ignore[union-attr]
    assert agent.payload.planned_text == "[EMAIL] ok"  # type: ignore[union-attr]
    slot = redact_event(
        event(SlotFilled(turn_index=0, name="card", value="4111", slot_type="credit_card"))
    )
    assert slot.payload.value == "[CARD]"  # type: ignore[union-attr]
    phone = redact_event(
        event(SlotFilled(turn_index=0, name="cb", value=4155552671, slot_type="digits"))
    )
    assert phone.payload.value == "[PHONE]"  # type: ignore[union-attr]
    order = redact_event(
        event(SlotFilled(turn_index=0, name="order", value="4567", slot_type="digits"))
    )
    assert order.payload.value == "4567"  # type: ignore[union-attr]
    original = event(
        DispositionSet(
            disposition="resolved",
            summary="caller 123-45-6789",
            slots={"email": "a@b.com", "n": 2},
        )
    )
    disposition = redact_event(original)
    assert disposition.event_id == original.event_id and disposition.seq == original.seq
    assert disposition.payload.summary == "caller [SSN]"  # type: ignore[union-attr]
    assert disposition.payload.slots == {"email": "[EMAIL]", "n": 2}  # type: ignore[union-attr]


@pytest.mark.integration
async def test_the_tenant_setting_decides(db_pool: Any) -> None:
    on, off = f"t-{uuid.uuid4().hex[:6]}", f"t-{uuid.uuid4().hex[:6]}"
    async with db_pool.connection() as conn:
        await conn.execute(
            "INSERT INTO tenants (tenant_id, name, settings)"
            " VALUES (%s, 'on', %s), (%s, 'off', '{}')",
            (on, '{"redact_pii": true}', off),
        )
    privacy = TenantPrivacy(db_pool)
    said = TurnUser(turn_index=0, text="ssn 123-45-6789", start_ms=0, end_ms=1)
    assert (await privacy.apply(event(said, on))).payload.text == "ssn [SSN]"  # type: ignore[union-attr]
    assert (await privacy.apply(event(said, off))).payload.text == "ssn 123-45-6789"  # type: ignore[union-attr]
    assert await privacy.redacts("unknown-tenant") is False
