"""Third-party admin screens re-registered in the Unfold theme, as Unfold's
docs advise for apps that have no contrib package (celery-beat), and the
integrations' API keys."""

from __future__ import annotations

from django import forms
from django.contrib import admin
from django.contrib.auth.admin import GroupAdmin as BaseGroupAdmin
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin
from django.contrib.auth.models import Group, User
from django_celery_beat import admin as beat_admin
from django_celery_beat.models import ClockedSchedule, CrontabSchedule, IntervalSchedule, PeriodicTask, SolarSchedule
from django_otp.plugins.otp_totp.models import TOTPDevice
from rest_framework_api_key.admin import APIKeyModelAdmin
from rest_framework_api_key.models import APIKey
from unfold.admin import ModelAdmin
from unfold.decorators import action, display
from unfold.forms import AdminPasswordChangeForm, UserChangeForm, UserCreationForm
from unfold.widgets import UnfoldAdminCheckboxSelectMultipleWidget, UnfoldAdminSelectWidget, UnfoldAdminTextInputWidget

from config.models import ApiKey
from config.scopes import SCOPE_CHOICES
from config.two_factor import devices_remove

# TOTP devices are managed by their owner (admin/two-factor/) and reset from the user list.
for model in (User, Group, APIKey, TOTPDevice,
              PeriodicTask, IntervalSchedule, CrontabSchedule, SolarSchedule, ClockedSchedule):
    admin.site.unregister(model)


@admin.register(User)
class UserAdmin(BaseUserAdmin, ModelAdmin):
    form = UserChangeForm
    add_form = UserCreationForm
    change_password_form = AdminPasswordChangeForm
    list_display = (*BaseUserAdmin.list_display, "two_factor")
    actions = ["two_factor_reset"]

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("totpdevice_set")

    @display(description="Two-factor", boolean=True)
    def two_factor(self, user):
        return any(device.confirmed for device in user.totpdevice_set.all())

    @action(description="Reset two-factor sign-in (lost phone)", permissions=["change"])
    def two_factor_reset(self, request, queryset):
        for user in queryset:
            devices_remove(user=user)
        self.message_user(request, f"Two-factor sign-in reset for {queryset.count()} user(s); they sign in with "
                                   "their password and can set it up again.")


@admin.register(Group)
class GroupAdmin(BaseGroupAdmin, ModelAdmin):
    pass


class ApiKeyForm(forms.ModelForm):
    scopes = forms.MultipleChoiceField(
        choices=SCOPE_CHOICES, required=False, widget=UnfoldAdminCheckboxSelectMultipleWidget,
        help_text="A key can call only the endpoints of its scopes (403 otherwise).",
    )

    class Meta:
        model = ApiKey
        fields = ["name", "scopes", "rate_limit_per_minute", "expiry_date", "revoked"]


@admin.register(ApiKey)
class ApiKeyAdmin(APIKeyModelAdmin, ModelAdmin):
    form = ApiKeyForm
    list_display = ("prefix", "name", "scope_list", "created", "last_used_at", "expiry_date", "_has_expired",
                    "revoked")
    list_filter = ("revoked", "created")

    @admin.display(description="Scopes")
    def scope_list(self, obj: ApiKey) -> str:
        return ", ".join(obj.scopes) or "none"

    def get_readonly_fields(self, request, obj=None):
        return (*super().get_readonly_fields(request, obj), "last_used_at")


class PeriodicTaskForm(beat_admin.PeriodicTaskForm):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["task"].widget = UnfoldAdminTextInputWidget()
        self.fields["regtask"].widget = UnfoldAdminSelectWidget(choices=self.fields["regtask"].widget.choices)


@admin.register(PeriodicTask)
class PeriodicTaskAdmin(beat_admin.PeriodicTaskAdmin, ModelAdmin):
    form = PeriodicTaskForm


@admin.register(IntervalSchedule)
class IntervalScheduleAdmin(ModelAdmin):
    pass


@admin.register(CrontabSchedule)
class CrontabScheduleAdmin(beat_admin.CrontabScheduleAdmin, ModelAdmin):
    pass


@admin.register(SolarSchedule)
class SolarScheduleAdmin(ModelAdmin):
    pass


@admin.register(ClockedSchedule)
class ClockedScheduleAdmin(beat_admin.ClockedScheduleAdmin, ModelAdmin):
    pass
