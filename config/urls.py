from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView
from health_check.checks import Database

import analytics.urls
import channels.urls
import consent.urls
import journeys.urls
import support.urls
import templates.urls
from config.health import BeatHeartbeat, Broker, HealthView
from config.home import home_view
from config.metrics import metrics_view
from config.two_factor import two_factor_view

APP_URLS = [consent.urls, templates.urls, channels.urls, journeys.urls, support.urls, analytics.urls]

api_v1 = [pattern for module in APP_URLS for pattern in module.api_urlpatterns]

urlpatterns = [
    path("", include([pattern for module in APP_URLS for pattern in module.urlpatterns])),
    path("admin/two-factor/", admin.site.admin_view(two_factor_view), name="two_factor"),
    # Each role lands on its own work (config/home.py); the dashboard keeps a URL of its own.
    path("admin/", admin.site.admin_view(home_view), name="home"),
    path("admin/dashboard/", admin.site.admin_view(admin.site.index), name="dashboard"),
    path("admin/", admin.site.urls),
    path("health/", HealthView.as_view(checks=[Database, Broker, BeatHeartbeat]), name="health"),
    path("metrics", metrics_view, name="metrics"),
    path("api/v1/", include(api_v1)),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    path("api/redoc/", SpectacularRedocView.as_view(url_name="schema"), name="api-redoc"),
]

# Unknown URLs and crashes under /api/ answer in the API's error shape.
handler404 = "config.api_errors.not_found"
handler500 = "config.api_errors.server_error"
