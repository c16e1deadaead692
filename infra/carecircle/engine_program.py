"""Declares an engine stack (carecircle:platform engine, dev): every container on one Docker engine,
one concern at a time."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Optional

import pulumi
import pulumi_docker as docker
import pulumi_random as random

from .alerting import alertmanager_bundle, alertmanager_names, cluster_flags
from .components.app_service import AppService, AppServiceArgs, api_health_test, workers_health_test
from .components.certificate import GatewayCertificate
from .components.common import ContainerRuntime
from .components.data_service import DataService, DataServiceArgs, postgres_kind, rabbitmq_kind, redis_kind
from .components.gateway import Gateway
from .components.monitoring import (
    ExporterSpec,
    Monitoring,
    MonitoringArgs,
    MonitoringReplica,
    blackbox_exporter,
    nginx_exporter_health,
    postgres_exporter_health,
    redis_exporter_health,
)
from .components.network import Networks, NetworksArgs
from .declarations import (
    certificate_outputs,
    container_runtime,
    gateway_args,
    gateway_bundle_output,
    gateway_certificate,
    gateway_url,
    secret_output,
    stack_labels,
    tracing_env,
)
from .monitoring import prometheus_bundle, stub_status_url
from .settings import COLORS, Settings
from .settings.docker_names import build_image_repository


@dataclass
class DataServices:
    """The data services run here (dev) and the URL of each, run here or managed (secret)."""

    services: dict[str, DataService] = field(default_factory=dict)
    urls: dict[str, pulumi.Output[str]] = field(default_factory=dict)

    @property
    def containers(self) -> list[docker.Container]:
        return [service.container for service in self.services.values()]


class Images:
    """A registry image as configured, or (dev) the image built from a directory of this repository;
    one build per directory, shared by every service that names it."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.built: dict[str, docker.Image] = {}

    def image(self, configured: Optional[str], build_context: Optional[str]) -> pulumi.Input[str]:
        if build_context is None:
            return configured  # type: ignore[return-value]
        if build_context not in self.built:
            slug = re.sub(r"[^a-z0-9]+", "-", build_context.lower()).strip("-")
            self.built[build_context] = docker.Image(
                f"image-{slug}",
                image_name=f"{build_image_repository(self.settings, build_context)}:local",
                build=docker.DockerBuildArgs(context=build_context),
                skip_push=True,
            )
        # repo_digest is the local image id when not pushed: a rebuild changes it, and the containers follow.
        return self.built[build_context].repo_digest


def declare_networks(settings: Settings) -> Networks:
    return Networks("networks", NetworksArgs(
        edge_name=settings.docker_name("edge"),
        edge_subnet=settings.edge_subnet,
        edge_dynamic_range=settings.edge_dynamic_range,
        backend_name=settings.docker_name("backend"),
        egress_name=settings.docker_name("egress") if settings.needs_egress else None,
        labels=stack_labels(settings),
    ))


def declare_data_services(settings: Settings, runtime: ContainerRuntime, networks: Networks) -> DataServices:
    """Each data service as a container with its volume (container mode), or its managed URL (external)."""
    declared = DataServices()
    specs = [
        ("postgres", settings.postgres_mode, settings.postgres_image, postgres_kind(settings.postgres_database, settings.postgres_user),
         settings.postgres_host_port, settings.database_url),
        ("redis", settings.redis_mode, settings.redis_image, redis_kind(), settings.redis_host_port, settings.redis_url),
        ("rabbitmq", settings.rabbitmq_mode, settings.rabbitmq_image, rabbitmq_kind(), settings.rabbitmq_management_host_port,
         settings.rabbitmq_url),
    ]
    for service, mode, image, kind, host_port, external_url in specs:
        if mode == "external":
            declared.urls[service] = secret_output(external_url)  # type: ignore[assignment]
            continue
        published = (kind.management_port or kind.port, host_port) if host_port else None
        declared.services[service] = DataService(service, DataServiceArgs(
            kind=kind,
            container_name=settings.docker_name(service),
            volume_name=settings.docker_name(service, "data"),
            image=image,
            backend_network=networks.backend.name,
            runtime=runtime,
            protect_volume=settings.protect_data,
            published_port=published,
        ))
        declared.urls[service] = declared.services[service].url
    return declared


