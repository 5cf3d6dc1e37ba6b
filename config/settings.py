"""The one settings module. Everything that differs between machines comes from
the environment (see README "Configuration"); defaults are safe for local use."""

from __future__ import annotations

from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured
from django.urls import reverse

from config.env import env_bool, env_int, env_list, env_str

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("VAR_DIR", str(BASE_DIR / "var")))

DEBUG = env_bool("DEBUG", True)
SECRET_KEY = env_str("SECRET_KEY")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off")
    SECRET_KEY = "dev-only-insecure-key-do-not-use-in-production-0123456789abcdef"

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])
SITE_URL = env_str("SITE_URL", "http://127.0.0.1:8000").rstrip("/")

INSTALLED_APPS = [
    # Unfold and its contrib apps must come before django.contrib.admin,
    # guardian and simple_history, or their admin pages render unstyled.
    "unfold",
    "unfold.contrib.filters",
    "unfold.contrib.forms",
    "unfold.contrib.inlines",
    "unfold.contrib.guardian",
    "unfold.contrib.simple_history",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework_api_key",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "drf_standardized_errors",
    "django_filters",
    "guardian",
    "simple_history",
    "django_celery_beat",
    "anymail",
    "axes",
    "csp",
    "django_otp",
    "django_otp.plugins.otp_totp",
    "consent",
    "templates",
    "channels",
    "journeys",
    "support",
    "analytics",
    "config.apps.ProjectConfig",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django_otp.middleware.OTPMiddleware",  # request.user.is_verified() after a TOTP sign-in
    "django.contrib.messages.middleware.MessageMiddleware",
    "config.dialogs.HtmxRedirectMiddleware",  # action dialogs navigate after success (config/dialogs.py)
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "simple_history.middleware.HistoryRequestMiddleware",
    "config.idempotency.IdempotencyMiddleware",
    "csp.middleware.CSPMiddleware",
    # Last, as axes requires: it turns a lockout into the locked-out page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        # Project-wide HTML lives in config/templates, never in the `templates`
        # app, which holds message templates (DESIGN.md).
        "DIRS": [BASE_DIR / "config" / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

_SQLITE_DEFAULT = f"sqlite:///{VAR_DIR / 'db.sqlite3'}"
DATABASES = {"default": dj_database_url.parse(env_str("DATABASE_URL", _SQLITE_DEFAULT), conn_max_age=60,
                                          conn_health_checks=True)}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Web, worker and Beat write to one file from three processes.
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"]["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTHENTICATION_BACKENDS = [
    # First, so a locked-out username+IP is refused before any password check.
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
    "guardian.backends.ObjectPermissionBackend",
]
ANONYMOUS_USER_NAME = None

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator", "OPTIONS": {"min_length": 12}},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en"
TIME_ZONE = env_str("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": env_str("STATICFILES_BACKEND", "django.contrib.staticfiles.storage.StaticFilesStorage")
    },
}

# Request bodies: the API refuses larger bodies with a 400 (config.api_auth).
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("API_MAX_BODY_BYTES", 2_621_440)

# --- Security (production mode is DEBUG=false and passes `check --deploy`) ---
if not DEBUG:
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
    SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 31_536_000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    if env_bool("BEHIND_TLS_PROXY", True):
        SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    if len(SECRET_KEY) < 50:
        raise ImproperlyConfigured("SECRET_KEY must be at least 50 characters in production")
# --- security (admin hardening) ---
# Sessions end 8 hours after login (absolute, not idle: a stolen cookie stops working the same day).
SESSION_COOKIE_AGE = env_int("SESSION_COOKIE_AGE", 8 * 3600)
SESSION_EXPIRE_AT_BROWSER_CLOSE = True
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"
# django-axes: lock a username+IP pair after this many failed admin logins; the database
# handler keeps the count in PostgreSQL, so it holds across web processes.
AXES_FAILURE_LIMIT = env_int("AXES_FAILURE_LIMIT", 5)
AXES_COOLOFF_TIME = env_int("AXES_COOLOFF_HOURS", 1) or None
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_HANDLER = "axes.handlers.database.AxesDatabaseHandler"
AXES_LOCKOUT_TEMPLATE = "admin/locked_out.html"
AXES_RESET_ON_SUCCESS = True
# Content-Security-Policy (django-csp). Unfold's Alpine.js needs 'unsafe-eval' and its
# templates carry inline scripts and style attributes, so script/style allow 'unsafe-inline';
# every other directive stays tight.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "script-src": ["'self'", "'unsafe-inline'", "'unsafe-eval'"],
        "style-src": ["'self'", "'unsafe-inline'"],
        "img-src": ["'self'", "data:"],
        "font-src": ["'self'", "data:"],
        "connect-src": ["'self'"],
        # Email previews are iframe srcdoc documents, which inherit this policy's origin.
        "frame-src": ["'self'"],
        "frame-ancestors": ["'none'"],
        "object-src": ["'none'"],
        "base-uri": ["'self'"],
        "form-action": ["'self'"],
    },
}
X_FRAME_OPTIONS = "DENY"  # previews embed email HTML with iframe srcdoc, which this header does not affect

