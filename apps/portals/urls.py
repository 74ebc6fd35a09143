from django.urls import path

from . import views

app_name = "portals"

urlpatterns = [
    path("install/", views.install, name="install"),
    path("oauth/callback/", views.oauth_callback, name="oauth-callback"),
    path("oauth/start/", views.oauth_start, name="oauth-start"),
]
