"""The data services: postgres, redis and rabbitmq, each a local container or a managed service
reached through a secret URL."""

from __future__ import annotations

from typing import Iterator, Literal, Optional
from urllib.parse import parse_qsl, urlsplit

from .address_types import ImageRef
from .base import Environment, Section, Violation, cross_rule, key
from .secret_types import DATABASE_URL, RABBITMQ_URL, REDIS_URL, secret
from .types import Port, SqlIdentifier

DataServiceMode = Literal["container", "external"]
DatabaseUrl = secret(DATABASE_URL)
RedisUrl = secret(REDIS_URL)
RabbitmqUrl = secret(RABBITMQ_URL)
# (mode field, URL field, example URL) of each data service
EXTERNAL_URLS = (
    ("postgres_mode", "database_url", "postgresql://user:password@host/carecircle?sslmode=require"),
    ("redis_mode", "redis_url", "rediss://default:password@host:6379"),
    ("rabbitmq_mode", "rabbitmq_url", "amqps://user:password@host/vhost"),
)
DEV_ONLY_PORTS = ("postgres_host_port", "redis_host_port", "rabbitmq_management_host_port")
# libpq's sslmode values that never fall back to a clear connection (node-postgres reads the same
# parameter; `prefer`/`allow` may fall back, `disable` never encrypts, its `no-verify` never checks).
ENCRYPTED_SSLMODES = ("require", "verify-ca", "verify-full")


def clear_or_anonymous(url: str) -> Optional[str]:
    """Why a managed data service URL would travel in clear or without credentials (None: it does not).
    Never quotes the URL: it holds a password."""
    parts = urlsplit(url)
    if parts.scheme in ("postgres", "postgresql"):
        sslmode = dict(parse_qsl(parts.query)).get("sslmode")
        if sslmode not in ENCRYPTED_SSLMODES:
            return (f"has sslmode={sslmode}, which " if sslmode else "has no sslmode, so it ") + \
                "may connect without TLS: add sslmode=require (or verify-full)"
    elif parts.scheme == "redis":
        return "is redis://, which carries the password and every job in clear: use rediss:// (TLS)"
    elif parts.scheme == "amqp":
        return "is amqp://, which carries the credentials and every message in clear: use amqps:// (TLS)"
    if not parts.password or (parts.scheme != "rediss" and not parts.username):
        # Redis authenticates with a password alone (AUTH <password>); postgres and AMQP with a user too.
        return "has no user and password: a managed service reached over the internet needs both" if parts.scheme != "rediss" \
            else "has no password: a managed Redis reached over the internet needs one"
    return None


class DataSettings(Section):
    postgres_mode: DataServiceMode = key("container: run postgres here; external: use databaseUrl (Neon).", "external")
    postgres_image: ImageRef = key("Postgres image for container mode.", "postgres:15")
    postgres_database: SqlIdentifier = key("Database name in container mode.", "carecircle")
    postgres_user: SqlIdentifier = key("Database user in container mode.", "carecircle")
    postgres_host_port: Optional[Port] = key("dev only: publish postgres on 127.0.0.1:<port>.", 5432, default=None)
    database_url: Optional[DatabaseUrl] = key(
        "postgres:// URL of the managed database; required in external mode.", "postgresql://user:password@host/carecircle?sslmode=require", default=None)

    redis_mode: DataServiceMode = key("container: run redis here; external: use redisUrl (Upstash).", "external")
    redis_image: ImageRef = key("Redis image for container mode.", "redis:7-alpine")
    redis_host_port: Optional[Port] = key("dev only: publish redis on 127.0.0.1:<port>.", 6379, default=None)
    redis_url: Optional[RedisUrl] = key(
        "redis:// or rediss:// URL of the managed Redis; required in external mode.", "rediss://default:password@host:6379", default=None)

    rabbitmq_mode: DataServiceMode = key("container: run RabbitMQ here; external: use rabbitmqUrl (CloudAMQP).", "external")
    rabbitmq_image: ImageRef = key("RabbitMQ image for container mode.", "rabbitmq:3-management")
    rabbitmq_management_host_port: Optional[Port] = key("dev only: publish the management UI (15672) on 127.0.0.1:<port>.", 15672, default=None)
    rabbitmq_url: Optional[RabbitmqUrl] = key(
        "amqp:// or amqps:// URL of the managed broker; required in external mode.", "amqps://user:password@host/vhost", default=None)

    @cross_rule
    def _external_needs_a_url(self, environment: Environment) -> Iterator[Violation]:
        for mode_field, url_field, example in EXTERNAL_URLS:
            if getattr(self, mode_field) == "external" and getattr(self, url_field) is None:
                yield Violation(url_field, f"required when carecircle:{type(self).model_fields[mode_field].alias} is external", example)

    @cross_rule
    def _no_data_port_in_production(self, environment: Environment) -> Iterator[Violation]:
        for field in DEV_ONLY_PORTS:
            if environment.strict and getattr(self, field) is not None:
                yield Violation(field, f"{environment.strict} publishes no data-service port: remove this key", "")

    @cross_rule
    def _managed_services_over_tls_with_credentials(self, environment: Environment) -> Iterator[Violation]:
        if not environment.strict:
            return
        for mode_field, url_field, example in EXTERNAL_URLS:
            url = getattr(self, url_field)
            if getattr(self, mode_field) == "external" and url is not None:
                why = clear_or_anonymous(url.get_secret_value())
                if why:
                    yield Violation(url_field, f"in {environment.strict} the managed service's URL {why}", example)

    @property
    def workers_need_egress(self) -> bool:
        """Workers reach managed data services over the internet only through a non-internal network."""
        return "external" in (self.postgres_mode, self.redis_mode, self.rabbitmq_mode)

    @property
    def needs_egress(self) -> bool:
        """A non-internal network that is not the edge: for the workers (managed data services) and for
        Alertmanager (its receivers are on the internet)."""
        return self.workers_need_egress or self.monitoring_enabled  # type: ignore[attr-defined]