# --- API ---
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["config.api_auth.ApiKeyAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["config.api_auth.HasApiKey"],
    "DEFAULT_PARSER_CLASSES": ["config.api_auth.BoundedJSONParser"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_SCHEMA_CLASS": "drf_standardized_errors.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "drf_standardized_errors.handler.exception_handler",
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    "DEFAULT_PAGINATION_CLASS": "rest_framework.pagination.CursorPagination",
    "PAGE_SIZE": 50,
    "DEFAULT_THROTTLE_CLASSES": ["config.api_auth.ApiKeyRateThrottle"],
}
# Per API key, unless the key sets its own (admin, API keys).
API_RATE_LIMIT_PER_MINUTE = env_int("API_RATE_LIMIT_PER_MINUTE", 600)
# A repeated Idempotency-Key replays the first response for this long (Stripe: 24 hours).
API_IDEMPOTENCY_TTL_HOURS = env_int("API_IDEMPOTENCY_TTL_HOURS", 24)
DRF_STANDARDIZED_ERRORS = {
    "ENABLE_IN_DEBUG_FOR_UNHANDLED_EXCEPTIONS": False,
    # The package's handler with our additions (config/api_errors.py), so its schema documents our errors.
    "EXCEPTION_HANDLER_CLASS": "config.api_errors.ApiExceptionHandler",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Messaging back office API",
    "DESCRIPTION": "Contacts, consent, messages and events. Authenticate with `Authorization: Api-Key <key>`.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SERVE_AUTHENTICATION": [],
    "COMPONENT_SPLIT_REQUEST": True,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "ENUM_NAME_OVERRIDES": {
        "ChannelEnum": "consent.models.Channel",
        "MessageClassEnum": "consent.models.MessageClass",
        **{
            name: f"drf_standardized_errors.openapi_serializers.{name}.choices"
            for name in (
                "ValidationErrorEnum", "ClientErrorEnum", "ServerErrorEnum", "ErrorCode401Enum", "ErrorCode403Enum",
                "ErrorCode404Enum", "ErrorCode405Enum", "ErrorCode406Enum", "ErrorCode415Enum", "ErrorCode429Enum",
                "ErrorCode500Enum", "ParseErrorCodeEnum",
            )
        },
    },
    "POSTPROCESSING_HOOKS": [
        "drf_standardized_errors.openapi_hooks.postprocess_schema_enums",
        "config.openapi.add_idempotency_key",
        "config.openapi.match_error_locations",
    ],
}

# --- Celery ---
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", "filesystem://")
if CELERY_BROKER_URL == "filesystem://":
    # The embedded broker for `make run`: kombu's filesystem transport, single host.
    _BROKER_DIR = VAR_DIR / "broker"
    for _sub in ("queue", "processed", "control"):
        (_BROKER_DIR / _sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_BROKER_DIR / "queue"),
        "data_folder_out": str(_BROKER_DIR / "queue"),
        "processed_folder": str(_BROKER_DIR / "processed"),
        "control_folder": str(_BROKER_DIR / "control"),
        "store_processed": False,
    }
