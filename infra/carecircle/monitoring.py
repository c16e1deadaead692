"""Pure rendering of the stack's Prometheus configuration and alert rules from settings."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Mapping, Optional

from .alerting import ALERTMANAGER_PORT, WATCHDOG, alertmanager_names
from .rendering import TEMPLATES, GatewayPorts, tar_bundle
from .rendering import jinja_templates as templates
from .settings import COLORS, Settings

PROMETHEUS_PORT = 9090
NGINX_EXPORTER_PORT = 9113
POSTGRES_EXPORTER_PORT = 9187
REDIS_EXPORTER_PORT = 9121
RABBITMQ_METRICS_PORT = 15692
BLACKBOX_PORT = 9115
BLACKBOX_CONFIG_PATH = "/etc/blackbox_exporter/carecircle.yml"
# The blackbox module that reads the certificate a gateway serves.
CERTIFICATE_MODULE = "gateway_certificate"
CONFIG_DIR = "/etc/prometheus/carecircle"
CONFIG_PATH = f"{CONFIG_DIR}/prometheus.yml"
# Relative to the config file, so a new config is checked with the new rules beside it.
RULES_PATH = "alerts.yml"
STUB_STATUS_PATH = "/_gateway/nginx_status"
GATEWAY_PORTS = GatewayPorts()


@dataclass(frozen=True)
class TargetGroup:
    targets: list[str] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)
    # Swarm: the targets are the A records of this name (tasks.<service>), re-read as tasks move.
    dns_name: Optional[str] = None
    dns_port: Optional[int] = None


@dataclass(frozen=True)
class ScrapeJob:
    name: str
    groups: list[TargetGroup]
    metrics_path: str = "/metrics"
    params: dict[str, list[str]] = field(default_factory=dict)
    # Probes: each target is handed to this exporter (host:port), which is what Prometheus scrapes.
    prober: Optional[str] = None


def prometheus_names(settings: Settings) -> list[str]:
    """One Prometheus per monitoring node on Swarm (numbered), one on the engine."""
    if settings.platform == "swarm":
        return [settings.docker_name("prometheus", str(i)) for i in range(1, len(settings.swarm_monitoring_hosts) + 1)]
    return [settings.docker_name("prometheus")]


def nginx_exporter_names(settings: Settings) -> list[str]:
    """One exporter per gateway: the engine's single gateway, or one per swarm edge node."""
    if settings.platform == "swarm":
        return [settings.docker_name("nginx-exporter", str(i)) for i in range(1, len(settings.swarm_edge_hosts) + 1)]
    return [settings.docker_name("nginx-exporter")]


def gateway_names(settings: Settings) -> list[str]:
    """The gateway containers: the engine's one, or one per swarm edge node."""
    if settings.platform == "swarm":
        return [settings.docker_name("gateway", str(i)) for i in range(1, len(settings.swarm_edge_hosts) + 1)]
    return [settings.docker_name("gateway")]


def blackbox_exporter_name(settings: Settings) -> str:
    return settings.docker_name("blackbox-exporter")


def render_blackbox_config(settings: Settings) -> str:
    """The blackbox exporter's module that reads the certificate each gateway serves for the stack's
    name, the way a client behind the load balancer gets it (the PROXY protocol header first when the
    gateways take it)."""
    return templates.get_template("blackbox.yml.j2").render(
        module=CERTIFICATE_MODULE, server_name=settings.gateway_server_name, proxy_protocol=bool(settings.gateway_load_balancers),
        https_port=GATEWAY_PORTS.https)


