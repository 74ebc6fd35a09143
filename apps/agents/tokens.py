import hashlib
import secrets

TOKEN_PREFIX = "b24cp_"


def generate_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


CALLBACK_SECRET_PREFIX = "whsec_"


def generate_callback_secret() -> str:
    return CALLBACK_SECRET_PREFIX + secrets.token_urlsafe(32)
