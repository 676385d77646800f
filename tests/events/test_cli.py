"""``parley events consume|replay`` as real processes: clear errors, SIGKILL, SIGTERM."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from functions.consumer.cli import parse_since
from shared.bus.kafka import KafkaBus
from tests.events.conftest import call_events, count_events, new_call_id, started, wait_for_events

CLI = [sys.executable, "-m", "functions.consumer.cli"]


def env(**values: str) -> dict[str, str]:
    out = {k: v for k, v in os.environ.items() if not k.startswith("PARLEY_")}
    out.update({f"PARLEY_{k.upper()}": v for k, v in values.items()})
    return out


def test_parse_since() -> None:
    assert parse_since("2026-11-29T12:00:00Z") == datetime(2026, 11, 29, 12, tzinfo=UTC)
    assert parse_since("2026-11-29T12:00:00") == datetime(2026, 11, 29, 12, tzinfo=UTC)
    assert parse_since("0") == datetime(1970, 1, 1, tzinfo=UTC)
    assert datetime.now(UTC) - parse_since("2h") - timedelta(hours=2) < timedelta(minutes=1)
    with pytest.raises(ValueError, match="is not a time"):
        parse_since("yesterday")


def test_bad_input_gets_a_clear_error(database_url: str) -> None:
    bad_time = subprocess.run(
        [*CLI, "replay", "--from", "soon"],
        capture_output=True,
        text=True,
        env=env(kafka_bootstrap="127.0.0.1:1"),
    )
    assert bad_time.returncode == 2 and "'soon' is not a time" in bad_time.stderr
    no_kafka = subprocess.run([*CLI, "consume"], capture_output=True, text=True, env=env())
    assert no_kafka.returncode == 2 and "PARLEY_KAFKA_BOOTSTRAP is empty" in no_kafka.stderr
    down = subprocess.run(
        [*CLI, "replay", "--from", "1h"],
        capture_output=True,
        text=True,
        env=env(kafka_bootstrap="127.0.0.1:1", database_url=database_url),
    )
    assert down.returncode == 1 and "127.0.0.1:1" in down.stderr and "Traceback" not in down.stderr


@pytest.mark.integration
async def test_consume_survives_sigkill_and_replay_reports(
    kafka_bootstrap: str, kafka_topic_prefix: str, database_url: str, db_pool: Any
) -> None:
    settings = env(
        kafka_bootstrap=kafka_bootstrap,
        kafka_topic_prefix=kafka_topic_prefix,
        database_url=database_url,
    )
    call_ids = [new_call_id() for _ in range(6)]
    events = [e for c in call_ids for e in call_events(c, 100)]
    kafka = KafkaBus(kafka_bootstrap, topic_prefix=kafka_topic_prefix, partitions=2)
    async with started(kafka):
        await asyncio.gather(*(kafka.publish(e) for e in events))

    consume = [*CLI, "consume", "--batch-size", "10"]
    first = await asyncio.create_subprocess_exec(
        *consume, env=settings, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        await wait_for_events(db_pool, call_ids, 50)
    finally:
        first.send_signal(signal.SIGKILL)  # mid-stream, wherever it is
        await first.wait()
    at_kill = await count_events(db_pool, call_ids)
    assert at_kill < len(events)

    second = await asyncio.create_subprocess_exec(
        *consume, env=settings, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        await wait_for_events(db_pool, call_ids, len(events))
    finally:
        second.send_signal(signal.SIGTERM)
        out, err = await asyncio.wait_for(second.communicate(), 30)
    assert second.returncode == 0, err.decode()
    summary = re.search(r"(\d+) applied, (\d+) duplicates", out.decode())
    assert summary is not None, out.decode()
    assert int(summary[1]) == len(events) - at_kill  # every event once, across the kill
    assert await count_events(db_pool, call_ids) == len(events)

    replayed = await asyncio.create_subprocess_exec(
        *CLI,
        "replay",
        "--from",
        "10m",
        "--call",
        call_ids[0],
        env=settings,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(replayed.communicate(), 60)
    assert replayed.returncode == 0, err.decode()
    assert "matched 100, applied 0, already present 100" in out.decode()
