from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from simple_history.admin import SimpleHistoryAdmin
from unfold.admin import ModelAdmin, TabularInline
from unfold.decorators import action, display
from unfold.enums import ActionVariant
from unfold.forms import BaseDialogForm

from config.search import ExactSearch
from consent import selectors, services
from consent.admin_masking import PersonalDataAdminMixin
from consent.models import (
    Channel,
    ConsentRecord,
    ConsentSource,
    ConsentStatus,
    Contact,
    ContactMerge,
    Holiday,
    MessageClass,
    PushDevice,
    QuietHoursRule,
    Suppression,
    SuppressionReason,
    normalise_phone,
)

STATE_COLOURS = {"granted": "#15803d", "revoked": "#b91c1c", "pending": "#b45309", "expired": "#6b7280"}


class ReadOnlyInline(TabularInline):
    extra = 0
    can_delete = False
    show_change_link = False

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


class ConsentLedgerInline(ReadOnlyInline):
    model = ConsentRecord
    fk_name = "contact"
    fields = ["recorded_at", "channel", "purpose", "status", "source", "evidence", "wording_version", "recorded_by"]
    readonly_fields = fields
    ordering = ["-recorded_at", "-id"]
    verbose_name_plural = "Consent ledger (append-only)"


class PushDeviceInline(PersonalDataAdminMixin, TabularInline):
    address_fields = ("token",)
    model = PushDevice
    extra = 0
    fields = ["platform", "token", "active", "deactivated_reason", "created_at"]
    readonly_fields = ["deactivated_reason", "created_at"]


class RecordConsentForm(BaseDialogForm):
    channel = forms.ChoiceField(choices=Channel.choices)
    purpose = forms.ChoiceField(choices=MessageClass.choices)
    status = forms.ChoiceField(choices=[(ConsentStatus.GRANTED, "Granted"), (ConsentStatus.REVOKED, "Revoked")])
    evidence = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 2}), help_text="How the person told you (call, letter, chat…)"
    )


class SuppressForm(BaseDialogForm):
    reason = forms.ChoiceField(choices=SuppressionReason.choices, initial=SuppressionReason.MANUAL)
    channel = forms.ChoiceField(choices=[("", "All channels"), *Channel.choices], required=False)
    note = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), required=False)
    expires_at = forms.DateTimeField(required=False, help_text="Leave empty for no expiry")


class MergeForm(BaseDialogForm):
    other_external_id = forms.CharField(
        label="Contact to merge into this one", help_text="External id; its history and consent move here"
    )

    def clean_other_external_id(self) -> Contact:
        value = self.cleaned_data["other_external_id"].strip()
        other = Contact.objects.filter(external_id=value).first()
        if other is None:
            raise ValidationError(f"No contact has the external id {value!r}.")
        if str(other.pk) == str(self.object_id):
            raise ValidationError("A contact cannot be merged into itself.")
        return other


class EraseForm(BaseDialogForm):
    confirm = forms.CharField(help_text="Type ERASE to anonymise this contact for good")

    def clean_confirm(self) -> str:
        if self.cleaned_data["confirm"] != "ERASE":
            raise ValidationError("Type ERASE in capitals to confirm.")
        return "ERASE"


class ContactForm(forms.ModelForm):
    """Identifiers stored as the API stores them (email lower-cased, phones
    in E.164), so that the gate, suppressions and search match them."""

    class Meta:
        model = Contact
        fields = ["external_id", "email", "phone", "whatsapp_id", "lifecycle_stage", "timezone", "locale",
                  "quiet_hours_start", "quiet_hours_end", "attributes"]

    def clean_email(self) -> str:
        return self.cleaned_data["email"].strip().lower()

    def clean_phone(self) -> str:
        return normalise_phone(self.cleaned_data["phone"]) if self.cleaned_data["phone"] else ""

    def clean_whatsapp_id(self) -> str:
        return normalise_phone(self.cleaned_data["whatsapp_id"]) if self.cleaned_data["whatsapp_id"] else ""


