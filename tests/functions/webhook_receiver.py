"""A webhook receiver as a product team would run one, as its own process (a test kills it):
every POST is appended to a JSON-lines log (flushed and synced) before it is answered, so a
line in the log is a request the receiver took.

``python -m tests.functions.webhook_receiver PORT LOG``: ``/ok`` answers 200; ``/broken``
answers 500, unless ``--healthy`` (the receiver after its fix). With ``--secret=S`` (repeated:
a receiver that knows several) it verifies each request the way docs/api.md shows and answers
401 to one that no secret it knows signed."""

from __future__ import annotations

import base64
import json
import os
import sys
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


def docs_verify() -> Callable[[str, dict[str, str], bytes], bool]:
    """The receiver check docs/api.md shows, run as a product team copies it."""
    text = (Path(__file__).parents[2] / "docs" / "api.md").read_text()
    start = text.index("```python\nimport hashlib, hmac, time")
    code = text[start + len("```python\n") : text.index("```", start + 10)]
    namespace: dict[str, Any] = {}
    exec(compile(code, "docs/api.md", "exec"), namespace)
    check: Callable[[str, dict[str, str], bytes], bool] = namespace["verify"]
    return check


def main(port: int, log_path: str, healthy: bool, secrets: list[str]) -> None:
    log = open(log_path, "a")  # open for the life of the process
    verify = docs_verify()

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            return

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            broken = self.path == "/broken" and not healthy
            headers = {k.lower(): v for k, v in self.headers.items()}
            verified = not secrets or any(verify(s, headers, body) for s in secrets)
            entry = {
                "path": self.path,
                "headers": headers,
                "body": base64.b64encode(body).decode(),
                "answered": 401 if not verified else 500 if broken else 200,
            }
            log.write(json.dumps(entry) + "\n")
            log.flush()
            os.fsync(log.fileno())
            self.send_response(entry["answered"])
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok" if entry["answered"] == 200 else b"no")

    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()


if __name__ == "__main__":
    flags = sys.argv[3:]
    known = [f.removeprefix("--secret=") for f in flags if f.startswith("--secret=")]
    main(int(sys.argv[1]), sys.argv[2], "--healthy" in flags, known)
