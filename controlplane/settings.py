"""Settings for the Bitrix24 agent control plane.

Every value comes from the environment through django-environ (house rule 11). A `.env` file
beside `manage.py` (or the file `ENV_FILE` names; empty for none) is read when present, without
overriding what the environment already sets; `make run` writes one for the embedded default.
`.env.example` lists every variable with one line each.
The embedded default (DEBUG on, nothing else set) is SQLite under DATA_DIR, Celery on kombu's
filesystem transport under DATA_DIR and the built-in sandbox portal.
"""

import base64
import hashlib
import os
from pathlib import Path

import environ

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
_env_file = os.environ.get("ENV_FILE", str(BASE_DIR / ".env"))
if _env_file and Path(_env_file).is_file():
    env.read_env(_env_file)

DEBUG = env.bool("DEBUG", default=False)

# Production secrets have no default outside DEBUG, so a bad deploy fails at start.
if DEBUG:
    SECRET_KEY = env("SECRET_KEY", default="insecure-dev-only-secret-key-change-me")
else:
    SECRET_KEY = env("SECRET_KEY")

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]"] if DEBUG else [])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

DATA_DIR = Path(env("DATA_DIR", default=str(BASE_DIR / "var")))

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "allauth",
    "allauth.account",
    "allauth.mfa",
    "apps.core",
    "apps.accounts",
    "apps.audit",
    "apps.portals",
    "apps.agents",
    "apps.policy",
    "apps.plans",
    "apps.bitrix",
    "apps.sandbox",
    "apps.demo",
    "apps.approvals",
    "apps.mcp",
    "apps.events",
    "apps.exports",
]

MIDDLEWARE = [
    "apps.core.middleware.RequestIdMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "allauth.account.middleware.AccountMiddleware",
]
# The agent API, the Bitrix24 event hook and the sandbox portal's REST and OAuth endpoints
# (bearer tokens, signed forms, webhook codes; JSON answers: no session, user, messages or CSRF
# cookie) are served through this shorter stack by the web process's applications
# (apps.core.handlers); Django's test client uses MIDDLEWARE. Its Security, Common and
# XFrameOptions are Django's, whose hooks only compute, run on the event loop under ASGI
# (apps.core.middleware.inline_hooks) instead of a thread hop per hook.
API_PATH_PREFIXES = ("/api/", "/hooks/", "/sandbox/")
API_MIDDLEWARE = [
    "apps.core.middleware.RequestIdMiddleware",
    "apps.core.middleware.SecurityMiddleware",
    "apps.core.middleware.CommonMiddleware",
    "apps.core.middleware.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "controlplane.urls"
WSGI_APPLICATION = "controlplane.wsgi.application"
ASGI_APPLICATION = "controlplane.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {
    "default": env.db("DATABASE_URL", default=f"sqlite:///{DATA_DIR / 'controlplane.sqlite3'}"),
}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Several processes (web, worker) share one file: wait for locks instead of failing at once,
    # and take the write lock at BEGIN so a transaction never has to upgrade a read lock.
    DATABASES["default"].setdefault("OPTIONS", {})
    DATABASES["default"]["OPTIONS"].setdefault("timeout", 20)
    DATABASES["default"]["OPTIONS"].setdefault("transaction_mode", "IMMEDIATE")
    DATABASES["default"]["OPTIONS"].setdefault(
        "init_command", "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
    )
# Services own their transactions (house anti-pattern: ATOMIC_REQUESTS with such services).
DATABASES["default"]["ATOMIC_REQUESTS"] = False
# Keep a process's database connection between requests and tasks instead of opening one each time
# (a new PostgreSQL connection costs ~10 ms of server CPU); check it before reuse so a connection
# the server dropped is replaced instead of failing the request.
DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=60)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = env.bool("CONN_HEALTH_CHECKS", default=True)
# The ASGI web process (controlplane/asgi.py sets CONTROLPLANE_ASGI=1) runs each request's sync code in
# a thread that ends with the request, so a connection kept per thread would be left behind: on
# PostgreSQL it borrows connections from psycopg's pool instead (opened once, checked on borrow).
# Elsewhere (Celery workers, commands, WSGI) the persistent connection above is kept.
if (os.environ.get("CONTROLPLANE_ASGI") == "1" and env.bool("DATABASE_POOL", default=True)
        and DATABASES["default"]["ENGINE"].endswith("postgresql")):
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = False
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
        "min_size": env.int("DATABASE_POOL_MIN", default=2),
        "max_size": env.int("DATABASE_POOL_MAX", default=20),
        "timeout": env.float("DATABASE_POOL_TIMEOUT", default=10.0),
    }

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
AUTH_USER_MODEL = "accounts.User"