else:
    # Above the longest task, or Redis redelivers a running task (DESIGN.md).
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": env_int("CELERY_VISIBILITY_TIMEOUT", 3600)}
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_SOFT_TIME_LIMIT = env_int("CELERY_TASK_SOFT_TIME_LIMIT", 120)
CELERY_TASK_TIME_LIMIT = env_int("CELERY_TASK_TIME_LIMIT", 180)
CELERY_TIMEZONE = TIME_ZONE
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
# Celery's Django fixup closes every database connection around each task
# (celery#9824), whatever CONN_MAX_AGE says: a new PostgreSQL backend, with
# cold catalog caches, per task. Reuse one for this many tasks;
# config/celery.py still drops a broken or aged one as Django's request cycle does.
CELERY_DB_REUSE_MAX = env_int("CELERY_DB_REUSE_MAX", 1000)
# A tick or delivery batch allocates thousands of objects at a time, and at
# Python's default (700) the cyclic collector ran every few hundred rows, each
# time walking every module Django imported: ~12 % of a tick's CPU. Worker
# processes freeze what they imported and collect less often. 0 keeps Python's default.
WORKER_GC_THRESHOLD = env_int("WORKER_GC_THRESHOLD", 20_000)

REDIS_URL = env_str("REDIS_URL", CELERY_BROKER_URL if CELERY_BROKER_URL.startswith("redis") else "")
# Shared by every process (API rate limits): Redis when there is one, else files under var/.
if REDIS_URL:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}}
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.filebased.FileBasedCache",
                          "LOCATION": str(VAR_DIR / "cache")}}

# --- History ---
SIMPLE_HISTORY_REVERT_DISABLED = True
SIMPLE_HISTORY_HISTORY_CHANGE_REASON_USE_TEXT_FIELD = True

# --- Workspace (governance defaults; README "Configuration") ---
WORKSPACE_TIMEZONE = env_str("WORKSPACE_TIMEZONE", "UTC")
WORKSPACE_DEFAULT_LOCALE = env_str("WORKSPACE_DEFAULT_LOCALE", "en")
# channel:purpose pairs whose grants wait for a confirmation (double opt-in).
CONSENT_DOUBLE_OPT_IN = env_list("CONSENT_DOUBLE_OPT_IN", ["email:marketing", "sms:marketing", "whatsapp:marketing"])
CONSENT_PENDING_TTL_HOURS = env_int("CONSENT_PENDING_TTL_HOURS", 72)
CONSENT_WORDING_VERSION = env_str("CONSENT_WORDING_VERSION", "2026-01")

# --- Admin theme ---
UNFOLD = {
    "SITE_TITLE": "Messaging back office",
    "SITE_HEADER": "Messaging back office",
    "SITE_SYMBOL": "forum",
    "SHOW_HISTORY": True,
    "SHOW_VIEW_ON_SITE": False,
    "DASHBOARD_CALLBACK": "analytics.dashboard.dashboard_callback",
    # Grouped by task, each link only for people who may open it (config/navigation.py).
    "SIDEBAR": {"show_search": True, "show_all_applications": True,
                "navigation": "config.navigation.sidebar_navigation"},
    # The login asks for a TOTP code of members who turned two-factor on (config/two_factor.py).
    "LOGIN": {"form": "config.two_factor.StaffLoginForm"},
    "ACCOUNT": {"navigation": [
        {"title": "Change password", "link": lambda request: reverse("admin:password_change")},
        {"title": "Two-factor sign-in", "link": lambda request: reverse("two_factor")},
    ]},
}
# The name authenticator apps show next to the code.
OTP_TOTP_ISSUER = env_str("OTP_TOTP_ISSUER", "Messaging back office")

# --- personal data in logs ---
# Every handler carries the filter: emails and phones are masked in each line (config/logging.py).
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"mask_personal_data": {"()": "config.logging.MaskPersonalData"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "filters": ["mask_personal_data"]}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
}

