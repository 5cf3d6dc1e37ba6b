from __future__ import annotations

import os

from celery import Celery
from celery.signals import task_postrun, task_prerun

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("backoffice")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@task_prerun.connect
@task_postrun.connect
def drop_broken_or_aged_connections(sender=None, **kwargs) -> None:
    """Around each task, what Django does around each request: close a
    connection that errored or is older than CONN_MAX_AGE (the others are
    reused; see CELERY_DB_REUSE_MAX). Not for eager tasks, which run inside
    their caller's transaction."""
    if getattr(getattr(sender, "request", None), "is_eager", False):
        return
    from django.db import close_old_connections

    close_old_connections()
