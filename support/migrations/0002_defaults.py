"""Default data: the keyword rules for inbound replies, SLA policies per
priority, and the periodic first-response SLA check. Operators edit all of
it in the admin; re-running changes nothing already there."""

from django.db import migrations

KEYWORD_RULES = [
    # phrase, priority, category
    ("urgent", "urgent", "other"),
    ("cancel", "high", "order_status"),
    ("charged twice", "high", "billing"),
    ("refund", "high", "billing"),
    ("speak to a person", "high", "other"),
]
SLA_POLICIES = [
    # priority, first response, resolution (business minutes)
    ("urgent", 60, 480),
    ("high", 240, 1440),
    ("normal", 480, 2880),
    ("low", 1440, 4800),
]
PERIODIC = ("support: first-response SLA check", "support.check_first_response_sla", 60)


def seed_rules_and_policies(KeywordRule, SlaPolicy):  # noqa: N803 (model classes)
    for phrase, priority, category in KEYWORD_RULES:
        KeywordRule.objects.get_or_create(phrase=phrase, defaults={"priority": priority, "category": category})
    for priority, first, resolution in SLA_POLICIES:
        SlaPolicy.objects.get_or_create(
            priority=priority, defaults={"first_response_minutes": first, "resolution_minutes": resolution}
        )


def seed(apps, schema_editor):
    seed_rules_and_policies(apps.get_model("support", "KeywordRule"), apps.get_model("support", "SlaPolicy"))
    IntervalSchedule = apps.get_model("django_celery_beat", "IntervalSchedule")
    PeriodicTask = apps.get_model("django_celery_beat", "PeriodicTask")
    name, task, every = PERIODIC
    schedule, _ = IntervalSchedule.objects.get_or_create(every=every, period="seconds")
    PeriodicTask.objects.update_or_create(name=name, defaults={"task": task, "interval": schedule, "enabled": True})


def unseed(apps, schema_editor):
    apps.get_model("django_celery_beat", "PeriodicTask").objects.filter(name=PERIODIC[0]).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("support", "0001_initial"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(seed, unseed)]
