"""Typed settings for one CareCircle stack: the only module that reads Pulumi config.

Every key lives under the `carecircle:` namespace (plus the provider key `docker:host`). Field
validators run in declaration order, so rules that depend on the environment (prod/staging
stricter than dev) read `environment`, which is declared first, from `info.data`. That way every
problem, type errors and cross-field rules alike, is reported in one pass with its own key.
"""

from __future__ import annotations

import ipaddress
import json
import re
from typing import Any, Literal, Optional, get_args, get_origin

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic.alias_generators import to_camel
from pydantic_core import PydanticCustomError

NAMESPACE = "carecircle"
DOCKER_HOST_KEY = "docker:host"

Environment = Literal["dev", "staging", "prod"]
Color = Literal["blue", "green"]
COLORS: tuple[Color, Color] = ("blue", "green")
DataServiceMode = Literal["container", "external"]
STRICT_ENVIRONMENTS = ("staging", "prod")

# Docker accepts [a-zA-Z0-9][a-zA-Z0-9_.-]+ for container, network and volume names; we keep to
# lower case so names read the same in `docker ps` and in the stack outputs.
DOCKER_NAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")
# name[:tag][@sha256:digest], with an optional registry host (and port) and path.
IMAGE_REFERENCE = re.compile(
    r"^(?P<name>(?:[a-zA-Z0-9.-]+(?::[0-9]+)?/)?[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*)"
    r"(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?"
    r"(?:@(?P<digest>sha256:[a-f0-9]{64}))?$"
)
SQL_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
DURATION = re.compile(r"^[1-9][0-9]*[smhd]$")
LOG_SIZE = re.compile(r"^[1-9][0-9]*[kmg]$")
CPUS = re.compile(r"^(?:[0-9]+(?:\.[0-9]+)?)$")
NGINX_TIME = re.compile(r"^[1-9][0-9]*(ms|s|m|h)$")
NGINX_SIZE = re.compile(r"^[1-9][0-9]*[km]?$")
CORS_ORIGIN = re.compile(r"^https?://[a-z0-9]([a-z0-9.-]*[a-z0-9])?(:[0-9]{1,5})?$")
ROUTE_PATH = re.compile(r"^/(?:[A-Za-z0-9._~-]+/)*$")
URL_SCHEMES = {
    "database_url": ("postgres://", "postgresql://"),
    "redis_url": ("redis://", "rediss://"),
    "rabbitmq_url": ("amqp://", "amqps://"),
}
MIN_JWT_SECRET = 32
# The edge subnet's lower half holds the api pools' fixed addresses (from offset 16, blue then green),
# the upper half is Docker's for everything else.
EDGE_MAX_PREFIX = 25
STATIC_OFFSET = 16


