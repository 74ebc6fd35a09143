"""State of the simulated Bitrix24 portals. Everything lives in the database so several web
processes (and the test client) see one portal.

Times that the sandbox compares (token expiry, bucket drain, operating buckets) are stored as
Unix float seconds from `apps.sandbox.clock.now()`, so tests can move the clock.
"""

from django.db import models

FAULT_BEFORE = "before"
FAULT_AFTER = "after"
FAULT_WHEN_CHOICES = [(FAULT_BEFORE, "before the method runs"), (FAULT_AFTER, "after the method ran")]


class SandboxPortal(models.Model):
    slug = models.SlugField(max_length=64, unique=True)
    member_id = models.CharField(max_length=32, unique=True)

    # Leaky bucket (FACTS §5): drain `rate` req/s, refuse above `burst`.
    rate = models.FloatField(default=2.0)
    burst = models.IntegerField(default=50)
    bucket_level = models.FloatField(default=0.0)
    bucket_updated_at = models.FloatField(default=0.0)

    # Operating-time limit (FACTS §5): simulated seconds per call, summed per method per
    # webhook/app over ten one-minute buckets; refused once the sum is over the limit.
    operating_limit = models.FloatField(default=480.0)
    default_cost = models.FloatField(default=0.1)
    method_costs = models.JSONField(default=dict, blank=True)

    # OAuth access-token lifetime in seconds for tokens issued for this portal.
    token_lifetime = models.IntegerField(default=3600)

    # Faults for tests (see services.sandbox_set_faults).
    fault_latency = models.FloatField(default=0.0)
    fault_5xx_remaining = models.IntegerField(default=0)
    fault_timeout_seconds = models.FloatField(default=0.0)
    fault_timeout_remaining = models.IntegerField(default=0)
    fault_when = models.CharField(max_length=8, choices=FAULT_WHEN_CHOICES, default=FAULT_BEFORE)
    fault_methods = models.JSONField(null=True, blank=True)  # None: every method
    fault_token_latency = models.FloatField(default=0.0)

    # Counters tests and the benchmark read (services.sandbox_counters).
    requests_total = models.IntegerField(default=0)
    query_limit_refusals = models.IntegerField(default=0)
    operation_limit_refusals = models.IntegerField(default=0)
    faults_injected = models.IntegerField(default=0)
    token_endpoint_calls = models.IntegerField(default=0)

    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.slug


class SandboxWebhook(models.Model):
    portal = models.ForeignKey(SandboxPortal, on_delete=models.CASCADE, related_name="webhooks")
    user_id = models.IntegerField(default=1)
    code = models.CharField(max_length=64)
    scopes = models.JSONField(null=True, blank=True)  # None: every scope
    expires_at = models.FloatField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["portal", "user_id", "code"], name="sandbox_webhook_unique")]

    def __str__(self) -> str:
        return f"{self.portal.slug}/{self.user_id}/***"


class SandboxOAuthClient(models.Model):
    client_id = models.CharField(max_length=128, unique=True)
    client_secret = models.CharField(max_length=128)
    scopes = models.JSONField(null=True, blank=True)  # None: every scope
    status = models.CharField(max_length=1, default="L")
    token_calls = models.IntegerField(default=0)

    def __str__(self) -> str:
        return self.client_id


class SandboxOAuthCode(models.Model):
    portal = models.ForeignKey(SandboxPortal, on_delete=models.CASCADE, related_name="oauth_codes")
    client = models.ForeignKey(SandboxOAuthClient, on_delete=models.CASCADE, related_name="codes")
    code = models.CharField(max_length=64, unique=True)
    user_id = models.IntegerField(default=1)
    expires_at = models.FloatField()
    used = models.BooleanField(default=False)

    def __str__(self) -> str:
        return f"code for {self.portal_id}"


class SandboxOAuthToken(models.Model):
    portal = models.ForeignKey(SandboxPortal, on_delete=models.CASCADE, related_name="oauth_tokens")
    client = models.ForeignKey(SandboxOAuthClient, on_delete=models.CASCADE, related_name="tokens")
    user_id = models.IntegerField(default=1)
    access_token = models.CharField(max_length=64, unique=True)
    refresh_token = models.CharField(max_length=64, unique=True)
    access_expires_at = models.FloatField()
    refresh_expires_at = models.FloatField()
    refresh_used = models.BooleanField(default=False)
    created_at = models.FloatField()

    def __str__(self) -> str:
        return f"token {self.pk} of portal {self.portal_id}"


class SandboxSequence(models.Model):
    """Auto-increment per portal and entity; IDs of deleted records are never reused."""

    portal = models.ForeignKey(SandboxPortal, on_delete=models.CASCADE, related_name="sequences")
    entity = models.CharField(max_length=32)
    last_id = models.BigIntegerField(default=0)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["portal", "entity"], name="sandbox_sequence_unique")]

    def __str__(self) -> str:
        return f"{self.portal_id}:{self.entity}={self.last_id}"


class SandboxRecord(models.Model):
    portal = models.ForeignKey(SandboxPortal, on_delete=models.CASCADE, related_name="records")
    entity = models.CharField(max_length=32)  # lead, deal, contact, task
    record_id = models.BigIntegerField()
    data = models.JSONField(default=dict)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["portal", "entity", "record_id"], name="sandbox_record_unique"),
        ]
        indexes = [models.Index(fields=["portal", "entity", "record_id"], name="sandbox_record_idx")]

    def __str__(self) -> str:
        return f"{self.entity} {self.record_id}"


class SandboxOperatingBucket(models.Model):
    """Simulated execution seconds of one method for one webhook/app in one minute."""

    portal = models.ForeignKey(SandboxPortal, on_delete=models.CASCADE, related_name="operating_buckets")
    caller = models.CharField(max_length=160)  # "webhook:<pk>" or "app:<client_id>"
    method = models.CharField(max_length=128)
    minute = models.BigIntegerField()  # floor(unix time / 60)
    first_at = models.FloatField()  # the first call recorded in this bucket
    seconds = models.FloatField(default=0.0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["portal", "caller", "method", "minute"], name="sandbox_operating_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.caller} {self.method} @{self.minute}"


class SandboxMethodCount(models.Model):
    """How many times a method actually ran (handler invoked), per portal and API version."""

    portal = models.ForeignKey(SandboxPortal, on_delete=models.CASCADE, related_name="method_counts")
    api = models.CharField(max_length=4)  # v2 | v3
    method = models.CharField(max_length=128)
    count = models.IntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["portal", "api", "method"], name="sandbox_method_count_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.api} {self.method}: {self.count}"
