"""Loaded by pytest (`-p tests.pytest_env`) before Django is set up: the environment the
suite runs in, unless the caller already set it (the services suite sets DATABASE_URL etc.)."""

import os
import tempfile

# The suite never reads a developer's .env (make run writes one): only what is set here counts.
os.environ.setdefault("ENV_FILE", "")
# Deciding needs a second factor outside DEBUG; the MFA tests switch it on where they test it.
os.environ.setdefault("APPROVER_MFA_REQUIRED", "0")

os.environ.setdefault("DEBUG", "0")
os.environ.setdefault("SECRET_KEY", "test-secret-key-not-for-production")
# Two fixed test keys: the second only decrypts, so rotation is exercised.
os.environ.setdefault(
    "FIELD_ENCRYPTION_KEYS",
    "c2VjcmV0LWtleS1mb3ItdGVzdHMtb25seS0wMDAwMDA=,b2xkLWtleS1mb3Itcm90YXRpb24tdGVzdHMtMDAwMDA=",
)
# Two fixed audit keys: the second only verifies, so rotation is exercised.
os.environ.setdefault(
    "AUDIT_KEYS",
    "t2:YXVkaXQta2V5LWZvci10ZXN0cy1vbmx5LTAwMDAwMDA=,t1:b2xkLWF1ZGl0LWtleS1mb3ItdGVzdHMtMDAwMDAwMDA=",
)
os.environ.setdefault("ALLOWED_HOSTS", "*")
os.environ.setdefault("SANDBOX_ENABLED", "1")
os.environ.setdefault("PORTAL_ALLOW_LOOPBACK_HTTP", "1")
os.environ.setdefault("CELERY_BROKER_URL", "memory://")
os.environ.setdefault("DATA_DIR", tempfile.mkdtemp(prefix="cp-test-"))