def pool_capacity(edge_subnet: str) -> int:
    """Fixed addresses available to each api pool in the edge subnet."""
    return (ipaddress.IPv4Network(edge_subnet).num_addresses // 2 - STATIC_OFFSET) // 2


def rule(message: str, fix: Any = None) -> PydanticCustomError:
    """A config rule violation; `fix` is the value to suggest in the `pulumi config set` command."""
    return PydanticCustomError("config_rule", message, {"fix": fix} if fix is not None else {})


def _strict(info: ValidationInfo) -> Optional[str]:
    """The environment name when it gets the production rules, else None."""
    environment = info.data.get("environment")
    return environment if environment in STRICT_ENVIRONMENTS else None


class Route(BaseModel):
    """One gateway route: a path prefix forwarded to an app service."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    path: str = Field(
        description="Path prefix, starting and ending with '/' (so '/api/' never matches '/apifoo').",
        json_schema_extra={"example": "/api/"},
    )
    service: Literal["api"] = Field(description="App service that serves the prefix.", json_schema_extra={"example": "api"})
    strip_prefix: bool = Field(
        default=False,
        alias="stripPrefix",
        description="Forward '/api/x' as '/x' instead of '/api/x'.",
        json_schema_extra={"example": False},
    )

    @field_validator("path")
    @classmethod
    def _path_is_a_prefix(cls, path: str) -> str:
        if not ROUTE_PATH.match(path):
            raise rule("must start and end with '/' and hold only URL-safe characters", "/api/")
        return path


def _key(description: str, example: Any = None, secret: bool = False, **kwargs: Any) -> Any:
    extra: dict[str, Any] = {}
    if example is not None:
        extra["example"] = example
    if secret:
        extra["secret"] = True
    return Field(description=description, json_schema_extra=extra or None, **kwargs)


class Settings(BaseModel):
    """Everything one stack declares, validated before any resource exists."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=False, extra="forbid", frozen=True
    )

    # Declared first: later validators read it to apply the staging/prod rules.
    environment: Environment = _key("Which rules apply: dev, staging or prod.", "prod")
    stack: str = _key(
        "Pulumi stack name (set by the CLI, not by config); part of every Docker name.",
        exclude=True,
    )
    name_prefix: str = _key("Prefix of every Docker name: <prefix>-<stack>-<role>.", "carecircle")
    docker_host: Optional[str] = _key(
        "Docker engine to deploy to: unix:// socket in dev, ssh://user@host in staging/prod.",
        "ssh://deploy@docker-host.example",
        alias=DOCKER_HOST_KEY,
        default=None,
        validate_default=True,
    )

    node_env: Literal["development", "production", "test"] = _key("NODE_ENV of api and workers.", "production")
    restart_policy: Literal["no", "on-failure", "always", "unless-stopped"] = _key(
        "Docker restart policy of every container.", "unless-stopped"
    )
    log_max_size: str = _key("json-file log rotation: size of one file (k, m or g).", "10m")
    log_max_files: int = _key("json-file log rotation: files kept per container.", 3, ge=1, le=100)

    edge_subnet: str = _key(
        "IPv4 subnet of the edge network; api containers get fixed addresses in its lower half.", "172.30.0.0/24"
    )
    # Blue-green: two api pools; the gateway sends traffic to the active one only.
    api_active_color: Color = _key("The api pool that receives traffic: blue or green.", "blue")
    api_blue_image: Optional[str] = _key("Image of the blue api pool (registry/name:tag or @sha256 digest).", "ghcr.io/carecircle/api:1.4.2", default=None)
    api_green_image: Optional[str] = _key("Image of the green api pool.", "ghcr.io/carecircle/api:1.4.3", default=None)
    api_blue_replicas: int = _key("Containers in the blue pool (>= 2 when active in staging/prod; 0 scales it away).", 2)
    api_green_replicas: int = _key("Containers in the green pool (>= 2 when active in staging/prod; 0 scales it away).", 0)
    api_build_context: Optional[str] = _key(
        "dev only: build the api image from this directory of the repository, for both pools.", "dev/stub-app", default=None
    )
    api_shutdown_grace_seconds: int = _key(
        "Seconds an api container gets after SIGTERM to finish in-flight requests before it is killed.", 30, ge=1
    )
    api_port: int = _key("Port the API listens on inside its container (PORT).", 3000)
    api_health_path: str = _key("API health endpoint used by the healthcheck.", "/health")
    api_memory_mb: int = _key("Memory limit of each API container, in MB.", 512, ge=64)
    api_cpus: str = _key("CPU limit of each API container, e.g. \"1.0\".", "1.0")

    workers_image: Optional[str] = _key("Workers image, registry/name:tag or @sha256 digest.", "ghcr.io/carecircle/api:1.4.2", default=None)
    workers_build_context: Optional[str] = _key(
        "dev only: build the workers image from this directory of the repository instead.", "dev/stub-app", default=None
    )
    workers_command: Optional[list[str]] = _key(
        "Command of the workers containers (default: the image's own).", ["node", "dist/worker.js"], default=None
    )
    workers_replicas: int = _key("Number of BullMQ worker containers (0 stops them).", 1)
    workers_memory_mb: int = _key("Memory limit of each worker container, in MB.", 512, ge=64)
    workers_cpus: str = _key("CPU limit of each worker container.", "1.0")
    workers_shutdown_grace_seconds: int = _key(
        "Seconds a worker gets after SIGTERM to finish its in-flight jobs before it is killed.", 120, ge=1
    )
    workers_heartbeat_file: str = _key(
        "File each worker touches while healthy; the healthcheck fails once it is 30 s old.",
        "/tmp/worker-heartbeat",
    )

    jwt_expires_in: str = _key("JWT lifetime (JWT_EXPIRES_IN), e.g. 15m.", "15m")
    jwt_secret: Optional[SecretStr] = _key(
        "JWT signing secret (>= 32 characters). Generated (64 characters) when unset.",
        "<at least 32 random characters>",
        secret=True,
        default=None,
    )

    postgres_mode: DataServiceMode = _key("container: run postgres here; external: use databaseUrl (Neon).", "external")
    postgres_image: str = _key("Postgres image for container mode.", "postgres:15")
    postgres_database: str = _key("Database name in container mode.", "carecircle")
    postgres_user: str = _key("Database user in container mode.", "carecircle")
    postgres_host_port: Optional[int] = _key("dev only: publish postgres on 127.0.0.1:<port>.", 5432, default=None)
    database_url: Optional[SecretStr] = _key(
        "postgres:// URL of the managed database; required in external mode.",
        "postgresql://user:password@host/carecircle?sslmode=require",
        secret=True,
        default=None,
    )

    redis_mode: DataServiceMode = _key("container: run redis here; external: use redisUrl (Upstash).", "external")
    redis_image: str = _key("Redis image for container mode.", "redis:7-alpine")
    redis_host_port: Optional[int] = _key("dev only: publish redis on 127.0.0.1:<port>.", 6379, default=None)
    redis_url: Optional[SecretStr] = _key(
        "redis:// or rediss:// URL of the managed Redis; required in external mode.",
        "rediss://default:password@host:6379",
        secret=True,
        default=None,
    )

    rabbitmq_mode: DataServiceMode = _key(
        "container: run RabbitMQ here; external: use rabbitmqUrl (CloudAMQP).", "external"
    )
    rabbitmq_image: str = _key("RabbitMQ image for container mode.", "rabbitmq:3-management")
    rabbitmq_management_host_port: Optional[int] = _key(
        "dev only: publish the management UI (15672) on 127.0.0.1:<port>.", 15672, default=None
    )
    rabbitmq_url: Optional[SecretStr] = _key(
        "amqp:// or amqps:// URL of the managed broker; required in external mode.",
        "amqps://user:password@host/vhost",
        secret=True,
        default=None,
    )

    gateway_image: str = _key("Nginx image of the gateway.", "nginx:1.27-alpine")
    gateway_preview_port: Optional[int] = _key(
        "Host port on 127.0.0.1 where the gateway serves the idle api pool, to verify a release before the switch.",
        8081,
        default=None,
    )
    gateway_worker_shutdown_timeout: str = _key(
        "After a reload, how long old nginx workers may finish in-flight requests (and WebSockets).", "30s"
    )
    gateway_bind_address: str = _key("Host address the gateway publishes on (127.0.0.1 in dev).", "0.0.0.0")
    gateway_http_port: int = _key("Host port for HTTP.", 80)
    gateway_https_port: int = _key("Host port for HTTPS (used when gatewayTls is true).", 443)
    gateway_server_name: str = _key("Public host name of the gateway.", "api.carecircle.example")
    gateway_routes: list[Route] = _key(
        "Routes: list of {path, service, stripPrefix}. /health, /ready and /live always reach the api.",
        [{"path": "/api/", "service": "api"}],
    )
    gateway_tls: bool = _key("Serve HTTPS (required in staging/prod).", True)
    gateway_tls_certificate: Optional[SecretStr] = _key(
        "PEM certificate chain, when not read from gatewayTlsCertificatePath.", "<PEM>", secret=True, default=None
    )
    gateway_tls_key: Optional[SecretStr] = _key(
        "PEM private key, when not read from gatewayTlsKeyPath.", "<PEM>", secret=True, default=None
    )
    gateway_tls_certificate_path: Optional[str] = _key(
        "Path of the certificate chain on the Docker host (mounted read-only).", "/etc/carecircle/tls/fullchain.pem", default=None
    )
    gateway_tls_key_path: Optional[str] = _key(
        "Path of the private key on the Docker host (mounted read-only).", "/etc/carecircle/tls/privkey.pem", default=None
    )
    gateway_tls_profile: Literal["modern", "intermediate"] = _key(
        "Mozilla TLS profile: modern (TLS 1.3 only) or intermediate (TLS 1.2 + 1.3).", "intermediate"
    )
    gateway_hsts_max_age: int = _key("Strict-Transport-Security max-age in seconds (TLS only).", 63072000, ge=0)
    gateway_rate_limit_per_second: int = _key("Requests per second per client IP.", 10, ge=1)
    gateway_rate_limit_burst: int = _key("Requests a client may send above the rate before getting 429.", 20, ge=0)
    gateway_rate_limit_allowlist: list[str] = _key(
        "CIDRs exempt from the rate limit (monitoring, load tests).", ["10.0.0.0/8"]
    )
    gateway_trusted_proxies: list[str] = _key(
        "CIDRs of proxies in front of the gateway whose X-Forwarded-For is believed (e.g. a load balancer).",
        ["10.0.0.0/8"],
    )
    gateway_client_max_body_size: str = _key("Largest request body (413 above it), e.g. 1m.", "1m")
    gateway_client_header_timeout: str = _key("Time to receive the request headers.", "10s")
    gateway_client_body_timeout: str = _key("Time between two reads of the request body.", "10s")
    gateway_proxy_connect_timeout: str = _key("Time to connect to an api replica.", "3s")
    gateway_proxy_read_timeout: str = _key("Time between two reads from an api replica (also WebSocket idle).", "60s")
    gateway_upstream_max_fails: int = _key("Failures within gatewayUpstreamFailTimeout that take a replica out.", 3, ge=1)
    gateway_upstream_fail_timeout: str = _key("Window for max fails, and how long a failed replica stays out.", "10s")
    gateway_cors_origins: list[str] = _key(
        "Origins allowed by CORS: exact (https://app.example) or anchored patterns (~^https://[a-z]+\\.example$).",
        ["https://app.carecircle.example"],
    )
    gateway_cors_allow_credentials: bool = _key(
        "Send Access-Control-Allow-Credentials to allowed origins (the origin is echoed, never *).", False
    )

    monitoring_enabled: bool = _key("Run Prometheus, the exporters and the alert rules in this stack.", True)
    prometheus_image: str = _key("Prometheus image.", "prom/prometheus:v2.53.0")
    prometheus_retention: str = _key("How long Prometheus keeps samples (its data volume).", "15d")
    prometheus_host_port: Optional[int] = _key("dev only: publish the Prometheus UI on 127.0.0.1:<port>.", 9090, default=None)
    scrape_interval: str = _key("How often Prometheus scrapes every target.", "15s")
    nginx_exporter_image: str = _key("nginx-prometheus-exporter image (reads the gateway's stub_status).", "nginx/nginx-prometheus-exporter:1.3.0")
    postgres_exporter_image: str = _key("postgres_exporter image, when postgres runs as a container.", "prometheuscommunity/postgres-exporter:v0.15.0")
    redis_exporter_image: str = _key("redis_exporter image, when redis runs as a container.", "oliver006/redis_exporter:v1.62.0")
    api_metrics_path: str = _key("Path of the api's Prometheus metrics on its port.", "/metrics")
    alert_error_rate_percent: float = _key("Alert when more than this % of api requests fail with 5xx (5 min).", 5, gt=0, le=100)
    alert_latency_p95_seconds: float = _key("Alert when the api's p95 response time exceeds this (5 min).", 2, gt=0)
    alert_queue_depth: int = _key("Alert when a queue holds more waiting jobs/messages than this (10 min).", 1000, ge=1)
    alert_memory_percent: float = _key("Alert when an api container uses more than this % of its memory limit (5 min).", 80, gt=0, le=100)

    otel_exporter_endpoint: Optional[str] = _key(
        "OpenTelemetry OTLP endpoint for traces (OTEL_EXPORTER_OTLP_ENDPOINT); unset: no trace export.",
        "https://otel-collector.example:4318", default=None,
    )
    trace_sample_rate: float = _key("Share of requests traced (OpenTelemetry and Sentry), 0 to 1.", 0.1, ge=0, le=1)
    sentry_dsn: Optional[SecretStr] = _key("Sentry DSN of the api and workers (SENTRY_DSN).", "https://<key>@o0.ingest.sentry.io/0",
                                           secret=True, default=None)

    # ---- single-field rules -------------------------------------------------------------

    @field_validator("name_prefix", "stack")
    @classmethod
    def _docker_safe(cls, value: str) -> str:
        if not DOCKER_NAME.match(value):
            raise rule("must be lower-case letters, digits, '.', '_' or '-', starting with a letter or digit", "carecircle")
        return value

    @field_validator("postgres_database", "postgres_user")
    @classmethod
    def _sql_identifier(cls, value: str) -> str:
        if not SQL_IDENTIFIER.match(value):
            raise rule("must be a lower-case SQL identifier (letters, digits, '_')", "carecircle")
        return value

    @field_validator(
        "api_port", "gateway_http_port", "gateway_https_port",
        "postgres_host_port", "redis_host_port", "rabbitmq_management_host_port", "prometheus_host_port",
        "gateway_preview_port",
    )
    @classmethod
    def _port(cls, value: Optional[int]) -> Optional[int]:
        if value is not None and not 1 <= value <= 65535:
            raise rule("must be a port number between 1 and 65535", 8080)
        return value

    @field_validator("api_cpus", "workers_cpus")
    @classmethod
    def _cpus(cls, value: str) -> str:
        if not CPUS.match(value) or float(value) <= 0:
            raise rule("must be a positive decimal number of CPUs such as \"0.5\" or \"2\"", "1.0")
        return value

    @field_validator("log_max_size")
    @classmethod
    def _log_size(cls, value: str) -> str:
        if not LOG_SIZE.match(value):
            raise rule("must be a size such as 10m (k, m or g)", "10m")
        return value

    @field_validator("jwt_expires_in")
    @classmethod
    def _duration(cls, value: str) -> str:
        if not DURATION.match(value):
            raise rule("must be a duration such as 15m, 12h or 7d", "15m")
        return value

    @field_validator("api_health_path", "api_metrics_path")
    @classmethod
    def _http_path(cls, value: str) -> str:
        if not re.match(r"^/[A-Za-z0-9._~/-]*$", value):
            raise rule("must be an absolute URL path such as /health", "/health")
        return value

    @field_validator("gateway_server_name")
    @classmethod
    def _host_name(cls, value: str) -> str:
        if not re.match(r"^(?=.{1,253}$)[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$", value):
            raise rule("must be a lower-case DNS host name", "api.carecircle.example")
        return value

    @field_validator("gateway_bind_address")
    @classmethod
    def _ipv4(cls, value: str) -> str:
        parts = value.split(".")
        if len(parts) != 4 or not all(p.isdigit() and int(p) <= 255 for p in parts):
            raise rule("must be an IPv4 address such as 0.0.0.0 or 127.0.0.1", "127.0.0.1")
        return value

    @field_validator("workers_heartbeat_file")
    @classmethod
    def _absolute_path(cls, value: str) -> str:
        if not re.match(r"^/[A-Za-z0-9._/-]+$", value):
            raise rule("must be an absolute path inside the container", "/tmp/worker-heartbeat")
        return value

    @field_validator("workers_command")
    @classmethod
    def _non_empty_command(cls, value: Optional[list[str]]) -> Optional[list[str]]:
        if value is not None and (not value or not all(value)):
            raise rule("must be a non-empty list of non-empty strings", '["node","dist/worker.js"]')
        return value

    @field_validator(
        "gateway_client_header_timeout", "gateway_client_body_timeout", "gateway_proxy_connect_timeout",
        "gateway_proxy_read_timeout", "gateway_upstream_fail_timeout", "gateway_worker_shutdown_timeout",
    )
    @classmethod
    def _nginx_time(cls, value: str) -> str:
        if not NGINX_TIME.match(value):
            raise rule("must be an nginx time such as 500ms, 10s or 1m", "10s")
        return value

    @field_validator("prometheus_retention")
    @classmethod
    def _retention(cls, value: str) -> str:
        if not re.match(r"^[1-9][0-9]*(h|d|w|y)$", value):
            raise rule("must be a duration such as 15d, 12w or 1y", "15d")
        return value

    @field_validator("scrape_interval")
    @classmethod
    def _scrape_interval(cls, value: str) -> str:
        if not re.match(r"^[1-9][0-9]*(s|m)$", value):
            raise rule("must be a duration such as 15s or 1m", "15s")
        return value

    @field_validator("otel_exporter_endpoint")
    @classmethod
    def _otel_endpoint(cls, value: Optional[str]) -> Optional[str]:
        if value is not None and not re.match(r"^https?://[^\s/$.?#].[^\s]*$", value):
            raise rule("must be an http(s):// URL", "https://otel-collector.example:4318")
        return value

    @field_validator("sentry_dsn")
    @classmethod
    def _sentry_dsn(cls, value: Optional[SecretStr]) -> Optional[SecretStr]:
        if value is not None and not re.match(r"^https://[^@\s]+@[^/\s]+/\d+$", value.get_secret_value()):
            raise rule("must be a Sentry DSN: https://<key>@<host>/<project id>")
        return value

    @field_validator("gateway_client_max_body_size")
    @classmethod
    def _nginx_size(cls, value: str) -> str:
        if not NGINX_SIZE.match(value):
            raise rule("must be an nginx size such as 512k or 1m", "1m")
        return value

    @field_validator("gateway_rate_limit_allowlist", "gateway_trusted_proxies")
    @classmethod
    def _cidrs(cls, values: list[str]) -> list[str]:
        for value in values:
            try:
                ipaddress.ip_network(value, strict=True)
            except ValueError:
                raise rule(f"{value!r} is not a CIDR such as 10.0.0.0/8 (host bits unset)", '["10.0.0.0/8"]') from None
        return values

    @field_validator("gateway_cors_origins")
    @classmethod
    def _cors_origins(cls, values: list[str]) -> list[str]:
        for value in values:
            if value.startswith("~"):
                if not (value.startswith("~^https?://") or value.startswith("~^https://")) or not value.endswith("$"):
                    raise rule(f"pattern {value!r} must be anchored: start with ~^https:// and end with $", '["~^https://[a-z0-9-]+\\.carecircle\\.example$"]')
                try:
                    re.compile(value[1:])
                except re.error:
                    raise rule(f"pattern {value!r} is not a valid regular expression", '["https://app.carecircle.example"]') from None
                if '"' in value or "'" in value or " " in value or ";" in value or "{" in value:
                    raise rule(f"pattern {value!r} may not contain quotes, spaces, ';' or '{{'", '["https://app.carecircle.example"]')
            elif not CORS_ORIGIN.match(value):
                raise rule(f"{value!r} is not an origin such as https://app.carecircle.example (no path, no *)", '["https://app.carecircle.example"]')
        return values

    @field_validator("gateway_cors_allow_credentials")
    @classmethod
    def _credentials_need_origins(cls, value: bool, info: ValidationInfo) -> bool:
        if value and not info.data.get("gateway_cors_origins"):
            raise rule("credentials need an explicit list of origins in gatewayCorsOrigins", "false")
        return value

    @field_validator("gateway_routes")
    @classmethod
    def _distinct_routes(cls, routes: list[Route]) -> list[Route]:
        paths = [r.path for r in routes]
        reserved = {"/health/", "/ready/", "/live/", "/"}
        if len(set(paths)) != len(paths):
            raise rule("route paths must be distinct", '[{"path":"/api/","service":"api"}]')
        if reserved & set(paths):
            raise rule("'/', /health/, /ready/ and /live/ are routed by the gateway itself", '[{"path":"/api/","service":"api"}]')
        return routes

    # ---- rules that depend on the environment or on other keys ---------------------------

    @field_validator("docker_host")
    @classmethod
    def _remote_host_in_production(cls, value: Optional[str], info: ValidationInfo) -> Optional[str]:
        strict = _strict(info)
        if value is not None and not re.match(r"^(unix|ssh|tcp)://\S+$", value):
            raise rule("must be unix:///path, ssh://user@host or tcp://host:port", "ssh://deploy@docker-host.example")
        if strict and (value is None or not value.startswith(("ssh://", "tcp://"))):
            raise rule(f"{strict} deploys to a remote Docker host: set ssh://user@host", "ssh://deploy@docker-host.example")
        return value

    @field_validator("api_blue_image", "api_green_image", "workers_image", "postgres_image", "prometheus_image",
                     "nginx_exporter_image", "postgres_exporter_image", "redis_exporter_image", "redis_image", "rabbitmq_image", "gateway_image")
    @classmethod
    def _image_reference(cls, value: Optional[str], info: ValidationInfo) -> Optional[str]:
        if value is None:
            return value
        match = IMAGE_REFERENCE.match(value)
        if not match:
            raise rule("must be an image reference such as registry/name:1.2.3 or name@sha256:<digest>", "postgres:15")
        strict = _strict(info)
        pinned = match["digest"] or (match["tag"] and match["tag"] != "latest")
        if strict and not pinned:
            raise rule(f"{strict} needs an image pinned to a version tag or digest, not latest/untagged", f"{match['name']}:<version>")
        return value

    @field_validator("api_build_context", "workers_build_context")
    @classmethod
    def _build_context_dev_only(cls, value: Optional[str], info: ValidationInfo) -> Optional[str]:
        if value is None:
            return value
        strict = _strict(info)
        if strict:
            raise rule(f"{strict} runs released images only: set the image key instead", "")
        if value.startswith("/") or ".." in value.split("/") or not re.match(r"^[A-Za-z0-9._/-]+$", value):
            raise rule("must be a relative directory inside this repository", "dev/stub-app")
        return value

    @field_validator("api_blue_replicas", "api_green_replicas")
    @classmethod
    def _api_replicas(cls, value: int, info: ValidationInfo) -> int:
        strict = _strict(info)
        active = info.field_name == f"api_{info.data.get('api_active_color')}_replicas"
        if active and strict and value < 2:
            raise rule(f"{strict} needs at least 2 replicas in the active pool so one can fail or restart", 2)
        if active and value < 1:
            raise rule("the active pool needs at least 1 replica", 1)
        if value < 0:
            raise rule("must be 0 or more", 0)
        capacity = pool_capacity(info.data["edge_subnet"]) if "edge_subnet" in info.data else None
        if capacity is not None and value > capacity:
            raise rule(f"at most {capacity} replicas per pool fit the edgeSubnet's fixed addresses (a larger edgeSubnet holds more)", capacity)
        return value

    @field_validator("edge_subnet")
    @classmethod
    def _edge_subnet(cls, value: str) -> str:
        try:
            network = ipaddress.IPv4Network(value, strict=True)
        except ValueError:
            raise rule("must be an IPv4 subnet such as 172.30.0.0/24 (host bits unset)", "172.30.0.0/24") from None
        if not network.is_private or network.prefixlen > EDGE_MAX_PREFIX:
            raise rule(f"must be a private subnet of /{EDGE_MAX_PREFIX} or larger", "172.30.0.0/24")
        return value


    @field_validator("workers_replicas")
    @classmethod
    def _workers_replicas(cls, value: int) -> int:
        if value < 0:
            raise rule("must be 0 or more", 1)
        return value

    @field_validator("postgres_host_port", "redis_host_port", "rabbitmq_management_host_port", "prometheus_host_port")
    @classmethod
    def _no_data_port_in_production(cls, value: Optional[int], info: ValidationInfo) -> Optional[int]:
        strict = _strict(info)
        if strict and value is not None:
            raise rule(f"{strict} publishes no data-service port: remove this key", "")
        return value

    @field_validator("jwt_secret")
    @classmethod
    def _jwt_secret_length(cls, value: Optional[SecretStr]) -> Optional[SecretStr]:
        if value is not None and len(value.get_secret_value()) < MIN_JWT_SECRET:
            raise rule(f"must be at least {MIN_JWT_SECRET} characters (or unset, to generate one)", "$(openssl rand -base64 48)")
        return value

    @field_validator("database_url", "redis_url", "rabbitmq_url")
    @classmethod
    def _secret_url_scheme(cls, value: Optional[SecretStr], info: ValidationInfo) -> Optional[SecretStr]:
        schemes = URL_SCHEMES[info.field_name]
        if value is not None and not value.get_secret_value().startswith(schemes):
            raise rule(f"must be a URL starting with {' or '.join(schemes)}")
        return value

    @field_validator("gateway_tls")
    @classmethod
    def _tls_in_production(cls, value: bool, info: ValidationInfo) -> bool:
        strict = _strict(info)
        if strict and not value:
            raise rule(f"{strict} serves HTTPS only", "true")
        return value

    # ---- derived values --------------------------------------------------------------------

    @property
    def protect_data(self) -> bool:
        """Data volumes in staging/prod survive `pulumi destroy`."""
        return self.environment in STRICT_ENVIRONMENTS

    def docker_name(self, *parts: str) -> str:
        return "-".join([self.name_prefix, self.stack, *parts])

    @property
    def idle_color(self) -> Color:
        return "green" if self.api_active_color == "blue" else "blue"

    def api_replicas(self, color: str) -> int:
        return self.api_blue_replicas if color == "blue" else self.api_green_replicas

    def api_image(self, color: str) -> Optional[str]:
        return self.api_blue_image if color == "blue" else self.api_green_image

    def api_container_names(self, color: str) -> list[str]:
        return [self.docker_name("api", color, str(i)) for i in range(1, self.api_replicas(color) + 1)]

    def api_addresses(self, color: str) -> list[str]:
        """Fixed edge addresses of a pool: a replaced or restarted container keeps its address, so
        the gateway, which resolves upstreams only at (re)load, never points at a stale one."""
        network = ipaddress.IPv4Network(self.edge_subnet)
        first = STATIC_OFFSET + (0 if color == "blue" else pool_capacity(self.edge_subnet))
        return [str(network.network_address + first + i) for i in range(self.api_replicas(color))]

    @property
    def edge_dynamic_range(self) -> str:
        """The upper half of the edge subnet, where Docker picks addresses for other containers."""
        network = ipaddress.IPv4Network(self.edge_subnet)
        return str(list(network.subnets(prefixlen_diff=1))[1])

    @property
    def needs_egress(self) -> bool:
        """Workers reach managed data services over the internet only through a non-internal network."""
        return "external" in (self.postgres_mode, self.redis_mode, self.rabbitmq_mode)


