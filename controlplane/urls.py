from allauth.account.decorators import secure_admin_login
from django.conf import settings
from django.contrib import admin
from django.urls import include, path

from apps.core import views as core_views
from apps.events import urls as events_urls

admin.site.login = secure_admin_login(admin.site.login)
admin.site.site_header = "Bitrix24 agent control plane"
admin.site.site_title = "Control plane"

urlpatterns = [
    path("healthz", core_views.healthz, name="healthz"),
    path("readyz", core_views.readyz, name="readyz"),
    path("api/v1/", include("apps.plans.urls")),
    path("api/v1/", include(events_urls.api_urlpatterns)),
    path("hooks/bitrix24/", include(events_urls.hook_urlpatterns)),
    path("bitrix24/", include("apps.portals.urls")),
    path("admin/", admin.site.urls),
    path("accounts/", include("allauth.urls")),
]

if settings.SANDBOX_ENABLED:
    urlpatterns.append(path("sandbox/", include("apps.sandbox.urls")))

handler404 = "apps.core.views.not_found"
handler500 = "apps.core.views.server_error"
