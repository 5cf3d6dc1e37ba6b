"""`/metrics` for Prometheus: every value is read from PostgreSQL or the
broker at scrape time by one Collector, so any web process gives the same
answer and prometheus_client's multiprocess mode is not needed under several
gunicorn workers. Nothing here is kept in process memory between scrapes."""

from __future__ import annotations

import datetime as dt
import logging
import secrets

from django.conf import settings
from django.db.models import Count, Min, Sum
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from kombu.exceptions import OperationalError
from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder

from analytics.models import ChannelDay
from channels.models import MessageStatus, OutboundMessage, WebhookDelivery, WebhookDeliveryStatus
from config.health import broker_queue_lengths
from journeys.models import Enrollment, EnrollmentStatus, WebhookCall, WebhookStatus

logger = logging.getLogger(__name__)

# Outbox states a message is still waiting in (each read on msg_status_idx).
WAITING_STATUSES = (MessageStatus.QUEUED, MessageStatus.SENDING, MessageStatus.DEFERRED)
# ChannelDay columns counting moves into a status, summed over all rolled-up days.
ROLLED_UP_STATUSES = ("queued", "sent", "delivered", "failed", "bounced", "suppressed", "deferred")


def outbox_waiting() -> list[tuple[str, str, int]]:
    """(channel, status, rows) of outbox rows not yet handed to a provider or finished."""
    rows = (OutboundMessage.objects.filter(status__in=WAITING_STATUSES).order_by()
            .values_list("channel", "status").annotate(n=Count("pk")))
    return list(rows)


def rolled_up_totals() -> list[tuple[str, str, int]]:
    """(channel, status, count) from analytics' daily rollups: counting the
    outbox itself (millions of rows) per scrape is too slow. Lags by up to one
    analytics tick (5 minutes)."""
    per_channel = (ChannelDay.objects.order_by().values("channel")
                   .annotate(**{status: Sum(status) for status in ROLLED_UP_STATUSES}))
    return [(row["channel"], status, row[status] or 0) for row in per_channel for status in ROLLED_UP_STATUSES]


def journey_webhook_failures() -> int:
    return WebhookCall.objects.filter(status=WebhookStatus.FAILED).count()


def integration_webhook_failures() -> int:
    """Outbound integration webhook deliveries (channels) whose retry schedule
    ran out without a 2xx."""
    return WebhookDelivery.objects.filter(status=WebhookDeliveryStatus.GIVEN_UP).count()


def tick_lag_seconds(now: dt.datetime) -> float:
    """How far behind the scheduler is: now minus the oldest due active
    enrollment's next_run_at (read on the partial enrollment_due_idx); 0 when none is due."""
    oldest = (Enrollment.objects.filter(status=EnrollmentStatus.ACTIVE, next_run_at__lte=now)
              .aggregate(oldest=Min("next_run_at"))["oldest"])
    return max((now - oldest).total_seconds(), 0.0) if oldest else 0.0


class BackofficeCollector:
    """Computes every family at scrape time (prometheus_client custom collector)."""

    def collect(self):
        yield from self._broker_queues()
        outbox = GaugeMetricFamily("backoffice_outbox_messages", "Outbox rows waiting, by channel and status",
                                   labels=["channel", "status"])
        for channel, status, count in outbox_waiting():
            outbox.add_metric([channel, status], count)
        yield outbox
        totals = CounterMetricFamily("backoffice_messages", "Outbound messages moved into each status, by channel "
                                     "(analytics daily rollups)", labels=["channel", "status"])
        for channel, status, count in rolled_up_totals():
            totals.add_metric([channel, status], count)
        yield totals
        failures = GaugeMetricFamily("backoffice_webhook_failures", "Webhook calls that failed after their retries",
                                     labels=["source"])
        failures.add_metric(["journeys"], journey_webhook_failures())
        failures.add_metric(["integrations"], integration_webhook_failures())
        yield failures
        yield GaugeMetricFamily("backoffice_tick_lag_seconds", "Now minus the oldest due enrollment's next_run_at",
                                value=tick_lag_seconds(timezone.now()))

    def _broker_queues(self) -> list[Metric]:
        # An unreachable broker leaves this family out (alert on absent());
        # the database families still answer and /health/ says what is down.
        try:
            lengths = broker_queue_lengths()
        except (OperationalError, OSError):
            logger.warning("metrics: the Celery broker is unreachable; queue lengths left out")
            return []
        family = GaugeMetricFamily("backoffice_broker_queue_messages", "Messages waiting in each Celery task queue",
                                   labels=["queue"])
        for queue, length in lengths.items():
            family.add_metric([queue], length)
        return [family]


REGISTRY = CollectorRegistry()
REGISTRY.register(BackofficeCollector())


def _authorized(request: HttpRequest) -> bool:
    token = settings.METRICS_TOKEN
    if not token:
        return True
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    return scheme.lower() == "bearer" and secrets.compare_digest(given.strip().encode(), token.encode())


@never_cache
@require_GET
def metrics_view(request: HttpRequest) -> HttpResponse:
    if not _authorized(request):
        response = HttpResponse("A valid bearer token is required (METRICS_TOKEN).\n", status=401,
                                content_type="text/plain; charset=utf-8")
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    encoder, content_type = choose_encoder(request.headers.get("Accept", ""))
    return HttpResponse(encoder(REGISTRY), content_type=content_type)
