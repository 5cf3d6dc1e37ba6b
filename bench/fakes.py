"""Local fake providers for the delivery scenario, each in its own process
(so they do not share a GIL with anything measured), on 127.0.0.1 only:

    python -m bench.fakes twilio PORT   # Twilio's Messages API, HTTP/1.1 keep-alive
    python -m bench.fakes smtp PORT     # aiosmtpd, accepts everything

Each prints "ready", serves until stdin closes (bounded by a 30-minute
limit), then prints one JSON line: requests served and the most it saw in
one wall-clock second, per sender (to check that rate limits held), and
under "connections" how many TCP connections (HTTP) or SMTP sessions it
served (to see that clients reuse them)."""

from __future__ import annotations

import json
import sys
import threading
import time
import uuid
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

LIFETIME_SECONDS = 1800
_counts: Counter = Counter()  # (sender, second) -> requests
_lock = threading.Lock()


def _note(sender: str) -> None:
    with _lock:
        _counts[(sender, int(time.time()))] += 1


_connections = 0


def _connected() -> None:
    global _connections
    with _lock:
        _connections += 1


def _summary() -> dict:
    per_sender: dict[str, dict] = {}
    for (sender, _second), count in _counts.items():
        entry = per_sender.setdefault(sender, {"requests": 0, "max_per_second": 0})
        entry["requests"] += count
        entry["max_per_second"] = max(entry["max_per_second"], count)
    return {"senders": per_sender, "connections": _connections}


class TwilioHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: the SDK's requests session reuses the connection
    # Headers and body go out in two writes: with Nagle on, the body waits for the
    # client's delayed ACK (~40 ms a request), which measures TCP, not us.
    disable_nagle_algorithm = True

    def setup(self):
        _connected()
        super().setup()

    def do_POST(self):  # noqa: N802 (http.server's naming)
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode()
        form = parse_qs(body)
        sender = (form.get("From") or form.get("MessagingServiceSid") or [""])[0]
        _note(sender)
        data = json.dumps({"sid": f"SM{uuid.uuid4().hex}", "status": "queued", "price": None,
                           "error_code": None}).encode()
        self.send_response(201)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


class TwilioServer(ThreadingHTTPServer):
    # Workers open several connections at once (concurrent calls); with the
    # default backlog of 5 a dropped SYN costs the client a one-second retry.
    request_queue_size = 128


def serve_twilio(port: int) -> None:
    server = TwilioServer(("127.0.0.1", port), TwilioHandler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()


class SmtpHandler:
    async def handle_EHLO(self, server, session, envelope, hostname, responses):  # noqa: N802 (aiosmtpd's naming)
        _connected()
        session.host_name = hostname
        return responses

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 (aiosmtpd's naming)
        _note(envelope.mail_from or "")
        return "250 Message accepted for delivery"


def serve_smtp(port: int):
    from aiosmtpd.controller import Controller

    controller = Controller(SmtpHandler(), hostname="127.0.0.1", port=port)
    controller.start()
    return controller


def main() -> None:
    kind, port = sys.argv[1], int(sys.argv[2])
    if kind == "twilio":
        serve_twilio(port)
    elif kind == "smtp":
        serve_smtp(port)
    else:
        raise SystemExit(f"unknown fake {kind!r}")
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    stopper = threading.Thread(target=sys.stdin.read, daemon=True)
    stopper.start()
    stopper.join(LIFETIME_SECONDS)
    sys.stdout.write(json.dumps(_summary()) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
