# This app's routes: `api_urlpatterns` mount under /api/v1/, `urlpatterns` at the root.
from django.urls import path, re_path

from support import api

api_urlpatterns = [
    path("cases/", api.CaseListView.as_view(), name="api-cases"),
    re_path(rf"^cases/(?P<number>{api.NUMBER_PATTERN})/$", api.CaseDetailView.as_view(), name="api-case"),
]
urlpatterns: list = []
