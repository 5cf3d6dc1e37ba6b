"""Webhook deliveries are kept WEBHOOKS_RETENTION_DAYS after they finish: an
index for the hourly prune (declared here as a PeriodicTask, idempotently),
and one on the contact a payload names, for erasure's rename."""

import django.db.models.fields.json
from django.db import migrations, models

PRUNE_TASK = ("channels: forget old webhook deliveries", "channels.prune_webhook_deliveries", 3600)


def create_prune_task(apps, schema_editor):
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    name, task, every = PRUNE_TASK
    schedule, _ = IntervalSchedule.objects.get_or_create(every=every, period="seconds")
    PeriodicTask.objects.update_or_create(name=name, defaults={"task": task, "interval": schedule, "enabled": True})


def remove_prune_task(apps, schema_editor):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name=PRUNE_TASK[0]).delete()


class Migration(migrations.Migration):

    dependencies = [
        ('channels', '0008_outbound_webhooks'),
        ('django_celery_beat', '0019_alter_periodictasks_options'),
    ]

    operations = [
        migrations.AddIndex(
            model_name='webhookdelivery',
            index=models.Index(condition=models.Q(('finished_at__isnull', False)), fields=['finished_at'], name='webhook_delivery_finished'),
        ),
        migrations.AddIndex(
            model_name='webhookdelivery',
            index=models.Index(django.db.models.fields.json.KeyTransform('contact_external_id', django.db.models.fields.json.KeyTransform('data', 'payload')), name='webhook_delivery_contact'),
        ),
        migrations.RunPython(create_prune_task, remove_prune_task),
    ]
