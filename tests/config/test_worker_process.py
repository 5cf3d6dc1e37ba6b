"""What each Celery worker process sets up when the pool starts it."""

from __future__ import annotations

import gc

import pytest
from celery.signals import worker_process_init

import config.celery  # noqa: F401 - connects the worker's signal handlers


@pytest.fixture
def restored_gc():
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


@pytest.mark.usefixtures("restored_gc")
def test_a_worker_process_freezes_its_imports_and_collects_less_often(settings):
    settings.WORKER_GC_THRESHOLD = 12_345
    gc.unfreeze()
    worker_process_init.send(sender=None)
    assert gc.get_threshold()[0] == 12_345
    assert gc.get_freeze_count() > 0


@pytest.mark.usefixtures("restored_gc")
def test_zero_keeps_pythons_own_threshold(settings):
    settings.WORKER_GC_THRESHOLD = 0
    gc.set_threshold(700, 10, 10)
    worker_process_init.send(sender=None)
    assert gc.get_threshold() == (700, 10, 10)