# --- templates app (message templates) ---
TEMPLATES_SMS_SEGMENT_WARNING = env_int("TEMPLATES_SMS_SEGMENT_WARNING", 3)  # warn editors past this many parts
# Four eyes holds for superusers too unless this is switched on (small teams, demos).
TEMPLATES_ALLOW_SELF_APPROVAL = env_bool("TEMPLATES_ALLOW_SELF_APPROVAL", False)
TEMPLATES_RENDER_MAX_CHARS = env_int("TEMPLATES_RENDER_MAX_CHARS", 100_000)  # per rendered field and per value
# Steps (loop iterations + calls, macros included) per rendered field.
TEMPLATES_RENDER_MAX_ITERATIONS = env_int("TEMPLATES_RENDER_MAX_ITERATIONS", 10_000)
# Wall-clock bound on one preview render (admin preview, test sends); sends rely on the step budget.
TEMPLATES_PREVIEW_MAX_SECONDS = env_int("TEMPLATES_PREVIEW_MAX_SECONDS", 3)
# Test sends of drafts go only to these addresses (emails, E.164 phones, WhatsApp ids, push tokens).
TEMPLATES_INTERNAL_SEED_ADDRESSES = env_list("TEMPLATES_INTERNAL_SEED_ADDRESSES", [])
# Twilio Content API for WhatsApp template approval status (refresh_whatsapp_templates).
TEMPLATES_TWILIO_ACCOUNT_SID = env_str("TEMPLATES_TWILIO_ACCOUNT_SID", env_str("TWILIO_ACCOUNT_SID"))
TEMPLATES_TWILIO_AUTH_TOKEN = env_str("TEMPLATES_TWILIO_AUTH_TOKEN", env_str("TWILIO_AUTH_TOKEN"))
TEMPLATES_TWILIO_CONTENT_API_URL = env_str("TEMPLATES_TWILIO_CONTENT_API_URL", "")  # tests point this at a fake

# --- channels app (providers, outbox, delivery) ---
# Message ids per delivery task (one task per message caps a 2-core box near 750/s).
CHANNELS_DELIVERY_BATCH_SIZE = env_int("CHANNELS_DELIVERY_BATCH_SIZE", 200)
# Transient provider errors retry with exponential backoff and jitter, up to this many attempts.
CHANNELS_MAX_ATTEMPTS = env_int("CHANNELS_MAX_ATTEMPTS", 5)
CHANNELS_RETRY_BASE_SECONDS = env_int("CHANNELS_RETRY_BASE_SECONDS", 10)
CHANNELS_RETRY_MAX_SECONDS = env_int("CHANNELS_RETRY_MAX_SECONDS", 900)
# The sweeper re-enqueues rows queued or sending for longer than this; keep it
# above CELERY_TASK_TIME_LIMIT so a running task is never doubled.
CHANNELS_STUCK_AFTER_SECONDS = env_int("CHANNELS_STUCK_AFTER_SECONDS", 600)
if CHANNELS_STUCK_AFTER_SECONDS <= CELERY_TASK_TIME_LIMIT:
    raise ImproperlyConfigured("CHANNELS_STUCK_AFTER_SECONDS must exceed CELERY_TASK_TIME_LIMIT")
CHANNELS_GUARD_DEFER_MINUTES = env_int("CHANNELS_GUARD_DEFER_MINUTES", 15)
# Public base URL providers call back (Twilio signs the exact URL it called).
CHANNELS_WEBHOOK_BASE_URL = env_str("CHANNELS_WEBHOOK_BASE_URL", SITE_URL).rstrip("/")
CHANNELS_HELP_TEXT = env_str(
    "CHANNELS_HELP_TEXT", "Messaging help: reply STOP to opt out, START to opt back in. Support: support@example.com"
)
CHANNELS_STOP_TEXT = env_str(
    "CHANNELS_STOP_TEXT", "You are unsubscribed and will receive no more messages here. Reply START to resubscribe."
)
CHANNELS_START_TEXT = env_str("CHANNELS_START_TEXT", "You are subscribed again. Reply STOP to opt out, HELP for help.")
# Name this app's enums in the API schema (their field names collide with other apps').
SPECTACULAR_SETTINGS["ENUM_NAME_OVERRIDES"].update({
    "MessageStatusEnum": "channels.models.MessageStatus",
    "OriginKindEnum": "channels.models.OriginKind",
    "DeliveryEventKindEnum": "channels.models.DeliveryEvent.Kind",
})
ANYMAIL = {
    # Every anymail tracking webhook requires this basic-auth "user:password".
    "WEBHOOK_SECRET": env_str("ANYMAIL_WEBHOOK_SECRET") or None,
}

