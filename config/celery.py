from __future__ import annotations

import gc
import os

from celery import Celery
from celery.signals import task_postrun, task_prerun, worker_process_init

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


@worker_process_init.connect
def tune_garbage_collector(**kwargs) -> None:
    """In each worker process: leave what start-up imported out of the cyclic
    collector's walks (gc.freeze) and run it less often (WORKER_GC_THRESHOLD)."""
    from django.conf import settings

    gc.freeze()
    if settings.WORKER_GC_THRESHOLD:
        gc.set_threshold(settings.WORKER_GC_THRESHOLD, *gc.get_threshold()[1:])
