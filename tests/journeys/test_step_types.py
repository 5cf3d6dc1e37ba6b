from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from django.conf import settings

from channels.models import OutboundMessage
from consent.models import Contact
from journeys.models import (
    Enrollment,
    EnrollmentStatus,
    StepExecution,
    StepOutcome,
    Task,
    WebhookCall,
    WebhookStatus,
)
from journeys.tasks import SIGNATURE_HEADER, deliver_webhook
from tests.consent.factories import ContactFactory
from tests.journeys.conftest import emit, run
from tests.journeys.factories import live_journey

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]


def sent_steps(contact) -> list[str]:
    return list(OutboundMessage.objects.filter(contact=contact, status="queued").order_by("id")
                .values_list("origin_step_key", flat=True))


def path_of(contact) -> list[tuple[str, str]]:
    return list(StepExecution.objects.filter(enrollment__contact=contact).order_by("executed_at", "id")
                .values_list("step_key", "outcome"))


def test_wait_until_an_event_date_with_an_offset_resumes_at_that_instant(t0, email_template):
    live_journey("remind", [
        {"key": "before", "type": "wait_until", "property": "event.appointment_at", "offset": "-24h"},
        {"key": "mail", "type": "send", "template": "welcome-email"},
    ], trigger={"event": "appointment.booked"})
    contact = ContactFactory()
    emit(contact, "appointment.booked", t0, appointment_at="2026-03-06T15:00:00+00:00")

    run(t0)

    assert Enrollment.objects.get(contact=contact).next_run_at == dt.datetime(2026, 3, 5, 15, tzinfo=dt.UTC)
    run(dt.datetime(2026, 3, 5, 14, 59, tzinfo=dt.UTC))
    assert sent_steps(contact) == []
    run(dt.datetime(2026, 3, 5, 15, 0, tzinfo=dt.UTC))
    assert sent_steps(contact) == ["mail"]


def test_a_date_without_offset_is_read_in_the_contacts_time_zone(t0, email_template):
    live_journey("remind", [
        {"key": "before", "type": "wait_until", "property": "event.when", "offset": "-1h"},
        {"key": "mail", "type": "send", "template": "welcome-email"},
    ], trigger={"event": "appointment.booked"})
    contact = ContactFactory(timezone="America/New_York")
    emit(contact, "appointment.booked", t0, when="2026-03-06T10:00:00")

    run(t0)

    # 10:00 in New York (EST, UTC-5) less an hour is 14:00 UTC.
    assert Enrollment.objects.get(contact=contact).next_run_at == dt.datetime(2026, 3, 6, 14, tzinfo=dt.UTC)


def test_a_wait_until_whose_moment_passed_goes_to_on_passed_instead_of_sending_late(t0, email_template):
    live_journey("remind", [
        {"key": "week-before", "type": "wait_until", "property": "event.appointment_at", "offset": "-7d",
         "on_passed": "after"},
        {"key": "mail", "type": "send", "template": "welcome-email"},
        {"key": "after", "type": "wait", "duration": "1h"},
    ], trigger={"event": "appointment.booked"})
    contact = ContactFactory()
    emit(contact, "appointment.booked", t0, appointment_at=(t0 + dt.timedelta(days=3)).isoformat())

    run(t0)

    assert sent_steps(contact) == []
    assert path_of(contact) == [("week-before", StepOutcome.PASSED)]


def test_wait_until_next_local_time_is_stored_as_utc(t0, email_template):
    live_journey("ten", [
        {"key": "at-10", "type": "wait_until", "local_time": "10:00"},
        {"key": "mail", "type": "send", "template": "welcome-email"},
    ], trigger={"event": "user.signed_up"})
    tokyo = ContactFactory(timezone="Asia/Tokyo")
    emit(tokyo, "user.signed_up", t0)  # 18:00 in Tokyo

    run(t0)

    assert Enrollment.objects.get(contact=tokyo).next_run_at == dt.datetime(2026, 3, 3, 1, tzinfo=dt.UTC)


