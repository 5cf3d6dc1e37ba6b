from __future__ import annotations

import factory

from consent.models import ConsentRecord, ConsentSource, ConsentStatus, Contact


class ContactFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Contact

    external_id = factory.Sequence(lambda n: f"cus_{n:05d}")
    email = factory.Sequence(lambda n: f"person{n}@example.com")
    phone = factory.Sequence(lambda n: f"+1415555{n % 10000:04d}")
    timezone = "Europe/Lisbon"
    locale = "en"


class ConsentRecordFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ConsentRecord

    contact = factory.SubFactory(ContactFactory)
    channel = "email"
    purpose = "marketing"
    status = ConsentStatus.GRANTED
    source = ConsentSource.API
    recorded_by = "test"
