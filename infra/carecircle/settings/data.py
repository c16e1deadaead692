"""The data services: postgres, redis and rabbitmq, each a local container or a managed service
reached through a secret URL."""

from __future__ import annotations

from typing import Iterator, Literal, Optional

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

    @property
    def workers_need_egress(self) -> bool:
        """Workers reach managed data services over the internet only through a non-internal network."""
        return "external" in (self.postgres_mode, self.redis_mode, self.rabbitmq_mode)

    @property
    def needs_egress(self) -> bool:
        """A non-internal network that is not the edge: for the workers (managed data services) and for
        Alertmanager (its receivers are on the internet)."""
        return self.workers_need_egress or self.monitoring_enabled  # type: ignore[attr-defined]
