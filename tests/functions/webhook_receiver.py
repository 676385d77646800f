"""A webhook receiver as a product team would run one, as its own process (a test kills it):
every POST is appended to a JSON-lines log (flushed and synced) before it is answered, so a
line in the log is a request the receiver took.

``python -m tests.functions.webhook_receiver PORT LOG``: ``/ok`` answers 200; ``/broken``
answers 500, unless ``--healthy`` (the receiver after its fix)."""

from __future__ import annotations

import base64
import json
import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def main(port: int, log_path: str, healthy: bool) -> None:
    log = open(log_path, "a")  # open for the life of the process

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            return

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            broken = self.path == "/broken" and not healthy
            entry = {
                "path": self.path,
                "headers": {k.lower(): v for k, v in self.headers.items()},
                "body": base64.b64encode(body).decode(),
                "answered": 500 if broken else 200,
            }
            log.write(json.dumps(entry) + "\n")
            log.flush()
            os.fsync(log.fileno())
            self.send_response(entry["answered"])
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok" if not broken else b"no")

    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2], "--healthy" in sys.argv[3:])
