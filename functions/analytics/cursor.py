"""Opaque keyset cursors: the sort, the last row's sort value and its call id."""

from __future__ import annotations

import base64
import binascii
import json
from datetime import datetime

from functions.common.errors import invalid

Key = datetime | int


def encode(sort: str, value: Key, call_id: str) -> str:
    raw = value.isoformat() if isinstance(value, datetime) else value
    data = json.dumps([sort, raw, call_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def decode(cursor: str, sort: str) -> tuple[Key, str]:
    """The (value, call_id) to continue after; 422 for anything that is not our cursor."""
    try:
        data = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        cursor_sort, raw, call_id = data
        if not isinstance(cursor_sort, str) or not isinstance(call_id, str) or len(call_id) > 128:
            raise ValueError
        value: Key
        if cursor_sort.endswith("started_at"):
            value = datetime.fromisoformat(raw)
            if value.tzinfo is None:
                raise ValueError
        elif isinstance(raw, int) and not isinstance(raw, bool):
            value = raw
        else:
            raise ValueError
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError):
        raise invalid("query.cursor", "not a cursor returned by this API") from None
    if cursor_sort != sort:
        raise invalid("query.cursor", f"this cursor belongs to sort={cursor_sort}, not {sort}")
    return value, call_id
