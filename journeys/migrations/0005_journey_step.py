"""The journey editor's step rows, backfilled from every journey's draft
definition (the same split as JourneyStep.from_step, copied here because a
migration must not depend on code that may change). Reversing drops them:
the definition is and stays the source the engine reads."""

import django.db.models.deletion
from django.db import migrations, models


COLUMNS = {"template": 100, "duration": 50, "next": 100}


def backfill_steps(apps, schema_editor):
    Journey = apps.get_model("journeys", "Journey")
    JourneyStep = apps.get_model("journeys", "JourneyStep")
    rows = []
    for journey in Journey.objects.only("pk", "definition").iterator():
        steps = (journey.definition or {}).get("steps") or []
        for position, step in enumerate(steps):
            if not isinstance(step, dict) or not isinstance(step.get("key"), str) or "type" not in step:
                continue  # never stored: every written definition was validated
            options = {k: v for k, v in step.items() if k not in ("key", "type")}
            columns = {}
            for name, max_length in COLUMNS.items():
                value = options.get(name)
                if isinstance(value, str) and value and len(value) <= max_length:
                    columns[name] = options.pop(name)
            rows.append(JourneyStep(journey_id=journey.pk, position=position, key=step["key"],
                                    type=str(step["type"]), options=options, **columns))
    JourneyStep.objects.bulk_create(rows, batch_size=1000)


def drop_steps(apps, schema_editor):
    apps.get_model("journeys", "JourneyStep").objects.all().delete()


class Migration(migrations.Migration):

    dependencies = [
        ('journeys', '0004_enrollment_scope_failures_webhook_claim'),
    ]

    operations = [
        migrations.CreateModel(
            name='JourneyStep',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('position', models.PositiveIntegerField(default=0, help_text='Order in the journey; the first step starts it')),
                ('key', models.CharField(max_length=100)),
                ('type', models.CharField(max_length=32)),
                ('next', models.CharField(blank=True, default='', help_text='Empty: the step listed after it', max_length=100)),
                ('template', models.CharField(blank=True, default='', help_text='Send steps', max_length=100)),
                ('duration', models.CharField(blank=True, default='', help_text='Wait steps, e.g. 1d or 24h', max_length=50)),
                ('options', models.JSONField(blank=True, default=dict, help_text="The step's other settings")),
                ('journey', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='steps', to='journeys.journey')),
            ],
            options={
                'ordering': ['journey', 'position', 'id'],
                'indexes': [models.Index(fields=['journey', 'position'], name='journey_step_position_idx')],
            },
        ),
        migrations.RunPython(backfill_steps, drop_steps),
    ]
