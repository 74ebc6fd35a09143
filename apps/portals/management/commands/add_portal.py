import datetime

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from apps.core.exceptions import ApplicationError
from apps.portals.models import AuthMode
from apps.portals.services import portal_upsert


class Command(BaseCommand):
    help = "Create or update a portal and its credential (webhook or OAuth). Secrets are stored encrypted."

    def add_arguments(self, parser):
        parser.add_argument("slug")
        parser.add_argument("--url", required=True, help="https://example.bitrix24.com")
        parser.add_argument("--name", default="")
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
        self.stdout.write(f"{'Created' if created else 'Updated'} portal {portal.slug} ({portal.auth_mode}, "
                          f"{portal.rate_per_second}/s burst {portal.burst}).")
