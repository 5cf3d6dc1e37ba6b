"""Declare the hourly prune of expired Idempotency-Key records as a
django-celery-beat PeriodicTask. Idempotent."""

from django.db import migrations

NAME = "api: forget expired idempotency keys"


def create_task(apps, schema_editor):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    schedule, _ = IntervalSchedule.objects.get_or_create(every=3600, period="seconds")
    PeriodicTask.objects.update_or_create(
        name=NAME, defaults={"task": "config.prune_idempotency_records", "interval": schedule, "enabled": True}
    )


def remove_task(apps, schema_editor):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name=NAME).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("project", "0002_api_keys_idempotency"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(create_task, remove_task)]
