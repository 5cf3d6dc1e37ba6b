"""The case page: the contact's whole message history across channels,
newest first, in keyset pages whose query count does not grow with the
history; consent and enrollments; the agent's reply logged on the case."""

from __future__ import annotations

import datetime as dt
import re

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from channels.models import DeliveryEvent, InboundMessage, MessageStatus, OriginKind, OutboundMessage
from support.models import CaseEventKind, SupportCase
from support.selectors import contact_history

BASE = dt.datetime(2026, 1, 1, 12, tzinfo=dt.UTC)
MAX_QUERIES = 35


def fill_history(case: SupportCase, count: int) -> None:
    """`count` outbound messages (each with two status events) and a reply to every third, one minute apart."""
    outbound = [
        OutboundMessage(
            contact=case.contact, channel="sms" if i % 2 else "email", address="+14155550000",
            template_key="case-ack-email", content={"subject": f"Message {i}", "text": "hello", "body": f"sms {i}"},
            message_class="operational", origin_kind=OriginKind.CASE if i % 2 else OriginKind.JOURNEY,
            origin_case_id=case.pk if i % 2 else None, idempotency_key=f"hist-{case.pk}-{i}",
            status=MessageStatus.DELIVERED, status_changed_at=BASE, created_at=BASE + dt.timedelta(minutes=i),
        )
        for i in range(count)
    ]
    OutboundMessage.objects.bulk_create(outbound)
    DeliveryEvent.objects.bulk_create(
        DeliveryEvent(message=m, kind=DeliveryEvent.Kind.STATUS, status=status, received_at=m.created_at)
        for m in outbound for status in ("queued", "delivered")
    )
    InboundMessage.objects.bulk_create(
        InboundMessage(contact=case.contact, channel="sms", from_address="+14155550000", body=f"reply {i}",
                       received_at=BASE + dt.timedelta(minutes=i, seconds=30),
                       provider_message_id=f"in-{case.pk}-{i}", in_reply_to=outbound[i])
        for i in range(0, count, 3)
    )


def page_queries(client: Client, case: SupportCase) -> tuple[int, str]:
    with CaptureQueriesContext(connection) as captured:
        response = client.get(f"/admin/support/supportcase/{case.pk}/change/")
    assert response.status_code == 200
    return len(captured), response.content.decode()


@pytest.fixture
def operator_browser(operator) -> Client:
    client = Client()
    client.force_login(operator)
    return client


def test_the_case_page_query_count_stays_flat_as_history_grows(
    operator_browser, billing, django_assert_max_num_queries
):
    from tests.support import factories

    small, large = factories.case(team_=billing), factories.case(team_=billing)
    fill_history(small, 6)
    fill_history(large, 300)
    small_count, _ = page_queries(operator_browser, small)
    with django_assert_max_num_queries(MAX_QUERIES):
        operator_browser.get(f"/admin/support/supportcase/{small.pk}/change/")
    with django_assert_max_num_queries(MAX_QUERIES):
        large_count, html = page_queries(operator_browser, large)
    assert large_count == small_count
    assert html.count('data-kind="out"') + html.count('data-kind="in"') == 25


def test_history_is_newest_first_across_channels_and_pages_cover_everything_once(billing):
    from tests.support import factories

    case = factories.case(team_=billing)
    fill_history(case, 40)
    seen, cursor = [], ""
    while True:
        page = contact_history(case.contact, cursor=cursor, limit=7)
        seen += [(item.kind, item.pk, item.at) for item in page.items]
        if not page.next_cursor:
            break
        cursor = page.next_cursor
    assert len(seen) == 40 + 14
    assert len(set(seen)) == len(seen)
    assert [at for _, _, at in seen] == sorted((at for _, _, at in seen), reverse=True)
    first = contact_history(case.contact, limit=2).items
    assert first[0].kind == "in" and first[1].kind == "out"  # reply 39 came 30 s after message 39
    assert first[1].timeline[-1]["status"] == "delivered"
    assert first[1].sent_by == f"case {case.number}"


