"""The spool file: append, read in order, acknowledge, survive a crash mid-write, stay bounded."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.bus.spool import Spool, SpooledRecord, SpoolError


def records(n: int, start: int = 0, size: int = 100) -> list[SpooledRecord]:
    return [
        SpooledRecord(
            "t", f"call-{i % 3}".encode(), f"{i:06d}".encode().ljust(size, b"x"), 1000 + i
        )
        for i in range(start, start + n)
    ]


def values(spool: Spool) -> list[bytes]:
    return [r.value[:6] for r, _ in spool.read(max_records=10_000)]


def test_records_come_back_in_order_until_acknowledged(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.open()
    assert spool.append(records(10)) == 10
    chunk = spool.read(max_records=4)
    assert [r.value[:6] for r, _ in chunk] == [f"{i:06d}".encode() for i in range(4)]
    assert chunk[0][0].key == b"call-0" and chunk[0][0].topic == "t"
    assert spool.oldest_enqueued_ms == 1000
    spool.commit(chunk[-1][1])
    assert values(spool)[0] == b"000004"
    assert spool.oldest_enqueued_ms == 1004
    spool.commit(spool.read(max_records=100)[-1][1])
    assert spool.empty and spool.oldest_enqueued_ms is None and spool.oldest_age_s() == 0
    spool.close()


def test_unacknowledged_records_survive_a_restart(tmp_path: Path) -> None:
    spool = Spool(tmp_path, cursor_sync_interval_s=0)
    spool.open()
    spool.append(records(5))
    spool.commit(spool.read(max_records=2)[-1][1])
    spool.close()
    again = Spool(tmp_path)
    again.open()
    assert values(again) == [f"{i:06d}".encode() for i in range(2, 5)]
    again.close()


def test_a_torn_tail_is_cut_and_the_rest_kept(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.open()
    spool.append(records(3))
    spool.close()
    [segment] = tmp_path.glob("*.spool")
    frame = records(1, start=3)[0].frame()
    with open(segment, "ab") as f:
        f.write(frame[: len(frame) // 2])  # the process died in the middle of a write
    again = Spool(tmp_path)
    again.open()
    assert values(again) == [b"000000", b"000001", b"000002"]
    again.append(records(1, start=3))
    assert values(again)[-1] == b"000003"
    again.close()


def test_segments_roll_and_acknowledged_ones_are_deleted(tmp_path: Path) -> None:
    spool = Spool(tmp_path, segment_bytes=4096)
    spool.open()
    for i in range(10):
        spool.append(records(10, start=i * 10))
    assert len(list(tmp_path.glob("*.spool"))) > 2
    got = values(spool)
    assert got == [f"{i:06d}".encode() for i in range(100)]
    spool.commit(spool.read(max_records=1000)[-1][1])
    assert spool.empty
    spool.append(records(1, start=100))
    assert len(list(tmp_path.glob("*.spool"))) == 1
    assert values(spool) == [b"000100"]
    spool.close()


def test_a_full_spool_takes_what_fits(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=64 * 1024)
    spool.open()
    taken = spool.append(records(1000))
    assert 0 < taken < 1000
    assert spool.disk_bytes <= 64 * 1024
    assert spool.append(records(1)) == 0
    spool.commit(spool.read(max_records=taken)[-1][1])
    assert spool.append(records(1)) == 1  # the acknowledged segment rolls away: room again
    spool.close()


def test_two_processes_cannot_share_a_spool(tmp_path: Path) -> None:
    first = Spool(tmp_path)
    first.open()
    with pytest.raises(SpoolError, match="in use"):
        Spool(tmp_path).open()
    first.close()
