"""The first-response SLA check now runs on the journeys tick (one scheduling
mechanism, and `advance_journeys --now` runs it); drop its own Beat task."""

from django.db import migrations



def drop_task(apps, schema_editor):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(task="support.check_first_response_sla").delete()


class Migration(migrations.Migration):
    dependencies = [("support", "0002_defaults")]
    operations = [migrations.RunPython(drop_task, migrations.RunPython.noop)]
