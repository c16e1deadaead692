"""Monitoring: Prometheus on the internal backend network, with its data volume, scraping the api
pools, nginx (stub_status through nginx-prometheus-exporter) and the data services that run as
containers (postgres and redis exporters, RabbitMQ's built-in endpoint), with the stack's alert rules."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import pulumi
import pulumi_docker as docker

from ..monitoring import (
    APPLY_SCRIPT,
    BLACKBOX_CONFIG_PATH,
    BOOTSTRAP_CONFIG,
    CONFIG_PATH,
    POSTGRES_EXPORTER_PORT,
    PROMETHEUS_PORT,
    blackbox_exporter_name,
    render_blackbox_config,
)
from ..settings import Settings
from .common import ContainerRuntime, apply_in_container, data_volume


@dataclass(frozen=True)
class ExporterSpec:
    """One exporter container."""

    key: str  # postgres-exporter, redis-exporter, nginx-exporter
    container_name: str
    image: str
    networks: Sequence[pulumi.Input[str]]
    health_test: list[str]
    command: Optional[list[str]] = None
    envs: Optional[pulumi.Input[Sequence[pulumi.Input[str]]]] = None
    # (path, content) of a configuration file the exporter starts with.
    config_file: Optional[tuple[str, str]] = None
    # Swarm: the engine of the edge node whose gateway it reads (default: the component's own).
    provider: Optional[pulumi.ProviderResource] = None


@dataclass(frozen=True)
class MonitoringArgs:
    prometheus_name: str
    prometheus_image: str
    volume_name: str
    retention: str
    # prometheus.yml + alerts.yml, applied to the running container (see prometheus-apply.sh).
    bundle: pulumi.Input[str]
    docker_host: Optional[str]
    backend_network: pulumi.Input[str]
    exporters: Sequence[ExporterSpec]
    runtime: ContainerRuntime
    protect_volume: bool
    host_port: Optional[int] = None  # dev only, on 127.0.0.1
    # Swarm: the engine of the monitoring node, where Prometheus and its volume live.
    provider: Optional[pulumi.ProviderResource] = None


class Monitoring(pulumi.ComponentResource):
    prometheus: docker.Container
    config: pulumi.Resource
    exporters: list[docker.Container]
    volume: docker.Volume

    def __init__(self, name: str, args: MonitoringArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("carecircle:monitoring:Monitoring", name, None, opts)
        self.exporters = [
            docker.Container(
                f"{name}-{spec.key}",
                name=spec.container_name,
                image=spec.image,
                command=spec.command,
                envs=spec.envs,
                uploads=[docker.ContainerUploadArgs(file=spec.config_file[0], content=spec.config_file[1])] if spec.config_file else None,
                networks_advanced=[docker.ContainerNetworksAdvancedArgs(name=network) for network in spec.networks],
                healthcheck=args.runtime.healthcheck(spec.health_test, start_period="10s"),
                **args.runtime.container_kwargs(spec.key),
                opts=pulumi.ResourceOptions(parent=self, provider=spec.provider or args.provider),
            )
            for spec in args.exporters
        ]
        self.volume = data_volume(f"{name}-prometheus-data", args.volume_name, args.runtime, args.protect_volume, self, args.provider)
        self.prometheus = docker.Container(
            f"{name}-prometheus",
            name=args.prometheus_name,
            image=args.prometheus_image,
            command=[
                f"--config.file={CONFIG_PATH}",
                "--storage.tsdb.path=/prometheus",
                f"--storage.tsdb.retention.time={args.retention}",
                "--web.enable-lifecycle",
            ],
            # Starts from a constant bootstrap config; the stack's config and rules are applied in place.
            uploads=[docker.ContainerUploadArgs(file=CONFIG_PATH, content=BOOTSTRAP_CONFIG)],
            volumes=[docker.ContainerVolumeArgs(volume_name=self.volume.name, container_path="/prometheus")],
            networks_advanced=[docker.ContainerNetworksAdvancedArgs(name=args.backend_network)],
            ports=[docker.ContainerPortArgs(internal=PROMETHEUS_PORT, external=args.host_port, ip="127.0.0.1")] if args.host_port else None,
            healthcheck=args.runtime.healthcheck(["CMD-SHELL", f"wget -q -O /dev/null http://127.0.0.1:{PROMETHEUS_PORT}/-/healthy || exit 1"]),
            **args.runtime.container_kwargs("prometheus"),
            opts=pulumi.ResourceOptions(parent=self, depends_on=self.exporters, provider=args.provider),
        )
        self.config = apply_in_container(
            f"{name}-config", self.prometheus, args.prometheus_name, APPLY_SCRIPT, args.bundle, args.docker_host,
            parent=self, as_root=True,
        )
        self.register_outputs({"prometheus": self.prometheus.name, "volume": self.volume.name})


def nginx_exporter_health() -> list[str]:
    # The image is FROM scratch (no shell, no wget): the check proves the binary runs; whether it
    # serves is Prometheus's `up` (the TargetDown alert).
    return ["CMD", "/usr/bin/nginx-prometheus-exporter", "--version"]


def blackbox_exporter_health() -> list[str]:
    return ["CMD", "/bin/blackbox_exporter", "--version"]


def blackbox_exporter(settings: Settings, networks: Sequence[pulumi.Input[str]]) -> Optional[ExporterSpec]:
    """TLS stacks: the exporter that probes the certificate each gateway serves, from outside it."""
    if not settings.gateway_tls:
        return None
    return ExporterSpec(key="blackbox-exporter", container_name=blackbox_exporter_name(settings), image=settings.blackbox_exporter_image,
                        networks=networks, health_test=blackbox_exporter_health(), command=[f"--config.file={BLACKBOX_CONFIG_PATH}"],
                        config_file=(BLACKBOX_CONFIG_PATH, render_blackbox_config(settings)))


def redis_exporter_health() -> list[str]:
    # Also FROM scratch; see nginx_exporter_health.
    return ["CMD", "/redis_exporter", "--version"]


def postgres_exporter_health() -> list[str]:
    return ["CMD-SHELL", f"wget -q -O /dev/null http://127.0.0.1:{POSTGRES_EXPORTER_PORT}/metrics || exit 1"]