AUTHENTICATION_BACKENDS = [
    "django.contrib.auth.backends.ModelBackend",
    "allauth.account.auth_backends.AuthenticationBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

# allauth: local accounts, username or e-mail login, no open sign-up (admins create approvers).
ACCOUNT_LOGIN_METHODS = {"username", "email"}
ACCOUNT_SIGNUP_FIELDS = ["email*", "username*", "password1*", "password2*"]
ACCOUNT_ADAPTER = "apps.accounts.adapter.AccountAdapter"
ACCOUNT_EMAIL_VERIFICATION = "optional"
LOGIN_URL = "account_login"
LOGIN_REDIRECT_URL = "/approvals/"  # the approvers' inbox
MFA_SUPPORTED_TYPES = ["totp", "recovery_codes"]
# Deciding a plan in the browser needs a session that passed a second factor (allauth MFA).
APPROVER_MFA_REQUIRED = env.bool("APPROVER_MFA_REQUIRED", default=not DEBUG)

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = DATA_DIR / "static"

EMAIL_CONFIG = env.email_url("EMAIL_URL", default="consolemail://")
vars().update(EMAIL_CONFIG)
DEFAULT_FROM_EMAIL = env("DEFAULT_FROM_EMAIL", default="control-plane@localhost")
# The address people reach this site at: links in approvers' emails and notifications.
SITE_URL = env("SITE_URL", default="http://127.0.0.1:8000")

# Security headers that matter outside DEBUG.
SESSION_COOKIE_HTTPONLY = True
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
if not DEBUG:
    SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=True)
    CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=True)
# HTTPS in production: behind a TLS-terminating proxy set SECURE_PROXY_SSL_HEADER to the header
# it sets (e.g. HTTP_X_FORWARDED_PROTO=https); never trust that header without such a proxy.
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=False)
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", default=False)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=False)
_proxy_header = env("SECURE_PROXY_SSL_HEADER", default="")
if _proxy_header:
    _name, _, _value = _proxy_header.partition("=")
    SECURE_PROXY_SSL_HEADER = (_name.strip(), _value.strip() or "https")
# Health probes come over plain HTTP from inside the network; everything else is redirected.
SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]

# --- secrets at rest -------------------------------------------------------------------------
# Comma-separated Fernet keys: the first encrypts, all decrypt (rotation). In DEBUG a key is
# derived from SECRET_KEY so the embedded default needs no set-up; never rely on that in prod.
if DEBUG:
    _dev_key = base64.urlsafe_b64encode(hashlib.sha256(SECRET_KEY.encode()).digest()).decode()
    FIELD_ENCRYPTION_KEYS = env.list("FIELD_ENCRYPTION_KEYS", default=[_dev_key])
else:
    FIELD_ENCRYPTION_KEYS = env.list("FIELD_ENCRYPTION_KEYS")

# --- audit log ---------------------------------------------------------------------------------
# Comma-separated `kid:base64key` HMAC keys for the audit chains: the first signs, all verify.
# Never stored in the database. In DEBUG a key is derived from SECRET_KEY; required outside it.
if DEBUG:
    _audit_dev_key = base64.urlsafe_b64encode(hashlib.sha256(b"audit:" + SECRET_KEY.encode()).digest()).decode()
    AUDIT_KEYS = env.list("AUDIT_KEYS", default=[f"dev:{_audit_dev_key}"])
else:
    AUDIT_KEYS = env.list("AUDIT_KEYS")
# Signed checkpoints go outside the database: an append-only JSONL file (set empty to disable),
# and/or a command (the JSON on stdin) and/or a URL (JSON POST).
AUDIT_CHECKPOINT_PATH = env("AUDIT_CHECKPOINT_PATH", default=str(DATA_DIR / "audit" / "checkpoints.jsonl"))
AUDIT_CHECKPOINT_COMMAND = env("AUDIT_CHECKPOINT_COMMAND", default="")
AUDIT_CHECKPOINT_URL = env("AUDIT_CHECKPOINT_URL", default="")
AUDIT_CHECKPOINT_INTERVAL = env.float("AUDIT_CHECKPOINT_INTERVAL", default=300.0)

# --- plans and API ---------------------------------------------------------------------------
PLAN_TTL = env.int("PLAN_TTL", default=24 * 3600)  # seconds before an undecided plan expires
API_MAX_BODY_BYTES = 256 * 1024
API_MAX_WAIT_SECONDS = 30
IDEMPOTENCY_KEY_TTL = 24 * 3600

