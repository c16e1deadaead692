"""Declares one CareCircle environment from its validated settings."""

from __future__ import annotations

from typing import Any, Optional

import pulumi
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
from .components.gateway import Gateway, GatewayArgs, TlsHostPaths, TlsPem
from .components.network import Networks, NetworksArgs
from .rendering import render_nginx_conf
from .settings import Settings, load_settings


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
               f"JWT_EXPIRES_IN={settings.jwt_expires_in}"]
    workers_env = [*shared_env, f"WORKER_HEARTBEAT_FILE={settings.workers_heartbeat_file}"]
    egress = [networks.egress.name] if networks.egress else []
    data_containers = [service.container for service in data_services.values()]

    api_names = [settings.docker_name("api", str(i)) for i in range(1, settings.api_replicas + 1)]
    api = AppService("api", AppServiceArgs(
        role="api",
        container_names=api_names,
        image=settings.api_image,
        build_context=settings.api_build_context,
        local_image_name=f"{settings.docker_name('api')}:local",
        command=None,
        envs=pulumi.Output.secret(pulumi.Output.all(*api_env)),
        networks=[networks.edge.name, networks.backend.name],
        health_test=api_health_test(settings),
        memory_mb=settings.api_memory_mb,
        cpus=settings.api_cpus,
        runtime=runtime,
        wait_healthy=True,
    ), pulumi.ResourceOptions(depends_on=data_containers))
    workers = AppService("workers", AppServiceArgs(
        role="workers",
        container_names=[settings.docker_name("workers", str(i)) for i in range(1, settings.workers_replicas + 1)],
        image=settings.workers_image,
        build_context=settings.workers_build_context,
        local_image_name=f"{settings.docker_name('workers')}:local",
        command=settings.workers_command,
        envs=pulumi.Output.secret(pulumi.Output.all(*workers_env)),
        networks=[networks.backend.name, *egress],
        health_test=workers_health_test(settings),
        memory_mb=settings.workers_memory_mb,
        cpus=settings.workers_cpus,
        runtime=runtime,
        wait_healthy=False,
    ), pulumi.ResourceOptions(depends_on=data_containers))

    tls: Optional[TlsPem | TlsHostPaths] = None
    if settings.gateway_tls and settings.gateway_tls_certificate_path and settings.gateway_tls_key_path:
        tls = TlsHostPaths(certificate=settings.gateway_tls_certificate_path, key=settings.gateway_tls_key_path)
    elif settings.gateway_tls:
        tls = TlsPem(certificate=_secret(settings.gateway_tls_certificate), key=_secret(settings.gateway_tls_key))  # type: ignore[arg-type]
    gateway = Gateway("gateway", GatewayArgs(
        container_name=settings.docker_name("gateway"),
        image=settings.gateway_image,
        edge_network=networks.edge.name,
        nginx_conf=render_nginx_conf(settings, {"api": [f"{name}:{settings.api_port}" for name in api_names]}),
        bind_address=settings.gateway_bind_address,
        http_port=settings.gateway_http_port,
        https_port=settings.gateway_https_port if settings.gateway_tls else None,
        tls=tls,
        runtime=runtime,
        upstream_containers=api.containers,
    ))

    return {
        "gatewayUrl": gateway_url(settings),
        "containers": [c.name for c in [*data_containers, *api.containers, *workers.containers, gateway.container]],
        "networks": [n.name for n in (networks.edge, networks.backend, networks.egress) if n is not None],
        "volumes": [service.volume.name for service in data_services.values()],
    }


def gateway_url(settings: Settings) -> str:
    host = settings.gateway_server_name
    if settings.gateway_tls:
        return f"https://{host}" + ("" if settings.gateway_https_port == 443 else f":{settings.gateway_https_port}")
    return f"http://{host}" + ("" if settings.gateway_http_port == 80 else f":{settings.gateway_http_port}")


def declare_stack() -> None:
    """Load this stack's settings (ConfigError before anything is declared) and declare it."""
    for name, value in declare(load_settings()).items():
        pulumi.export(name, value)