# --- outbound webhooks ---
# Seconds one delivery request may take (connect + read) before it counts as a failure.
WEBHOOKS_TIMEOUT_SECONDS = env_int("WEBHOOKS_TIMEOUT_SECONDS", 10)
# Consecutive failed attempts (across all of an endpoint's deliveries, no success between)
# that disable the endpoint. 15 is about two deliveries running most of their day-long
# schedule, or a burst of events all failing: a receiver that is down, not one that blipped.
WEBHOOKS_DISABLE_AFTER_FAILURES = env_int("WEBHOOKS_DISABLE_AFTER_FAILURES", 15)
# After a rotation the previous secret keeps signing too for this long.
WEBHOOKS_ROTATION_GRACE_HOURS = env_int("WEBHOOKS_ROTATION_GRACE_HOURS", 24)
# How long each process trusts its list of enabled endpoints (the hot path reads no table).
WEBHOOKS_ENDPOINT_CACHE_SECONDS = env_int("WEBHOOKS_ENDPOINT_CACHE_SECONDS", 5)
# Deliveries per Celery task, and per due-claim tick.
WEBHOOKS_BATCH_SIZE = env_int("WEBHOOKS_BATCH_SIZE", 50)
WEBHOOKS_CLAIM_LIMIT = env_int("WEBHOOKS_CLAIM_LIMIT", 1000)
# A row handed to the broker this long ago and still pending is handed again (the broker lost it).
WEBHOOKS_REENQUEUE_AFTER_SECONDS = env_int("WEBHOOKS_REENQUEUE_AFTER_SECONDS", 120)
# Finished deliveries (and their attempts) are kept this long for the log and replays, then deleted (hourly).
WEBHOOKS_RETENTION_DAYS = env_int("WEBHOOKS_RETENTION_DAYS", 30)
# Plain http is refused outside DEBUG, except to these hosts (tests' local receivers).
WEBHOOKS_HTTP_ALLOWED_HOSTS = env_list("WEBHOOKS_HTTP_ALLOWED_HOSTS", [])
if WEBHOOKS_DISABLE_AFTER_FAILURES < 1 or WEBHOOKS_TIMEOUT_SECONDS < 1 or WEBHOOKS_RETENTION_DAYS < 1:
    raise ImproperlyConfigured(
        "WEBHOOKS_DISABLE_AFTER_FAILURES, WEBHOOKS_TIMEOUT_SECONDS and WEBHOOKS_RETENTION_DAYS must be at least 1")