def test_the_older_link_carries_a_keyset_cursor(operator_browser, billing):
    from tests.support import factories

    case = factories.case(team_=billing)
    fill_history(case, 40)
    _, html = page_queries(operator_browser, case)
    cursor = re.search(r'href="\?before=([^"]+)"', html).group(1)
    older = operator_browser.get(f"/admin/support/supportcase/{case.pk}/change/?before={cursor}")
    assert older.status_code == 200
    assert "reply 39" in html and "reply 39" not in older.content.decode()
    assert "reply 0" not in html and "reply 18" in older.content.decode()


def test_the_page_shows_consent_enrollments_notes_and_the_timeline(operator_browser, billing, ada):
    from consent.services import consent_record
    from support import services
    from tests.support import factories

    case = factories.case(team_=billing)
    consent_record(contact=case.contact, channel="email", purpose="marketing", status="revoked", source="api",
                   actor="test")
    services.case_note_add(case=case, author=ada, body="VIP customer, be nice")
    _, html = page_queries(operator_browser, case)
    assert "email / marketing: <b>revoked</b>" in html
    assert "VIP customer, be nice" in html
    assert "Open journey enrollments" in html and "Internal note" in html


def test_an_agent_reply_goes_through_the_gate_and_is_logged_on_the_case(billing, ada, case_templates):
    from tests.support import factories

    case = factories.case(team_=billing, agent=ada)
    client = Client()
    client.force_login(ada)
    response = client.post(f"/admin/support/supportcase/{case.pk}/reply/",
                           {"channel": "sms", "text": "We refunded you today.", "_form_submitted": "on"})
    assert response.status_code == 302
    message = OutboundMessage.objects.get(origin_case_id=case.pk, origin_kind=OriginKind.AGENT_REPLY)
    assert message.status == MessageStatus.QUEUED and message.decision_reason == "no_consent_needed"
    assert "We refunded you today." in message.content["body"]
    event = case.events.get(kind=CaseEventKind.AGENT_REPLY)
    assert event.outbound_message == message and event.actor == "user:ada_billing"
    case.refresh_from_db()
    assert case.first_response_at is not None


def test_a_reply_on_a_channel_without_a_template_is_refused_clearly(billing, ada):
    from support import services
    from tests.support import factories

    case = factories.case(team_=billing, agent=ada)
    with pytest.raises(services.SupportError, match="cannot reply by push"):
        services.case_reply(case=case, channel="push", text="hi", actor=ada)


def test_a_reply_the_gate_suppresses_is_logged_with_its_reason(billing, ada, case_templates):
    from consent.services import suppression_create
    from support import services
    from tests.support import factories

    case = factories.case(team_=billing, agent=ada)
    suppression_create(contact=case.contact, reason="manual", channel="", note="legal hold", actor="test")
    result = services.case_reply(case=case, channel="email", text="Hello", actor=ada)
    assert result.status == "suppressed"
    assert case.events.get(kind=CaseEventKind.AGENT_REPLY).detail.startswith("suppressed")
    case.refresh_from_db()
    assert case.first_response_at is None


def test_a_reply_held_by_quiet_hours_shows_the_agents_words_in_the_history(billing, ada, case_templates):
    from consent.models import QuietHoursRule, workspace_timezone
    from support import services
    from tests.support import factories

    QuietHoursRule.objects.create(name="Nights", channel="", country="", start=dt.time(21), end=dt.time(8))
    case = factories.case(team_=billing, agent=ada)
    night = dt.datetime(2026, 1, 6, 23, 30, tzinfo=workspace_timezone())
    result = services.case_reply(case=case, channel="sms", text="We refunded you today.", actor=ada, now=night)
    assert result.status == "deferred"

    item = contact_history(case.contact).items[0]
    assert (item.status, item.reason, item.text) == ("deferred", "quiet_hours", "We refunded you today.")


def test_the_case_list_query_count_does_not_grow_with_the_cases(ada, billing, django_assert_max_num_queries):
    from tests.support import factories

    client = Client()
    client.force_login(ada)
    factories.case(team_=billing)
    with CaptureQueriesContext(connection) as few:
        assert client.get("/admin/support/supportcase/").status_code == 200
    for _ in range(15):
        factories.case(team_=billing, agent=ada)
    with django_assert_max_num_queries(len(few)):
        page = client.get("/admin/support/supportcase/")
    assert page.content.decode().count("C-0") >= 16
