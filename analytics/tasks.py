from celery import shared_task
from django.conf import settings

from analytics import services


@shared_task(name="analytics.tick")
def tick() -> dict:
    return services.tick()


@shared_task(name="analytics.run_audit_export", soft_time_limit=settings.ANALYTICS_EXPORT_SOFT_TIME_LIMIT,
             time_limit=settings.ANALYTICS_EXPORT_SOFT_TIME_LIMIT + 60)
def run_audit_export(export_id: int) -> str:
    return services.run_export(export_id).status
