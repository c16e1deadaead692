"""Declares a swarm stack (carecircle:platform swarm): api pools and workers as Swarm services,
secrets as Swarm secrets, overlay networks, a gateway container on each edge node, and a Prometheus and
an Alertmanager on each monitoring node (docs/scaling.md says why each is what it is)."""

from __future__ import annotations

import json
from typing import Any, Mapping, Optional

import pulumi
import pulumi_docker as docker
import pulumi_random as random

from .alerting import alertmanager_bundle, alertmanager_names, cluster_entrypoint, cluster_flags
from .components.app_service import api_health_test, workers_health_test
from .components.certificate import GatewayCertificate
from .components.common import ContainerRuntime
from .components.gateway import Gateway
from .components.monitoring import ExporterSpec, Monitoring, MonitoringArgs, MonitoringReplica, blackbox_exporter, nginx_exporter_health
from .components.overlay_network import OverlayNetworks, OverlayNetworksArgs
from .components.swarm_preflight import SwarmPreflight, SwarmPreflightArgs
from .components.swarm_secrets import SwarmSecrets, SwarmSecretsArgs
from .components.swarm_service import Resources, Rollout, SecretFile, SwarmService, SwarmServiceArgs
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
from .monitoring import nginx_exporter_names, prometheus_bundle, prometheus_names, stub_status_url
from .rendering import Upstream
from .settings import COLORS, Settings
from .settings.swarm import seconds_of


def declare_secrets(settings: Settings) -> SwarmSecrets:
    """Every secret the apps read, as a Swarm secret (file name -> value)."""
    jwt_secret = secret_output(settings.jwt_secret) or random.RandomPassword("jwt-secret", length=64, special=False).result
    values: dict[str, pulumi.Input[str]] = {
        "database_url": secret_output(settings.database_url),  # type: ignore[dict-item]
        "redis_url": secret_output(settings.redis_url),  # type: ignore[dict-item]
        "rabbitmq_url": secret_output(settings.rabbitmq_url),  # type: ignore[dict-item]
        "jwt_secret": jwt_secret,
    }
    if settings.sentry_dsn is not None:
        values["sentry_dsn"] = secret_output(settings.sentry_dsn)  # type: ignore[assignment]
    return SwarmSecrets("secrets", SwarmSecretsArgs(values=values, name_prefix=settings.docker_name(), labels=stack_labels(settings)))


def _secret_files(secrets: SwarmSecrets, names: list[str]) -> list[SecretFile]:
    return [SecretFile(env=name.upper(), file_name=name, secret=secrets.secrets[name]) for name in names if name in secrets.secrets]


def _rollout(settings: Settings) -> Rollout:
    return Rollout(parallelism=settings.swarm_update_parallelism, delay=settings.swarm_update_delay,
                   monitor=settings.swarm_update_monitor, converge_timeout_seconds=seconds_of(settings.swarm_converge_timeout))


def _log_options(settings: Settings) -> dict[str, str]:
    return {"max-size": settings.log_max_size, "max-file": str(settings.log_max_files)}


def registry_credentials_version(settings: Settings) -> pulumi.Output[str]:
    """A value that changes whenever docker:registryAuth does (pulumi-random keeps the credentials as a
    secret, never in the value): Swarm keeps the credentials a service was created or last updated with for
    the nodes' pulls, and only an update of the service hands it new ones."""
    credentials = json.dumps([[c.address, c.username, c.password.get_secret_value()] for c in settings.registry_auth])
    return random.RandomId("registry-credentials", byte_length=4, keepers={"registryAuth": pulumi.Output.secret(credentials)}).hex


def _service(settings: Settings, secrets: SwarmSecrets, app: str, name: str, *, image: str, command: Optional[list[str]],
             env: dict[str, str], secret_names: list[str], networks: list[pulumi.Input[str]], replicas: int,
             health_test: list[str], labels: dict[str, str], credentials_version: pulumi.Input[str]) -> SwarmService:
    """One app service; what api and workers share comes from their settings (`<app>_memory_mb`, ...)."""
    def setting(key: str):
        return getattr(settings, f"{app}_{key}")

    return SwarmService(name, SwarmServiceArgs(
        image=image, command=command, env={"NODE_ENV": settings.node_env, **env}, secret_files=_secret_files(secrets, secret_names),
        networks=networks, replicas=replicas, health_test=health_test, health_interval=settings.healthcheck_interval,
        resources=Resources(memory_mb=setting("memory_mb"), cpus=setting("cpus"),
                            memory_reserved_mb=setting("memory_reserved_mb") or setting("memory_mb"),
                            cpus_reserved=setting("cpus_reserved") or setting("cpus")),
        max_replicas_per_node=setting("max_replicas_per_node"),
        node_platform=tuple(settings.swarm_node_platform.split("/", 1)),  # type: ignore[arg-type]
        stop_grace_seconds=setting("shutdown_grace_seconds"),
        rollout=_rollout(settings),
        log_options=_log_options(settings),
        labels={**stack_labels(settings), "com.carecircle.role": app, **labels},
        manager_host=settings.docker_host,
        credentials_version=credentials_version,
    ))


