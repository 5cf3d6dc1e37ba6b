"""Optional TOTP second factor for staff (django-otp).

A staff member turns it on for themselves on the admin's "Two-factor sign-in"
page (scan the QR code, confirm one code); from then on the admin login asks
for a code after the password. Members without a confirmed device sign in with
the password alone, so turning it on never locks anyone out. An operator who
can change users resets a lost phone with the user list's action."""

from __future__ import annotations

from base64 import b32encode

from django import forms
from django.contrib import admin, messages
from django.contrib.auth.models import AbstractBaseUser
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django_otp import login as otp_login
from django_otp.plugins.otp_totp.models import TOTPDevice
from qrcode import make as qr_make
from qrcode.image.svg import SvgPathImage
from unfold.forms import AuthenticationForm
from unfold.widgets import UnfoldAdminTextInputWidget

CODE_WIDGET = UnfoldAdminTextInputWidget(attrs={"autocomplete": "one-time-code", "inputmode": "numeric",
                                               "placeholder": "123456"})


def confirmed_device(user: AbstractBaseUser) -> TOTPDevice | None:
    return TOTPDevice.objects.filter(user=user, confirmed=True).first()


def pending_device(user: AbstractBaseUser) -> TOTPDevice:
    """The unconfirmed device whose secret the setup page shows; the same one
    until it is confirmed, so a reload does not invalidate a scanned code."""
    device = TOTPDevice.objects.filter(user=user, confirmed=False).first()
    return device or TOTPDevice.objects.create(user=user, name="Authenticator app", confirmed=False)


def device_confirm(*, device: TOTPDevice, code: str) -> bool:
    if not device.verify_token(code.strip()):
        return False
    with transaction.atomic():
        TOTPDevice.objects.filter(user=device.user_id).exclude(pk=device.pk).delete()
        device.confirmed = True
        device.save(update_fields=["confirmed"])
    return True


def devices_remove(*, user: AbstractBaseUser) -> int:
    deleted, _ = TOTPDevice.objects.filter(user=user).delete()
    return deleted


def qr_svg(device: TOTPDevice) -> str:
    return qr_make(device.config_url, image_factory=SvgPathImage, box_size=8).to_string(encoding="unicode")


class StaffLoginForm(AuthenticationForm):
    """The admin login: password first; then, for members who turned the
    second factor on, a current code from their authenticator app."""

    otp_token = forms.CharField(label="Authentication code", required=False, max_length=12, widget=CODE_WIDGET,
                                help_text="Only if you turned on two-factor sign-in: the 6-digit code from your app.")

    def clean(self):
        cleaned = super().clean()
        user = self.get_user()
        device = confirmed_device(user) if user else None
        if device is None:
            return cleaned
        code = (cleaned.get("otp_token") or "").strip()
        if not code:
            raise forms.ValidationError("Enter the 6-digit code from your authenticator app; two-factor sign-in "
                                        "is on for this account.", code="otp_required")
        if not device.verify_token(code):
            raise forms.ValidationError("That code is wrong or expired. Enter the code your app shows now; "
                                        "after several wrong codes, wait a minute before the next try.",
                                        code="otp_invalid")
        # django-otp's login signal reads this and marks the session verified.
        user.otp_device = device
        return cleaned


class CodeForm(forms.Form):
    code = forms.CharField(label="Code from your app", max_length=12, widget=CODE_WIDGET)


def two_factor_view(request: HttpRequest) -> HttpResponse:
    device = confirmed_device(request.user)
    form = CodeForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        code = form.cleaned_data["code"]
        if device is None:
            if device_confirm(device=pending_device(request.user), code=code):
                otp_login(request, confirmed_device(request.user))
                messages.success(request, "Two-factor sign-in is on. Next time you sign in, enter a code after "
                                          "your password.")
                return redirect("two_factor")
            form.add_error("code", "That code does not match. Check that the phone's clock is right, then enter "
                                   "the code the app shows now.")
        elif device.verify_token(code):
            devices_remove(user=request.user)
            messages.success(request, "Two-factor sign-in is off. You sign in with your password alone.")
            return redirect("two_factor")
        else:
            form.add_error("code", "That code does not match; enter the code your app shows now to turn it off.")
    context = {**admin.site.each_context(request), "title": "Two-factor sign-in", "form": form, "device": device}
    if device is None:
        pending = pending_device(request.user)
        context.update(qr_svg=qr_svg(pending), secret=_base32(pending))
    return TemplateResponse(request, "admin/two_factor.html", context)


def _base32(device: TOTPDevice) -> str:
    secret = b32encode(device.bin_key).decode()
    return " ".join(secret[i:i + 4] for i in range(0, len(secret), 4))