# --- journeys app (events, engine, caps) ---
# Message classes whose journey versions need a Compliance reviewer (who did not edit them) to go live.
JOURNEYS_APPROVAL_CLASSES = env_list("JOURNEYS_APPROVAL_CLASSES", ["marketing", "operational"])
JOURNEYS_TICK_SECONDS = env_int("JOURNEYS_TICK_SECONDS", 5)
JOURNEYS_BATCH_SIZE = env_int("JOURNEYS_BATCH_SIZE", 1000)
# One claim takes a full events request (JOURNEYS_EVENTS_PER_REQUEST): at 500, the batch's fixed
# queries cost 8 of 45 µs of a processor's CPU per event (README "Performance").
JOURNEYS_EVENT_BATCH_SIZE = env_int("JOURNEYS_EVENT_BATCH_SIZE", 1000)
JOURNEYS_EVENTS_PER_REQUEST = env_int("JOURNEYS_EVENTS_PER_REQUEST", 1000)
# A tick stops after this many batches so a Beat tick stays short; the next tick goes on.
JOURNEYS_TICK_MAX_BATCHES = env_int("JOURNEYS_TICK_MAX_BATCHES", 20)
JOURNEYS_MAX_STEPS_PER_RUN = env_int("JOURNEYS_MAX_STEPS_PER_RUN", 50)
# A "wait until" later than this past its moment skips what it waited for.
JOURNEYS_DEFAULT_GRACE = env_str("JOURNEYS_DEFAULT_GRACE", "1h")
JOURNEYS_ARBITRATION_WINDOW_MINUTES = env_int("JOURNEYS_ARBITRATION_WINDOW_MINUTES", 60)
JOURNEYS_WEBHOOK_SECRET = env_str("JOURNEYS_WEBHOOK_SECRET", SECRET_KEY)
JOURNEYS_WEBHOOK_TIMEOUT = env_int("JOURNEYS_WEBHOOK_TIMEOUT", 10)
JOURNEYS_WEBHOOK_MAX_ATTEMPTS = env_int("JOURNEYS_WEBHOOK_MAX_ATTEMPTS", 5)
# A webhook call claimed ("sending") this long ago by a worker that vanished is tried again by the tick.
JOURNEYS_WEBHOOK_STALE_SECONDS = env_int("JOURNEYS_WEBHOOK_STALE_SECONDS", 300)
# A step that raises parks its enrollment: retried after this, doubling per failure, capped.
JOURNEYS_FAILURE_BACKOFF_SECONDS = env_int("JOURNEYS_FAILURE_BACKOFF_SECONDS", 60)
JOURNEYS_FAILURE_BACKOFF_MAX_SECONDS = env_int("JOURNEYS_FAILURE_BACKOFF_MAX_SECONDS", 6 * 3600)
# A deferred message of a paused journey is looked at again this often (it goes out soon after resume).
JOURNEYS_PAUSED_RECHECK_MINUTES = env_int("JOURNEYS_PAUSED_RECHECK_MINUTES", 5)
# Manual enrollment: a CSV upload is refused above this size or row count; the API takes this many per request.
JOURNEYS_ENROLL_CSV_MAX_BYTES = env_int("JOURNEYS_ENROLL_CSV_MAX_BYTES", 2 * 1024 * 1024)
JOURNEYS_ENROLL_CSV_MAX_ROWS = env_int("JOURNEYS_ENROLL_CSV_MAX_ROWS", 10_000)
# Contacts a CSV import enrolls per transaction: its progress moves, and a stopped run resumes, by this much.
JOURNEYS_IMPORT_CHUNK_SIZE = env_int("JOURNEYS_IMPORT_CHUNK_SIZE", 500)
JOURNEYS_ENROLL_PER_REQUEST = env_int("JOURNEYS_ENROLL_PER_REQUEST", 1000)

# --- support app ---
# Cases opened with no team (API, replies) go to this team's queue; empty: unassigned.
SUPPORT_DEFAULT_TEAM = env_str("SUPPORT_DEFAULT_TEAM", "")
# Template per channel for agent replies from a case (an operational message through the gate).
_SUPPORT_REPLY_DEFAULT = ["email:case-agent-reply-email", "sms:case-agent-reply-sms"]
_SUPPORT_REPLY_PAIRS = [
    item.partition(":") for item in env_list("SUPPORT_AGENT_REPLY_TEMPLATES", _SUPPORT_REPLY_DEFAULT)
]
if any(not channel or not key for channel, _, key in _SUPPORT_REPLY_PAIRS):
    raise ImproperlyConfigured("SUPPORT_AGENT_REPLY_TEMPLATES: comma-separated channel:template-key pairs")
SUPPORT_AGENT_REPLY_TEMPLATES = {channel: key for channel, _, key in _SUPPORT_REPLY_PAIRS}
# Marketing to a contact waits while they have a case in one of these states; empty turns the hold off.
SUPPORT_MARKETING_HOLD_STATUSES = env_list(
    "SUPPORT_MARKETING_HOLD_STATUSES", ["open", "pending_customer", "escalated"]
)
_SUPPORT_STATUSES = {"open", "pending_customer", "escalated", "resolved", "closed"}
if set(SUPPORT_MARKETING_HOLD_STATUSES) - _SUPPORT_STATUSES:
    raise ImproperlyConfigured(f"SUPPORT_MARKETING_HOLD_STATUSES: use some of {sorted(_SUPPORT_STATUSES)}")
