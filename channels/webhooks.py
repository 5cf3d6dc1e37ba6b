"""Providers calling in: Twilio status callbacks and inbound messages
(verified with Twilio's RequestValidator), and anymail's tracking signal
(anymail's own views verify the basic-auth WEBHOOK_SECRET)."""

from __future__ import annotations

import functools
import logging

from anymail.signals import AnymailTrackingEvent, EventType
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest, HttpResponse, HttpResponseForbidden
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST
from twilio.request_validator import RequestValidator

from channels import inbound, services
from channels.delivery import feedback_apply
from channels.models import Adapter, DeliveryEvent, MessageStatus, ProviderAccount
from channels.providers.base import Feedback, account_secret
from channels.providers.twilio_messaging import PERMANENT_CODES
from consent import services as consent_services
from consent.models import Channel, ConsentSource, ConsentStatus, MessageClass

logger = logging.getLogger(__name__)

TWILIO_STATUS = {
    "sent": MessageStatus.SENT,
    "delivered": MessageStatus.DELIVERED,
    "undelivered": MessageStatus.UNDELIVERED,
    "failed": MessageStatus.FAILED,
    "canceled": MessageStatus.FAILED,
}
TWILIO_ENGAGEMENT = {"read": DeliveryEvent.Kind.OPENED}
EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response></Response>'


def _twilio_signature_valid(request: HttpRequest) -> bool:
    """Valid if signed with the auth token of the active Twilio account
    whose SID the request names. The URL is the public one Twilio called."""
    signature = request.headers.get("X-Twilio-Signature", "")
    if not signature:
        return False
    url = settings.CHANNELS_WEBHOOK_BASE_URL + request.get_full_path()
    params = request.POST.dict()
    for account in ProviderAccount.objects.filter(adapter=Adapter.TWILIO, active=True):
        try:
            sid = account_secret(account, "ACCOUNT_SID", default_prefix="TWILIO")
            token = account_secret(account, "AUTH_TOKEN", default_prefix="TWILIO")
        except ImproperlyConfigured:
            logger.warning("Twilio account %s has no secrets in the environment", account.name)
            continue
        if sid == params.get("AccountSid") and RequestValidator(token).validate(url, params, signature):
            return True
    return False


def twilio_signed(view):
    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs):
        if not _twilio_signature_valid(request):
            logger.warning("rejected a Twilio webhook with a missing or invalid signature")
            return HttpResponseForbidden("invalid signature")
        return view(request, *args, **kwargs)

    return csrf_exempt(require_POST(wrapper))


@twilio_signed
def twilio_status(request: HttpRequest) -> HttpResponse:
    params = request.POST.dict()
    sid = params.get("MessageSid", "")
    reported = params.get("MessageStatus", "").lower()
    message_id = request.GET.get("message", "")
    message = services.message_for_report(
        provider_message_id=sid, message_id=int(message_id) if message_id.isdigit() else None
    )
    if message is None or not sid or not reported:
        return HttpResponse(status=204)  # not ours, or nothing to say: Twilio should not retry
    error_code = params.get("ErrorCode", "")
    detail = f"error {error_code}: {PERMANENT_CODES.get(int(error_code), '')}" if error_code.isdigit() else ""
    services.message_report(
        message=message, provider=Adapter.TWILIO, reported=reported, status=TWILIO_STATUS.get(reported, ""),
        engagement=TWILIO_ENGAGEMENT.get(reported, ""), dedupe_key=f"twilio:{sid}:{reported}",
        payload=_redacted(params), detail=detail.strip(": "),
    )
    return HttpResponse(status=204)


@twilio_signed
def twilio_inbound(request: HttpRequest) -> HttpResponse:
    params = request.POST.dict()
    if not params.get("MessageSid") or not params.get("From"):
        return HttpResponse(EMPTY_TWIML, content_type="text/xml")
    inbound.inbound_receive(
        provider=Adapter.TWILIO, provider_message_id=params["MessageSid"], from_address=params["From"],
        to_address=params.get("To", ""), body=params.get("Body", ""), payload=params,
    )
    # Our answers go out through the outbox, not as TwiML.
    return HttpResponse(EMPTY_TWIML, content_type="text/xml")


def _redacted(params: dict) -> dict:
    """Delivery events keep the provider payload without message text."""
    return {k: v for k, v in params.items() if k not in ("Body",)}


# --- anymail tracking ------------------------------------------------------------


def anymail_secret_required(view):
    """anymail accepts unauthenticated webhooks (with a warning) when no
    WEBHOOK_SECRET is set; we refuse them instead."""

    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs):
        if not (getattr(settings, "ANYMAIL", {}) or {}).get("WEBHOOK_SECRET"):
            return HttpResponseForbidden("ANYMAIL_WEBHOOK_SECRET is not configured")
        return view(request, *args, **kwargs)

    return csrf_exempt(wrapper)


ANYMAIL_STATUS = {
    EventType.SENT: MessageStatus.SENT,
    EventType.DELIVERED: MessageStatus.DELIVERED,
    EventType.BOUNCED: MessageStatus.BOUNCED,
    EventType.REJECTED: MessageStatus.FAILED,
    EventType.FAILED: MessageStatus.FAILED,
}
ANYMAIL_ENGAGEMENT = {EventType.OPENED: DeliveryEvent.Kind.OPENED, EventType.CLICKED: DeliveryEvent.Kind.CLICKED}


def anymail_tracking_received(sender, event: AnymailTrackingEvent, esp_name: str, **kwargs) -> None:
    """anymail has verified the request; map its normalised event."""
    metadata_id = (event.metadata or {}).get("outbound_message_id", "")
    message = services.message_for_report(
        provider_message_id=event.message_id or "", message_id=int(metadata_id) if str(metadata_id).isdigit() else None
    )
    if message is None:
        return
    dedupe = event.event_id or f"{event.message_id}:{event.event_type}:{event.timestamp}"
    applied = services.message_report(
        message=message, provider=f"anymail:{esp_name}", reported=event.event_type,
        status=ANYMAIL_STATUS.get(event.event_type, ""), engagement=ANYMAIL_ENGAGEMENT.get(event.event_type, ""),
        dedupe_key=f"anymail:{esp_name}:{dedupe}", payload=_anymail_payload(event), occurred_at=event.timestamp,
        detail=event.description or event.reject_reason or "",
    )
    if applied:
        _anymail_feedback(message, event)


def _anymail_feedback(message, event: AnymailTrackingEvent) -> None:
    if event.event_type == EventType.BOUNCED:
        feedback_apply(message=message, feedback=Feedback.HARD_BOUNCE, detail=event.description or "bounced")
    elif event.event_type == EventType.COMPLAINED:
        feedback_apply(message=message, feedback=Feedback.COMPLAINT, detail="spam complaint")
    elif event.event_type == EventType.UNSUBSCRIBED:
        consent_services.consent_record(
            contact=message.contact, channel=Channel.EMAIL, purpose=MessageClass.MARKETING,
            status=ConsentStatus.REVOKED, source=ConsentSource.UNSUBSCRIBE, actor="esp-unsubscribe",
            evidence={"outbound_message_id": message.pk, "event_id": event.event_id or ""},
        )


def _anymail_payload(event: AnymailTrackingEvent) -> dict:
    return {
        "event_type": event.event_type, "event_id": event.event_id, "message_id": event.message_id,
        "reject_reason": event.reject_reason, "description": event.description, "mta_response": event.mta_response,
        "tags": event.tags, "click_url": event.click_url,
    }