@admin.register(Contact)
class ContactAdmin(PersonalDataAdminMixin, ExactSearch, SimpleHistoryAdmin, ModelAdmin):
    address_fields = ("email", "phone", "whatsapp_id")
    form = ContactForm
    list_display = ["external_id", "email", "phone", "lifecycle_stage", "timezone", "locale", "created_at"]
    list_filter = ["lifecycle_stage", "locale"]
    search_fields = ["=external_id", "=email", "=phone"]
    show_full_result_count = False
    readonly_fields = ["consent_matrix", "merged_into", "erased_at", "created_at", "updated_at"]
    fieldsets = [
        (None, {"fields": ["external_id", "email", "phone", "whatsapp_id", "lifecycle_stage"]}),
        ("Consent", {"fields": ["consent_matrix"]}),
        ("Locale and time", {"fields": ["timezone", "locale", "quiet_hours_start", "quiet_hours_end"]}),
        ("Attributes", {"fields": ["attributes"]}),
        ("Record", {"fields": ["merged_into", "erased_at", "created_at", "updated_at"]}),
    ]
    inlines = [PushDeviceInline, ConsentLedgerInline]
    actions_detail = ["record_consent", "suppress_contact", "merge_contact", "erase_contact"]

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        # Contacts are never deleted (their consent and messages are evidence):
        # "Erase personal data" anonymises them instead.
        return False

    def has_record_consent_permission(self, request: HttpRequest, object_id=None) -> bool:
        return request.user.has_perm("consent.add_consentrecord")

    def has_suppress_permission(self, request: HttpRequest, object_id=None) -> bool:
        return request.user.has_perm("consent.add_suppression")

    def has_merge_permission(self, request: HttpRequest, object_id=None) -> bool:
        return request.user.has_perm("consent.change_contact")

    def has_erase_permission(self, request: HttpRequest, object_id=None) -> bool:
        return request.user.has_perm("consent.delete_contact")

    @display(description="Consent now (channel × purpose)")
    def consent_matrix(self, contact: Contact) -> str:
        if not contact.pk:
            return "-"
        cells = {(c.channel, c.purpose): c for c in selectors.consent_state(contact)}
        header = format_html_join("", "<th style='padding:4px 8px'>{}</th>", ((p.label,) for p in MessageClass))
        rows = format_html_join(
            "",
            "<tr><th style='padding:4px 8px;text-align:left'>{}</th>{}</tr>",
            ((ch.label, self._cells(cells, ch.value)) for ch in Channel),
        )
        return format_html("<table><tr><th></th>{}</tr>{}</table>", header, rows)

    def _cells(self, cells, channel: str) -> str:
        return format_html_join(
            "",
            "<td style='padding:4px 8px;color:{}'>{}</td>",
            (
                (STATE_COLOURS.get(cells[(channel, p)].state, "#9ca3af"), cells[(channel, p)].state)
                for p in MessageClass.values
            ),
        )

    def _done(self, object_id) -> HttpResponseRedirect:
        return HttpResponseRedirect(reverse("admin:consent_contact_change", args=[object_id]))

    @action(
        description="Record consent",
        url_path="record-consent",
        permissions=["record_consent"],
        dialog={"title": "Record consent", "description": "Appends a record to the ledger with you as the source.",
                "form_class": RecordConsentForm, "form_submit_text": "Record"},
    )
    def record_consent(self, request: HttpRequest, form: RecordConsentForm, object_id):
        contact = get_object_or_404(Contact, pk=object_id)
        record = services.consent_record(
            contact=contact,
            channel=form.cleaned_data["channel"],
            purpose=form.cleaned_data["purpose"],
            status=form.cleaned_data["status"],
            source=ConsentSource.ADMIN,
            evidence={"note": form.cleaned_data["evidence"], "agent": request.user.get_username()},
            actor=request.user,
        )
        messages.success(request, f"Recorded: {record.channel}/{record.purpose} {record.status}.")
        return self._done(object_id)

    @action(
        description="Suppress",
        url_path="suppress",
        permissions=["suppress"],
        variant=ActionVariant.WARNING,
        dialog={"title": "Suppress this contact", "description": "No message goes out while this holds.",
                "form_class": SuppressForm, "form_submit_text": "Suppress"},
    )
    def suppress_contact(self, request: HttpRequest, form: SuppressForm, object_id):
        contact = get_object_or_404(Contact, pk=object_id)
        fields = {name: form.cleaned_data[name] for name in ("reason", "channel", "note", "expires_at")}
        services.suppression_create(contact=contact, actor=request.user, **fields)
        messages.success(request, "Contact suppressed.")
        return self._done(object_id)

    @action(
        description="Merge another contact into this one",
        url_path="merge",
        permissions=["merge"],
        dialog={"title": "Merge contacts", "description": "Consent, messages and cases move to this contact.",
                "form_class": MergeForm, "form_submit_text": "Merge"},
    )
    def merge_contact(self, request: HttpRequest, form: MergeForm, object_id):
        survivor = get_object_or_404(Contact, pk=object_id)
        try:
            merge = services.contact_merge(
                survivor=survivor, merged=form.cleaned_data["other_external_id"], actor=request.user
            )
        except services.ConsentError as error:
            messages.error(request, str(error))
        else:
            messages.success(request, f"Merged {merge.merged.external_id}: moved {merge.moved}.")
        return self._done(object_id)

    @action(
        description="Erase personal data",
        url_path="erase",
        permissions=["erase"],
        variant=ActionVariant.DANGER,
        dialog={"title": "Erase this contact", "description": "Anonymises personal data here and in history.",
                "form_class": EraseForm, "form_submit_text": "Erase"},
    )
    def erase_contact(self, request: HttpRequest, form: EraseForm, object_id):
        contact = get_object_or_404(Contact, pk=object_id)
        services.contact_erase(contact=contact, actor=request.user)
        messages.success(request, "Contact erased.")
        return self._done(object_id)