SUPPORT_MARKETING_HOLD_RECHECK_MINUTES = env_int("SUPPORT_MARKETING_HOLD_RECHECK_MINUTES", 30)
# Escalation journeys outrank marketing in journeys' arbitration.
SUPPORT_ESCALATION_JOURNEY_PRIORITY = env_int("SUPPORT_ESCALATION_JOURNEY_PRIORITY", 90)
SUPPORT_NOTIFY_FROM_EMAIL = env_str("SUPPORT_NOTIFY_FROM_EMAIL", "support-desk@localhost")
SUPPORT_HISTORY_PAGE_SIZE = env_int("SUPPORT_HISTORY_PAGE_SIZE", 25)
# Name the cases API's enums, so they never collide with other apps' "status" choices.
SPECTACULAR_SETTINGS["ENUM_NAME_OVERRIDES"].update({
    "JourneyStatusEnum": "journeys.models.JourneyStatus",
    "JourneyVersionStatusEnum": "journeys.models.VersionStatus",
    "CaseStatusEnum": "support.models.CaseStatus",
    "CasePriorityEnum": "support.models.Priority",
    "CaseCategoryEnum": "support.models.Category",
})

# --- analytics app (rollups, dashboard, audit exports) ---
# The tick re-settles days up to this old once a day (late conversions and reports), this many per tick.
ANALYTICS_SETTLE_DAYS = env_int("ANALYTICS_SETTLE_DAYS", 30)
ANALYTICS_SETTLE_DAYS_PER_TICK = env_int("ANALYTICS_SETTLE_DAYS_PER_TICK", 5)
ANALYTICS_DASHBOARD_DAYS = env_int("ANALYTICS_DASHBOARD_DAYS", 14)
AUDIT_EXPORT_ROOT = Path(env_str("AUDIT_EXPORT_ROOT", str(VAR_DIR / "exports")))
# Beat makes last week's export on Monday from this local hour on.
ANALYTICS_EXPORT_HOUR = env_int("ANALYTICS_EXPORT_HOUR", 2)
ANALYTICS_EXPORT_SOFT_TIME_LIMIT = env_int("ANALYTICS_EXPORT_SOFT_TIME_LIMIT", 3000)
if CELERY_BROKER_TRANSPORT_OPTIONS.get("visibility_timeout", 10**9) <= ANALYTICS_EXPORT_SOFT_TIME_LIMIT + 60:
    raise ImproperlyConfigured("ANALYTICS_EXPORT_SOFT_TIME_LIMIT must stay below CELERY_VISIBILITY_TIMEOUT")
ANALYTICS_EXPORT_PROGRESS_EVERY = env_int("ANALYTICS_EXPORT_PROGRESS_EVERY", 5000)
# A running export with no progress for this long lost its worker: marked failed, to be retried.
ANALYTICS_EXPORT_STALE_SECONDS = env_int("ANALYTICS_EXPORT_STALE_SECONDS", 900)

# --- health and metrics ---
INSTALLED_APPS.append("health_check")  # its HTML status page (/health/ with Accept: text/html)
# Beat's DatabaseScheduler writes PeriodicTask.last_run_at at least every 180 s while it sends
# tasks (the journeys tick is due every few seconds): older than this, /health/ says Beat is down.
HEALTH_BEAT_MAX_AGE_SECONDS = env_int("HEALTH_BEAT_MAX_AGE_SECONDS", 300)
if HEALTH_BEAT_MAX_AGE_SECONDS <= 180:
    raise ImproperlyConfigured("HEALTH_BEAT_MAX_AGE_SECONDS must exceed Beat's 180 s sync interval")
HEALTH_BROKER_TIMEOUT_SECONDS = env_int("HEALTH_BROKER_TIMEOUT_SECONDS", 3)
# Load balancers probe over plain HTTP: /health/ is not redirected to HTTPS (it holds no data).
SECURE_REDIRECT_EXEMPT = [r"^health/$"]
# Empty: /metrics is open (keep it on an internal network); else scrapers send "Authorization: Bearer <token>".
METRICS_TOKEN = env_str("METRICS_TOKEN", "")