# Agent callbacks: hosts allowed although they resolve to loopback/private addresses, the time
# one delivery may take, and the tries before giving up.
CALLBACK_ALLOW_HOSTS = env.list("CALLBACK_ALLOW_HOSTS", default=[])
CALLBACK_TIMEOUT = env.float("CALLBACK_TIMEOUT", default=5.0)
CALLBACK_MAX_ATTEMPTS = env.int("CALLBACK_MAX_ATTEMPTS", default=6)

# --- portals ---------------------------------------------------------------------------------
PORTAL_ALLOW_LOOPBACK_HTTP = env.bool("PORTAL_ALLOW_LOOPBACK_HTTP", default=DEBUG)
SANDBOX_ENABLED = env.bool("SANDBOX_ENABLED", default=DEBUG)
BITRIX_CONNECT_TIMEOUT = env.float("BITRIX_CONNECT_TIMEOUT", default=5.0)
BITRIX_READ_TIMEOUT = env.float("BITRIX_READ_TIMEOUT", default=65.0)  # portal cuts at 60 s
# The client limiter sleeps up to this long inside a worker; longer waits become a Celery retry.
BITRIX_LIMITER_MAX_SLEEP = env.float("BITRIX_LIMITER_MAX_SLEEP", default=2.5)
# Requests kept free below the portal's burst, for callers outside the plane on the same IP.
BITRIX_LIMITER_MARGIN = env.float("BITRIX_LIMITER_MARGIN", default=1.0)
BITRIX_OAUTH_TOKEN_URL = env("BITRIX_OAUTH_TOKEN_URL", default="https://oauth.bitrix24.tech/oauth/token/")

# --- Celery ----------------------------------------------------------------------------------
CELERY_BROKER_URL = env("CELERY_BROKER_URL", default="filesystem://")
CELERY_BROKER_TRANSPORT_OPTIONS = {}
if CELERY_BROKER_URL.startswith("filesystem://"):
    CELERY_BROKER_TRANSPORT = "controlplane.broker:Transport"  # kombu's, with an atomic publish
    _broker_dir = DATA_DIR / "broker"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "queue"),
        "data_folder_out": str(_broker_dir / "queue"),
        "processed_folder": str(_broker_dir / "processed"),
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
        # kombu polls the folder (1 s by default): a plan would wait up to that long for the worker.
        "polling_interval": env.float("CELERY_FILESYSTEM_POLL_SECONDS", default=0.05),
    }
    # kombu does not create these; web and worker processes both need them to exist.
    for _folder in ("queue", "processed", "control"):
        (_broker_dir / _folder).mkdir(parents=True, exist_ok=True)
elif CELERY_BROKER_URL.startswith(("redis://", "rediss://")):
    if CELERY_BROKER_URL.startswith("redis://"):
        CELERY_BROKER_TRANSPORT = "controlplane.broker:RedisTransport"  # kombu's, one client per channel
    # Longer than any countdown we schedule (retry backoff caps at 10 min).
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}
CELERY_TASK_IGNORE_RESULT = True
CELERY_RESULT_BACKEND = None
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_TIME_LIMIT = 5 * 60
CELERY_TASK_SOFT_TIME_LIMIT = 4 * 60
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TIMEZONE = TIME_ZONE
CELERY_BEAT_SCHEDULE = {
    "expire-plans": {"task": "apps.plans.tasks.expire_plans", "schedule": 60.0},
    "purge-idempotency-keys": {"task": "apps.plans.tasks.purge_idempotency_keys", "schedule": 3600.0},
    "recover-stale-plans": {"task": "apps.plans.tasks.recover_stale_plans", "schedule": 60.0},
    "remind-approvers": {"task": "apps.approvals.tasks.remind_approvers", "schedule": 60.0},
    "audit-checkpoint": {"task": "apps.audit.tasks.audit_checkpoint", "schedule": AUDIT_CHECKPOINT_INTERVAL},
    "drain-offline-events": {"task": "apps.events.tasks.schedule_offline_drains", "schedule": 30.0},
    "dispatch-exports": {"task": "apps.exports.tasks.dispatch_exports", "schedule": 10.0},
    "purge-export-files": {"task": "apps.exports.tasks.purge_export_files", "schedule": 600.0},
}
# List exports (apps.exports): where the files go, how long they are kept, how long one task
# fetches before handing over to the next, and how old a run's heartbeat may get before
# another worker takes the export over (its worker is gone).
EXPORTS_DIR = env("EXPORTS_DIR", default="") or str(DATA_DIR / "exports")
EXPORT_RETENTION_HOURS = env.float("EXPORT_RETENTION_HOURS", default=24.0)
EXPORT_SLICE_SECONDS = env.int("EXPORT_SLICE_SECONDS", default=120)
EXPORT_STALE_SECONDS = env.int("EXPORT_STALE_SECONDS", default=150)
# Hard time limit of apps.plans.tasks.execute_plan (soft limit: 4/5 of it). A plan left
# `executing` longer than this (plus a minute) belongs to a worker that is gone.
PLAN_EXECUTION_TIME_LIMIT = 5 * 60

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"request_id": {"()": "apps.core.logging.RequestIdFilter"}},
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": "plain", "filters": ["request_id"]},
    },
    "root": {"handlers": ["console"], "level": env("LOG_LEVEL", default="INFO")},
    "loggers": {
        # urllib3 logs full URLs at DEBUG; webhook URLs carry the secret in the path.
        "urllib3": {"level": "WARNING"},
        # At DEBUG a failed variable lookup logs the whole template context: the agent token's
        # one-time page would write the token to the log (tests/integration/test_secret_canaries.py).
        "django.template": {"level": "INFO"},
    },
}

