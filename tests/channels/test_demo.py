from __future__ import annotations

import datetime as dt

import pytest
import time_machine

from channels import demo
from channels.models import OutboundMessage, ProviderAccount

pytestmark = pytest.mark.django_db


# 23:00 UTC is quiet hours in Lisbon and London, 05:00 in Sao Paulo and Los
# Angeles, 18:00 in none: the demo messages are delivered whenever it seeds.
@pytest.mark.parametrize("utc_hour", [5, 18, 23])
def test_the_demo_seeds_console_accounts_and_delivered_messages_once(utc_hour):
    with time_machine.travel(dt.datetime(2026, 11, 23, utc_hour, 0, tzinfo=dt.UTC), tick=False):
        _seed_and_check()


def _seed_and_check():
    from consent import demo as consent_demo
    from templates import demo as templates_demo

    consent_demo.seed()
    templates_demo.seed()
    added = demo.seed()
    assert added == ProviderAccount.objects.count() + OutboundMessage.objects.count()
    assert set(ProviderAccount.objects.values_list("adapter", flat=True)) == {"console"}
    assert OutboundMessage.objects.filter(status="delivered").count() == len(demo.DEMO_SENDS)
    assert demo.seed() == 0
