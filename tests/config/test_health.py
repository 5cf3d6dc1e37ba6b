"""/health/ tells a load balancer whether the database, the Celery broker and
Beat are up: 200 when all are, 503 naming the failed check otherwise. The
checks run on threads of their own, so data must be committed (transaction=True)."""

from __future__ import annotations

import datetime as dt
import socket

import pytest
from django.utils import timezone
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from config import celery_app

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres, pytest.mark.redis]

JSON = {"HTTP_ACCEPT": "application/json"}
DATABASE, BROKER, BEAT = "Database(alias='default')", "Broker()", "BeatHeartbeat()"


def beat_sent_a_task(ago: dt.timedelta) -> PeriodicTask:
    every, _ = IntervalSchedule.objects.get_or_create(every=5, period=IntervalSchedule.SECONDS)
    return PeriodicTask.objects.create(name=f"tick {ago}", task="journeys.tick", interval=every,
                                       last_run_at=timezone.now() - ago)


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def point_celery_at(broker_url: str, monkeypatch) -> None:
    # Celery prefers the CELERY_BROKER_URL environment variable to its configuration.
    monkeypatch.setenv("CELERY_BROKER_URL", broker_url)
    monkeypatch.setitem(celery_app.conf, "broker_url", broker_url)


def test_it_answers_200_when_the_database_the_broker_and_beat_are_up(client):
    beat_sent_a_task(dt.timedelta(seconds=20))

    response = client.get("/health/", **JSON)

    assert response.status_code == 200
    assert response.json() == {DATABASE: "OK", BROKER: "OK", BEAT: "OK"}


def test_it_needs_no_login_and_renders_html_for_a_browser(client):
    beat_sent_a_task(dt.timedelta(seconds=20))

    response = client.get("/health/", HTTP_ACCEPT="text/html")

    assert response.status_code == 200
    assert b"System status" in response.content


def test_it_answers_503_naming_the_broker_when_the_broker_is_unreachable(client, monkeypatch):
    beat_sent_a_task(dt.timedelta(seconds=20))
    point_celery_at(f"redis://127.0.0.1:{closed_port()}/0", monkeypatch)

    response = client.get("/health/", **JSON)

    assert response.status_code == 503
    assert response.json() == {DATABASE: "OK", BROKER: "Unavailable: cannot reach the redis broker", BEAT: "OK"}
    assert "127.0.0.1" not in response.content.decode()


def test_it_answers_503_when_beats_heartbeat_is_stale(client):
    beat_sent_a_task(dt.timedelta(seconds=301))

    response = client.get("/health/", **JSON)

    assert response.status_code == 503
    assert response.json()[BEAT] == "Unavailable: Beat last sent a task 301 s ago (limit 300 s)"
    assert response.json()[BROKER] == "OK"


def test_it_answers_503_when_beat_never_ran(client):
    response = client.get("/health/", **JSON)

    assert response.status_code == 503
    assert response.json()[BEAT] == "Unavailable: Beat has not sent any periodic task yet"


def test_the_broker_check_works_on_the_embedded_filesystem_broker(client, monkeypatch, tmp_path):
    beat_sent_a_task(dt.timedelta(seconds=20))
    for folder in ("queue", "processed"):
        (tmp_path / folder).mkdir()
    point_celery_at("filesystem://", monkeypatch)
    monkeypatch.setitem(celery_app.conf, "broker_transport_options", {
        "data_folder_in": str(tmp_path / "queue"), "data_folder_out": str(tmp_path / "queue"),
        "processed_folder": str(tmp_path / "processed")})

    assert client.get("/health/", **JSON).json()[BROKER] == "OK"

    (tmp_path / "queue").rename(tmp_path / "gone")
    response = client.get("/health/", **JSON)
    assert response.status_code == 503
    assert response.json()[BROKER] == "Unavailable: cannot reach the filesystem broker"