# --- cache (API rate limit counters) -----------------------------------------------------------
CACHES = {"default": env.cache("CACHE_URL", default="locmemcache://")}
API_RATE_PER_MINUTE = env.int("API_RATE_PER_MINUTE", default=600)
# --- wake-ups of waiting requests (apps.core.wakeup) ----------------------------------------------
# A `?wait=` request sleeps until the plan (or the event feed) changes: Redis pub/sub when Redis is
# there, else a datagram to each waiting process's socket under WAKEUP_DIR (one host), `local` for
# one process. The fallback re-read interval is a safety net for a lost signal, not the mechanism.
_redis_schemes = ("redis://", "rediss://")
_cache_url = env("CACHE_URL", default="")
WAKEUP_URL = env("WAKEUP_URL", default=(
    _cache_url if _cache_url.startswith(_redis_schemes)
    else CELERY_BROKER_URL if CELERY_BROKER_URL.startswith(_redis_schemes) else "unix"))
WAKEUP_DIR = env("WAKEUP_DIR", default=str(DATA_DIR / "wakeup"))
WAKEUP_CHANNEL = env("WAKEUP_CHANNEL", default="cp:wakeup")
WAKEUP_FALLBACK_SECONDS = env.float("WAKEUP_FALLBACK_SECONDS", default=5.0)
# Database work of waiting requests running at once in one web process (apps.core.aio.run_sync).
API_WAIT_DB_SLOTS = env.int("API_WAIT_DB_SLOTS", default=8)
# Threads one ASGI web process shares among API requests for Django's request signals and sync
# views, instead of a thread started per request (apps.core.aio.shared_request_thread).
API_REQUEST_THREADS = env.int("API_REQUEST_THREADS", default=4)
# Where the web process serving the sandbox is reached from workers (seed_demo's portal URL).
SANDBOX_BASE_URL = env("SANDBOX_BASE_URL", default="http://127.0.0.1:8000")

# --- inbound Bitrix24 events (apps.events) -------------------------------------------------------
EVENTS_MAX_BODY_BYTES = 1024 * 1024
EVENTS_MAX_FIELDS = 1000
EVENTS_MAX_ATTEMPTS = env.int("EVENTS_MAX_ATTEMPTS", default=3)  # failures before a dead letter
EVENTS_STALE_SECONDS = env.int("EVENTS_STALE_SECONDS", default=300)  # open online events re-enqueued after
EVENTS_OFFLINE_BATCH = env.int("EVENTS_OFFLINE_BATCH", default=50)  # event.offline.get limit
EVENTS_OFFLINE_MAX_BATCHES = env.int("EVENTS_OFFLINE_MAX_BATCHES", default=20)  # per drain run
EVENTS_RETENTION_DAYS = env.int("EVENTS_RETENTION_DAYS", default=30)  # processed events kept; 0: forever
EVENTS_DRAIN_LEASE_SECONDS = env.int("EVENTS_DRAIN_LEASE_SECONDS", default=CELERY_TASK_TIME_LIMIT + 60)
# Public address Bitrix24 posts events to (the handler URL shown ready to paste); SITE_URL unless
# events arrive through another address.
EVENTS_PUBLIC_BASE_URL = env("EVENTS_PUBLIC_BASE_URL", default=SITE_URL)
