# This app's routes: `api_urlpatterns` mount under /api/v1/, `urlpatterns` at the root.
from django.urls import path

from templates import api

api_urlpatterns = [
    path("templates/", api.ApprovedTemplateListView.as_view(), name="api-templates"),
]
urlpatterns: list = []
