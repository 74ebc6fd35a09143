from django.conf import settings
from django.db import models

from apps.core.models import TimeStampedModel
from apps.portals.crypto import EncryptedTextField


class Agent(TimeStampedModel):
    """An AI agent that calls the API. Its bearer token is shown once at creation and stored
    only as a SHA-256 hash (tokens are 256-bit random, so a fast hash is enough)."""

    slug = models.SlugField(max_length=64, unique=True)
    name = models.CharField(max_length=200, blank=True)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="agents",
        help_text="The person responsible for this agent; they cannot approve its plans.",
    )
    token_hash = models.CharField(max_length=64, unique=True, editable=False)
    token_prefix = models.CharField(max_length=16, editable=False, help_text="First characters, to recognise it")
    callback_secret = EncryptedTextField(
        blank=True, editable=False,
        help_text="Signs the plan callbacks sent to this agent; shown once when made or rotated.")
    is_active = models.BooleanField(default=True)
    revoked_at = models.DateTimeField(null=True, blank=True, editable=False)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["slug"]

    def __str__(self):
        return self.slug
