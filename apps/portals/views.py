"""OAuth install endpoints, mounted at /bitrix24/ (thin adapters over apps.portals.oauth).

- `POST /bitrix24/install/[?app=<client_id>]`: the app install callback (form-encoded `auth[...]`);
- `GET /bitrix24/oauth/callback/?code&state&domain&member_id&scope&server_domain`: the
  authorization-code redirect;
- `GET /bitrix24/oauth/start/?portal=<slug>|domain=<host>[&app=<client_id>]`: staff only, sends the
  browser to the portal's authorize page with a signed state.

Bad input answers a 400 JSON error (apps.core.api), never a 500. The install callback is called
server to server by Bitrix24 and reads no cookie, so CSRF does not apply (json_endpoint).
"""

from django.contrib.admin.views.decorators import staff_member_required
from django.http import HttpResponseRedirect, JsonResponse

from apps.core.api import json_endpoint
from apps.core.exceptions import ApplicationError, InvalidRequest

from . import oauth
from .models import Portal


def _installed(portal: Portal) -> dict:
    return {"installed": True, "portal": portal.slug, "member_id": portal.member_id}


@json_endpoint("POST")
def install(request):
    return _installed(oauth.portal_install_from_callback(form=request.POST, app_client_id=request.GET.get("app")))


@json_endpoint("GET")
def oauth_callback(request):
    return _installed(oauth.portal_install_from_code(params=request.GET))


@staff_member_required
def oauth_start(request):
    try:
        if request.method != "GET":
            raise InvalidRequest("Use GET.")
        app = oauth.pick_app(request.GET.get("app"))
        slug, domain = request.GET.get("portal"), request.GET.get("domain")
        if slug:
            portal = Portal.objects.filter(slug=slug).first()
            if portal is None:
                raise InvalidRequest("Unknown portal.", field="portal")
            base_url = portal.base_url
        elif domain and oauth.DOMAIN_RE.fullmatch(domain):
            base_url = f"https://{domain}"
        else:
            raise InvalidRequest("Pass ?portal=<slug> or ?domain=<portal host>.", field="portal")
    except ApplicationError as exc:
        return JsonResponse({"error": exc.as_dict()}, status=exc.status)
    return HttpResponseRedirect(oauth.oauth_authorize_url(portal_base_url=base_url, app=app))