@admin.register(ConsentRecord)
class ConsentRecordAdmin(ExactSearch, ModelAdmin):
    list_display = ["recorded_at", "contact", "channel", "purpose", "status", "source", "recorded_by"]
    list_filter = ["channel", "purpose", "status", "source"]
    search_fields = ["=contact__external_id"]
    list_select_related = ["contact"]
    show_full_result_count = False

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Suppression)
class SuppressionAdmin(PersonalDataAdminMixin, ExactSearch, SimpleHistoryAdmin, ModelAdmin):
    address_fields = ("address",)
    list_display = ["created_at", "contact", "address", "channel", "reason", "expires_at", "lifted_at", "created_by"]
    list_filter = ["reason", "channel"]
    search_fields = ["=address", "=contact__external_id"]
    list_select_related = ["contact"]
    autocomplete_fields = ["contact"]
    readonly_fields = ["created_at", "created_by", "lifted_at", "lifted_by"]
    actions = ["lift"]

    def save_model(self, request, obj, form, change):
        if change:
            super().save_model(request, obj, form, change)
            return
        names = ("contact", "address", "channel", "reason", "note", "expires_at")
        saved = services.suppression_create(actor=request.user, **{f: form.cleaned_data.get(f) for f in names})
        obj.pk = saved.pk

    @admin.action(description="Lift selected suppressions", permissions=["change"])
    def lift(self, request, queryset):
        lifted = 0
        for suppression in queryset.filter(lifted_at__isnull=True):
            services.suppression_lift(suppression=suppression, actor=request.user)
            lifted += 1
        messages.success(request, f"Lifted {lifted} suppression(s).")


@admin.register(QuietHoursRule)
class QuietHoursRuleAdmin(SimpleHistoryAdmin, ModelAdmin):
    list_display = ["name", "channel", "country", "start", "end", "message_classes", "active"]
    list_filter = ["active", "channel"]


@admin.register(Holiday)
class HolidayAdmin(ModelAdmin):
    list_display = ["date", "name", "country"]
    list_filter = ["country"]


@admin.register(ContactMerge)
class ContactMergeAdmin(ModelAdmin):
    list_display = ["merged_at", "survivor", "merged", "merged_by", "moved"]
    list_select_related = ["survivor", "merged"]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False


@admin.register(PushDevice)
class PushDeviceAdmin(PersonalDataAdminMixin, ExactSearch, ModelAdmin):
    address_fields = ("token",)
    text_fields = ("subscription",)
    list_display = ["contact", "platform", "active", "created_at"]
    list_filter = ["platform", "active"]
    search_fields = ["=contact__external_id", "=token"]
    list_select_related = ["contact"]
