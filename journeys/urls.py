# This app's routes: `api_urlpatterns` mount under /api/v1/, `urlpatterns` at the root.
from django.urls import path

from journeys import api

api_urlpatterns: list = [
    path("events/", api.EventsView.as_view(), name="api-events"),
    path("journeys/import/", api.JourneyImportView.as_view(), name="api-journey-import"),
    path("journeys/<slug:key>/export/", api.JourneyExportView.as_view(), name="api-journey-export"),
    path("journeys/<slug:key>/enrollments/", api.JourneyEnrollmentsView.as_view(), name="api-journey-enrollments"),
    path("journeys/<slug:key>/pause/", api.JourneyPauseView.as_view(), name="api-journey-pause"),
    path("journeys/<slug:key>/resume/", api.JourneyResumeView.as_view(), name="api-journey-resume"),
    path("journeys/<slug:key>/stats/", api.JourneyStatsView.as_view(), name="api-journey-stats"),
    path("journeys/", api.JourneyListView.as_view(), name="api-journeys"),
    path("journeys/<slug:key>/", api.JourneyDetailView.as_view(), name="api-journey"),
    path("journeys/<slug:key>/versions/", api.JourneyVersionListView.as_view(), name="api-journey-versions"),
    path("journeys/<slug:key>/versions/<int:number>/", api.JourneyVersionDetailView.as_view(),
         name="api-journey-version"),
    path("journeys/<slug:key>/exits/", api.JourneyExitsView.as_view(), name="api-journey-exits"),
    path("enrollments/<int:pk>/", api.EnrollmentDetailView.as_view(), name="api-enrollment"),
]
urlpatterns: list = []
