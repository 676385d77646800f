"""The consumer as an MSK-triggered Lambda: the MSK batch format, rows, dead letters."""

from __future__ import annotations

import base64
import copy
import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from functions.consumer import lambda_handler
from functions.consumer.dead_letters import DeadLetterSink, parse_dead_letter
from functions.consumer.lambda_handler import MskEventError, handle, msk_records
from functions.consumer.processor import BatchProcessor
from shared.bus import InProcessBus, dead_letter_topic
from shared.events import parse_event
from shared.privacy import TenantPrivacy
from shared.settings import get_settings

SAMPLE = Path(__file__).parents[2] / "events/samples/msk/call-events-batch.json"
CALL_SAMPLES = sorted((Path(__file__).parents[2] / "events/samples/call-events").glob("*.json"))


def sample() -> dict[str, Any]:
    return json.loads(SAMPLE.read_text())


def fresh_sample() -> dict[str, Any]:
    """The sample with ids of its own, so it can be applied once more to the test database."""
    event = sample()
    run = uuid.uuid4().hex[:12]
    for r in next(iter(event["records"].values())):
        data = json.loads(base64.b64decode(r["value"]))
        data["call_id"] += "-" + run
        data["event_id"] = data["event_id"][:-12] + run
        if data["payload"].get("twilio_call_sid"):
            data["payload"]["twilio_call_sid"] += run
        r["value"] = base64.b64encode(json.dumps(data).encode()).decode()
    return event


def test_the_msk_sample_decodes_to_the_call_event_samples() -> None:
    records = msk_records(sample())
    assert [r.event() for r in records] == [parse_event(p.read_text()) for p in CALL_SAMPLES]
    assert {r.key for r in records} == {b"call-sample-1"}
    assert [r.offset for r in records] == sorted(r.offset for r in records)


def test_something_else_than_an_msk_batch_is_refused_clearly() -> None:
    with pytest.raises(MskEventError, match="eventSource='aws:sqs'"):
        msk_records({"eventSource": "aws:sqs", "Records": []})


@pytest.mark.integration
async def test_a_batch_becomes_rows_and_a_poison_record_a_dead_letter(db_pool: Any) -> None:
    event = fresh_sample()
    [records] = event["records"].values()
    bad = copy.deepcopy(records[0])
    bad.update(offset=999_999, value=base64.b64encode(b'{"event_id": 7}').decode())
    records.insert(3, bad)
    bus = InProcessBus("lambda-test")
    processor = BatchProcessor(
        db_pool,
        privacy=TenantPrivacy(db_pool),
        dead_letters=DeadLetterSink(
            bus, dead_letter_topic("lambda-test"), db_pool, group_id="parley-lambda"
        ),
    )
    first = await handle(event, processor)
    assert first == {"received": 11, "applied": 10, "duplicates": 0, "dead_lettered": 1}
    again = await handle(event, processor)  # the event source mapping retried the batch
    assert again["applied"] == 0 and again["duplicates"] == 10
    # The retry found the poison record again but it was already published: one entry.
    [letter] = bus.records(dead_letter_topic("lambda-test"))
    assert parse_dead_letter(letter.value)["source"]["offset"] == 999_999  # type: ignore[index]


@pytest.mark.integration
def test_the_lambda_entry_point(
    database_url: str,
    kafka_bootstrap: str,
    kafka_topic_prefix: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PARLEY_DATABASE_URL", database_url)
    monkeypatch.setenv("PARLEY_KAFKA_BOOTSTRAP", kafka_bootstrap)
    monkeypatch.setenv("PARLEY_KAFKA_TOPIC_PREFIX", kafka_topic_prefix)
    get_settings.cache_clear()
    try:
        result = lambda_handler.handler(fresh_sample(), None)
        assert result == {"received": 10, "applied": 10, "duplicates": 0, "dead_lettered": 0}
    finally:
        lambda_handler.shutdown()
        get_settings.cache_clear()
