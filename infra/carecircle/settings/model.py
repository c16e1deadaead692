"""The composed Settings: every section's keys, flat, plus the rules that span sections."""

from __future__ import annotations

import re
from typing import Iterator, Optional

from .alerting import AlertingSettings
from .apps import AppSettings
from .base import Environment, Section, Violation, cross_rule
from .data import DataSettings
from .docker_names import derived_names
from .gateway import GatewaySettings
from .monitoring import MonitoringSettings
from .runtime import RuntimeSettings
from .swarm import SwarmSettings

SECTIONS: tuple[type[Section], ...] = (RuntimeSettings, AppSettings, DataSettings, GatewaySettings, MonitoringSettings, AlertingSettings,
                                       SwarmSettings)


class Settings(RuntimeSettings, AppSettings, DataSettings, GatewaySettings, MonitoringSettings, AlertingSettings, SwarmSettings):
    """Everything one stack declares, validated before any resource exists (see settings/loading.py)."""

    def host_ports(self) -> list[tuple[str, str, int]]:
        """(field, bind address, host port) of every port the stack publishes on the Docker host."""
        ports: list[tuple[str, str, Optional[int]]] = [
            ("gateway_http_port", self.gateway_bind_address, self.gateway_http_port),
            ("gateway_https_port", self.gateway_bind_address, self.gateway_https_port if self.gateway_tls else None),
            ("gateway_preview_port", "127.0.0.1", self.gateway_preview_port),
            ("postgres_host_port", "127.0.0.1", self.postgres_host_port if self.postgres_mode == "container" else None),
            ("redis_host_port", "127.0.0.1", self.redis_host_port if self.redis_mode == "container" else None),
            ("rabbitmq_management_host_port", "127.0.0.1", self.rabbitmq_management_host_port if self.rabbitmq_mode == "container" else None),
            ("prometheus_host_port", "127.0.0.1", self.prometheus_host_port if self.monitoring_enabled else None),
        ]
        return [(field, address, port) for field, address, port in ports if port is not None]

    @cross_rule
    def _each_host_port_once(self, environment: Environment) -> Iterator[Violation]:
        # 0.0.0.0 is every address of the host, 127.0.0.1 included.
        seen: list[tuple[str, str, int]] = []
        taken = {port for _, _, port in self.host_ports()}
        for field, address, port in self.host_ports():
            clash = next((other for other in seen if other[2] == port and "0.0.0.0" in (address, other[1]) or other[1:] == (address, port)), None)
            if clash:
                free = next((candidate for candidate in (*range(port + 1, 65536), *range(1024, port)) if candidate not in taken), "")
                if free:
                    taken.add(free)
                yield Violation(field, f"port {port} on {address} is already published by "
                                       f"carecircle:{type(self).model_fields[clash[0]].alias}", free)
            seen.append((field, address, port))

    def images_in_use(self) -> list[str]:
        """The image fields whose images this stack runs."""
        fields = ["gateway_image", "workers_image", *(f"api_{color}_image" for color in ("blue", "green") if self.pool_runs(color))]
        fields += [f"{service}_image" for service in ("postgres", "redis", "rabbitmq") if getattr(self, f"{service}_mode") == "container"]
        if self.monitoring_enabled:
            fields += ["prometheus_image", "alertmanager_image", "nginx_exporter_image", *(["blackbox_exporter_image"] if self.gateway_tls else [])]
            fields += [f"{service}_exporter_image" for service in ("postgres", "redis") if getattr(self, f"{service}_mode") == "container"]
        return fields

    @cross_rule
    def _prod_images_by_digest(self, environment: Environment) -> Iterator[Violation]:
        # A tag can be moved; the provider resolves a Swarm service's tag to a digest on create only.
        if environment.name != "prod":
            return
        for field in self.images_in_use():
            reference = getattr(self, field)
            if reference is not None and "@sha256:" not in reference:
                yield Violation(field, "prod runs images pinned by digest (a tag can be moved; Swarm resolves a tag only "
                                       "when a service is created)", f"{reference}@sha256:<digest>")

    @cross_rule
    def _docker_names_fit_the_engine(self, environment: Environment) -> Iterator[Violation]:
        if stack_name_problem(self):
            return  # the stack name alone cannot fit: reported on it (settings/loading.py)
        problem = next((why for why in (name.problem() for name in derived_names(self)) if why), None)
        if problem:
            yield Violation("name_prefix", f"{problem}; it is built from namePrefix '{self.name_prefix}' and the stack name",
                            fitting_prefix(self))

    @cross_rule
    def _metrics_never_public(self, environment: Environment) -> Iterator[Violation]:
        # The api serves its metrics on its own port; what the gateway forwards there must never be that
        # path. Express matches routes case-insensitively and with or without a trailing slash
        # (path-to-regexp, sensitive: false, strict: false), so the comparison is too.
        metrics = self.api_metrics_path.lower().rstrip("/") or "/"
        if metrics in [path.lower() for path in HEALTH_PATHS]:
            yield Violation("api_metrics_path", f"{self.api_metrics_path} is also a health path the gateway forwards from the "
                                                "internet: serve metrics on a path of their own", "/metrics")
        # (A route that strips its prefix forwards every path: the gateway refuses the one that would
        # become the metrics path, see rendering.metrics_paths.)
        for route in self.gateway_routes:
            if not route.strip_prefix and (metrics + "/").startswith(route.path.lower()):
                yield Violation("api_metrics_path", f"{self.api_metrics_path} is under the public route {route.path}: metrics "
                                                    "would be readable from the internet", "/metrics")


HEALTH_PATHS = ("/health", "/ready", "/live")  # forwarded by the gateway whatever the routes (rendering.HEALTH_PATHS)


def stack_name_problem(settings: Settings) -> Optional[str]:
    """Why the stack name alone makes a Docker name the engine refuses (with the shortest prefix), or None."""
    shortest = settings.model_copy(update={"name_prefix": "c"})
    return next((why for why in (name.problem() for name in derived_names(shortest)) if why), None)


def fitting_prefix(settings: Settings) -> str:
    """namePrefix made of what every kind of name takes, shortened until every derived name fits."""
    prefix = re.sub(r"[^a-z0-9-]+", "-", str(settings.name_prefix).lower()).strip("-") or "cc"
    while len(prefix) > 1 and any(n.problem() for n in derived_names(settings.model_copy(update={"name_prefix": prefix}))):
        prefix = prefix[:-1].rstrip("-")
    return prefix


def all_cross_rules():
    return [rule for section in (*SECTIONS, Settings) for rule in section.cross_rules()]
