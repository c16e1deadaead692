"""Pure rendering of the stack's Prometheus configuration and alert rules from settings."""

from __future__ import annotations

from dataclasses import dataclass, field

from .rendering import TEMPLATES, GatewayPorts, tar_bundle
from .rendering import jinja_templates as templates
from .settings import COLORS, Settings

PROMETHEUS_PORT = 9090
NGINX_EXPORTER_PORT = 9113
POSTGRES_EXPORTER_PORT = 9187
REDIS_EXPORTER_PORT = 9121
RABBITMQ_METRICS_PORT = 15692
CONFIG_DIR = "/etc/prometheus/carecircle"
CONFIG_PATH = f"{CONFIG_DIR}/prometheus.yml"
# Relative to the config file, so a new config is checked with the new rules beside it.
RULES_PATH = "alerts.yml"
STUB_STATUS_PATH = "/_gateway/nginx_status"


@dataclass(frozen=True)
class TargetGroup:
    targets: list[str]
    labels: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ScrapeJob:
    name: str
    groups: list[TargetGroup]
    metrics_path: str = "/metrics"
    params: dict[str, list[str]] = field(default_factory=dict)


def scrape_jobs(settings: Settings) -> list[ScrapeJob]:
    """What Prometheus scrapes: the api pools, nginx (through its exporter) and the data services that
    run as containers here. Targets are container names on the backend network."""
    jobs = [
        ScrapeJob("api", [TargetGroup([f"{name}:{settings.api_port}" for name in settings.api_container_names(color)], {"pool": color})
                          for color in COLORS if settings.api_replicas(color)], settings.api_metrics_path),
        ScrapeJob("nginx", [TargetGroup([f"{settings.docker_name('nginx-exporter')}:{NGINX_EXPORTER_PORT}"])]),
    ]
    if settings.postgres_mode == "container":
        jobs.append(ScrapeJob("postgres", [TargetGroup([f"{settings.docker_name('postgres-exporter')}:{POSTGRES_EXPORTER_PORT}"])]))
    if settings.redis_mode == "container":
        jobs.append(ScrapeJob("redis", [TargetGroup([f"{settings.docker_name('redis-exporter')}:{REDIS_EXPORTER_PORT}"])]))
    if settings.rabbitmq_mode == "container":
        # RabbitMQ's built-in endpoint; the detailed families carry per-queue depth and consumers.
        jobs.append(ScrapeJob("rabbitmq", [TargetGroup([f"{settings.docker_name('rabbitmq')}:{RABBITMQ_METRICS_PORT}"])],
                              "/metrics/detailed", {"family": ["queue_coarse_metrics", "queue_consumer_count"]}))
    return jobs


def render_prometheus_config(settings: Settings, rules_path: str = RULES_PATH) -> str:
    return templates.get_template("prometheus.yml.j2").render(
        stack=settings.stack, environment=settings.environment, scrape_interval=settings.scrape_interval,
        rules_path=rules_path, jobs=scrape_jobs(settings),
    )


def render_alert_rules(settings: Settings) -> str:
    return templates.get_template("alerts.yml.j2").render(
        g=settings, stack=settings.stack, environment=settings.environment,
        error_ratio=round(settings.alert_error_rate_percent / 100, 6),
        memory_ratio=round(settings.alert_memory_percent / 100, 6),
        api_memory_limit_bytes=settings.api_memory_mb * 1024 * 1024,
        error_percent=_number(settings.alert_error_rate_percent),
        latency_seconds=_number(settings.alert_latency_p95_seconds),
        memory_percent=_number(settings.alert_memory_percent),
    )


def _number(value: float) -> str:
    """5.0 -> "5", 0.5 -> "0.5": thresholds read as an operator wrote them."""
    return str(int(value)) if float(value).is_integer() else str(value)


GATEWAY_PORTS = GatewayPorts()


def stub_status_url(settings: Settings) -> str:
    """The gateway's stub_status, on its (unpublished) status listener."""
    return f"http://{settings.docker_name('gateway')}:{GATEWAY_PORTS.status}{STUB_STATUS_PATH}"


APPLY_SCRIPT = (TEMPLATES / "prometheus-apply.sh").read_text()
BOOTSTRAP_CONFIG = (TEMPLATES / "prometheus-bootstrap.yml").read_text()


def prometheus_bundle(settings: Settings) -> str:
    """The base64 tar prometheus-apply.sh takes on stdin."""
    # Readable by the prometheus user the image runs as (the script unpacks them as root).
    return tar_bundle({"prometheus.yml": render_prometheus_config(settings), "alerts.yml": render_alert_rules(settings)}, mode=0o644)