@dataclass
class Apps:
    pools: dict[str, AppService]
    workers: AppService

    @property
    def api_containers(self) -> list[docker.Container]:
        return [c for color in COLORS for c in self.pools[color].containers]


def declare_apps(settings: Settings, runtime: ContainerRuntime, networks: Networks, data: DataServices) -> Apps:
    """The api's blue and green pools and the workers, with the environment they share."""
    jwt_secret = secret_output(settings.jwt_secret) or random.RandomPassword("jwt-secret", length=64, special=False).result
    shared_env = [
        f"NODE_ENV={settings.node_env}",
        pulumi.Output.concat("DATABASE_URL=", data.urls["postgres"]),
        pulumi.Output.concat("REDIS_URL=", data.urls["redis"]),
        pulumi.Output.concat("RABBITMQ_URL=", data.urls["rabbitmq"]),
    ]
    api_env = pulumi.Output.secret(pulumi.Output.all(
        *shared_env, f"PORT={settings.api_port}", pulumi.Output.concat("JWT_SECRET=", jwt_secret),
        f"JWT_EXPIRES_IN={settings.jwt_expires_in}", *tracing_env(settings, "carecircle-api")))
    workers_env = pulumi.Output.secret(pulumi.Output.all(
        *shared_env, f"WORKER_HEARTBEAT_FILE={settings.workers_heartbeat_file}", *tracing_env(settings, "carecircle-workers")))
    images = Images(settings)
    after_data = pulumi.ResourceOptions(depends_on=data.containers)
    pools = {color: AppService(f"api-{color}", AppServiceArgs(
        role="api",
        container_names=settings.api_container_names(color),
        image=images.image(settings.api_image(color), settings.api_build_context),
        command=None,
        envs=api_env,
        networks=[networks.edge.name, networks.backend.name],
        addresses=settings.api_addresses(color),
        labels={"com.carecircle.color": color},
        health_test=api_health_test(settings.api_port, settings.api_health_path),
        memory_mb=settings.api_memory_mb,
        cpus=settings.api_cpus,
        runtime=runtime,
        stop_grace_seconds=settings.api_shutdown_grace_seconds,
        wait_healthy=True,
    ), after_data) for color in COLORS}
    workers = AppService("workers", AppServiceArgs(
        role="workers",
        container_names=[settings.docker_name("workers", str(i)) for i in range(1, settings.workers_replicas + 1)],
        image=images.image(settings.workers_image, settings.workers_build_context),
        command=settings.workers_command,
        envs=workers_env,
        networks=[networks.backend.name, *([networks.egress.name] if networks.egress and settings.workers_need_egress else [])],
        health_test=workers_health_test(settings.workers_heartbeat_file),
        memory_mb=settings.workers_memory_mb,
        cpus=settings.workers_cpus,
        runtime=runtime,
        stop_grace_seconds=settings.workers_shutdown_grace_seconds,
        wait_healthy=False,
    ), after_data)
    return Apps(pools=pools, workers=workers)


def upstreams(settings: Settings) -> dict[str, list[str]]:
    """The gateway's upstreams: the active pool, and the idle one for the preview listener."""
    return {
        "api": [f"{address}:{settings.api_port}" for address in settings.api_addresses(settings.api_active_color)],
        "api_idle": [f"{address}:{settings.api_port}" for address in settings.api_addresses(settings.idle_color)],
    }


def declare_gateway(settings: Settings, runtime: ContainerRuntime, networks: Networks,
                    apps: Apps) -> tuple[Gateway, Optional[GatewayCertificate]]:
    """The gateway and (gatewayTls acme) its certificate."""
    gateway = Gateway("gateway", gateway_args(
        settings, runtime, container_name=settings.docker_name("gateway"), edge_network=networks.edge.name, docker_host=settings.docker_host))
    certificate = gateway_certificate(settings, [(gateway.args.container_name, gateway.args.docker_host)], gateway)
    # Applied only once the api containers exist and are healthy (wait=True).
    gateway.apply(gateway_bundle_output(settings, upstreams(settings), certificate), apps.api_containers)
    return gateway, certificate