def test_wait_for_event_takes_the_event_branch_when_it_comes_in_time(t0, email_template, sms_template):
    live_journey("reply", [
        {"key": "ask", "type": "wait_for_event", "event": "message.replied", "timeout": "4h",
         "conditions": [{"field": "event.body", "op": "in", "value": ["C", "R"]}],
         "on_event": "thanks", "on_timeout": "chase"},
        {"key": "chase", "type": "send", "template": "nudge-sms", "next": "end"},
        {"key": "thanks", "type": "send", "template": "welcome-email"},
    ], trigger={"event": "appointment.booked"})
    contact = ContactFactory()
    emit(contact, "appointment.booked", t0)
    run(t0)
    emit(contact, "message.replied", t0 + dt.timedelta(hours=1), body="hello?")
    emit(contact, "message.replied", t0 + dt.timedelta(hours=2), body=" c ")

    run(t0 + dt.timedelta(hours=2))

    assert sent_steps(contact) == ["thanks"]
    enrollment = Enrollment.objects.get(contact=contact)
    assert enrollment.context["last_event"] == {"name": "message.replied", "body": " c "}


def test_wait_for_event_times_out_to_its_timeout_branch(t0, email_template, sms_template):
    live_journey("reply", [
        {"key": "ask", "type": "wait_for_event", "event": "message.replied", "timeout": "4h",
         "on_event": "thanks", "on_timeout": "chase"},
        {"key": "chase", "type": "send", "template": "nudge-sms", "next": "end"},
        {"key": "thanks", "type": "send", "template": "welcome-email"},
    ], trigger={"event": "appointment.booked"})
    contact = ContactFactory()
    emit(contact, "appointment.booked", t0)
    run(t0)
    run(t0 + dt.timedelta(hours=3, minutes=59))
    assert sent_steps(contact) == []

    run(t0 + dt.timedelta(hours=4))

    assert sent_steps(contact) == ["chase"]


def test_branch_on_contact_attributes_and_events_seen(t0, email_template, sms_template):
    live_journey("fork", [
        {"key": "pause", "type": "wait", "duration": "1h"},
        {"key": "fork", "type": "branch", "branches": [
            {"when": [{"seen": "profile.completed"}], "next": "mail"},
            {"when": [{"field": "contact.plan", "op": "equals", "value": "pro"}], "next": "text"},
        ], "else": "end"},
        {"key": "mail", "type": "send", "template": "welcome-email", "next": "end"},
        {"key": "text", "type": "send", "template": "nudge-sms"},
    ], trigger={"event": "user.signed_up"})
    completed, pro, neither = ContactFactory(), ContactFactory(attributes={"plan": "pro"}), ContactFactory()
    for contact in (completed, pro, neither):
        emit(contact, "user.signed_up", t0)
    emit(completed, "profile.completed", t0 + dt.timedelta(minutes=30))

    run(t0)
    run(t0 + dt.timedelta(hours=1))

    assert sent_steps(completed) == ["mail"]
    assert sent_steps(pro) == ["text"]
    assert sent_steps(neither) == []
    assert StepExecution.objects.get(enrollment__contact=neither, step_key="fork").reason == "else"


def test_branch_on_the_outcome_of_an_earlier_message_of_the_enrollment(t0, email_template, sms_template):
    live_journey("opened", [
        {"key": "mail", "type": "send", "template": "welcome-email"},
        {"key": "pause", "type": "wait", "duration": "2d"},
        {"key": "fork", "type": "branch", "branches": [
            {"when": [{"message": "mail", "outcome": "opened"}], "next": "end"},
        ], "else": "text"},
        {"key": "text", "type": "send", "template": "nudge-sms"},
    ], trigger={"event": "user.signed_up"})
    reader, ignorer = ContactFactory(), ContactFactory()
    for contact in (reader, ignorer):
        emit(contact, "user.signed_up", t0)
    run(t0)
    OutboundMessage.objects.filter(contact=reader).update(status="delivered", first_opened_at=t0)

    run(t0 + dt.timedelta(days=2))

    assert sent_steps(reader) == []
    assert sent_steps(ignorer) == ["mail", "text"]


