"""The dead-letter topic: a poison record is wrapped with the reason and where it came from, so
it can be inspected and re-published once fixed; the stream goes on without it."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from datetime import UTC, datetime

from shared.bus import EventBus, ReceivedRecord


@dataclass(frozen=True)
class DeadLetter:
    record: ReceivedRecord
    reason: str
    kind: str  # "invalid" (not a valid event) or "rejected" (the database refused it)

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
    """Publishes dead letters and waits for the broker's acknowledgement."""

    def __init__(self, bus: EventBus, topic: str) -> None:
        self.bus = bus
        self.topic = topic

    async def send(self, letters: list[DeadLetter]) -> None:
        for letter in letters:
            await self.bus.publish_raw(self.topic, letter.record.key, letter.to_json())
