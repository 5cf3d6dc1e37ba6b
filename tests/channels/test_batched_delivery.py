"""A batch decides what each message alone would: for any mix of provider
outcomes, delivering the messages together ends every one of them in the
same status, attempts, error, DeliveryEvent sequence, announcements and
feedback as delivering each in a batch of its own.

Providers are faked at the network edge (a Twilio Messages API answering by
the To number, so the answer does not depend on which thread sent it or
when; the aiosmtpd fake refusing listed recipients) or are the console
adapter itself; the rate limit is the real one in Redis."""

from __future__ import annotations

import itertools
import re
import time
import uuid

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from channels import ratelimit, services
from channels.delivery import BatchReport, deliver_batch
from channels.models import Adapter, MessageStatus, OutboundMessage
from channels.signals import message_status_changed
from consent.models import Channel, Suppression
from tests.channels import factories
from tests.channels.fakes import FakeTwilio, KeyedTwilio

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.django_db]
DATA = {"contact": {"first_name": "Ana"}, "event": {"code": "42"}}
READ_TIMEOUT = 0.3

# What the provider (or the lack of one) does with a message, and the channel that gets it there.
ACCEPTED, DELIVERED, TRANSIENT, PERMANENT, HARD_BOUNCE, EMAIL_ACCEPTED, AMBIGUOUS, RATE_LIMITED, NO_ACCOUNT = (
    "accepted", "delivered", "transient", "permanent", "hard_bounce", "email_accepted", "ambiguous",
    "rate_limited", "no_account",
)
CHANNEL_OF = {
    ACCEPTED: Channel.SMS, TRANSIENT: Channel.SMS, PERMANENT: Channel.SMS, AMBIGUOUS: Channel.SMS,
    DELIVERED: Channel.PUSH, HARD_BOUNCE: Channel.EMAIL, EMAIL_ACCEPTED: Channel.EMAIL,
    RATE_LIMITED: Channel.RCS, NO_ACCOUNT: Channel.WHATSAPP,
}
_whatsapp_ids = itertools.count(1000)


@pytest.fixture
def keyed_twilio():
    fake = KeyedTwilio(slow_seconds=READ_TIMEOUT * 3).start()
    yield fake
    fake.stop()


@pytest.fixture
def world(db, twilio_env, keyed_twilio, fake_smtp):
    """Accounts for every outcome; WhatsApp has none."""
    templates = {channel: factories.channel_template(channel) for channel in set(CHANNEL_OF.values())}
    factories.account(Channel.SMS, Adapter.TWILIO, sender="+14155550000",
                      options={"base_url": keyed_twilio.url, "timeout": READ_TIMEOUT})
    limited = factories.account(Channel.RCS, Adapter.TWILIO, sender="MG" + "1" * 32, rate_limit_per_second=1,
                                options={"base_url": keyed_twilio.url})
    factories.account(Channel.EMAIL, Adapter.SMTP, sender="noreply@example.com",
                      options={"host": "127.0.0.1", "port": fake_smtp.port})
    factories.account(Channel.PUSH, Adapter.CONSOLE)
    return {"templates": templates, "limited": limited, "twilio": keyed_twilio, "smtp": fake_smtp}


def queue(world: dict, outcome: str) -> OutboundMessage:
    """A message whose provider will answer with `outcome`."""
    contact = factories.contact_with_everything(whatsapp_id=f"+1415666{next(_whatsapp_ids):04d}")
    channel = CHANNEL_OF[outcome]
    if outcome == TRANSIENT:
        world["twilio"].answers[contact.phone] = FakeTwilio.error(503, 20503, "Service unavailable")
    elif outcome == PERMANENT:
        world["twilio"].answers[contact.phone] = FakeTwilio.error(400, 21211, "Invalid 'To' Phone Number")
    elif outcome == AMBIGUOUS:
        world["twilio"].slow.add(contact.phone)
    elif outcome == HARD_BOUNCE:
        world["smtp"].handler.refuse.add(contact.email)
    result = services.send(contact=contact, data=DATA, origin=services.Origin(kind="api"),
                           idempotency_key=f"batched-{uuid.uuid4().hex}", template_key=world["templates"][channel].key)
    assert result.status == services.SendStatus.QUEUED, result
    return result.messages[0]


def deliver(world: dict, ids: list[int], capture) -> BatchReport:
    # Another worker has just spent the limited sender's budget.
    ratelimit.acquire(world["limited"], world["limited"].rate_limit_per_second, at=time.time() + 60)
    with capture(execute=True):
        return deliver_batch(message_ids=ids)


