"""refresh_whatsapp_templates talks to the Twilio Content API through the real
twilio SDK; the API is faked at the network edge by a local HTTP server."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.core.management import CommandError, call_command

from templates.models import Template
from tests.templates.factories import approved_template

pytestmark = pytest.mark.django_db

APPROVALS = {
    "HXapproved0000000000000000000001": {"status": "approved", "rejection_reason": ""},
    "HXrejected0000000000000000000002": {"status": "rejected", "rejection_reason": "Promotional content"},
}


class FakeContentApi(BaseHTTPRequestHandler):
    requests: list[str] = []

    def do_GET(self):  # noqa: N802
        FakeContentApi.requests.append(self.path)
        sid = self.path.split("/")[3]
        if sid not in APPROVALS or not self.path.endswith("/ApprovalRequests"):
            self._answer(404, {"code": 20404, "message": "The requested resource was not found", "status": 404})
            return
        self._answer(200, {"sid": sid, "account_sid": "ACtest", "whatsapp": {**APPROVALS[sid], "name": "x"},
                           "url": f"https://content.twilio.com/v1/Content/{sid}/ApprovalRequests"})

    def _answer(self, status: int, body: dict):
        payload = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args):
        pass


@pytest.fixture
def content_api(settings):
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeContentApi)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    settings.TEMPLATES_TWILIO_ACCOUNT_SID = "ACtest"
    settings.TEMPLATES_TWILIO_AUTH_TOKEN = "token"
    settings.TEMPLATES_TWILIO_CONTENT_API_URL = f"http://127.0.0.1:{server.server_port}"
    FakeContentApi.requests = []
    yield FakeContentApi
    server.shutdown()


def _wa(key: str, sid: str, status: str = "pending") -> Template:
    return approved_template(key, "whatsapp", content={"template_name": key, "content_sid": sid, "body": "Hi",
                                                       "provider_status": status})


def _status(template: Template) -> tuple[str, str]:
    variant = template.live_version.variants.get()
    return variant.wa_provider_status, variant.wa_rejection_reason


def test_the_command_stores_the_providers_verdicts(content_api, capsys):
    good = _wa("good", "HXapproved0000000000000000000001")
    bad = _wa("bad", "HXrejected0000000000000000000002", status="approved")
    call_command("refresh_whatsapp_templates")
    assert _status(good) == ("approved", "")
    assert _status(bad) == ("rejected", "Promotional content")
    assert "2 checked, 2 changed, 0 errors" in capsys.readouterr().out
    assert sorted(content_api.requests) == [f"/v1/Content/{sid}/ApprovalRequests" for sid in sorted(APPROVALS)]


def test_a_rejected_template_is_then_refused_at_send(content_api):
    from templates import services
    from tests.consent.factories import ContactFactory

    _wa("bad", "HXrejected0000000000000000000002", status="approved")
    call_command("refresh_whatsapp_templates")
    with pytest.raises(services.RenderError, match="whatsapp_not_approved"):
        services.render_for_send(template_key="bad", contact=ContactFactory(), data={})


def test_an_unknown_content_sid_is_reported_and_the_status_kept(content_api, capsys):
    template = _wa("ghost", "HXunknown00000000000000000000003", status="approved")
    with pytest.raises(CommandError, match="no WhatsApp template could be checked"):
        call_command("refresh_whatsapp_templates")
    assert "HXunknown" in capsys.readouterr().err
    assert _status(template) == ("approved", "")


def test_without_credentials_the_command_says_twilio_is_not_configured(settings):
    settings.TEMPLATES_TWILIO_ACCOUNT_SID = ""
    settings.TEMPLATES_TWILIO_AUTH_TOKEN = ""
    with pytest.raises(CommandError, match="Twilio is not configured"):
        call_command("refresh_whatsapp_templates")
