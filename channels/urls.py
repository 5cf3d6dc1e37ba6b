# This app's routes: `api_urlpatterns` mount under /api/v1/, `urlpatterns` at the root.
from anymail import urls as anymail_urls
from django.urls import path

from channels import api, webhooks

api_urlpatterns = [
    path("messages/", api.MessageSendView.as_view(), name="api-messages"),
    path("messages/<int:pk>/", api.MessageDetailView.as_view(), name="api-message"),
    path("contacts/<str:external_id>/messages/", api.ContactMessagesView.as_view(), name="api-contact-messages"),
]

# anymail's own tracking views (each ESP's signature and basic auth), only
# the tracking ones: inbound email is not part of this product.
_anymail_tracking = [
    path(f"webhooks/anymail/{pattern.pattern!s}", webhooks.anymail_secret_required(pattern.callback), name=pattern.name)
    for pattern in anymail_urls.urlpatterns
    if pattern.name and pattern.name.endswith("tracking_webhook")
]

urlpatterns = [
    path("webhooks/twilio/status/", webhooks.twilio_status, name="twilio-status"),
    path("webhooks/twilio/inbound/", webhooks.twilio_inbound, name="twilio-inbound"),
    *_anymail_tracking,
]
