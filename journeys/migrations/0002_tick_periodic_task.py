"""The Beat tick: a short UTC interval, never a crontab (DST) and never a
Celery ETA (DESIGN.md). Idempotent: running it again changes nothing."""

from django.conf import settings
from django.db import migrations

TASK_NAME = "journeys: tick"


def create_tick(apps, schema_editor):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    schedule, _ = IntervalSchedule.objects.get_or_create(every=settings.JOURNEYS_TICK_SECONDS, period="seconds")
    PeriodicTask.objects.update_or_create(
        name=TASK_NAME,
        defaults={"task": "journeys.tick", "interval": schedule, "enabled": True,
                  "description": "Process journey events and advance due enrollments"},
    )


def remove_tick(apps, schema_editor):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name=TASK_NAME).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("journeys", "0001_initial"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(create_tick, remove_tick)]