def declare_apps(settings: Settings, networks: OverlayNetworks, secrets: SwarmSecrets) -> tuple[dict[str, SwarmService], Optional[SwarmService]]:
    """The api pools that run replicas, and the workers (when any)."""
    credentials_version = registry_credentials_version(settings)
    pools = {color: _service(
        settings, secrets, "api", settings.docker_name("api", color),
        image=settings.api_image(color),  # type: ignore[arg-type]
        command=None,
        env={"PORT": str(settings.api_port), "JWT_EXPIRES_IN": settings.jwt_expires_in,
             "SHUTDOWN_DELAY_SECONDS": str(settings.api_shutdown_delay_seconds),
             **_plain(tracing_env(settings, "carecircle-api", pool=color))},
        secret_names=["database_url", "redis_url", "rabbitmq_url", "jwt_secret", "sentry_dsn"],
        networks=[networks.edge.id, networks.backend.id],
        replicas=settings.api_replicas(color),
        health_test=api_health_test(settings.api_port, settings.api_health_path),
        labels={"com.carecircle.color": color},
        credentials_version=credentials_version,
    ) for color in COLORS if settings.api_replicas(color)}
    workers = _service(
        settings, secrets, "workers", settings.docker_name("workers"),
        image=settings.workers_image,  # type: ignore[arg-type]
        command=settings.workers_command,
        env={"WORKER_HEARTBEAT_FILE": settings.workers_heartbeat_file, **_plain(tracing_env(settings, "carecircle-workers"))},
        secret_names=["database_url", "redis_url", "rabbitmq_url", "sentry_dsn"],
        networks=[networks.backend.id, *([networks.egress.id] if networks.egress and settings.workers_need_egress else [])],
        replicas=settings.workers_replicas,
        health_test=workers_health_test(settings.workers_heartbeat_file),
        labels={},
        credentials_version=credentials_version,
    ) if settings.workers_replicas else None
    return pools, workers


def _plain(env: list[pulumi.Input[str]]) -> dict[str, str]:
    """KEY=value entries that are plain text (secrets travel as Swarm secrets instead)."""
    return dict(entry.split("=", 1) for entry in env if isinstance(entry, str))


def swarm_upstreams(settings: Settings, services: Mapping[str, str]) -> dict[str, Upstream]:
    """The gateway's upstreams: the tasks of the active pool's service (and the idle one's, for the
    preview listener), re-resolved as tasks start, stop and move."""
    def tasks(color: str) -> Upstream:
        # Lower case: a stack named prod-EU names its services in upper case, and Docker's DNS answers
        # for them in any case (moby daemon/libnetwork/network.go lowercases names it records and asks for).
        return Upstream((f"tasks.{services[color].lower()}:{settings.api_port}",), resolve=True) if color in services else Upstream(())

    return {"api": tasks(settings.api_active_color), "api_idle": tasks(settings.idle_color)}


def declare_gateways(settings: Settings, runtime: ContainerRuntime, networks: OverlayNetworks, pools: dict[str, SwarmService],
                     providers: list[docker.Provider]) -> tuple[list[Gateway], Optional[GatewayCertificate]]:
    """A gateway container on each edge node, reloaded in place as in engine mode (no Swarm config,
    which would restart it): its upstreams are the pools' tasks by DNS name. Each waits for the one
    before it, so replacements (delete-first) go one edge at a time. acme: one certificate, its
    challenges answered by every edge's gateway that runs (declarations.gateway_certificate)."""
    names = pulumi.Output.all(**{color: pool.service.name for color, pool in pools.items()})
    upstreams = names.apply(lambda services: swarm_upstreams(settings, services))
    edges = [(settings.docker_name("gateway", str(index)), host) for index, host in enumerate(settings.swarm_edge_hosts, 1)]
    gateways: list[Gateway] = []
    certificate, bundle = None, None
    for index, ((container_name, host), provider) in enumerate(zip(edges, providers, strict=True), 1):
        gateway = Gateway(f"gateway-{index}", gateway_args(
            settings, runtime, container_name=container_name, edge_network=networks.edge.name, docker_host=host,
            after=[gateways[-1].serving] if gateways else [],
            balancer_recovery_seconds=settings.swarm_balancer_recovery_seconds if len(edges) > 1 else None,
        ), pulumi.ResourceOptions(providers=[provider]))
        if bundle is None:
            certificate = gateway_certificate(settings, edges, gateway)
            bundle = gateway_bundle_output(settings, upstreams, certificate)
        # Switched only once every pool it names rolled out completely.
        gateway.apply(bundle, [pool.rollout for pool in pools.values()])
        gateways.append(gateway)
    return gateways, certificate


