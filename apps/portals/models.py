from django.conf import settings
from django.db import models

from apps.core.models import TimeStampedModel

from .crypto import EncryptedTextField


class AuthMode(models.TextChoices):
    WEBHOOK = "webhook", "Incoming webhook"
    OAUTH = "oauth", "OAuth application"


class Portal(TimeStampedModel):
    """A Bitrix24 portal the plane talks to. Agents name it by `slug`; OAuth events are keyed
    by `member_id`, which survives a change of domain."""

    slug = models.SlugField(max_length=64, unique=True)
    name = models.CharField(max_length=200, blank=True)
    base_url = models.URLField(
        max_length=300, help_text="Scheme and host of the portal, e.g. https://example.bitrix24.com"
    )
    auth_mode = models.CharField(max_length=16, choices=AuthMode.choices, default=AuthMode.WEBHOOK)
    member_id = models.CharField(max_length=64, blank=True, db_index=True)
    rate_per_second = models.FloatField(default=2.0, help_text="Leaky-bucket drain: 2 standard, 5 enterprise")
    burst = models.PositiveIntegerField(default=50, help_text="Leaky-bucket size: 50 standard, 250 enterprise")
    is_active = models.BooleanField(default=True)
    approvers = models.ManyToManyField(
        settings.AUTH_USER_MODEL, blank=True, related_name="approvable_portals",
        help_text="Users who may approve plans on this portal (they also need the approve permission).",
    )

    class Meta:
        ordering = ["slug"]
        constraints = [
            models.UniqueConstraint(
                fields=["member_id"], condition=~models.Q(member_id=""), name="portal_member_id_unique"
            ),
        ]

    def __str__(self):
        return self.slug


class OAuthApp(TimeStampedModel):
    """A Bitrix24 application (Market or local): its keys are shared by every portal it is
    installed on."""

    name = models.CharField(max_length=200)
    client_id = models.CharField(max_length=200, unique=True)
    client_secret = EncryptedTextField(blank=True)
    scopes = models.CharField(max_length=500, blank=True, help_text="Comma-separated scopes")
    token_url = models.URLField(max_length=300, default="https://oauth.bitrix24.tech/oauth/token/")

    def __str__(self):
        return self.name


class CredentialStatus(models.TextChoices):
    OK = "ok", "OK"
    BROKEN = "broken", "Broken (re-authorisation needed)"
    REVOKED = "revoked", "Revoked (app uninstalled)"


class Credential(TimeStampedModel):
    """How the plane authenticates to one portal. Every secret is ciphertext at rest."""

    portal = models.OneToOneField(Portal, on_delete=models.CASCADE, related_name="credential")
    # incoming webhook
    webhook_user_id = models.CharField(max_length=32, blank=True)
    webhook_code = EncryptedTextField(blank=True)
    # OAuth
    oauth_app = models.ForeignKey(OAuthApp, null=True, blank=True, on_delete=models.PROTECT)
    client_id = models.CharField(max_length=200, blank=True)
    client_secret = EncryptedTextField(blank=True)
    oauth_server_url = models.URLField(max_length=300, blank=True)
    access_token = EncryptedTextField(blank=True)
    refresh_token = EncryptedTextField(blank=True)
    access_expires_at = models.DateTimeField(null=True, blank=True)
    client_endpoint = models.URLField(max_length=300, blank=True)
    scope = models.CharField(max_length=1000, blank=True)
    # events
    application_token = EncryptedTextField(blank=True)
    status = models.CharField(max_length=16, choices=CredentialStatus.choices, default=CredentialStatus.OK)
    status_detail = models.CharField(max_length=300, blank=True)

    SECRET_FIELDS = ("webhook_code", "client_secret", "access_token", "refresh_token", "application_token")

    def __str__(self):
        return f"credential for {self.portal_id}"

    def __repr__(self):
        return f"<Credential portal={self.portal_id} status={self.status}>"
