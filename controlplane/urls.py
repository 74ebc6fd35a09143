from allauth.account.decorators import secure_admin_login
from django.conf import settings
from django.contrib import admin
from django.urls import include, path, re_path

from apps.core import views as core_views
from apps.events import urls as events_urls
from apps.mcp.views import mcp_endpoint

admin.site.login = secure_admin_login(admin.site.login)
admin.site.site_header = "Bitrix24 agent control plane"
admin.site.site_title = "Control plane"
admin.site.site_url = "/approvals/"  # "View site" leads approvers to their inbox

urlpatterns = [
    path("healthz", core_views.healthz, name="healthz"),
    path("readyz", core_views.readyz, name="readyz"),
    path("api/v1/", include("apps.plans.urls")),
    path("api/v1/", include(events_urls.api_urlpatterns)),
    path("api/v1/", include("apps.exports.urls")),
    path("hooks/bitrix24/", include(events_urls.hook_urlpatterns)),
    path("mcp", mcp_endpoint, name="mcp"),
    path("bitrix24/", include("apps.portals.urls")),
    path("approvals/", include("apps.approvals.urls")),
    path("admin/", admin.site.urls),
    path("accounts/", include("allauth.urls")),
]

if settings.SANDBOX_ENABLED:
    urlpatterns.append(path("sandbox/", include("apps.sandbox.urls")))

# Last: any other path under the API roots is a JSON 404 (DEBUG on or off, any method, trailing
# slash or not). It also keeps CommonMiddleware's APPEND_SLASH from redirecting API calls.
urlpatterns.append(re_path(r"^(?:api|healthz|readyz)(?:/[\s\S]*)?\Z", core_views.api_not_found))

handler400 = "apps.core.views.bad_request"
handler404 = "apps.core.views.not_found"
handler500 = "apps.core.views.server_error"
