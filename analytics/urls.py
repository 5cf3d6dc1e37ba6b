# This app's routes: `api_urlpatterns` mount under /api/v1/, `urlpatterns` at the root.
api_urlpatterns: list = []
urlpatterns: list = []
