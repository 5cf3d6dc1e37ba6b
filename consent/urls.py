from django.urls import path

from consent import api, views

api_urlpatterns = [
    path("contacts/<str:external_id>/", api.ContactView.as_view(), name="api-contact"),
    path("contacts/<str:external_id>/consent/", api.ContactConsentView.as_view(), name="api-contact-consent"),
    path("contacts/<str:external_id>/erase/", api.ContactEraseView.as_view(), name="api-contact-erase"),
]

urlpatterns = [
    path("consent/confirm/<str:token>/", views.confirm_consent, name="consent-confirm"),
]