def what_happened(world: dict, message: OutboundMessage, announced: list) -> tuple:
    """Everything delivery decided about one message, with its own id and
    address taken out so that two messages can be compared."""
    message.refresh_from_db()

    def plain(text: str) -> str:
        # Not an SMTP reply code that happens to equal the id ("550: SMTP 550 5.1.1 ...").
        return re.sub(rf"(?<![\d.])(?<!SMTP ){message.pk}(?![\d.])(?!: SMTP)", "<id>", text)

    events = [(e.kind, e.old_status, e.status, plain(e.detail)) for e in message.events.order_by("received_at", "pk")]
    return (
        message.status, message.attempts, plain(message.error), message.next_attempt_at is not None, events,
        [(old, new) for pk, old, new in announced if pk == message.pk],
        list(Suppression.objects.filter(address=message.address).values_list("channel", "reason")),
        world["twilio"].received[message.address] + sum(
            message.address in e.rcpt_tos for e in world["smtp"].handler.messages),
        bool(message.provider_message_id),
    )


@pytest.fixture
def announced():
    seen: list[tuple[int, str, str]] = []

    def note(sender, message, old_status, new_status, **kwargs):
        seen.append((message.pk, old_status, new_status))

    message_status_changed.connect(note, weak=False, dispatch_uid="batched-delivery-test")
    yield seen
    message_status_changed.disconnect(dispatch_uid="batched-delivery-test")


@pytest.fixture(autouse=True)
def _nothing_left_in_the_broker():
    yield
    from config.celery import app

    app.control.purge()  # the retries this test published on commit


# A few kinds, several messages each: groups of one account span several
# waves of calls (the first alone, then CALLS_IN_FLIGHT at once).
OUTCOMES = st.lists(st.sampled_from(sorted(CHANNEL_OF)), min_size=1, max_size=4, unique=True).flatmap(
    lambda kinds: st.lists(st.sampled_from(kinds), min_size=1, max_size=12)
)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(outcomes=OUTCOMES)
@example(outcomes=[ACCEPTED] * 10 + [RATE_LIMITED] * 3 + [EMAIL_ACCEPTED, HARD_BOUNCE] * 5 + [DELIVERED, NO_ACCOUNT])
@example(outcomes=[ACCEPTED, TRANSIENT, PERMANENT, AMBIGUOUS] * 3)
def test_a_batch_ends_each_message_as_delivering_it_alone_would(
    world, announced, django_capture_on_commit_callbacks, outcomes
):
    together = [queue(world, outcome) for outcome in outcomes]
    alone = [queue(world, outcome) for outcome in outcomes]

    batch_report = deliver(world, [m.pk for m in together], django_capture_on_commit_callbacks)
    single_reports = [deliver(world, [m.pk], django_capture_on_commit_callbacks) for m in alone]

    for outcome, in_batch, by_itself in zip(outcomes, together, alone, strict=True):
        assert what_happened(world, in_batch, announced) == what_happened(world, by_itself, announced), outcome
    totals = [(r.claimed, r.sent, r.retried, r.failed, r.ambiguous, len(r.rate_limited)) for r in single_reports]
    assert (batch_report.claimed, batch_report.sent, batch_report.retried, batch_report.failed,
            batch_report.ambiguous, len(batch_report.rate_limited)) == tuple(map(sum, zip(*totals, strict=True)))


def test_every_outcome_leaves_its_own_mark(world, announced, django_capture_on_commit_callbacks):
    """The property compares like with like; this pins what each outcome is,
    so that a batch and a single delivery cannot agree on something wrong."""
    kinds = sorted(CHANNEL_OF)
    messages = [queue(world, kind) for kind in kinds]
    deliver(world, [m.pk for m in messages], django_capture_on_commit_callbacks)
    seen = {kind: what_happened(world, m, announced) for kind, m in zip(kinds, messages, strict=True)}
    assert {kind: seen[kind][:2] for kind in kinds} == {
        ACCEPTED: (MessageStatus.SENT, 1), EMAIL_ACCEPTED: (MessageStatus.SENT, 1),
        DELIVERED: (MessageStatus.DELIVERED, 1), TRANSIENT: (MessageStatus.QUEUED, 1),
        PERMANENT: (MessageStatus.FAILED, 1), HARD_BOUNCE: (MessageStatus.FAILED, 1),
        AMBIGUOUS: (MessageStatus.SENDING, 1), RATE_LIMITED: (MessageStatus.QUEUED, 0),
        NO_ACCOUNT: (MessageStatus.QUEUED, 1),
    }
    assert seen[DELIVERED][5] == [("queued", "sending"), ("sending", "sent"), ("sent", "delivered")]
    assert seen[RATE_LIMITED][4][-1] == ("status", "sending", "queued", f"rate limit of {world['limited'].name}")
    assert seen[HARD_BOUNCE][6] == [(Channel.EMAIL, "hard_bounce")]
    assert seen[PERMANENT][2].startswith("21211")
    assert seen[AMBIGUOUS][2].startswith("ambiguous")
    assert "no active provider account" in seen[NO_ACCOUNT][2]
    # Taken by the fake provider once each; never what the limit or a missing
    # account held back (the console keeps nothing; the relay refused the bounce).
    assert [seen[kind][7] for kind in kinds] == [
        {RATE_LIMITED: 0, NO_ACCOUNT: 0, DELIVERED: 0, HARD_BOUNCE: 0}.get(kind, 1) for kind in kinds
    ]