def _line_error(alias: str, message: str, fix: Any = None) -> dict[str, Any]:
    """A problem in the shape of pydantic's `ValidationError.errors()` entries."""
    return {"type": "config_rule", "loc": (alias,), "msg": message, "ctx": {"fix": fix} if fix is not None else {}}


def _cross_key_problems(data: dict[str, Any]) -> list[dict[str, Any]]:
    """Key-pair rules, checked on the raw (aliased) input so they report even if other keys fail."""
    problems = []
    image, build = data.get("workersImage"), data.get("workersBuildContext")
    if image is None and build is None:
        problems.append(_line_error("workersImage", "set the workers image (or, in dev only, workersBuildContext)", "ghcr.io/carecircle/api:<version>"))
    elif image is not None and build is not None:
        problems.append(_line_error("workersBuildContext", "set either workersImage or workersBuildContext, not both", ""))
    build = data.get("apiBuildContext")
    for color in ("blue", "green"):
        image_key = f"api{color.title()}Image"
        runs = data.get("apiActiveColor") == color or str(data.get(f"api{color.title()}Replicas", "0")).strip() != "0"
        if build is not None and data.get(image_key) is not None:
            problems.append(_line_error(image_key, "apiBuildContext builds the image of both pools: remove one of them", ""))
        elif build is None and data.get(image_key) is None and runs:
            problems.append(_line_error(image_key, f"the {color} pool runs containers: set its image (or, in dev only, apiBuildContext)", "ghcr.io/carecircle/api:<version>"))
    for mode_key, url_key, example in (
        ("postgresMode", "databaseUrl", "postgresql://user:password@host/carecircle?sslmode=require"),
        ("redisMode", "redisUrl", "rediss://default:password@host:6379"),
        ("rabbitmqMode", "rabbitmqUrl", "amqps://user:password@host/vhost"),
    ):
        if data.get(mode_key) == "external" and data.get(url_key) is None:
            problems.append(_line_error(url_key, f"required when {NAMESPACE}:{mode_key} is external", example))
    if str(data.get("gatewayTls")).lower() in ("true", "1", "yes", "on"):
        pem = [data.get("gatewayTlsCertificate") is not None, data.get("gatewayTlsKey") is not None]
        path = [data.get("gatewayTlsCertificatePath") is not None, data.get("gatewayTlsKeyPath") is not None]
        if any(pem) and any(path):
            problems.append(_line_error("gatewayTlsCertificatePath", "give the certificate either as PEM secrets or as host paths, not both", ""))
        elif not (all(pem) or all(path)):
            missing = "gatewayTlsKey" if pem[0] and not pem[1] else "gatewayTlsCertificate" if pem[1] else (
                "gatewayTlsKeyPath" if path[0] else "gatewayTlsCertificatePath" if path[1] else "gatewayTlsCertificate")
            problems.append(_line_error(missing, "TLS needs a certificate and its key: both PEM secrets (gatewayTlsCertificate, gatewayTlsKey) or both host paths", "<PEM>" if "Path" not in missing else "/etc/carecircle/tls/fullchain.pem"))
    return problems


