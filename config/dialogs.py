"""Unfold's action dialogs post their form with htmx and swap the answer
into the dialog. An action that succeeds answers with a redirect, which htmx
would follow inside the request and swap away, leaving the dialog open and
its flash message unseen. For htmx form posts this turns a redirect into
htmx's own HX-Redirect, so the browser navigates and shows the message."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse


class HtmxRedirectMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if (request.method == "POST" and request.headers.get("HX-Request") == "true"
                and response.status_code in (301, 302, 303) and response.has_header("Location")):
            redirect = HttpResponse(status=200)
            redirect["HX-Redirect"] = response["Location"]
            return redirect
        return response
