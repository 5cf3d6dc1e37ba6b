"""Declare the channels sweepers as django-celery-beat PeriodicTasks.
Idempotent: re-running finds them by name and corrects their schedule."""

from django.db import migrations

PERIODIC = [
    # name, task, every (seconds)
    ("channels: re-enqueue stuck messages", "channels.sweep_stuck_messages", 60),
    ("channels: release deferred messages", "channels.release_deferred_messages", 30),
    ("channels: advance fallback ladders", "channels.advance_ladders", 30),
]


def create_tasks(apps, schema_editor):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    for name, task, every in PERIODIC:
        schedule, _ = IntervalSchedule.objects.get_or_create(every=every, period="seconds")
        PeriodicTask.objects.update_or_create(
            name=name, defaults={"task": task, "interval": schedule, "enabled": True}
        )


def remove_tasks(apps, schema_editor):
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    PeriodicTask.objects.filter(name__in=[name for name, _, _ in PERIODIC]).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("channels", "0003_message_template_version"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(create_tasks, remove_tasks)]
