"""Config value types for secrets: how each kind is checked (never echoing it) and faked offline."""

from __future__ import annotations

import re
from typing import Annotated, Any, Callable, Optional

from pydantic import BeforeValidator, SecretStr

from .address_types import parsed_url
from .types import VISIBLE_ASCII, rule

# ---- secrets -------------------------------------------------------------------------------------
# A secret value is never echoed in a message. Each secret type also says how the offline tools fake
# a `secure:` value of its kind (they cannot decrypt), so a faked stack still validates.

class SecretKind:
    """How a secret key is checked, and the fake the offline tools use for its `secure:` value."""

    def __init__(self, check: Callable[[str], Optional[str]], fake: str):
        self.check = check  # returns a message when the value is wrong
        self.fake = fake  # {tag} is derived from the ciphertext

    def validator(self, value: Any) -> SecretStr:
        text = value.get_secret_value() if isinstance(value, SecretStr) else value
        if not isinstance(text, str):
            raise rule("must be text")
        message = self.check(text)
        if message:
            raise rule(message)
        return SecretStr(text)


def secret_url(*schemes: str) -> SecretKind:
    def check(text: str) -> Optional[str]:
        parts = parsed_url(text, schemes)
        if parts is None:
            return f"must be a URL starting with {' or '.join(s + '://' for s in schemes)}, with a host, in ASCII without spaces"
        return None

    fakes = {"postgresql": "postgresql://fake:fake-{tag}@db.fake.invalid:5432/carecircle?sslmode=require",
             "redis": "rediss://default:fake-{tag}@redis.fake.invalid:6379",
             "amqp": "amqps://fake:fake-{tag}@mq.fake.invalid/carecircle"}
    return SecretKind(check, next(fake for scheme, fake in fakes.items() if scheme in schemes))


MIN_JWT_SECRET = 32


def _jwt_secret(text: str) -> Optional[str]:
    if len(text) < MIN_JWT_SECRET:
        return f"must be at least {MIN_JWT_SECRET} characters (or unset, to generate one)"
    if not VISIBLE_ASCII.fullmatch(text):
        return "must be visible ASCII only (a trailing newline or space would make a different key)"
    return None


def _pem(label: str) -> Callable[[str], Optional[str]]:
    def check(text: str) -> Optional[str]:
        if not re.fullmatch(rf"-----BEGIN {label}-----\n[A-Za-z0-9+/=\n]+\n-----END {label}-----\n?(?:-----BEGIN {label}-----\n[A-Za-z0-9+/=\n]+\n-----END {label}-----\n?)*", text):
            return f"must be PEM text from -----BEGIN {label}----- to -----END {label}-----"
        return None
    return check


def _sentry_dsn(text: str) -> Optional[str]:
    parts = parsed_url(text, ("https",))
    if parts is None or not parts.username or not re.fullmatch(r"/[0-9]+", parts.path or ""):
        return "must be a Sentry DSN: https://<key>@<host>/<project id>"
    return None


DATABASE_URL = secret_url("postgres", "postgresql")
REDIS_URL = secret_url("redis", "rediss")
RABBITMQ_URL = secret_url("amqp", "amqps")
JWT_SECRET = SecretKind(_jwt_secret, "fake-jwt-{tag}{tag}")
CERTIFICATE = SecretKind(_pem("CERTIFICATE"), "-----BEGIN CERTIFICATE-----\nZmFrZS{tag}\n-----END CERTIFICATE-----\n")
PRIVATE_KEY = SecretKind(_pem("(?:RSA |EC )?PRIVATE KEY"), "-----BEGIN PRIVATE KEY-----\nZmFrZS{tag}\n-----END PRIVATE KEY-----\n")
SENTRY_DSN = SecretKind(_sentry_dsn, "https://fake{tag}@o0.ingest.sentry.invalid/0")


def secret(kind: SecretKind) -> Any:
    # The kind rides along as metadata, so the loader and the offline fakes can find it by field.
    return Annotated[SecretStr, BeforeValidator(kind.validator), kind]
