"""How lower apps reach journeys: inbound replies become events, and contact
merge and erasure move or redact our rows."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from consent.models import Contact
from journeys.engine import enrollments_end
from journeys.models import OPEN_ENROLLMENT, Enrollment, EnrollmentStatus, Event, Task, WebhookCall

REPLY_EVENT = "message.replied"


def connect() -> None:
    from django.db.models.signals import post_save

    from channels.signals import inbound_message_received
    from consent.models import ConsentRecord

    inbound_message_received.connect(reply_to_event, dispatch_uid="journeys.reply_to_event")
    post_save.connect(consent_recorded, sender=ConsentRecord, dispatch_uid="journeys.consent_recorded")


def consent_recorded(sender, instance, created: bool, **kwargs) -> None:
    """An unsubscribe (a marketing revocation) exits the contact's marketing
    journeys that send on that channel, on commit of the ledger entry."""
    from consent.models import ConsentSource, ConsentStatus, MessageClass
    from journeys.services import enrollments_exit_unsubscribed

    if not created or instance.status != ConsentStatus.REVOKED or instance.purpose != MessageClass.MARKETING:
        return
    if instance.source == ConsentSource.MERGE:
        return  # a copy of old history, not a new decision
    contact_id, channel, at = instance.contact_id, instance.channel, instance.recorded_at
    transaction.on_commit(lambda: enrollments_exit_unsubscribed(contact_id=contact_id, channel=channel, at=at))


def reply_to_event(sender, inbound, **kwargs) -> None:
    """A reply ("C", "R", free text) becomes a `message.replied` event, so
    wait-for-event steps and exits can use it like any other event."""
    from journeys.events import EventIn, events_ingest

    if inbound.contact_id is None:
        return
    properties = {
        "body": inbound.body.strip(),
        "channel": inbound.channel,
        "in_reply_to": inbound.in_reply_to_id,
    }
    events_ingest(
        events=[
            EventIn(
                name=REPLY_EVENT,
                external_id=inbound.contact.external_id,
                idempotency_key=f"inbound:{inbound.pk}",
                occurred_at=inbound.received_at,
                properties=properties,
            )
        ],
        actor="channels:inbound",
    )


def move_on_merge(survivor: Contact, merged: Contact) -> int:
    """Events and tasks move; the merged contact's open enrollments end
    (ended_at set, waiting messages cancelled) where the survivor already has
    one open in the same journey and scope, else move."""
    moved = Event.objects.filter(contact=merged).update(contact=survivor)
    moved += Task.objects.filter(contact=merged).update(contact=survivor)
    busy = set(
        Enrollment.objects.filter(contact=survivor, status__in=OPEN_ENROLLMENT).values_list("journey_id", "scope_key")
    )
    clashing = [
        pk for pk, journey_id, scope_key in Enrollment.objects.filter(contact=merged, status__in=OPEN_ENROLLMENT)
        .values_list("pk", "journey_id", "scope_key") if (journey_id, scope_key) in busy
    ]
    enrollments_end(enrollment_ids=clashing, status=EnrollmentStatus.EXITED, reason="contact merged",
                    now=timezone.now())
    moved += Enrollment.objects.filter(contact=merged).update(contact=survivor)
    return moved


def redact_on_erase(contact: Contact, **_erasure) -> None:
    """Open enrollments end (their waiting messages are cancelled) before
    what they carried is redacted."""
    open_ids = list(Enrollment.objects.filter(contact=contact, status__in=OPEN_ENROLLMENT).values_list("pk", flat=True))
    enrollments_end(enrollment_ids=open_ids, status=EnrollmentStatus.EXITED, reason="contact erased",
                    now=timezone.now())
    Event.objects.filter(contact=contact).update(properties={"redacted": True})
    Enrollment.objects.filter(contact=contact).update(context={"redacted": True})
    Task.objects.filter(contact=contact).update(description="")
    # A webhook step's payload carries the enrollment's event properties.
    WebhookCall.objects.filter(enrollment__contact=contact).update(payload={"redacted": True})