def declare_monitoring(settings: Settings, runtime: ContainerRuntime, networks: Networks, data: DataServices,
                       gateway: Gateway) -> Monitoring:
    exporters = [ExporterSpec(
        key="nginx-exporter",
        container_name=settings.docker_name("nginx-exporter"),
        image=settings.nginx_exporter_image,
        # On the edge network to read the gateway's stub_status, on the backend one for Prometheus.
        networks=[networks.edge.name, networks.backend.name],
        command=[f"--nginx.scrape-uri={stub_status_url(settings)}"],
        health_test=nginx_exporter_health(),
    )]
    # On the edge network to reach the gateway's HTTPS listener, on the backend one for Prometheus.
    exporters += filter(None, [blackbox_exporter(settings, [networks.edge.name, networks.backend.name])])
    if "postgres" in data.services:
        exporters.append(ExporterSpec(
            key="postgres-exporter",
            container_name=settings.docker_name("postgres-exporter"),
            image=settings.postgres_exporter_image,
            networks=[networks.backend.name],
            envs=pulumi.Output.secret(pulumi.Output.all(
                pulumi.Output.concat("DATA_SOURCE_NAME=", data.services["postgres"].url, "?sslmode=disable"))),
            health_test=postgres_exporter_health(),
        ))
    if "redis" in data.services:
        exporters.append(ExporterSpec(
            key="redis-exporter",
            container_name=settings.docker_name("redis-exporter"),
            image=settings.redis_exporter_image,
            networks=[networks.backend.name],
            envs=pulumi.Output.secret(pulumi.Output.all(
                f"REDIS_ADDR=redis://{settings.docker_name('redis')}:6379",
                pulumi.Output.concat("REDIS_PASSWORD=", data.services["redis"].password))),
            health_test=redis_exporter_health(),
        ))
    return Monitoring("monitoring", MonitoringArgs(
        prometheus_image=settings.prometheus_image,
        alertmanager_image=settings.alertmanager_image,
        retention=settings.prometheus_retention,
        prometheus_bundle=prometheus_bundle(settings),
        alertmanager_bundle=pulumi.Output.secret(alertmanager_bundle(settings)),
        replicas=[MonitoringReplica(
            key="",
            prometheus_name=settings.docker_name("prometheus"),
            prometheus_volume=settings.docker_name("prometheus", "data"),
            alertmanager_name=alertmanager_names(settings)[0],
            alertmanager_volume=settings.docker_name("alertmanager", "data"),
            alertmanager_cluster=cluster_flags(settings, alertmanager_names(settings)[0]),
            alertmanager_entrypoint=None,
            docker_host=settings.docker_host,
        )],
        backend_network=networks.backend.name,
        egress_network=networks.egress.name,  # type: ignore[union-attr]
        exporters=exporters,
        runtime=runtime,
        protect_volumes=settings.protect_data,
        prometheus_host_port=settings.prometheus_host_port,
    # After the gateway's configuration: the exporter reads stub_status, which the bootstrap configuration lacks.
    ), pulumi.ResourceOptions(depends_on=[gateway.container, gateway.config, *data.containers]))


def declare_engine(settings: Settings) -> dict[str, Any]:
    """Declare an engine stack; returns the stack outputs."""
    runtime = container_runtime(settings)
    networks = declare_networks(settings)
    data = declare_data_services(settings, runtime, networks)
    apps = declare_apps(settings, runtime, networks, data)
    gateway, certificate = declare_gateway(settings, runtime, networks, apps)
    monitoring = declare_monitoring(settings, runtime, networks, data, gateway) if settings.monitoring_enabled else None
    monitoring_containers = [*monitoring.exporters, *monitoring.prometheus, *monitoring.alertmanagers] if monitoring else []
    return {
        "gatewayUrl": gateway_url(settings),
        **certificate_outputs(certificate),
        "containers": [c.name for c in [*data.containers, *apps.api_containers, *apps.workers.containers, gateway.container, *monitoring_containers]],
        "activeColor": settings.api_active_color,
        "networks": [n.name for n in (networks.edge, networks.backend, networks.egress) if n is not None],
        "volumes": [service.volume.name for service in data.services.values()] + ([v.name for v in monitoring.volumes] if monitoring else []),
    }
