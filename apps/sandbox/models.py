"""State of the simulated Bitrix24 portals. Everything lives in the database so several web
processes (and the test client) see one portal.

Times that the sandbox compares (token expiry, bucket drain, operating buckets) are stored as
Unix float seconds from `apps.sandbox.clock.now()`, so tests can move the clock.
"""

from django.db import models

FAULT_BEFORE = "before"
FAULT_AFTER = "after"
FAULT_WHEN_CHOICES = [(FAULT_BEFORE, "before the method runs"), (FAULT_AFTER, "after the method ran")]

# The documented system errors a portal can be switched to answer (see errors.FAULT_ERRORS).
FAULT_ERROR_CHOICES = [
    ("", "none"),
    ("INVALID_CREDENTIALS", "INVALID_CREDENTIALS (401)"),
    ("ACCESS_DENIED", "ACCESS_DENIED (403, REST needs a commercial plan)"),
    ("OVERLOAD_LIMIT", "OVERLOAD_LIMIT (503, manual block)"),
    ("PORTAL_DELETED", "PORTAL_DELETED (500)"),
    ("user_access_error", "user_access_error (403)"),
    ("METHOD_CONFIRM_WAITING", "METHOD_CONFIRM_WAITING (401)"),
    ("METHOD_CONFIRM_DENIED", "METHOD_CONFIRM_DENIED (403)"),
    ("ERROR_UNEXPECTED_ANSWER", "ERROR_UNEXPECTED_ANSWER (500)"),
    ("INTERNAL_SERVER_ERROR", "INTERNAL_SERVER_ERROR (500)"),
    ("ACCESSDENIEDEXCEPTION", "REST 3.0 ACCESSDENIEDEXCEPTION (403)"),
    ("MOVED", "302 to the portal's new address (moved_to)"),
]


def _admins() -> list[int]:
    return [1]


def _smart_process_types() -> list[int]:
    return [1036]


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

    # Fault switch (admin, `manage.py sandbox_fault`): answer a documented system error.
    # `fault_error_remaining`: how many calls still get it; -1 means every call until cleared.
    fault_error = models.CharField(max_length=32, choices=FAULT_ERROR_CHOICES, default="", blank=True)
    fault_error_remaining = models.IntegerField(default=-1)
    moved_to = models.URLField(max_length=500, blank=True, default="",
                               help_text="With the MOVED fault: the new portal address (…/sandbox/<slug>).")
    require_https = models.BooleanField(default=False, help_text="Plain-HTTP calls get INVALID_REQUEST "
                                                                  "\"Https required\" (FACTS §1).")

    # Who counts as a portal administrator (event.offline.*, offline event.bind).
    admin_user_ids = models.JSONField(default=_admins, blank=True)
    # Smart-process types (entityTypeId) crm.item.* accepts.
    smart_process_types = models.JSONField(default=_smart_process_types, blank=True)
    # feature.get answers: {code: bool}; unknown codes fall back to the sandbox defaults.
    features = models.JSONField(default=dict, blank=True)

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


class SandboxIdempotencyKey(models.Model):
    """A REST 3.0 answer stored under an `Idempotency-Key` (FACTS §2): per app/webhook, user and
    method; kept 24 h; only successful answers are stored."""

    portal = models.ForeignKey(SandboxPortal, on_delete=models.CASCADE, related_name="idempotency_keys")
    scope = models.CharField(max_length=400)  # "<caller>|<user_id>|<method>"
    key = models.CharField(max_length=255)
    body_hash = models.CharField(max_length=64)
    status = models.IntegerField()
    body = models.JSONField()
    created_at = models.FloatField()

    class Meta:
        constraints = [models.UniqueConstraint(fields=["portal", "scope", "key"], name="sandbox_idem_unique")]

    def __str__(self) -> str:
        return f"{self.scope} {self.key[:20]}"


class SandboxEventHandler(models.Model):
    """One `event.bind` of an application: online (POSTed to `handler`) or offline (queued)."""

    portal = models.ForeignKey(SandboxPortal, on_delete=models.CASCADE, related_name="event_handlers")
    client_id = models.CharField(max_length=128)  # the application that bound it
    event = models.CharField(max_length=100)  # upper-case code
    handler = models.CharField(max_length=2048, blank=True, default="")
    auth_type = models.IntegerField(default=0)
    offline = models.BooleanField(default=False)
    auth_connector = models.CharField(max_length=128, blank=True, default="")
    options = models.JSONField(default=dict, blank=True)
    bound_by = models.IntegerField(default=1)
    created_at = models.FloatField(default=0.0)

    def __str__(self) -> str:
        return f"{self.event} -> {self.handler or 'offline'}"


class SandboxOfflineEvent(models.Model):
    """A record of the portal's offline queue (FACTS §11): one per object and event (the last
    change wins), reserved under `process_id` by `event.offline.get clear=0`."""

    portal = models.ForeignKey(SandboxPortal, on_delete=models.CASCADE, related_name="offline_events")
    client_id = models.CharField(max_length=128)
    event_name = models.CharField(max_length=100)
    event_data = models.JSONField(null=True, blank=True)
    event_additional = models.JSONField(null=True, blank=True)
    message_id = models.CharField(max_length=64)
    auth_connector = models.CharField(max_length=128, blank=True, default="")
    process_id = models.CharField(max_length=64, blank=True, default="")  # "": not reserved
    reserved_at = models.FloatField(default=0.0)  # a reserved batch is kept up to 30 days
    error = models.BooleanField(default=False)
    timestamp = models.FloatField()

    class Meta:
        indexes = [models.Index(fields=["portal", "client_id", "process_id"], name="sandbox_offline_idx")]

    def __str__(self) -> str:
        return f"{self.event_name} #{self.pk}"