SECRET_FIELDS = frozenset(
    name for name, field in Settings.model_fields.items()
    if isinstance(field.json_schema_extra, dict) and field.json_schema_extra.get("secret")
)


# ---- loading from Pulumi config ------------------------------------------------------------


class ConfigProblem(BaseModel):
    """One offending key: what is wrong and the command that fixes it."""

    key: str  # full config key, e.g. carecircle:apiReplicas
    path: str  # position inside a structured value, e.g. [0].path; "" for the key itself
    message: str
    fix: str


class ConfigError(Exception):
    """Invalid stack config. Its text is the whole message shown to the operator."""

    def __init__(self, stack: str, problems: list[ConfigProblem]):
        self.stack = stack
        self.problems = problems
        self.declared: list = []  # filled by the offline harness: what got declared before the error (nothing)
        super().__init__(self.render())

    def render(self) -> str:
        count = len(self.problems)
        lines = [f"Invalid configuration for stack '{self.stack}' ({count} problem{'s' if count != 1 else ''}); nothing was declared."]
        for problem in self.problems:
            lines.append(f"  - {problem.key}{problem.path}: {problem.message}")
            lines.append(f"      fix: {problem.fix}")
        return "\n".join(lines)


def full_key(alias: str) -> str:
    return alias if ":" in alias else f"{NAMESPACE}:{alias}"


