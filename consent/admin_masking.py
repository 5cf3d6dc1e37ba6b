"""The admin's masking of addresses for staff without the "view personal
data" permission (consent.view_personal_data, granted in consent/roles.py)."""

from __future__ import annotations

import json
from collections.abc import Callable

from simple_history.template_utils import HistoricalRecordContextHelper

from consent.masking import mask_address, mask_text, sees_personal_data


def _masked_column(name: str, masker: Callable[[str], str]) -> Callable:
    def column(self, obj) -> str:
        value = getattr(obj, name)
        if value is None or isinstance(value, str):
            return masker(value or "")
        return masker(json.dumps(value, ensure_ascii=False, default=str))

    column.short_description = name.replace("_", " ")
    return column


class PersonalDataAdminMixin:
    """For a ModelAdmin or inline. To staff without PERSONAL_DATA_PERMISSION,
    `address_fields` (emails, phones, tokens) show masked in the list, on the
    change page and in history, and cannot be searched by: finding a record
    by typing a full address would tell that the address is a customer's and
    which masked row is theirs. `text_fields` (free text and JSON that may
    carry addresses) show with every address in them masked."""

    address_fields: tuple[str, ...] = ()
    text_fields: tuple[str, ...] = ()

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        for name in cls.address_fields:
            setattr(cls, f"masked_{name}", _masked_column(name, mask_address))
        for name in cls.text_fields:
            setattr(cls, f"masked_{name}", _masked_column(name, mask_text))

    def _masked_names(self, request, names):
        if sees_personal_data(request.user):
            return list(names)
        personal = {*self.address_fields, *self.text_fields}
        # dict.fromkeys: a field both in the form and read-only appears once.
        return list(dict.fromkeys(f"masked_{name}" if name in personal else name for name in names))

    def get_list_display(self, request):
        return self._masked_names(request, super().get_list_display(request))

    def get_search_fields(self, request):
        fields = super().get_search_fields(request)
        if sees_personal_data(request.user):
            return fields
        return [f for f in fields if f.lstrip("=^@").rpartition("__")[2] not in self.address_fields]

    # The add page keeps the fields: typing an address (a suppression) is not seeing one.
    def get_fields(self, request, obj=None):
        fields = super().get_fields(request, obj)
        return fields if obj is None else self._masked_names(request, fields)

    def get_fieldsets(self, request, obj=None):
        fieldsets = super().get_fieldsets(request, obj)
        if obj is None:
            return fieldsets
        return [(title, {**options, "fields": self._masked_names(request, options["fields"])})
                for title, options in fieldsets]

    def get_readonly_fields(self, request, obj=None):
        readonly = list(super().get_readonly_fields(request, obj))
        if obj is None or sees_personal_data(request.user):
            return readonly
        masked = [f"masked_{name}" for name in (*self.address_fields, *self.text_fields)]
        return self._masked_names(request, readonly) + [m for m in masked if m not in readonly]

    def get_historical_record_context_helper(self, request, historical_record):
        if sees_personal_data(request.user):
            return super().get_historical_record_context_helper(request, historical_record)
        return MaskedHistoryContextHelper(self.model, historical_record, self.address_fields, self.text_fields)


class MaskedHistoryContextHelper(HistoricalRecordContextHelper):
    """The history page's "Changes" column, with personal fields masked."""

    def __init__(self, model, historical_record, address_fields, text_fields):
        super().__init__(model, historical_record)
        self.address_fields = address_fields
        self.text_fields = text_fields

    def prepare_delta_change_value(self, change, value):
        value = super().prepare_delta_change_value(change, value)
        if change.field in self.address_fields:
            return mask_address(str(value or ""))
        if change.field in self.text_fields:
            return mask_text(value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str))
        return value
