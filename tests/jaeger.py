"""A real trace backend for the tests: Jaeger v2 all-in-one (in-memory storage), built once per
machine by scripts/setup. OTLP/HTTP on 4318 (what every Parley process exports to), the query
API on 16686 (what the tests read traces back from)."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

JAEGER = Path(os.environ.get("PARLEY_JAEGER", Path.home() / ".cache/parley/jaeger-1.76.0/jaeger"))
OTLP_HTTP = "http://127.0.0.1:4318"
QUERY = "http://127.0.0.1:16686"


@contextmanager
def running_jaeger(log: Path) -> Iterator[str]:
    """Start Jaeger, wait for its query API, yield its URL; stop it afterwards."""
    assert JAEGER.is_file(), f"{JAEGER} is missing: run scripts/setup test"
    with log.open("wb") as out:
        process = subprocess.Popen([str(JAEGER)], stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{QUERY}/api/services", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert process.poll() is None, log.read_text()[-2000:]
            assert time.monotonic() < deadline, "Jaeger did not answer within 30 s"
            time.sleep(0.2)
        yield QUERY
    finally:
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def read_trace(
    query: str,
    trace_id: str,
    want: Callable[[dict[str, Any]], bool],
    *,
    flush: Callable[[], None] = lambda: None,
    timeout_s: float = 20,
) -> dict[str, Any]:
    """The trace once ``want`` holds for it (or as it is at the deadline)."""
    deadline = time.monotonic() + timeout_s
    while True:
        flush()
        reply = httpx.get(f"{query}/api/traces/{trace_id}", timeout=5)
        if reply.status_code == 200 and reply.json()["data"]:
            found: dict[str, Any] = reply.json()["data"][0]
            if want(found) or time.monotonic() > deadline:
                return found
        assert time.monotonic() < deadline, f"trace {trace_id} not in Jaeger: {reply.text[:300]}"
        time.sleep(0.3)


def parent_of(span: dict[str, Any]) -> str | None:
    refs = [r["spanID"] for r in span["references"] if r["refType"] == "CHILD_OF"]
    return refs[0] if refs else None


def service_of(trace: dict[str, Any], span: dict[str, Any]) -> str:
    return str(trace["processes"][span["processID"]]["serviceName"])