def test_random_split_records_the_branch_it_took_and_splits_near_the_percentages(t0):
    live_journey("ab", [
        {"key": "split", "type": "split", "branches": [{"percent": 30, "next": "a"}, {"percent": 70, "next": "b"}]},
        {"key": "a", "type": "wait", "duration": "1h", "next": "end"},
        {"key": "b", "type": "wait", "duration": "2h"},
    ], trigger={"event": "user.signed_up"})
    contacts = ContactFactory.create_batch(200)
    for contact in contacts:
        emit(contact, "user.signed_up", t0)

    run(t0)

    chosen = [e.detail["branch"] for e in StepExecution.objects.filter(step_key="split")]
    assert len(chosen) == 200
    assert 35 <= chosen.count(0) <= 85
    assert Enrollment.objects.filter(current_step="a").count() == chosen.count(0)


def test_update_attribute_sets_and_removes_contact_attributes(t0):
    live_journey("attrs", [
        {"key": "set", "type": "update_attribute", "attribute": "onboarded", "value": True},
        {"key": "unset", "type": "update_attribute", "attribute": "stale", "value": None},
    ], trigger={"event": "user.signed_up"})
    contact = ContactFactory(attributes={"stale": 1, "first_name": "Ana"})
    emit(contact, "user.signed_up", t0)

    run(t0)

    assert Contact.objects.get(pk=contact.pk).attributes == {"first_name": "Ana", "onboarded": True}


def test_a_task_step_creates_a_task_for_a_human(t0):
    journey = live_journey("call", [
        {"key": "call", "type": "task", "title": "Call them", "due_in": "1d"},
    ], trigger={"event": "user.signed_up"})
    contact = ContactFactory()
    emit(contact, "user.signed_up", t0)

    run(t0)

    task = Task.objects.get()
    assert (task.contact, task.journey, task.title) == (contact, journey, "Call them")
    assert task.due_at == t0 + dt.timedelta(days=1)


def test_an_exit_step_ends_the_enrollment_before_later_steps(t0, email_template):
    live_journey("stop", [
        {"key": "fork", "type": "branch", "branches": [
            {"when": [{"field": "contact.vip", "op": "equals", "value": True}], "next": "mail"}], "else": "stop"},
        {"key": "stop", "type": "exit"},
        {"key": "mail", "type": "send", "template": "welcome-email"},
    ], trigger={"event": "user.signed_up"})
    contact = ContactFactory()
    emit(contact, "user.signed_up", t0)

    run(t0)

    assert Enrollment.objects.get(contact=contact).status == EnrollmentStatus.COMPLETED
    assert sent_steps(contact) == []


def test_a_ladder_send_starts_on_its_first_rung(t0, push_template, sms_template):
    live_journey("ladder", [
        {"key": "reach", "type": "send", "ladder": [
            {"channel": "sms", "template": "nudge-sms", "timeout": "2h"},
            {"channel": "push", "template": "nudge-push"},
        ]},
    ], trigger={"event": "user.signed_up"})
    contact = ContactFactory()
    emit(contact, "user.signed_up", t0)

    run(t0)

    message = OutboundMessage.objects.get(contact=contact)
    assert (message.channel, message.status, message.origin_step_key) == ("sms", "queued", "reach")


