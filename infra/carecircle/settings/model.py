"""The composed Settings: every section's keys, flat, plus the rules that span sections."""

from __future__ import annotations

from typing import Iterator, Optional

from .alerting import AlertingSettings
from .apps import AppSettings
from .base import Environment, Section, Violation, cross_rule
from .data import DataSettings
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


def all_cross_rules():
    return [rule for section in (*SECTIONS, Settings) for rule in section.cross_rules()]
