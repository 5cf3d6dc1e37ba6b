"""`/health/`: the database, the Celery broker and Beat's heartbeat, for load
balancers and uptime checks. Open (no authentication), so its messages name
what failed and never an address, a credential or a person."""

from __future__ import annotations

import dataclasses
import datetime as dt

from celery import Celery
from django.conf import settings
from django.db import DatabaseError, connection
from django.db.models import Max
from django.utils import timezone
from django_celery_beat.models import PeriodicTask
from health_check.base import HealthCheck
from health_check.exceptions import ServiceUnavailable
from health_check.views import HealthCheckView
from kombu import Connection
from kombu.exceptions import ChannelError, OperationalError

from config.celery import app as celery_app


def task_queue_names(app: Celery) -> list[str]:
    """The broker queues our tasks go to: the default queue, declared queues
    and the queues named in dict routes (router functions cannot be listed)."""
    names = {app.conf.task_default_queue}
    names.update(queue.name for queue in app.conf.task_queues or ())
    routes = app.conf.task_routes or ()
    for mapping in [routes] if isinstance(routes, dict) else routes:
        if isinstance(mapping, dict):
            names.update(route["queue"] for route in mapping.values() if isinstance(route, dict) and "queue" in route)
    return sorted(names)


def _queue_length(broker: Connection, name: str) -> int:
    # A passive declare reads the length without creating anything (Redis:
    # LLEN over the priority lists; filesystem: the message files). An empty
    # Redis queue has no key, so "not found" means 0; on AMQP the refused
    # declare closes the channel, hence a channel per queue.
    with broker.channel() as channel:
        try:
            return channel.queue_declare(queue=name, passive=True).message_count
        except ChannelError:
            return 0


def broker_queue_lengths(app: Celery = celery_app) -> dict[str, int]:
    """Messages waiting per task queue. Raises kombu's OperationalError at once
    (no retries) when the broker cannot be reached."""
    with app.connection_for_write() as broker:
        broker.ensure_connection(max_retries=0)
        try:
            return {name: _queue_length(broker, name) for name in task_queue_names(app)}
        except broker.connection_errors as error:
            raise OperationalError(str(error)) from error


@dataclasses.dataclass
class Broker(HealthCheck):
    """The Celery broker answers and its task queues can be read."""

    timeout: dt.timedelta = dataclasses.field(
        default_factory=lambda: dt.timedelta(seconds=settings.HEALTH_BROKER_TIMEOUT_SECONDS), repr=False
    )

    def run(self) -> None:
        transport = celery_app.connection_for_write().transport_cls
        try:
            broker_queue_lengths()
        except (OperationalError, OSError) as error:
            raise ServiceUnavailable(f"cannot reach the {transport} broker") from error


def beat_last_run_at() -> dt.datetime | None:
    """When Beat last sent any enabled periodic task, as its DatabaseScheduler
    wrote it down."""
    return PeriodicTask.objects.filter(enabled=True).aggregate(last=Max("last_run_at"))["last"]


@dataclasses.dataclass
class BeatHeartbeat(HealthCheck):
    """Beat is alive and ticking: the newest PeriodicTask.last_run_at is recent.

    Beat itself writes it (DatabaseScheduler syncs it at least every 3 minutes
    while it sends tasks, and the journeys tick is due every few seconds), in
    the shared database, so every web process on every machine sees the same
    answer and a stopped worker is not mistaken for a stopped Beat. The
    `config.heartbeat` task is not used: a worker writes it to a file on its
    own host, which other machines cannot read."""

    max_age: dt.timedelta = dataclasses.field(
        default_factory=lambda: dt.timedelta(seconds=settings.HEALTH_BEAT_MAX_AGE_SECONDS), repr=False
    )

    def run(self) -> None:
        try:
            last_run = beat_last_run_at()
        except DatabaseError as error:
            raise ServiceUnavailable("cannot read Beat's schedule from the database") from error
        finally:
            # Checks run on executor threads: leave no connection open per thread.
            connection.close()
        if last_run is None:
            raise ServiceUnavailable("Beat has not sent any periodic task yet")
        age = timezone.now() - last_run
        if age > self.max_age:
            raise ServiceUnavailable(
                f"Beat last sent a task {int(age.total_seconds())} s ago (limit {int(self.max_age.total_seconds())} s)"
            )


class HealthView(HealthCheckView):
    """django-health-check answers 500 when a check fails; load balancers and
    the issue expect 503 (Service Unavailable)."""

    async def get(self, request, *args, **kwargs):
        response = await super().get(request, *args, **kwargs)
        if response.status_code == 500:
            response.status_code = 503
        return response
