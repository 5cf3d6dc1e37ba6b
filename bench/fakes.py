"""Local fake providers for the delivery scenario, each in its own process
(so they do not share a GIL with anything measured), on 127.0.0.1 only:

    python -m bench.fakes twilio PORT     # Twilio's Messages API on aiohttp's server, keep-alive
    python -m bench.fakes postmark PORT   # Postmark's /email/batch on aiohttp's server, keep-alive
    python -m bench.fakes smtp PORT       # aiosmtpd, accepts everything

Each prints "ready", serves until stdin closes (bounded by a 30-minute
limit), then prints one JSON line: requests served and the most it saw in
one wall-clock second, per sender (to check that rate limits held), and
under "connections" how many TCP connections (HTTP) or SMTP sessions it
served (to see that clients reuse them). Postmark's counts are messages,
not requests (a request carries up to 500).

They share the measured machine's two cores with the system, so they are
made cheap: the Twilio fake answers on aiohttp's server, not on the
standard library's threaded HTTP server (the two fakes together: 0.29 ->
0.26 ms of CPU per delivered message)."""

from __future__ import annotations

import asyncio
import json
import sys
import threading
import time
import uuid
from collections import Counter

LIFETIME_SECONDS = 1800
_counts: Counter = Counter()  # (sender, second) -> requests
_lock = threading.Lock()


def _note(sender: str, messages: int = 1) -> None:
    with _lock:
        _counts[(sender, int(time.time()))] += messages


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


def serve_twilio(port: int) -> None:
    from aiohttp import web

    async def create_message(request: web.Request) -> web.Response:
        form = await request.post()
        _note(form.get("From") or form.get("MessagingServiceSid") or "")
        return web.json_response({"sid": f"SM{uuid.uuid4().hex}", "status": "queued", "price": None,
                                  "error_code": None}, status=201)

    _serve_http(port, create_message)


def serve_postmark(port: int) -> None:
    from aiohttp import web

    async def send_batch(request: web.Request) -> web.Response:
        emails = await request.json()
        submitted = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        for sender, count in Counter(email["From"] for email in emails).items():
            _note(sender, count)
        return web.json_response([{"ErrorCode": 0, "Message": "OK", "MessageID": str(uuid.uuid4()),
                                   "SubmittedAt": submitted, "To": email["To"]} for email in emails])

    _serve_http(port, send_batch)


def _serve_http(port: int, handler) -> None:
    """`handler` for every POST, on aiohttp's server on a thread of its own."""
    from aiohttp import web

    transports: set[int] = set()

    async def counted(request: web.Request) -> web.Response:
        if id(request.transport) not in transports:  # one per TCP connection: clients keep theirs alive
            transports.add(id(request.transport))
            _connected()
        return await handler(request)

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_post("/{path:.*}", counted)
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(app, access_log=None)
    loop.run_until_complete(runner.setup())
    # Workers open several connections at once (concurrent calls); with a backlog
    # of 5 a dropped SYN costs the client a one-second retry.
    loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", port, backlog=128).start())
    threading.Thread(target=loop.run_forever, daemon=True).start()


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
    elif kind == "postmark":
        serve_postmark(port)
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
