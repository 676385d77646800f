"""moto reached over HTTP, as workloads in other processes reach AWS: ``AWS_ENDPOINT_URL``.

moto's own server mode needs Flask, which the lock does not carry; moto's in-process mock
(``mock_aws``) also answers plain HTTP requests to AWS hosts made with ``requests``. So this
endpoint takes a request signed for any service (SigV4 names the service and region in its
credential scope: the Authorization header, or a pre-signed URL's query), replays it to that
service's regional AWS URL inside this process, where moto answers, and relays the answer.
Processes pointed here by ``AWS_ENDPOINT_URL`` (boto3 reads it) read the secrets and write the
objects the test's ``mock_aws`` holds.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import requests

_SCOPE = re.compile(r"Credential=[^/]+/\d{8}/(?P<region>[^/]+)/(?P<service>[^/]+)/aws4_request")
# A pre-signed URL carries its scope in the query string instead (X-Amz-Credential).
_QUERY_SCOPE = re.compile(r"[^/]+/\d{8}/(?P<region>[^/]+)/(?P<service>[^/]+)/aws4_request")
_HOP_BY_HOP = {"host", "content-length", "transfer-encoding", "connection", "accept-encoding"}


class _Forward(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _forward(self) -> None:
        scope = _SCOPE.search(self.headers.get("Authorization", ""))
        if scope is None:
            query = parse_qs(urlsplit(self.path).query)
            scope = _QUERY_SCOPE.match(query.get("X-Amz-Credential", [""])[0])
        if scope is None:
            self.send_error(400, "unsigned request")
            return
        service, region = scope["service"], scope["region"]
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
        answer = requests.request(
            self.command,
            f"https://{service}.{region}.amazonaws.com{self.path}",
            headers=headers,
            data=body,
            timeout=30,
        )
        self.send_response(answer.status_code)
        for key, value in answer.headers.items():
            if key.lower() not in _HOP_BY_HOP:
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(answer.content)))
        self.end_headers()
        self.wfile.write(answer.content)

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _forward

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def aws_endpoint() -> Iterator[str]:
    """Serve on a free loopback port (inside an active ``mock_aws``); yields its URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Forward)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
