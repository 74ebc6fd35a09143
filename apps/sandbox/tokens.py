"""OAuth token pairs and application tokens of the sandbox portal (used by the token endpoint,
install callbacks and event deliveries)."""

import hashlib
import hmac
import secrets
import string
from urllib.parse import urlsplit

from django.conf import settings

from . import clock
from .models import SandboxOAuthClient, SandboxOAuthToken, SandboxPortal

ALL_SCOPES = ("basic", "biconnector", "bizproc", "calendar", "crm", "department", "disk", "im", "imbot", "log",
              "sonet_group", "task", "tasks", "user", "user_brief", "user_basic")
REFRESH_LIFETIME = 180 * 86400
_ALNUM = string.ascii_lowercase + string.digits


def random_string(length: int, alphabet: str = _ALNUM) -> str:
    return "".join(secrets.choice(alphabet) for _ in range(length))


def application_token(*, portal: SandboxPortal, subject: str) -> str:
    """The `application_token` of an app (`subject` = client_id) or an outgoing webhook
    (`subject` = "hook:<pk>") on a portal: stable, 32 hex characters, not guessable."""
    mac = hmac.new(str(settings.SECRET_KEY).encode(), f"{portal.member_id}:{subject}".encode(), hashlib.sha256)
    return mac.hexdigest()[:32]


def endpoints(*, portal: SandboxPortal, base_url: str) -> dict:
    return {"domain": urlsplit(base_url).netloc, "client_endpoint": f"{base_url}/sandbox/{portal.slug}/rest/",
            "server_endpoint": f"{base_url}/sandbox/oauth/rest/"}


def issue_token(portal: SandboxPortal, client: SandboxOAuthClient, user_id: int, lifetime: int, base_url: str,
                *, refreshed: bool = False) -> dict:
    """The token answer. Only a refresh answer carries `expires` and `user_id` (FACTS §7,
    samples/response_oauth_token_refresh.json); the `authorization_code` answer has neither."""
    now = clock.now()
    access, refresh = random_string(32), random_string(32)
    SandboxOAuthToken.objects.create(
        portal=portal, client=client, user_id=user_id, access_token=access, refresh_token=refresh,
        access_expires_at=now + lifetime, refresh_expires_at=now + REFRESH_LIFETIME, created_at=now,
    )
    scopes = client.scopes if isinstance(client.scopes, list) else [s for s in ALL_SCOPES if s != "basic"]
    answer = {
        "access_token": access,
        "expires": int(now + lifetime),
        "expires_in": lifetime,
        "scope": ",".join(scopes),
        "domain": urlsplit(base_url).netloc,  # the OAuth server, not the portal (FACTS §7)
        "server_endpoint": f"{base_url}/sandbox/oauth/rest/",
        "status": client.status,
        "client_endpoint": f"{base_url}/sandbox/{portal.slug}/rest/",
        "member_id": portal.member_id,
        "user_id": user_id,
        "refresh_token": refresh,
    }
    if not refreshed:
        del answer["expires"], answer["user_id"]
    return answer


