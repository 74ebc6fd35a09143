import datetime
import re
from urllib.parse import urlsplit, urlunsplit

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from apps.core.exceptions import ApplicationError
from apps.portals.models import AuthMode
from apps.portals.services import portal_upsert

# .../rest/<user id>/<code>/ with, optionally, a method name after it (as Bitrix24 shows examples)
WEBHOOK_PATH = re.compile(r"(?P<prefix>.*?)/rest/(?P<user>[0-9]+)/(?P<code>[A-Za-z0-9_]+)(?:/[A-Za-z0-9_.]*)?/?")


def split_webhook_url(url: str) -> tuple[str, str, str] | None:
    """`https://x.bitrix24.com/rest/1/abc/` -> ("https://x.bitrix24.com", "1", "abc"); None when
    the URL has no /rest/ part. A /rest/ URL of another shape is refused with the expected form."""
    parts = urlsplit(url.strip())
    if "/rest/" not in f"{parts.path}/":
        return None
    match = WEBHOOK_PATH.fullmatch(parts.path)
    if not match or parts.query or parts.fragment:
        raise CommandError("A webhook URL looks like https://example.bitrix24.com/rest/<user id>/<code>/; "
                           "or give --url https://example.bitrix24.com --webhook-user <id> --webhook-code <code>.")
    base = urlunsplit((parts.scheme, parts.netloc, match["prefix"], "", ""))
    return base, match["user"], match["code"]


class Command(BaseCommand):
    help = "Create or update a portal and its credential (webhook or OAuth). Secrets are stored encrypted."

    def add_arguments(self, parser):
        parser.add_argument("slug")
        parser.add_argument("--url", required=True,
                            help="https://example.bitrix24.com, or the whole incoming webhook URL "
                                 "https://example.bitrix24.com/rest/<user id>/<code>/ (split into the three parts)")
        parser.add_argument("--name", default=None)
        hook = parser.add_argument_group("incoming webhook")
        hook.add_argument("--webhook-user", help="The user id in the webhook URL")
        hook.add_argument("--webhook-code", help="The secret code in the webhook URL")
        oauth = parser.add_argument_group("OAuth application")
        oauth.add_argument("--client-id")
        oauth.add_argument("--client-secret")
        oauth.add_argument("--access-token")
        oauth.add_argument("--refresh-token")
        oauth.add_argument("--oauth-server", default="", help="Token endpoint (default: the Bitrix24 OAuth server)")
        parser.add_argument("--rps", type=float, default=None, help="Leaky-bucket drain (2 standard, 5 enterprise)")
        parser.add_argument("--burst", type=int, default=None, help="Leaky-bucket size (50 standard, 250 enterprise)")
        parser.add_argument("--application-token", default=None, help="Checks inbound events")
        parser.add_argument("--member-id", default=None)
        parser.add_argument("--offline-events", action="store_true",
                            help="Drain the portal's offline event queue (needs an OAuth app of an admin user)")

    def handle(self, *args, **opts):
        split = split_webhook_url(opts["url"])
        if split:
            base, user, code = split
            for option, given, found in (("--webhook-user", opts["webhook_user"], user),
                                         ("--webhook-code", opts["webhook_code"], code)):
                if given and given != found:
                    raise CommandError(f"{option} differs from the one in the webhook URL; give one of them.")
            opts.update(url=base, webhook_user=user, webhook_code=code)
        webhook = bool(opts["webhook_user"] or opts["webhook_code"])
        oauth_keys = ("client_id", "client_secret", "access_token", "refresh_token")
        oauth = any(opts[k] for k in oauth_keys)
        if webhook == oauth:
            raise CommandError("Give either --webhook-user and --webhook-code, or the OAuth options.")
        if webhook and opts["offline_events"]:
            raise CommandError("--offline-events needs an OAuth application (event.offline.* need app auth).")
        secrets, fields = {}, {}
        if webhook:
            if not (opts["webhook_user"] and opts["webhook_code"]):
                raise CommandError("A webhook needs both --webhook-user and --webhook-code.")
            if not opts["webhook_user"].isdigit():
                raise CommandError("--webhook-user is the numeric user id from the webhook URL.")
            mode = AuthMode.WEBHOOK
            fields["webhook_user_id"] = opts["webhook_user"]
            secrets["webhook_code"] = opts["webhook_code"]
        else:
            missing = [f"--{k.replace('_', '-')}" for k in oauth_keys if not opts[k]]
            if missing:
                raise CommandError(f"OAuth needs {', '.join(missing)} too.")
            mode = AuthMode.OAUTH
            fields.update(client_id=opts["client_id"], oauth_server_url=opts["oauth_server"],
                          # unknown expiry: treat as expired, so the first 401 refreshes without surprise
                          access_expires_at=timezone.now() - datetime.timedelta(seconds=1))
            secrets.update(client_secret=opts["client_secret"], access_token=opts["access_token"],
                           refresh_token=opts["refresh_token"])
        if opts["application_token"]:
            secrets["application_token"] = opts["application_token"]
        try:
            portal, created = portal_upsert(
                slug=opts["slug"], base_url=opts["url"], auth_mode=mode, name=opts["name"],
                rate_per_second=opts["rps"], burst=opts["burst"], member_id=opts["member_id"],
                secrets=secrets, fields=fields,
            )
            if opts["offline_events"]:
                from apps.events.services import event_settings_update

                event_settings_update(portal=portal, offline_events=True)
        except ApplicationError as exc:
            raise CommandError(exc.message) from None
        if split:
            self.stdout.write(f"Split the webhook URL into --url {split[0]} --webhook-user {split[1]} and the "
                              "webhook code (stored encrypted, not shown).")
        self.stdout.write(f"{'Created' if created else 'Updated'} portal {portal.slug} ({portal.auth_mode}, "
                          f"{portal.rate_per_second}/s burst {portal.burst}).")
