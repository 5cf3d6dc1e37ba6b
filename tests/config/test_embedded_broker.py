"""`make run` needs no service: the embedded broker (kombu's filesystem
transport under var/) must really carry tasks and Beat's schedules to a worker."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CELERY = str(Path(sys.executable).with_name("celery"))


def wait_for(predicate, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.5)
    return False


@pytest.fixture
def embedded_env(tmp_path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "CELERY_BROKER_URL", "REDIS_URL")}
    env.update({"VAR_DIR": str(tmp_path), "DJANGO_SETTINGS_MODULE": "config.settings"})
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True, timeout=300)
    return env


def start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen:
    return subprocess.Popen([CELERY, "-A", "config", *args], cwd=ROOT, env=env,
                            stdout=log.open("w"), stderr=subprocess.STDOUT)


def stop(*processes: subprocess.Popen) -> None:
    for process in processes:
        process.terminate()
    for process in processes:
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()


def test_a_worker_runs_a_task_sent_and_a_schedule_beat_fires_over_the_embedded_broker(embedded_env, tmp_path):
    heartbeat = tmp_path / "worker-heartbeat"
    send = ("import django; django.setup(); from config.tasks import heartbeat; "
            "from django_celery_beat.models import IntervalSchedule, PeriodicTask; "
            "every, _ = IntervalSchedule.objects.get_or_create(every=1, period='seconds'); "
            "PeriodicTask.objects.create(name='hb', task='config.heartbeat', interval=every, args='[\"beat\"]'); "
            "heartbeat.delay('direct')")
    subprocess.run([sys.executable, "-c", send], cwd=ROOT, env=embedded_env, check=True, timeout=120)
    worker = start(["worker", "--pool", "solo", "--loglevel", "INFO"], embedded_env, tmp_path / "worker.log")
    beat = start(["beat", "--loglevel", "INFO", "--schedule", str(tmp_path / "beat")], embedded_env,
                 tmp_path / "beat.log")
    try:
        carried = wait_for(lambda: heartbeat.exists() and "direct" in heartbeat.read_text()
                           and "beat" in heartbeat.read_text(), 60)
    finally:
        stop(worker, beat)
    logs = (tmp_path / "worker.log").read_text() + (tmp_path / "beat.log").read_text()
    assert carried, logs[-3000:]