def _is_list(annotation: Any) -> bool:
    return get_origin(annotation) is list or any(get_origin(arg) is list for arg in get_args(annotation))


# Lists reach the program as JSON text, like every structured value the CLI passes.
_STRUCTURED = {field.alias for field in Settings.model_fields.values() if _is_list(field.annotation)}
_ALIASES = {field.alias or name: name for name, field in Settings.model_fields.items()}
_FIELD_ALIASES = {name: alias for alias, name in _ALIASES.items()}
_SECRET_ALIASES = {Settings.model_fields[name].alias for name in SECRET_FIELDS}


def _quote(value: str) -> str:
    if value.startswith("$("):  # a command substitution the operator's shell should run
        return f'"{value}"'
    return value if re.match(r"^[A-Za-z0-9_@%+=:,./-]+$", value) else "'" + value.replace("'", "'\\''") + "'"


def _fix_command(stack: str, alias: str, path: str, fix: Any) -> str:
    key = full_key(alias)
    if fix == "":
        return f"pulumi config rm {key} --stack {stack}"
    if fix is None and path:
        route_fields = {f.alias or n: f for n, f in Route.model_fields.items()}
        field = route_fields.get(path.rsplit(".", 1)[-1])
        extra = field.json_schema_extra if field is not None and isinstance(field.json_schema_extra, dict) else {}
        fix = extra.get("example", "<value>")
    if fix is None:
        field = Settings.model_fields.get(_ALIASES.get(alias, ""))
        extra = field.json_schema_extra if field is not None and isinstance(field.json_schema_extra, dict) else {}
        fix = extra.get("example", "<value>")
    if alias in _STRUCTURED and not path:
        return f"set {key} in Pulumi.{stack}.yaml, e.g. {json.dumps(fix) if not isinstance(fix, str) else fix}"
    if isinstance(fix, bool):
        fix = str(fix).lower()
    secret = "--secret " if alias in _SECRET_ALIASES else ""
    if path:
        return f"pulumi config set --path {_quote(key + path)} {_quote(str(fix))} --stack {stack}"
    return f"pulumi config set {secret}{key} {_quote(str(fix))} --stack {stack}"


