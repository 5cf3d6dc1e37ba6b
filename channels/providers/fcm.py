"""Push through Firebase Cloud Messaging with firebase-admin.

Account: `options.project_id`; the service-account JSON path comes from the
environment (<PREFIX>_CREDENTIALS_FILE, prefix FCM by default). For an
emulator or a test fake, `options.endpoint` replaces the FCM URL and
`options.anonymous` sends no credentials."""

from __future__ import annotations

import threading
import warnings

import firebase_admin
from firebase_admin import credentials, exceptions, messaging
from google.auth.credentials import AnonymousCredentials

from channels.models import OutboundMessage, ProviderAccount
from channels.providers.base import Accepted, Feedback, PermanentError, TransientError, account_secret

_apps: dict[tuple, firebase_admin.App] = {}
_lock = threading.Lock()

# What FCM's answers mean for us. UNREGISTERED: the app was uninstalled.
_PERMANENT = (
    messaging.UnregisteredError,
    messaging.SenderIdMismatchError,
    messaging.ThirdPartyAuthError,
    exceptions.InvalidArgumentError,
    exceptions.NotFoundError,
    exceptions.PermissionDeniedError,
    exceptions.UnauthenticatedError,
)


class _Anonymous(credentials.Base):
    """No credentials: for the FCM emulator or a local fake only."""

    def get_credential(self):
        return AnonymousCredentials()


class FcmProvider:
    name = "fcm"
    # One firebase App (and its requests session, whose credential refresh
    # takes no lock) per account: not shown safe to share across threads.
    concurrent_calls = False

    def send(self, message: OutboundMessage, account: ProviderAccount) -> Accepted:
        app = _app_for(account)
        content = message.content
        payload = {
            "notification": messaging.Notification(title=content.get("title", ""), body=content.get("body", "")),
            "data": {str(k): str(v) for k, v in (content.get("data") or {}).items()},
        }
        if content.get("deep_link"):
            payload["data"]["deep_link"] = content["deep_link"]
        payload["data"]["message_id"] = str(message.pk)
        with warnings.catch_warnings():
            # firebase-admin 7 deprecates `token` in favour of installation
            # ids; FCM's v1 API still takes registration tokens, which is
            # what devices register with us.
            warnings.simplefilter("ignore", DeprecationWarning)
            fcm_message = messaging.Message(token=message.address, **payload)
        try:
            name = messaging.send(fcm_message, app=app)
        except messaging.UnregisteredError as error:
            raise PermanentError(str(error), code="UNREGISTERED", feedback=Feedback.UNREGISTERED_DEVICE) from error
        except _PERMANENT as error:
            raise PermanentError(str(error), code=str(error.code)) from error
        except exceptions.FirebaseError as error:  # quota, unavailable, internal, deadline
            raise TransientError(str(error), code=str(error.code)) from error
        return Accepted(provider_message_id=name)


def _app_for(account: ProviderAccount) -> firebase_admin.App:
    options = account.options or {}
    key = (account.pk, options.get("project_id"), options.get("endpoint"), bool(options.get("anonymous")))
    with _lock:
        if key not in _apps:
            if options.get("anonymous"):
                credential = _Anonymous()
            else:
                credential = credentials.Certificate(account_secret(account, "CREDENTIALS_FILE", default_prefix="FCM"))
            app = firebase_admin.initialize_app(
                credential,
                {"projectId": options.get("project_id", ""), "httpTimeout": options.get("timeout", 10)},
                name=f"channels-{account.pk}-{len(_apps)}",
            )
            if options.get("endpoint"):
                # firebase-admin has no public setting for the endpoint.
                service = messaging._get_messaging_service(app)
                base = options["endpoint"].rstrip("/")
                service._fcm_url = f"{base}/v1/projects/{options['project_id']}/messages:send"
            _apps[key] = app
        return _apps[key]
