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


# One PEM block (RFC 7468): BEGIN and END name the same label; LF or CRLF line endings (a file saved
# on Windows; OpenSSL reads both).
PEM_BLOCK = re.compile(r"-----BEGIN ([A-Z0-9 ]+)-----\r?\n(?:[A-Za-z0-9+/=]+\r?\n)+-----END \1-----(?:\r?\n)?")
PRIVATE_KEY_LABELS = ("PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY")


def pem_labels(text: str) -> Optional[list[str]]:
    """The label of each PEM block `text` is made of, or None when it is not PEM blocks end to end."""
    labels, position = [], 0
    while position < len(text):
        block = PEM_BLOCK.match(text, position)
        if block is None:
            return None
        labels.append(block[1])
        position = block.end()
    return labels or None


def _certificate(text: str) -> Optional[str]:
    labels = pem_labels(text)
    if labels is None or set(labels) != {"CERTIFICATE"}:
        return ("must be PEM text from -----BEGIN CERTIFICATE----- to -----END CERTIFICATE----- (the chain's certificates "
                "one after the other, each END naming what its BEGIN named)")
    return None


def _private_key(text: str) -> Optional[str]:
    labels = pem_labels(text)
    # `openssl ecparam -genkey` writes the curve's EC PARAMETERS before the key; nginx reads past them.
    if labels not in [[label] for label in PRIVATE_KEY_LABELS] + [["EC PARAMETERS", "EC PRIVATE KEY"]]:
        return ("must be one unencrypted PEM private key from -----BEGIN PRIVATE KEY----- (or RSA/EC PRIVATE KEY) to the "
                "matching -----END ...-----")
    return None


def _sentry_dsn(text: str) -> Optional[str]:
    parts = parsed_url(text, ("https",))
    if parts is None or not parts.username or not re.fullmatch(r"/[0-9]+", parts.path or ""):
        return "must be a Sentry DSN: https://<key>@<host>/<project id>"
    return None


DATABASE_URL = secret_url("postgres", "postgresql")
REDIS_URL = secret_url("redis", "rediss")
RABBITMQ_URL = secret_url("amqp", "amqps")
JWT_SECRET = SecretKind(_jwt_secret, "fake-jwt-{tag}{tag}")
CERTIFICATE = SecretKind(_certificate, "-----BEGIN CERTIFICATE-----\nZmFrZS{tag}\n-----END CERTIFICATE-----\n")
PRIVATE_KEY = SecretKind(_private_key, "-----BEGIN PRIVATE KEY-----\nZmFrZS{tag}\n-----END PRIVATE KEY-----\n")
SENTRY_DSN = SecretKind(_sentry_dsn, "https://fake{tag}@o0.ingest.sentry.invalid/0")


def secret(kind: SecretKind) -> Any:
    # The kind rides along as metadata, so the loader and the offline fakes can find it by field.
    return Annotated[SecretStr, BeforeValidator(kind.validator), kind]
