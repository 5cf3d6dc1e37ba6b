"""Public pages: the double opt-in confirmation link."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_http_methods

from consent import services


@require_http_methods(["GET", "POST"])
def confirm_consent(request: HttpRequest, token: str) -> HttpResponse:
    """GET shows a button; POST confirms. Link scanners in mail filters follow
    GETs, so a GET alone must never grant consent."""
    if request.method == "GET":
        return render(request, "consent/confirm.html", {"token": token})
    evidence = {"ip": request.META.get("REMOTE_ADDR", ""), "user_agent": request.META.get("HTTP_USER_AGENT", "")}
    try:
        services.consent_confirm_token(token=token, evidence=evidence)
    except services.ConsentError as error:
        return render(request, "consent/confirm.html", {"error": str(error)}, status=400)
    return render(request, "consent/confirm.html", {"confirmed": True})
