"""Monitoring: Prometheus and Alertmanager on the internal backend network, each with its data volume,
scraping the api pools, nginx (stub_status through nginx-prometheus-exporter) and the data services that
run as containers (postgres and redis exporters, RabbitMQ's built-in endpoint), with the stack's alert
rules, delivering alerts to the stack's receivers. On Swarm a Prometheus and an Alertmanager run on each
monitoring node: the Prometheus replicas scrape the same targets and send every alert to every
Alertmanager, which gossip to send each notification once."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import pulumi
import pulumi_docker as docker

from ..alerting import ALERTMANAGER_PORT
from ..alerting import APPLY_SCRIPT as ALERTMANAGER_APPLY_SCRIPT
from ..alerting import BOOTSTRAP_CONFIG as ALERTMANAGER_BOOTSTRAP
from ..alerting import CONFIG_PATH as ALERTMANAGER_CONFIG_PATH
from ..alerting import DATA_DIR as ALERTMANAGER_DATA_DIR
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
    # Swarm: the engine of the edge node whose gateway it reads (default: the first monitoring node's).
    provider: Optional[pulumi.ProviderResource] = None


@dataclass(frozen=True)
class MonitoringReplica:
    """A Prometheus and an Alertmanager on one Docker engine (Swarm: one monitoring node)."""

    key: str  # resource names: "" on the engine, "-1", "-2" on Swarm
    prometheus_name: str
    prometheus_volume: str
    alertmanager_name: str
    alertmanager_volume: str
    # Alertmanager's gossip flags (alerting.cluster_flags): its peers, or clustering off.
    alertmanager_cluster: Sequence[str]
    # With peers: the shell that adds the address Alertmanager advertises to them (alerting.cluster_entrypoint).
    alertmanager_entrypoint: Optional[Sequence[str]]
    docker_host: Optional[str]
    provider: Optional[pulumi.ProviderResource] = None


@dataclass(frozen=True)
class MonitoringArgs:
    prometheus_image: str
    alertmanager_image: str
    retention: str
    # prometheus.yml + alerts.yml, applied to each running Prometheus (see prometheus-apply.sh).
    prometheus_bundle: pulumi.Input[str]
    # alertmanager.yml, a secret (receiver credentials), applied to each Alertmanager (alertmanager-apply.sh).
    alertmanager_bundle: pulumi.Input[str]
    replicas: Sequence[MonitoringReplica]
    backend_network: pulumi.Input[str]
    # Alertmanager reaches its receivers through it (the backend network is internal).
    egress_network: pulumi.Input[str]
    exporters: Sequence[ExporterSpec]
    runtime: ContainerRuntime
    protect_volumes: bool
    prometheus_host_port: Optional[int] = None  # dev only, on 127.0.0.1


class Monitoring(pulumi.ComponentResource):
    prometheus: list[docker.Container]
    alertmanagers: list[docker.Container]
    exporters: list[docker.Container]
    volumes: list[docker.Volume]
    configs: list[pulumi.Resource]

    def __init__(self, name: str, args: MonitoringArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("carecircle:monitoring:Monitoring", name, None, opts)
        default_provider = args.replicas[0].provider
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
                opts=pulumi.ResourceOptions(parent=self, provider=spec.provider or default_provider),
            )
            for spec in args.exporters
        ]
        self.prometheus, self.alertmanagers, self.volumes, self.configs = [], [], [], []
        alertmanager_configs = [self._alertmanager(name, replica, args) for replica in args.replicas]
        for replica in args.replicas:
            # Configured (rules, alerting targets) once every Alertmanager is: Prometheus sends a new alert
            # once, then again only every minute, and one sent to an Alertmanager not yet listening is lost.
            self._prometheus(name, replica, args, after=alertmanager_configs)
        self.register_outputs({"prometheus": [c.name for c in self.prometheus], "alertmanagers": [c.name for c in self.alertmanagers],
                               "volumes": [v.name for v in self.volumes]})

    def _prometheus(self, name: str, replica: MonitoringReplica, args: MonitoringArgs, after: Sequence[pulumi.Resource]) -> None:
        runtime, provider = args.runtime, replica.provider
        volume = data_volume(f"{name}-prometheus{replica.key}-data", replica.prometheus_volume, runtime, args.protect_volumes, self, provider)
        prometheus = docker.Container(
            f"{name}-prometheus{replica.key}",
            name=replica.prometheus_name,
            image=args.prometheus_image,
            command=[
                f"--config.file={CONFIG_PATH}",
                "--storage.tsdb.path=/prometheus",
                f"--storage.tsdb.retention.time={args.retention}",
                "--web.enable-lifecycle",
            ],
            # Starts from a constant bootstrap config; the stack's config and rules are applied in place.
            uploads=[docker.ContainerUploadArgs(file=CONFIG_PATH, content=BOOTSTRAP_CONFIG)],
            volumes=[docker.ContainerVolumeArgs(volume_name=volume.name, container_path="/prometheus")],
            networks_advanced=[docker.ContainerNetworksAdvancedArgs(name=args.backend_network)],
            ports=[docker.ContainerPortArgs(internal=PROMETHEUS_PORT, external=args.prometheus_host_port, ip="127.0.0.1")]
            if args.prometheus_host_port else None,
            healthcheck=runtime.healthcheck(["CMD-SHELL", f"wget -q -O /dev/null http://127.0.0.1:{PROMETHEUS_PORT}/-/healthy || exit 1"]),
            **runtime.container_kwargs("prometheus"),
            opts=pulumi.ResourceOptions(parent=self, depends_on=self.exporters, provider=provider),
        )
        self.configs.append(apply_in_container(f"{name}-prometheus{replica.key}-config", prometheus, replica.prometheus_name, APPLY_SCRIPT,
                                               args.prometheus_bundle, replica.docker_host, depends_on=after, parent=self, as_root=True))
        self.prometheus.append(prometheus)
        self.volumes.append(volume)

    def _alertmanager(self, name: str, replica: MonitoringReplica, args: MonitoringArgs) -> pulumi.Resource:
        runtime, provider = args.runtime, replica.provider
        volume = data_volume(f"{name}-alertmanager{replica.key}-data", replica.alertmanager_volume, runtime, args.protect_volumes, self, provider)
        alertmanager = docker.Container(
            f"{name}-alertmanager{replica.key}",
            name=replica.alertmanager_name,
            image=args.alertmanager_image,
            entrypoints=replica.alertmanager_entrypoint,
            command=[
                f"--config.file={ALERTMANAGER_CONFIG_PATH}",
                # Silences and the notification log: what was sent to whom, so a restart never re-sends.
                f"--storage.path={ALERTMANAGER_DATA_DIR}",
                *replica.alertmanager_cluster,
            ],
            uploads=[docker.ContainerUploadArgs(file=ALERTMANAGER_CONFIG_PATH, content=ALERTMANAGER_BOOTSTRAP)],
            volumes=[docker.ContainerVolumeArgs(volume_name=volume.name, container_path=ALERTMANAGER_DATA_DIR)],
            networks_advanced=[docker.ContainerNetworksAdvancedArgs(name=args.backend_network),
                               docker.ContainerNetworksAdvancedArgs(name=args.egress_network)],
            healthcheck=runtime.healthcheck(["CMD-SHELL", f"wget -q -O /dev/null http://127.0.0.1:{ALERTMANAGER_PORT}/-/healthy || exit 1"]),
            **runtime.container_kwargs("alertmanager"),
            opts=pulumi.ResourceOptions(parent=self, provider=provider),
        )
        config = apply_in_container(f"{name}-alertmanager{replica.key}-config", alertmanager, replica.alertmanager_name,
                                    ALERTMANAGER_APPLY_SCRIPT, args.alertmanager_bundle, replica.docker_host, parent=self, as_root=True)
        self.alertmanagers.append(alertmanager)
        self.volumes.append(volume)
        self.configs.append(config)
        return config


def nginx_exporter_health() -> list[str]:
    # The image is FROM scratch (no shell, no wget): the check proves the binary runs; whether it
    # serves is Prometheus's `up` (TargetDown), whether it reads the gateway `nginx_up` (GatewayStatusUnreadable).
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
