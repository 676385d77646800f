"""A tiny stand-in for Acme Shop's order API, for demos (the agent's ``lookup_order`` calls it).

    python examples/agents/acme-shop/orders_api.py --port 8787

``GET /orders/<number>`` answers ``{"status": ..., "eta": ...}`` for the orders below, 404
otherwise. Binds to 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import json
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ORDERS = {
    "4567": {"status": "shipped", "eta": "on Friday"},
    "4572": {"status": "out for delivery", "eta": "this afternoon"},
    "1234": {"status": "being packed", "eta": "next Tuesday"},
    "98765": {"status": "delivered", "eta": "yesterday"},
}


class OrdersHandler(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        return None  # keep the demo's output to the call itself

    def do_GET(self) -> None:
        prefix, _, number = self.path.rpartition("/")
        order = ORDERS.get(number) if prefix == "/orders" else None
        body = json.dumps(order or {"error": "order not found"}).encode()
        self.send_response(200 if order else 404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8787)
    args = parser.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", args.port), OrdersHandler)
    print(f"orders API on http://127.0.0.1:{args.port}/orders/<number>")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
