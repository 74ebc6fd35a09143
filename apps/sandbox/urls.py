"""Mounted at /sandbox/ (controlplane/urls.py, when SANDBOX_ENABLED). A portal's base URL is
/sandbox/<slug>; the client appends the real Bitrix24 paths to it."""

from django.urls import re_path

from . import views

app_name = "sandbox"

_SLUG = r"(?P<slug>[a-z0-9][a-z0-9_-]{0,63})"
_METHOD = r"(?P<method>[^/]+?)/?"
_HOOK = r"(?P<user_id>[0-9]{1,10})/(?P<code>[^/]{1,64})"

urlpatterns = [
    re_path(r"^oauth/token/?$", views.oauth_token, name="oauth-token"),
    re_path(rf"^{_SLUG}/rest/api/{_HOOK}/{_METHOD}$", views.rest_v3_webhook, name="rest-v3-webhook"),
    re_path(rf"^{_SLUG}/rest/api/{_METHOD}$", views.rest_v3_oauth, name="rest-v3-oauth"),
    re_path(rf"^{_SLUG}/rest/{_HOOK}/{_METHOD}$", views.rest_v2_webhook, name="rest-v2-webhook"),
    re_path(rf"^{_SLUG}/rest/{_METHOD}$", views.rest_v2_oauth, name="rest-v2-oauth"),
]
