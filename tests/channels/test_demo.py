from __future__ import annotations

import datetime as dt

import pytest
import time_machine

from channels import demo
from channels.models import OutboundMessage, ProviderAccount

pytestmark = pytest.mark.django_db


@time_machine.travel(dt.datetime(2026, 11, 23, 18, 0, tzinfo=dt.UTC), tick=False)  # daytime for every demo contact
def test_the_demo_seeds_console_accounts_and_delivered_messages_once():
    from consent import demo as consent_demo
    from templates import demo as templates_demo

    consent_demo.seed()
    templates_demo.seed()
    added = demo.seed()
    assert added == ProviderAccount.objects.count() + OutboundMessage.objects.count()
    assert set(ProviderAccount.objects.values_list("adapter", flat=True)) == {"console"}
    assert OutboundMessage.objects.filter(status="delivered").count() == len(demo.DEMO_SENDS)
    assert demo.seed() == 0
