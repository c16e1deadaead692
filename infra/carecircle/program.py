"""Declares one CareCircle environment from its validated settings."""

from __future__ import annotations

import re
from typing import Any, Optional

import pulumi
import pulumi_docker as docker
import pulumi_random as random

from .components.app_service import AppService, AppServiceArgs
from .components.common import ContainerRuntime
from .components.data_service import (
    DataService,
    DataServiceArgs,
    DataServiceKind,
    postgres_kind,
    rabbitmq_kind,
    redis_kind,
)
from .components.gateway import Gateway, GatewayArgs, TlsHostPaths
from .components.monitoring import (
    ExporterSpec,
    Monitoring,
    MonitoringArgs,
    nginx_exporter_health,
    postgres_exporter_health,
    redis_exporter_health,
)
from .components.network import Networks, NetworksArgs
from .monitoring import prometheus_bundle, stub_status_url
from .rendering import NginxPaths, gateway_bundle, render_nginx_conf, shipped_tls_files
from .settings import COLORS, Settings, load_settings


def _secret(value: Any) -> Optional[pulumi.Output[str]]:
    return pulumi.Output.secret(value.get_secret_value()) if value is not None else None


def api_health_test(settings: Settings) -> list[str]:
    # Node's own fetch: the api image is Node and need not ship curl or wget.
    url = f"http://127.0.0.1:{settings.api_port}{settings.api_health_path}"
    return ["CMD", "node", "-e", f"fetch('{url}').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]


def workers_health_test(settings: Settings) -> list[str]:
    heartbeat = settings.workers_heartbeat_file
    return ["CMD", "node", "-e",
            f"try{{process.exit(Date.now()-require('fs').statSync('{heartbeat}').mtimeMs<30000?0:1)}}catch(e){{process.exit(1)}}"]


def declare(settings: Settings) -> dict[str, Any]:
    """Declare every resource of the stack; returns the stack outputs."""
    runtime = ContainerRuntime(
        stack=settings.stack,
        environment=settings.environment,
        restart=settings.restart_policy,
        log_max_size=settings.log_max_size,
        log_max_files=settings.log_max_files,
    )
    networks = Networks("networks", NetworksArgs(
        edge_name=settings.docker_name("edge"),
        edge_subnet=settings.edge_subnet,
        edge_dynamic_range=settings.edge_dynamic_range,
        backend_name=settings.docker_name("backend"),
        egress_name=settings.docker_name("egress") if settings.needs_egress else None,
        labels={"com.carecircle.stack": settings.stack, "com.carecircle.environment": settings.environment},
    ))

    data_services: dict[str, DataService] = {}
    urls: dict[str, pulumi.Output[str]] = {}
    data_specs: list[tuple[str, str, str, DataServiceKind, Optional[tuple[int, int]], Any]] = [
        ("postgres", settings.postgres_mode, settings.postgres_image,
         postgres_kind(settings.postgres_database, settings.postgres_user),
         (5432, settings.postgres_host_port) if settings.postgres_host_port else None, settings.database_url),
        ("redis", settings.redis_mode, settings.redis_image, redis_kind(),
         (6379, settings.redis_host_port) if settings.redis_host_port else None, settings.redis_url),
        ("rabbitmq", settings.rabbitmq_mode, settings.rabbitmq_image, rabbitmq_kind(),
         (15672, settings.rabbitmq_management_host_port) if settings.rabbitmq_management_host_port else None,
         settings.rabbitmq_url),
    ]
    for service, mode, image, kind, published_port, external_url in data_specs:
        if mode == "external":
            urls[service] = _secret(external_url)  # type: ignore[assignment]
            continue
        data_services[service] = DataService(service, DataServiceArgs(
            kind=kind,
            container_name=settings.docker_name(service),
            volume_name=settings.docker_name(service, "data"),
            image=image,
            backend_network=networks.backend.name,
            runtime=runtime,
            protect_volume=settings.protect_data,
            published_port=published_port,
        ))
        urls[service] = data_services[service].url

    jwt_secret = _secret(settings.jwt_secret) or random.RandomPassword("jwt-secret", length=64, special=False).result
    shared_env = [
        f"NODE_ENV={settings.node_env}",
        pulumi.Output.concat("DATABASE_URL=", urls["postgres"]),
        pulumi.Output.concat("REDIS_URL=", urls["redis"]),
        pulumi.Output.concat("RABBITMQ_URL=", urls["rabbitmq"]),
    ]
    api_env = [*shared_env, f"PORT={settings.api_port}", pulumi.Output.concat("JWT_SECRET=", jwt_secret),
               f"JWT_EXPIRES_IN={settings.jwt_expires_in}", *tracing_env(settings, "carecircle-api")]
    workers_env = [*shared_env, f"WORKER_HEARTBEAT_FILE={settings.workers_heartbeat_file}",
                   *tracing_env(settings, "carecircle-workers")]
    egress = [networks.egress.name] if networks.egress else []
    data_containers = [service.container for service in data_services.values()]

    built: dict[str, docker.Image] = {}

    def image_for(configured: Optional[str], build_context: Optional[str]) -> pulumi.Input[str]:
        """A registry image as configured, or (dev) the image built from a directory of this repo;
        one build per directory, shared by every service that names it."""
        if build_context is None:
            return configured  # type: ignore[return-value]
        if build_context not in built:
            slug = re.sub(r"[^a-z0-9]+", "-", build_context.lower()).strip("-")
            built[build_context] = docker.Image(
                f"image-{slug}",
                image_name=f"{settings.docker_name(slug)}:local",
                build=docker.DockerBuildArgs(context=build_context),
                skip_push=True,
            )
        # repo_digest is the local image id when not pushed: a rebuild changes it, and the
        # containers follow.
        return built[build_context].repo_digest

    api_envs = pulumi.Output.secret(pulumi.Output.all(*api_env))
    pools: dict[str, AppService] = {}
    for color in COLORS:
        pools[color] = AppService(f"api-{color}", AppServiceArgs(
            role="api",
            container_names=settings.api_container_names(color),
            image=image_for(settings.api_image(color), settings.api_build_context),
            command=None,
            envs=api_envs,
            networks=[networks.edge.name, networks.backend.name],
            addresses=settings.api_addresses(color),
            labels={"com.carecircle.color": color},
            health_test=api_health_test(settings),
            memory_mb=settings.api_memory_mb,
            cpus=settings.api_cpus,
            runtime=runtime,
            stop_grace_seconds=settings.api_shutdown_grace_seconds,
            wait_healthy=True,
        ), pulumi.ResourceOptions(depends_on=data_containers))
    api_containers = [c for color in COLORS for c in pools[color].containers]
    workers = AppService("workers", AppServiceArgs(
        role="workers",
        container_names=[settings.docker_name("workers", str(i)) for i in range(1, settings.workers_replicas + 1)],
        image=image_for(settings.workers_image, settings.workers_build_context),
        command=settings.workers_command,
        envs=pulumi.Output.secret(pulumi.Output.all(*workers_env)),
        networks=[networks.backend.name, *egress],
        health_test=workers_health_test(settings),
        memory_mb=settings.workers_memory_mb,
        cpus=settings.workers_cpus,
        runtime=runtime,
        stop_grace_seconds=settings.workers_shutdown_grace_seconds,
        wait_healthy=False,
    ), pulumi.ResourceOptions(depends_on=data_containers))

    tls_host_paths = None
    if settings.gateway_tls and settings.gateway_tls_certificate_path and settings.gateway_tls_key_path:
        tls_host_paths = TlsHostPaths(certificate=settings.gateway_tls_certificate_path, key=settings.gateway_tls_key_path)
    gateway = Gateway("gateway", GatewayArgs(
        container_name=settings.docker_name("gateway"),
        image=settings.gateway_image,
        edge_network=networks.edge.name,
        bundle=gateway_bundle_output(settings),
        bind_address=settings.gateway_bind_address,
        http_port=settings.gateway_http_port,
        https_port=settings.gateway_https_port if settings.gateway_tls else None,
        preview_port=settings.gateway_preview_port,
        tls_host_paths=tls_host_paths,
        runtime=runtime,
        docker_host=settings.docker_host,
        upstream_containers=api_containers,
    ))

    monitoring = declare_monitoring(settings, runtime, networks, data_services, gateway) if settings.monitoring_enabled else None
    monitoring_containers = [*monitoring.exporters, monitoring.prometheus] if monitoring else []

    return {
        "gatewayUrl": gateway_url(settings),
        "containers": [c.name for c in [*data_containers, *api_containers, *workers.containers, gateway.container, *monitoring_containers]],
        "activeColor": settings.api_active_color,
        "networks": [n.name for n in (networks.edge, networks.backend, networks.egress) if n is not None],
        "volumes": [service.volume.name for service in data_services.values()] + ([monitoring.volume.name] if monitoring else []),
    }


def tracing_env(settings: Settings, service: str) -> list[pulumi.Input[str]]:
    """OpenTelemetry and Sentry settings of a Node service, from the stack's config."""
    env: list[pulumi.Input[str]] = [
        f"OTEL_SERVICE_NAME={service}",
        f"OTEL_RESOURCE_ATTRIBUTES=deployment.environment={settings.environment}",
        "OTEL_TRACES_SAMPLER=parentbased_traceidratio",
        f"OTEL_TRACES_SAMPLER_ARG={settings.trace_sample_rate}",
        f"OTEL_EXPORTER_OTLP_ENDPOINT={settings.otel_exporter_endpoint}" if settings.otel_exporter_endpoint else "OTEL_TRACES_EXPORTER=none",
        f"SENTRY_ENVIRONMENT={settings.environment}",
        f"SENTRY_TRACES_SAMPLE_RATE={settings.trace_sample_rate}",
    ]
    if settings.sentry_dsn is not None:
        env.append(pulumi.Output.concat("SENTRY_DSN=", _secret(settings.sentry_dsn)))
    return env


def declare_monitoring(settings: Settings, runtime: ContainerRuntime, networks: Networks,
                       data_services: dict[str, DataService], gateway: Gateway) -> Monitoring:
    exporters = [ExporterSpec(
        key="nginx-exporter",
        container_name=settings.docker_name("nginx-exporter"),
        image=settings.nginx_exporter_image,
        # On the edge network to read the gateway's stub_status, on the backend one for Prometheus.
        networks=[networks.edge.name, networks.backend.name],
        command=[f"--nginx.scrape-uri={stub_status_url(settings)}"],
        health_test=nginx_exporter_health(),
    )]
    if "postgres" in data_services:
        exporters.append(ExporterSpec(
            key="postgres-exporter",
            container_name=settings.docker_name("postgres-exporter"),
            image=settings.postgres_exporter_image,
            networks=[networks.backend.name],
            envs=pulumi.Output.secret(pulumi.Output.all(
                pulumi.Output.concat("DATA_SOURCE_NAME=", data_services["postgres"].url, "?sslmode=disable"))),
            health_test=postgres_exporter_health(),
        ))
    if "redis" in data_services:
        exporters.append(ExporterSpec(
            key="redis-exporter",
            container_name=settings.docker_name("redis-exporter"),
            image=settings.redis_exporter_image,
            networks=[networks.backend.name],
            envs=pulumi.Output.secret(pulumi.Output.all(
                f"REDIS_ADDR=redis://{settings.docker_name('redis')}:6379",
                pulumi.Output.concat("REDIS_PASSWORD=", data_services["redis"].password))),
            health_test=redis_exporter_health(),
        ))
    return Monitoring("monitoring", MonitoringArgs(
        prometheus_name=settings.docker_name("prometheus"),
        prometheus_image=settings.prometheus_image,
        volume_name=settings.docker_name("prometheus", "data"),
        retention=settings.prometheus_retention,
        bundle=prometheus_bundle(settings),
        docker_host=settings.docker_host,
        backend_network=networks.backend.name,
        exporters=exporters,
        runtime=runtime,
        protect_volume=settings.protect_data,
        host_port=settings.prometheus_host_port,
    ), pulumi.ResourceOptions(depends_on=[gateway.container, *[s.container for s in data_services.values()]]))


def upstreams(settings: Settings) -> dict[str, list[str]]:
    """The gateway's upstreams: the active pool, and the idle one for the preview listener."""
    return {
        "api": [f"{address}:{settings.api_port}" for address in settings.api_addresses(settings.api_active_color)],
        "api_idle": [f"{address}:{settings.api_port}" for address in settings.api_addresses(settings.idle_color)],
    }


def gateway_bundle_output(settings: Settings) -> pulumi.Output[str]:
    """The gateway configuration bundle; a PEM certificate travels in it, so then it is secret."""
    paths = NginxPaths()
    if not settings.gateway_tls or settings.gateway_tls_certificate_path:
        return pulumi.Output.from_input(gateway_bundle(paths, render_nginx_conf(settings, upstreams(settings))))

    def bundle(certificate: str, key: str) -> str:
        tls = shipped_tls_files(paths, certificate, key)
        conf = render_nginx_conf(settings, upstreams(settings), tls_files=tls)
        return gateway_bundle(paths, conf, {tls.certificate: certificate, tls.key: key})

    pem = pulumi.Output.all(_secret(settings.gateway_tls_certificate), _secret(settings.gateway_tls_key))
    return pulumi.Output.secret(pem.apply(lambda values: bundle(*values)))


def gateway_url(settings: Settings) -> str:
    host = settings.gateway_server_name
    if settings.gateway_tls:
        return f"https://{host}" + ("" if settings.gateway_https_port == 443 else f":{settings.gateway_https_port}")
    return f"http://{host}" + ("" if settings.gateway_http_port == 80 else f":{settings.gateway_http_port}")


def declare_stack() -> None:
    """Load this stack's settings (ConfigError before anything is declared) and declare it."""
    for name, value in declare(load_settings()).items():
        pulumi.export(name, value)
