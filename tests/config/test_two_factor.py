"""The optional TOTP second factor: off, staff sign in with the password;
turned on from the setup page, the login also wants a current code."""

from __future__ import annotations

import time

import pytest
import time_machine
from django_otp.oath import TOTP
from django_otp.plugins.otp_totp.models import TOTPDevice

LOGIN_URL = "/admin/login/?next=/admin/"
PASSWORD = "correct-horse-battery-42"


def code_now(device: TOTPDevice) -> str:
    totp = TOTP(device.bin_key, device.step, device.t0, device.digits, device.drift)
    totp.time = time.time()
    return f"{totp.token():06d}"


def login(client, user, **extra):
    return client.post(LOGIN_URL, {"username": user.username, "password": PASSWORD, **extra})


@pytest.fixture
def member(operator):
    operator.set_password(PASSWORD)
    operator.save()
    return operator


def turn_on(client, member) -> TOTPDevice:
    client.force_login(member)
    page = client.get("/admin/two-factor/")
    assert b"Two-factor sign-in is off" in page.content and b"<svg" in page.content
    device = TOTPDevice.objects.get(user=member, confirmed=False)
    response = client.post("/admin/two-factor/", {"code": code_now(device)})
    assert response.status_code == 302
    client.logout()
    return TOTPDevice.objects.get(user=member)


@pytest.mark.django_db
def test_without_a_device_the_password_alone_signs_in(client, member):
    assert b'name="otp_token"' in client.get(LOGIN_URL).content
    response = login(client, member)
    assert response.status_code == 302
    assert client.session["_auth_user_id"] == str(member.pk)


@pytest.mark.django_db
def test_the_setup_page_refuses_a_wrong_code_and_leaves_the_factor_off(client, member):
    client.force_login(member)
    client.get("/admin/two-factor/")
    response = client.post("/admin/two-factor/", {"code": "000000"})
    assert response.status_code == 200
    assert b"That code does not match" in response.content
    assert not TOTPDevice.objects.filter(user=member, confirmed=True).exists()


@pytest.mark.django_db
def test_once_on_the_login_wants_a_current_code(client, member):
    with time_machine.travel("2026-12-06 10:00:00Z", tick=False):
        device = turn_on(client, member)
        assert device.confirmed

    with time_machine.travel("2026-12-06 10:05:00Z", tick=False):
        without_code = login(client, member)
        assert without_code.status_code == 200
        assert b"Enter the 6-digit code from your authenticator app" in without_code.content
        wrong = login(client, member, otp_token="000000")
        assert b"That code is wrong or expired" in wrong.content
        assert "_auth_user_id" not in client.session

    with time_machine.travel("2026-12-06 10:10:00Z", tick=False):
        device.refresh_from_db()
        device.throttle_reset()
        response = login(client, member, otp_token=code_now(device))
        assert response.status_code == 302
        assert client.session["_auth_user_id"] == str(member.pk)
        assert client.session["otp_device_id"] == device.persistent_id


@pytest.mark.django_db
def test_a_used_code_cannot_sign_in_twice(client, member):
    with time_machine.travel("2026-12-06 10:00:00Z", tick=False):
        device = turn_on(client, member)
    with time_machine.travel("2026-12-06 10:05:00Z", tick=False):
        code = code_now(device)
        assert login(client, member, otp_token=code).status_code == 302
        client.logout()
        assert b"That code is wrong or expired" in login(client, member, otp_token=code).content


@pytest.mark.django_db
def test_turning_off_needs_a_code_and_an_operator_can_reset_a_lost_phone(client, member, django_user_model):
    with time_machine.travel("2026-12-06 10:00:00Z", tick=False):
        device = turn_on(client, member)
    client.force_login(member)
    with time_machine.travel("2026-12-06 10:05:00Z", tick=False):
        refused = client.post("/admin/two-factor/", {"code": "000000"})
        assert b"enter the code your app shows now to turn it off" in refused.content
        assert TOTPDevice.objects.filter(user=member, confirmed=True).exists()

    client.force_login(django_user_model.objects.create_superuser("root", password="pw-for-tests-only"))
    client.post("/admin/auth/user/", {"action": "two_factor_reset", "_selected_action": [member.pk]})
    assert not TOTPDevice.objects.filter(pk=device.pk).exists()
    assert login(client, member).status_code == 302