def node_provider(name: str, host: str, settings: Settings) -> docker.Provider:
    """The docker provider of one node, with the stack's registry credentials and ssh flags (the default
    provider reads docker:registryAuth and docker:sshOpts itself; a provider the program declares gets
    only what it is given)."""
    return docker.Provider(name, host=host, ssh_opts=settings.ssh_opts or None, registry_auth=[docker.ProviderRegistryAuthArgs(
        address=credential.address, username=credential.username, password=secret_output(credential.password))
        for credential in settings.registry_auth] or None)


def declare_monitoring(settings: Settings, runtime: ContainerRuntime, networks: OverlayNetworks, pools: dict[str, SwarmService],
                       gateways: list[Gateway], edge_providers: list[docker.Provider]) -> Monitoring:
    """A Prometheus and an Alertmanager, each with its protected volume, on every monitoring node (the
    Alertmanagers gossip with each other); an nginx exporter beside each gateway."""
    exporters = [ExporterSpec(
        key=f"nginx-exporter-{index}",
        container_name=name,
        image=settings.nginx_exporter_image,
        networks=[networks.edge.name, networks.backend.name],
        command=[f"--nginx.scrape-uri={stub_status_url(settings, index)}"],
        health_test=nginx_exporter_health(),
        provider=edge_provider,
    ) for index, (name, edge_provider) in enumerate(zip(nginx_exporter_names(settings), edge_providers, strict=True), 1)]
    replicas = [MonitoringReplica(
        key=f"-{index}",
        prometheus_name=prometheus,
        prometheus_volume=f"{prometheus}-data",
        alertmanager_name=alertmanager,
        alertmanager_volume=f"{alertmanager}-data",
        alertmanager_cluster=cluster_flags(settings, alertmanager),
        alertmanager_entrypoint=cluster_entrypoint(settings),
        docker_host=host,
        provider=node_provider(f"monitoring-node-{index}", host, settings),
    ) for index, (host, prometheus, alertmanager) in enumerate(zip(
        settings.swarm_monitoring_hosts, prometheus_names(settings), alertmanager_names(settings), strict=True), 1)]
    # On the first monitoring node, so each edge's certificate is read from another host.
    exporters += filter(None, [blackbox_exporter(settings, [networks.edge.name, networks.backend.name])])
    names = pulumi.Output.all(**{color: pool.service.name for color, pool in pools.items()})
    return Monitoring("monitoring", MonitoringArgs(
        prometheus_image=settings.prometheus_image,
        alertmanager_image=settings.alertmanager_image,
        retention=settings.prometheus_retention,
        prometheus_bundle=names.apply(lambda services: prometheus_bundle(settings, api_services=services)),
        alertmanager_bundle=pulumi.Output.secret(alertmanager_bundle(settings)),
        replicas=replicas,
        backend_network=networks.backend.name,
        egress_network=networks.egress.name,  # type: ignore[union-attr]
        exporters=exporters,
        runtime=runtime,
        protect_volumes=settings.protect_data,
    # After the gateways' configuration: the exporter reads stub_status, which the bootstrap configuration lacks.
    ), pulumi.ResourceOptions(depends_on=[*(g.container for g in gateways), *(g.config for g in gateways)]))


def declare_swarm(settings: Settings) -> dict[str, Any]:
    """Declare a swarm stack; returns the stack outputs."""
    preflight = SwarmPreflight("swarm", SwarmPreflightArgs(
        manager_host=settings.docker_host, edge_hosts=settings.swarm_edge_hosts,
        monitoring_hosts=settings.swarm_monitoring_hosts if settings.monitoring_enabled else []))
    networks = OverlayNetworks("networks", OverlayNetworksArgs(
        edge_name=settings.docker_name("edge"), backend_name=settings.docker_name("backend"),
        egress_name=settings.docker_name("egress") if settings.needs_egress else None,
        encrypted=settings.swarm_encrypt_overlays, labels=stack_labels(settings), depends_on=(preflight.check,)))
    secrets = declare_secrets(settings)
    pools, workers = declare_apps(settings, networks, secrets)
    runtime = container_runtime(settings)
    edge_providers = [node_provider(f"edge-node-{index}", host, settings) for index, host in enumerate(settings.swarm_edge_hosts, 1)]
    gateways, certificate = declare_gateways(settings, runtime, networks, pools, edge_providers)
    monitoring = declare_monitoring(settings, runtime, networks, pools, gateways, edge_providers) if settings.monitoring_enabled else None
    return {
        "gatewayUrl": gateway_url(settings),
        **certificate_outputs(certificate),
        "activeColor": settings.api_active_color,
        "services": [s.service.name for s in [*pools.values(), *([workers] if workers else [])]],
        "containers": [c.name for c in [*(g.container for g in gateways),
                                        *([*monitoring.exporters, *monitoring.prometheus, *monitoring.alertmanagers] if monitoring else [])]],
        "networks": [n.name for n in (networks.edge, networks.backend, networks.egress) if n is not None],
        "volumes": [v.name for v in monitoring.volumes] if monitoring else [],
    }