class _Receiver(BaseHTTPRequestHandler):
    received: list = []
    statuses: list = []

    def do_POST(self):  # noqa: N802
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append((dict(self.headers), body))
        self.send_response(type(self).statuses.pop(0) if type(self).statuses else 200)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def receiver():
    _Receiver.received, _Receiver.statuses = [], []
    server = HTTPServer(("127.0.0.1", 0), _Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()


def test_a_webhook_step_posts_signed_json_and_retries_a_failure(t0, receiver, django_capture_on_commit_callbacks):
    url = f"http://127.0.0.1:{receiver.server_port}/hook"
    live_journey("hook", [{"key": "tell-crm", "type": "webhook", "url": url, "payload": {"stage": "new"}}],
                 trigger={"event": "user.signed_up"})
    contact = ContactFactory()
    emit(contact, "user.signed_up", t0)
    _Receiver.statuses = [503]
    run(t0)
    call = WebhookCall.objects.get()

    assert deliver_webhook.run(call.pk) == "retry"  # no Celery countdown: the row says when
    call.refresh_from_db()
    assert (call.status, call.attempts, call.response_status) == (WebhookStatus.PENDING, 1, 503)
    assert call.next_attempt_at is not None
    assert deliver_webhook.run(call.pk) == "delivered"
    assert deliver_webhook.run(call.pk) == "not pending"

    headers, body = _Receiver.received[-1]
    assert len(_Receiver.received) == 2
    payload = json.loads(body)
    assert payload["contact"] == {"external_id": contact.external_id}
    assert payload["data"] == {"stage": "new"}
    timestamp, signature = (part.split("=", 1)[1] for part in headers[SIGNATURE_HEADER].split(","))
    expected = hmac.new(settings.JOURNEYS_WEBHOOK_SECRET.encode(), f"{timestamp}.".encode() + body,
                        hashlib.sha256).hexdigest()
    assert signature == expected


def test_a_redelivered_webhook_task_does_not_post_a_call_another_worker_holds(t0, receiver):
    from journeys.webhooks import webhook_deliver

    url = f"http://127.0.0.1:{receiver.server_port}/hook"
    live_journey("hook", [{"key": "tell-crm", "type": "webhook", "url": url}], trigger={"event": "user.signed_up"})
    contact = ContactFactory()
    emit(contact, "user.signed_up", t0)
    run(t0)
    call = WebhookCall.objects.get()
    # Another worker claimed it and is mid-POST.
    WebhookCall.objects.filter(pk=call.pk).update(status=WebhookStatus.SENDING, sending_at=t0, attempts=1)

    assert webhook_deliver(call_id=call.pk, now=t0 + dt.timedelta(seconds=5)) == "not pending"

    assert _Receiver.received == []
    call.refresh_from_db()
    assert (call.status, call.attempts) == (WebhookStatus.SENDING, 1)


def test_the_tick_republishes_a_webhook_whose_publish_was_lost_and_its_due_retry(t0, receiver, monkeypatch):
    from journeys import tasks

    url = f"http://127.0.0.1:{receiver.server_port}/hook"
    live_journey("hook", [{"key": "tell-crm", "type": "webhook", "url": url}], trigger={"event": "user.signed_up"})
    contact = ContactFactory()
    emit(contact, "user.signed_up", t0)
    run(t0)  # the on-commit publish never ran: lost
    call = WebhookCall.objects.get()
    published: list[int] = []
    monkeypatch.setattr(tasks.deliver_webhook, "delay", published.append)

    assert tasks.enqueue_due_webhooks(t0 + dt.timedelta(seconds=30)) == 0  # the first publish may still come
    assert tasks.enqueue_due_webhooks(t0 + dt.timedelta(minutes=1)) == 1
    assert tasks.enqueue_due_webhooks(t0 + dt.timedelta(minutes=1, seconds=5)) == 0  # leased, not flooded
    assert published == [call.pk]

    _Receiver.statuses = [500]
    from journeys.webhooks import webhook_deliver

    assert webhook_deliver(call_id=call.pk, now=t0 + dt.timedelta(minutes=2)) == "retry"
    call.refresh_from_db()
    assert call.next_attempt_at == t0 + dt.timedelta(minutes=2, seconds=10)
    assert tasks.enqueue_due_webhooks(t0 + dt.timedelta(minutes=2, seconds=9)) == 0
    assert tasks.enqueue_due_webhooks(t0 + dt.timedelta(minutes=2, seconds=10)) == 1
    assert webhook_deliver(call_id=call.pk, now=t0 + dt.timedelta(minutes=3)) == "delivered"
    assert len(_Receiver.received) == 2


def test_a_webhook_call_a_vanished_worker_held_is_tried_again(t0, receiver, monkeypatch):
    from journeys import tasks

    url = f"http://127.0.0.1:{receiver.server_port}/hook"
    live_journey("hook", [{"key": "tell-crm", "type": "webhook", "url": url}], trigger={"event": "user.signed_up"})
    contact = ContactFactory()
    emit(contact, "user.signed_up", t0)
    run(t0)
    call = WebhookCall.objects.get()
    WebhookCall.objects.filter(pk=call.pk).update(status=WebhookStatus.SENDING, sending_at=t0, attempts=1)
    monkeypatch.setattr(tasks.deliver_webhook, "delay", lambda call_id: None)

    assert tasks.enqueue_due_webhooks(t0 + dt.timedelta(minutes=4)) == 0
    assert tasks.enqueue_due_webhooks(t0 + dt.timedelta(minutes=6)) == 1

    call.refresh_from_db()
    assert (call.status, call.last_error) == (WebhookStatus.PENDING, "worker lost during the call")
