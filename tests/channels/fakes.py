"""Local fakes at the network edge, driven through the real SDKs: an HTTP
server speaking enough of Twilio's REST API, Postmark's batch API, FCM's v1
send endpoint and a Web Push service; and an aiosmtpd SMTP server."""

from __future__ import annotations

import json
import socket
import threading
import time
import uuid
from collections import Counter, deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

from aiosmtpd.controller import Controller


def free_port() -> int:
    # aiosmtpd's Controller(port=0) fails: pick a free port first.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict
    body: bytes
    at: float = field(default_factory=time.time)

    @property
    def form(self) -> dict[str, str]:
        return {k: v[0] for k, v in parse_qs(self.body.decode()).items()}

    @property
    def json(self) -> dict:
        return json.loads(self.body or b"{}")


@dataclass
class FakeHttpService:
    """Answers each POST with the next scripted (status, body) or the
    default; `hold` makes requests wait until released (a slow provider)."""

    requests: list[Recorded] = field(default_factory=list)
    script: deque = field(default_factory=deque)
    hold: threading.Event | None = None
    arrived: threading.Event = field(default_factory=threading.Event)

    def start(self) -> FakeHttpService:
        service = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's naming)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = {k.lower(): v for k, v in self.headers.items()}
                service.requests.append(Recorded("POST", self.path, headers, body))
                service.arrived.set()
                if service.hold is not None:
                    service.hold.wait(30)
                status, payload = service.answer(self.path, body)
                data = json.dumps(payload).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client died while we held it

            def log_message(self, *args):
                pass

        self.server = _Server(("127.0.0.1", free_port()), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def stop(self) -> None:
        if self.hold is not None:
            self.hold.set()
        self.server.shutdown()
        self.server.server_close()

    def answer(self, path: str, body: bytes) -> tuple[int, dict]:
        return self.script.popleft() if self.script else self.default(path)

    def default(self, path: str) -> tuple[int, dict]:
        return 200, {}


class _Server(ThreadingHTTPServer):
    # Room for every connection a delivery batch opens at once: with the
    # default backlog of 5 a dropped SYN is retried after a second, past a
    # client's short timeout.
    request_queue_size = 64


class FakeTwilio(FakeHttpService):
    def default(self, path: str) -> tuple[int, dict]:
        return 201, {"sid": f"SM{uuid.uuid4().hex}", "status": "queued", "price": None, "error_code": None}

    @staticmethod
    def error(status: int, code: int, message: str) -> tuple[int, dict]:
        return status, {"code": code, "message": message, "more_info": "https://example.invalid", "status": status}


@dataclass
class KeyedTwilio(FakeTwilio):
    """Twilio's Messages API answering each request by its To number: a
    scripted answer from `answers`, late (after `slow_seconds`) for a number
    in `slow`, and only once its event is set for a number in `held`;
    `most_at_once` is the most requests it held at one time."""

    answers: dict[str, tuple[int, dict]] = field(default_factory=dict)
    slow: set[str] = field(default_factory=set)
    slow_seconds: float = 1.0
    held: dict[str, threading.Event] = field(default_factory=dict)
    received: Counter = field(default_factory=Counter)
    at_once: int = 0
    most_at_once: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def answer(self, path: str, body: bytes) -> tuple[int, dict]:
        to = parse_qs(body.decode()).get("To", [""])[0]
        with self._lock:
            self.received[to] += 1
            self.at_once += 1
            self.most_at_once = max(self.most_at_once, self.at_once)
        try:
            if to in self.held:
                self.held[to].wait(30)
            if to in self.slow:
                time.sleep(self.slow_seconds)  # the answer comes after the client gave up
        finally:
            with self._lock:
                self.at_once -= 1
        return self.answers.get(to) or self.default(path)

    def stop(self) -> None:
        for event in self.held.values():
            event.set()
        super().stop()


@dataclass
class FakePostmark(FakeHttpService):
    """Postmark's /email/batch: a result per message, ErrorCode 0 with a new
    MessageID unless `refuse` names the recipient (To -> (ErrorCode,
    Message)); `script` answers whole calls (status, body) first; a call
    with a recipient in `held` is answered once its event is set."""

    refuse: dict[str, tuple[int, str]] = field(default_factory=dict)
    held: dict[str, threading.Event] = field(default_factory=dict)  # a call to a held recipient waits
    received: Counter = field(default_factory=Counter)

    def answer(self, path: str, body: bytes) -> tuple[int, list | dict]:
        emails = json.loads(body)
        self.received.update(email["To"] for email in emails)
        for email in emails:
            if email["To"] in self.held:
                self.held[email["To"]].wait(30)
        if self.script:
            return self.script.popleft()
        results = []
        for email in emails:
            code, text = self.refuse.get(email["To"], (0, "OK"))
            result = {"ErrorCode": code, "Message": text, "To": email["To"]}
            if code == 0:
                result.update(MessageID=str(uuid.uuid4()), SubmittedAt="2026-11-26T12:00:00Z")
            results.append(result)
        return 200, results

    @staticmethod
    def error(status: int, code: int, message: str) -> tuple[int, dict]:
        return status, {"ErrorCode": code, "Message": message}


class FakeFcm(FakeHttpService):
    def default(self, path: str) -> tuple[int, dict]:
        return 200, {"name": f"projects/demo/messages/{uuid.uuid4().hex[:12]}"}

    @staticmethod
    def unregistered() -> tuple[int, dict]:
        return 404, {"error": {"code": 404, "message": "Requested entity was not found.", "status": "NOT_FOUND",
                               "details": [{"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError",
                                            "errorCode": "UNREGISTERED"}]}}

    @staticmethod
    def unavailable() -> tuple[int, dict]:
        return 503, {"error": {"code": 503, "message": "The service is currently unavailable.",
                               "status": "UNAVAILABLE"}}


class FakeWebPush(FakeHttpService):
    def default(self, path: str) -> tuple[int, dict]:
        return 201, {}


class RecordingHandler:
    """aiosmtpd handler: keeps every message; refuses listed recipients with 550."""

    def __init__(self, refuse: set[str] | None = None):
        self.messages: list = []
        self.refuse = refuse or set()

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: N802
        if address in self.refuse:
            return "550 5.1.1 mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # noqa: N802
        self.messages.append(envelope)
        return "250 Message accepted for delivery"


class FakeSmtp:
    def __init__(self, refuse: set[str] | None = None):
        self.handler = RecordingHandler(refuse)
        self.port = free_port()
        self.controller = Controller(self.handler, hostname="127.0.0.1", port=self.port)

    def start(self) -> FakeSmtp:
        self.controller.start()
        return self

    def stop(self) -> None:
        self.controller.stop()