def _problem_from_error(stack: str, error: dict[str, Any]) -> ConfigProblem:
    loc = error["loc"]
    alias = str(loc[0]) if loc else "environment"
    alias = _FIELD_ALIASES.get(alias, alias)  # a validated default reports the field name
    path = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc[1:])
    kind = error["type"]
    if kind == "missing":
        message = "is not set"
    elif kind == "extra_forbidden":
        return ConfigProblem(key=full_key(alias), path=path, message="is not a known key (a typo?)",
                             fix=f"pulumi config rm {full_key(alias)} --stack {stack}")
    else:
        message = error["msg"][0].lower() + error["msg"][1:]
    return ConfigProblem(key=full_key(alias), path=path, message=message,
                         fix=_fix_command(stack, alias, path, (error.get("ctx") or {}).get("fix")))


def read_stack_config() -> tuple[dict[str, str], set[str]]:
    """This stack's `carecircle:*` and `docker:host` values as the CLI hands them over, and which are secret."""
    from pulumi.runtime import config as runtime_config

    values = {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}
    ours = {key: value for key, value in values.items() if key.startswith(f"{NAMESPACE}:") or key == DOCKER_HOST_KEY}
    return ours, {key for key in ours if runtime_config.is_config_secret(key)}


def parse_settings(stack: str, values: dict[str, str], secret_keys: set[str]) -> Settings:
    """Validate raw config values; raise ConfigError listing every problem."""
    problems: list[ConfigProblem] = []
    data: dict[str, Any] = {"stack": stack}
    for key, value in values.items():
        alias = key if key == DOCKER_HOST_KEY else key.split(":", 1)[1]
        if alias in _SECRET_ALIASES and key not in secret_keys:
            problems.append(ConfigProblem(key=key, path="", message="holds a secret but is stored in plain text",
                                          fix=f"pulumi config set --secret {key} <value> --stack {stack}"))
        if alias in _STRUCTURED and isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError:
                problems.append(ConfigProblem(key=key, path="", message="must be a YAML/JSON list",
                                              fix=_fix_command(stack, alias, "", None)))
                continue
        data[alias] = value
    errors = _cross_key_problems(data)
    try:
        settings = Settings.model_validate(data)
    except ValidationError as invalid:
        errors = [*invalid.errors(include_url=False), *errors]
        settings = None
    problems += [_problem_from_error(stack, error) for error in errors]
    if problems or settings is None:
        raise ConfigError(stack, problems)
    return settings


def load_settings() -> Settings:
    """Settings of the stack Pulumi is running, or ConfigError before anything is declared."""
    import pulumi

    values, secret_keys = read_stack_config()
    return parse_settings(pulumi.get_stack(), values, secret_keys)