def scrape_jobs(settings: Settings, api_services: Optional[Mapping[str, str]] = None) -> list[ScrapeJob]:
    """What Prometheus scrapes: the api pools, nginx (through its exporters) and the data services that
    run as containers here. Targets are container names on the backend network, or (swarm) the tasks of
    each pool's service, `api_services` mapping a color to its service name."""
    if api_services is None:
        api = [TargetGroup([f"{name}:{settings.api_port}" for name in settings.api_container_names(color)], {"pool": color})
               for color in COLORS if settings.api_replicas(color)]
    else:
        api = [TargetGroup(labels={"pool": color}, dns_name=f"tasks.{service}", dns_port=settings.api_port)
               for color, service in sorted(api_services.items())]
    jobs = [
        # Every replica scrapes every Prometheus and Alertmanager: the loss of one is TargetDown on the others.
        ScrapeJob("prometheus", [TargetGroup([f"{name}:{PROMETHEUS_PORT}" for name in prometheus_names(settings)])]),
        ScrapeJob("alertmanager", [TargetGroup([f"{name}:{ALERTMANAGER_PORT}" for name in alertmanager_names(settings)])]),
        ScrapeJob("api", api, settings.api_metrics_path),
        ScrapeJob("nginx", [TargetGroup([f"{name}:{NGINX_EXPORTER_PORT}" for name in nginx_exporter_names(settings)])]),
    ]
    if settings.gateway_tls:
        # From outside each gateway: the certificate it actually serves.
        jobs.append(ScrapeJob("gateway-certificate", [TargetGroup([f"{name}:{GATEWAY_PORTS.https}" for name in gateway_names(settings)])],
                              "/probe", {"module": [CERTIFICATE_MODULE]}, prober=f"{blackbox_exporter_name(settings)}:{BLACKBOX_PORT}"))
    if settings.postgres_mode == "container":
        jobs.append(ScrapeJob("postgres", [TargetGroup([f"{settings.docker_name('postgres-exporter')}:{POSTGRES_EXPORTER_PORT}"])]))
    if settings.redis_mode == "container":
        jobs.append(ScrapeJob("redis", [TargetGroup([f"{settings.docker_name('redis-exporter')}:{REDIS_EXPORTER_PORT}"])]))
    if settings.rabbitmq_mode == "container":
        # RabbitMQ's built-in endpoint; the detailed families carry per-queue depth and consumers.
        jobs.append(ScrapeJob("rabbitmq", [TargetGroup([f"{settings.docker_name('rabbitmq')}:{RABBITMQ_METRICS_PORT}"])],
                              "/metrics/detailed", {"family": ["queue_coarse_metrics", "queue_consumer_count"]}))
    return jobs


def render_prometheus_config(settings: Settings, rules_path: str = RULES_PATH, api_services: Optional[Mapping[str, str]] = None) -> str:
    return templates.get_template("prometheus.yml.j2").render(
        stack=settings.stack, environment=settings.environment, scrape_interval=settings.scrape_interval,
        rules_path=rules_path, jobs=scrape_jobs(settings, api_services),
        # Every Prometheus sends every alert to every Alertmanager; they deduplicate among themselves.
        alertmanagers=[f"{name}:{ALERTMANAGER_PORT}" for name in alertmanager_names(settings)],
    )


def render_alert_rules(settings: Settings) -> str:
    return templates.get_template("alerts.yml.j2").render(
        g=settings, stack=settings.stack, environment=settings.environment, watchdog=WATCHDOG,
        runbook=lambda alert: json.dumps(f"{settings.alert_runbook_url}#{alert.lower()}"),
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


def stub_status_url(settings: Settings, gateway: Optional[int] = None) -> str:
    """A gateway's stub_status, on its (unpublished) status listener; swarm gateways are numbered."""
    name = settings.docker_name("gateway", *([str(gateway)] if gateway is not None else []))
    return f"http://{name}:{GATEWAY_PORTS.status}{STUB_STATUS_PATH}"


APPLY_SCRIPT = (TEMPLATES / "prometheus-apply.sh").read_text()
BOOTSTRAP_CONFIG = (TEMPLATES / "prometheus-bootstrap.yml").read_text()


def prometheus_bundle(settings: Settings, api_services: Optional[Mapping[str, str]] = None) -> str:
    """The base64 tar prometheus-apply.sh takes on stdin."""
    # Readable by the prometheus user the image runs as (the script unpacks them as root).
    return tar_bundle({"prometheus.yml": render_prometheus_config(settings, api_services=api_services),
                       "alerts.yml": render_alert_rules(settings)}, mode=0o644)
