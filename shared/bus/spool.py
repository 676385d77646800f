"""A local, append-only, fsynced spool of outgoing records: the media node's write-ahead log.

Every record is framed (magic, length, CRC-32) and appended to numbered segment files; a record is
durable once :meth:`Spool.append` returns. A cursor file remembers how far the records have been
acknowledged by Kafka; segments entirely before the cursor are deleted. After a crash a torn tail
(a half-written frame) is cut off, and everything after the cursor is sent again in order — the
consumer skips the few records that Kafka already had by their event id.

No library offers this shape (ordered, framed, fsynced, readable while appended, size-bounded),
and the alternatives (SQLite queues, pickle-based persist-queue) cost far more per record.
Methods are blocking: :class:`~shared.bus.durable.DurableBus` calls them from worker threads.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import struct
import threading
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from shared.bus.base import BusError

log = logging.getLogger(__name__)

MAGIC = b"PS"
FRAME = struct.Struct(">2sII")  # magic, body length, crc32(body)
BODY = struct.Struct(">qHi")  # enqueued at (epoch ms), topic length, key length (-1: no key)
SUFFIX = ".spool"
CURSOR_FILE = "cursor.json"
LOCK_FILE = "lock"


class SpoolError(BusError):
    """The spool folder cannot be used (locked by another process, unwritable)."""


@dataclass(frozen=True)
class SpooledRecord:
    topic: str
    key: bytes | None
    value: bytes
    enqueued_at_ms: int

    def frame(self) -> bytes:
        topic = self.topic.encode()
        key = self.key or b""
        body = b"".join(
            (
                BODY.pack(self.enqueued_at_ms, len(topic), -1 if self.key is None else len(key)),
                topic,
                key,
                self.value,
            )
        )
        return FRAME.pack(MAGIC, len(body), zlib.crc32(body)) + body

    @classmethod
    def from_body(cls, body: bytes) -> SpooledRecord:
        enqueued, topic_len, key_len = BODY.unpack_from(body)
        start = BODY.size
        topic = body[start : start + topic_len].decode()
        start += topic_len
        key = None if key_len < 0 else body[start : start + key_len]
        start += max(key_len, 0)
        return cls(topic, key, body[start:], enqueued)


@dataclass(frozen=True, order=True)
class Position:
    """A byte offset in a numbered segment."""

    segment: int
    offset: int


def _read_frame(handle: BinaryIO) -> tuple[SpooledRecord | None, int]:
    """The next record and its frame size, or (None, 0) at the end or at a torn/corrupt frame."""
    head = handle.read(FRAME.size)
    if len(head) < FRAME.size:
        return None, 0
    magic, length, crc = FRAME.unpack(head)
    if magic != MAGIC:
        return None, 0
    body = handle.read(length)
    if len(body) < length or zlib.crc32(body) != crc:
        return None, 0
    return SpooledRecord.from_body(body), FRAME.size + length


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Spool:
    """Segmented append-only log with a persisted read cursor. Thread-safe for one writer
    (``append``) and one reader (``read``/``commit``) running at the same time."""

    def __init__(
        self,
        directory: Path,
        *,
        max_bytes: int = 1 << 30,
        segment_bytes: int = 64 << 20,
        cursor_sync_interval_s: float = 0.5,
    ) -> None:
        if max_bytes < 1 << 16 or segment_bytes < 1 << 12:
            raise ValueError("spool max_bytes must be >= 64 KiB and segment_bytes >= 4 KiB")
        self.directory = directory
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes
        self.cursor_sync_interval_s = cursor_sync_interval_s
        self._lock = threading.Lock()  # guards sizes and cursor (short holds)
        self._reader_lock = threading.Lock()  # serialises read/commit/close
        self._sizes: dict[int, int] = {}  # segment number -> durable bytes
        self._cursor = Position(0, 0)
        self._oldest_ms: int | None = None
        self._writer: BinaryIO | None = None
        self._lock_handle: BinaryIO | None = None
        self._cursor_synced_at = 0.0
        self._cursor_dirty = False

    # --- lifecycle ---------------------------------------------------------------------------
    def open(self) -> None:
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            self._lock_handle = open(self.directory / LOCK_FILE, "ab")
        except OSError as exc:
            raise SpoolError(f"event spool at {self.directory} is not writable: {exc}") from None
        try:
            fcntl.flock(self._lock_handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock_handle.close()
            raise SpoolError(
                f"event spool at {self.directory} is in use by another process"
            ) from None
        for path in sorted(self.directory.glob(f"*{SUFFIX}")):
            self._sizes[int(path.stem)] = path.stat().st_size
        if not self._sizes:
            self._sizes[0] = 0
            (self.directory / self._name(0)).touch()
        self._cursor = self._load_cursor()
        self._cut_torn_tail(max(self._sizes))
        self._writer = open(self.directory / self._name(max(self._sizes)), "ab", buffering=0)
        self._cursor = self._normalise(self._cursor)
        self._oldest_ms = self._peek_enqueued(self._cursor)

    def close(self) -> None:
        with self._reader_lock:
            self._close()

    def _close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        self._write_cursor(force=True)
        if self._lock_handle is not None:
            self._lock_handle.close()
            self._lock_handle = None

    # --- state -------------------------------------------------------------------------------
    @property
    def pending_bytes(self) -> int:
        """Bytes appended but not yet acknowledged (the backlog)."""
        with self._lock:
            return sum(self._sizes.values()) - self._cursor.offset

    @property
    def disk_bytes(self) -> int:
        with self._lock:
            return sum(self._sizes.values())

    @property
    def oldest_enqueued_ms(self) -> int | None:
        """When the oldest unacknowledged record was enqueued (epoch ms), None when empty."""
        return self._oldest_ms

    def oldest_age_s(self, now_ms: int | None = None) -> float:
        oldest = self._oldest_ms
        if oldest is None:
            return 0.0
        now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        return max(0.0, (now_ms - oldest) / 1000)

    @property
    def empty(self) -> bool:
        return self.pending_bytes == 0

    # --- writing -----------------------------------------------------------------------------
    def append(self, records: list[SpooledRecord]) -> int:
        """Append and fsync as many records as fit under ``max_bytes``; return how many."""
        if self._writer is None:
            raise SpoolError("spool is not open")
        segment = max(self._sizes)
        if self._sizes[segment] >= self.segment_bytes or self._roll_drained(segment):
            segment = self._roll(segment)
        frames: list[bytes] = []
        room = self.max_bytes - self.disk_bytes
        for record in records:
            frame = record.frame()
            if len(frame) > room:
                break
            room -= len(frame)
            frames.append(frame)
        if not frames:
            return 0
        data = b"".join(frames)
        self._writer.write(data)
        os.fdatasync(self._writer.fileno())
        with self._lock:
            self._sizes[segment] += len(data)
            if self._oldest_ms is None:
                self._oldest_ms = records[0].enqueued_at_ms
        return len(frames)

    def _roll_drained(self, segment: int) -> bool:
        """Start a new segment once everything is acknowledged, so the old one can be deleted."""
        with self._lock:
            drained = self._cursor == Position(segment, self._sizes[segment])
        # Past 1 MiB, or past a quarter of a small spool's room.
        threshold = min(self.segment_bytes, 1 << 20, self.max_bytes // 4)
        return drained and self._sizes[segment] >= threshold

    def _roll(self, segment: int) -> int:
        assert self._writer is not None
        self._writer.close()
        new = segment + 1
        self._writer = open(self.directory / self._name(new), "ab", buffering=0)
        _fsync_dir(self.directory)
        with self._lock:
            self._sizes[new] = 0
            if self._cursor == Position(segment, self._sizes[segment]):
                self._cursor = Position(new, 0)
        self._delete_before(new if self._cursor.segment == new else self._cursor.segment)
        return new

    # --- reading -----------------------------------------------------------------------------
    def read(
        self, max_records: int = 1000, max_bytes: int = 4 << 20
    ) -> list[tuple[SpooledRecord, Position]]:
        """Unacknowledged records from the cursor on, each with the position just after it."""
        with self._reader_lock:
            return self._read(max_records, max_bytes)

    def _read(self, max_records: int, max_bytes: int) -> list[tuple[SpooledRecord, Position]]:
        with self._lock:
            position = self._cursor
            ends = dict(self._sizes)
        out: list[tuple[SpooledRecord, Position]] = []
        size = 0
        while len(out) < max_records and size < max_bytes and position.segment in ends:
            end = ends[position.segment]
            if position.offset >= end:
                later = [s for s in ends if s > position.segment]
                if not later:
                    break
                position = Position(min(later), 0)
                continue
            with open(self.directory / self._name(position.segment), "rb") as handle:
                handle.seek(position.offset)
                offset = position.offset
                while offset < end and len(out) < max_records and size < max_bytes:
                    record, frame_size = _read_frame(handle)
                    if record is None:
                        log.error(
                            "event spool segment %s is corrupt at byte %d; skipping its rest",
                            self._name(position.segment),
                            offset,
                        )
                        offset = end
                        break
                    offset += frame_size
                    size += frame_size
                    out.append((record, Position(position.segment, offset)))
            position = Position(position.segment, offset)
        return out

    def commit(self, position: Position) -> None:
        """Mark everything before ``position`` as acknowledged."""
        with self._reader_lock:
            self._commit(position)

    def _commit(self, position: Position) -> None:
        with self._lock:
            if position <= self._cursor:
                return
            self._cursor = position
            self._cursor_dirty = True
        self._cursor = self._normalise(position)
        self._delete_before(self._cursor.segment)
        self._oldest_ms = self._peek_enqueued(self._cursor)
        self._write_cursor()

    # --- internals ---------------------------------------------------------------------------
    @staticmethod
    def _name(segment: int) -> str:
        return f"{segment:012d}{SUFFIX}"

    def _normalise(self, position: Position) -> Position:
        """Move a cursor sitting at the end of a finished segment to the start of the next one."""
        with self._lock:
            later = [s for s in self._sizes if s > position.segment]
            if later and position.offset >= self._sizes.get(position.segment, 0):
                return Position(min(later), 0)
            return position

    def _delete_before(self, segment: int) -> None:
        with self._lock:
            doomed = [s for s in self._sizes if s < segment]
            for s in doomed:
                del self._sizes[s]
        for s in doomed:
            (self.directory / self._name(s)).unlink(missing_ok=True)

    def _peek_enqueued(self, position: Position) -> int | None:
        with self._lock:
            end = self._sizes.get(position.segment, 0)
        if position.offset >= end:
            return None
        try:
            with open(self.directory / self._name(position.segment), "rb") as handle:
                handle.seek(position.offset)
                record, _ = _read_frame(handle)
        except FileNotFoundError:  # rolled away by the writer meanwhile
            return None
        return None if record is None else record.enqueued_at_ms

    def _load_cursor(self) -> Position:
        first = min(self._sizes)
        try:
            data = json.loads((self.directory / CURSOR_FILE).read_text())
            cursor = Position(int(data["segment"]), int(data["offset"]))
        except FileNotFoundError:
            return Position(first, 0)
        except (ValueError, KeyError, TypeError):
            log.error("event spool cursor is unreadable; resending from the oldest segment")
            return Position(first, 0)
        if cursor.segment not in self._sizes:
            return Position(first, 0)
        return Position(cursor.segment, min(cursor.offset, self._sizes[cursor.segment]))

    def _cut_torn_tail(self, segment: int) -> None:
        path = self.directory / self._name(segment)
        good = 0
        with open(path, "rb") as handle:
            while True:
                record, frame_size = _read_frame(handle)
                if record is None:
                    break
                good += frame_size
        if good < self._sizes[segment]:
            log.warning(
                "event spool: cutting a torn tail of %d bytes from %s (crash during a write)",
                self._sizes[segment] - good,
                path.name,
            )
            os.truncate(path, good)
            self._sizes[segment] = good
            if self._cursor.segment == segment and self._cursor.offset > good:
                self._cursor = Position(segment, good)

    def _write_cursor(self, *, force: bool = False) -> None:
        now = time.monotonic()
        if not self._cursor_dirty or (
            not force and now - self._cursor_synced_at < self.cursor_sync_interval_s
        ):
            return
        with self._lock:
            cursor = self._cursor
            self._cursor_dirty = False
        tmp = self.directory / (CURSOR_FILE + ".tmp")
        with open(tmp, "w") as handle:
            json.dump({"segment": cursor.segment, "offset": cursor.offset}, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, self.directory / CURSOR_FILE)
        self._cursor_synced_at = now
