"""Liveness and readiness of ``parley events consume`` for Kubernetes probes: ``GET /healthz``
is 200 while the process runs (it never exits because a dependency is away), ``GET /readyz`` is
200 only while it can apply batches (the database answered and the last batch went through) and
503 otherwise, with a JSON body saying what it waits for."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable


class HealthServer:
    def __init__(self, port: int, readiness: Callable[[], str | None]) -> None:
        """``readiness()`` returns None when ready, else what the consumer is waiting for."""
        self.port = port
        self.readiness = readiness
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "0.0.0.0", self.port)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.IncompleteReadError, TimeoutError):
            request = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            path = request.split(b" ", 2)[1].decode(errors="replace") if b" " in request else ""
            body: dict[str, object]
            if path == "/healthz":
                status, body = 200, {"live": True}
            elif path == "/readyz":
                waiting = self.readiness()
                status = 200 if waiting is None else 503
                body = {"ready": waiting is None, "waiting_for": waiting}
            else:
                status, body = 404, {"error": {"code": "not_found", "message": "no such path"}}
            payload = json.dumps(body).encode()
            reason = {200: "OK", 404: "Not Found", 503: "Service Unavailable"}[status]
            writer.write(
                f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(payload)}\r\nConnection: close\r\n\r\n".encode()
                + payload
            )
            await writer.drain()
        writer.close()
