"""The dead-letter topic: a poison record is wrapped with the reason and where it came from, so
it can be inspected and re-published once fixed; the stream goes on without it.

Dead letters are idempotent per source record (topic, partition, offset): before publishing, a
consumer claims the record in the ``dead_letters`` table, and only the group that claimed it
publishes it. Two consumer groups on one database therefore write each entry once, and a group
that crashed between its claim and the broker's acknowledgement publishes it again on redelivery
(the only case a duplicate can reach the topic)."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from psycopg.rows import tuple_row
from psycopg_pool import AsyncConnectionPool

from shared.bus import EventBus, ReceivedRecord

# What the table keeps of a reason (the topic has it whole); a validation error can quote input.
REASON_MAX_CHARS = 2000


@dataclass(frozen=True)
class DeadLetter:
    record: ReceivedRecord
    reason: str
    kind: str  # "invalid" (not a valid event) or "rejected" (the database refused it)

    @property
    def source(self) -> tuple[str, int, int]:
        return (self.record.topic, self.record.partition, self.record.offset)

    def to_json(self) -> bytes:
        body: dict[str, object] = {
            "reason": self.reason,
            "kind": self.kind,
            "source": {
                "topic": self.record.topic,
                "partition": self.record.partition,
                "offset": self.record.offset,
            },
            "dead_lettered_at": datetime.now(UTC).isoformat(),
        }
        try:
            body["value"] = self.record.value.decode()
        except UnicodeDecodeError:
            body["value_base64"] = base64.b64encode(self.record.value).decode()
        return json.dumps(body).encode()


def parse_dead_letter(value: bytes) -> dict[str, object]:
    """A dead letter as a dict (tests, tooling)."""
    data: dict[str, object] = json.loads(value)
    return data


class DeadLetterSink:
    """Claims dead letters in the database, publishes the claimed ones and waits for the
    broker's acknowledgement."""

    def __init__(
        self, bus: EventBus, topic: str, pool: AsyncConnectionPool[Any], *, group_id: str
    ) -> None:
        self.bus = bus
        self.topic = topic
        self.pool = pool
        self.group_id = group_id

    async def send(self, letters: list[DeadLetter]) -> None:
        claimed = await self._claim(letters)
        mine = [letter for letter in letters if letter.source in claimed]
        for letter in mine:
            await self.bus.publish_raw(self.topic, letter.record.key, letter.to_json())
        if mine:
            await self._published(mine)

    async def _claim(self, letters: list[DeadLetter]) -> set[tuple[str, int, int]]:
        """The sources this group is to publish: new ones, and its own unpublished ones."""
        rows = [
            {
                "source_topic": letter.record.topic,
                "source_partition": letter.record.partition,
                "source_offset": letter.record.offset,
                "kind": letter.kind,
                "reason": letter.reason[:REASON_MAX_CHARS],
            }
            for letter in letters
        ]
        async with self.pool.connection() as conn:
            cur = conn.cursor(row_factory=tuple_row)
            await cur.execute(
                """INSERT INTO dead_letters AS d (source_topic, source_partition, source_offset,
                       kind, reason, group_id)
                   SELECT x.*, %s FROM json_to_recordset(%s::json) AS x(source_topic text,
                       source_partition int, source_offset bigint, kind text, reason text)
                   ON CONFLICT (source_topic, source_partition, source_offset) DO UPDATE
                       SET reason = EXCLUDED.reason
                       WHERE d.published_at IS NULL AND d.group_id = EXCLUDED.group_id
                   RETURNING source_topic, source_partition, source_offset""",
                (self.group_id, json.dumps(rows)),
            )
            return {(t, p, o) for t, p, o in await cur.fetchall()}

    async def _published(self, letters: list[DeadLetter]) -> None:
        async with self.pool.connection() as conn:
            await conn.execute(
                """UPDATE dead_letters d SET published_at = now()
                   FROM json_to_recordset(%s::json) AS x(t text, p int, o bigint)
                   WHERE (d.source_topic, d.source_partition, d.source_offset) = (x.t, x.p, x.o)""",
                (json.dumps([dict(zip("tpo", d.source, strict=True)) for d in letters]),),
            )
