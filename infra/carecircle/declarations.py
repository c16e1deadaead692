"""Declarations both platforms share (engine_program, swarm_program): the secrets and environment
of the apps, the gateway's configuration bundle and container arguments, the stack's URL."""

from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence

import pulumi

from .components.certificate import GatewayCertificate, GatewayCertificateArgs, GatewayTarget
from .components.common import ContainerRuntime
from .components.gateway import Gateway, GatewayArgs, TlsHostPaths
from .rendering import NginxPaths, gateway_bundle, render_challenge_responder_conf, render_nginx_conf, shipped_tls_files
from .settings import Settings


def secret_output(value: Any) -> Optional[pulumi.Output[str]]:
    """A SecretStr setting as a Pulumi secret (None when unset)."""
    return pulumi.Output.secret(value.get_secret_value()) if value is not None else None


def stack_labels(settings: Settings) -> dict[str, str]:
    """The labels every network, secret and service of the stack carries."""
    return {"com.carecircle.stack": settings.stack, "com.carecircle.environment": settings.environment}


def container_runtime(settings: Settings) -> ContainerRuntime:
    return ContainerRuntime(stack=settings.stack, environment=settings.environment, restart=settings.restart_policy,
                            log_max_size=settings.log_max_size, log_max_files=settings.log_max_files,
                            healthcheck_interval=settings.healthcheck_interval)


def tracing_env(settings: Settings, service: str, pool: Optional[str] = None) -> list[pulumi.Input[str]]:
    """OpenTelemetry and Sentry settings of a Node service, from the stack's config (a swarm api
    replica also says which pool it belongs to)."""
    attributes = f"deployment.environment={settings.environment}" + (f",carecircle.pool={pool}" if pool else "")
    env: list[pulumi.Input[str]] = [
        f"OTEL_SERVICE_NAME={service}",
        f"OTEL_RESOURCE_ATTRIBUTES={attributes}",
        "OTEL_TRACES_SAMPLER=parentbased_traceidratio",
        f"OTEL_TRACES_SAMPLER_ARG={settings.trace_sample_rate}",
        f"OTEL_EXPORTER_OTLP_ENDPOINT={settings.otel_exporter_endpoint}" if settings.otel_exporter_endpoint else "OTEL_TRACES_EXPORTER=none",
        f"SENTRY_ENVIRONMENT={settings.environment}",
        f"SENTRY_TRACES_SAMPLE_RATE={settings.trace_sample_rate}",
    ]
    if settings.sentry_dsn is not None:
        env.append(pulumi.Output.concat("SENTRY_DSN=", secret_output(settings.sentry_dsn)))
    return env


def gateway_certificate(settings: Settings, gateways: Sequence[tuple[str, Optional[str]]], first: Gateway) -> Optional[GatewayCertificate]:
    """gatewayTls acme: the certificate of the stack's server name, its challenges answered by every
    gateway of `gateways` (container name, Docker host) that runs (None in every other mode).

    It waits for the `first` gateway's container only. The others are replaced one after another, each
    once the one before serves the stack's configuration, which holds this certificate: waiting for them
    too would be a cycle (a `pulumi up` that never ends). A gateway that does not run yet (the first
    deploy of a Swarm stack) is out of the load balancer's pool, so the CA's request cannot reach it;
    the certificate skips it (infra/carecircle/acme.py)."""
    if settings.gateway_tls != "acme":
        return None
    responder = render_challenge_responder_conf(settings)
    return GatewayCertificate("gateway-certificate", GatewayCertificateArgs(
        directory=settings.acme_directory,
        names=[settings.gateway_server_name],
        email=settings.gateway_acme_email,  # type: ignore[arg-type]
        account_key=secret_output(settings.gateway_acme_account_key),  # type: ignore[arg-type]
        renewal_margin_days=settings.gateway_acme_renewal_margin_days,
        gateways=[GatewayTarget(name, host, responder) for name, host in gateways],
        containers=[first.container],
    ))


def certificate_outputs(certificate: Optional[GatewayCertificate]) -> dict[str, Any]:
    """acme: when the certificate the gateways serve expires (not secret), for auditors and the
    renewal workflow."""
    return {"gatewayCertificateExpiry": certificate.not_after} if certificate is not None else {}


def gateway_bundle_output(settings: Settings, upstream_map: pulumi.Input[Mapping[str, Any]],
                          certificate: Optional[GatewayCertificate] = None) -> pulumi.Output[str]:
    """The gateway configuration bundle for these upstreams; a certificate's key (PEM config, or
    `certificate` in acme mode) travels in it, so then it is secret."""
    paths = NginxPaths()
    resolved = pulumi.Output.from_input(upstream_map)
    if not settings.gateway_tls or settings.gateway_tls_certificate_path:
        return resolved.apply(lambda servers: gateway_bundle(paths, render_nginx_conf(settings, servers)))

    def bundle(servers: Mapping[str, Any], certificate: str, key: str) -> str:
        tls = shipped_tls_files(paths, certificate, key)
        conf = render_nginx_conf(settings, servers, tls_files=tls)
        return gateway_bundle(paths, conf, {tls.certificate: certificate, tls.key: key})

    if certificate is not None:
        pair = (certificate.certificate, certificate.private_key)
    else:
        pair = (secret_output(settings.gateway_tls_certificate), secret_output(settings.gateway_tls_key))  # type: ignore[assignment]
    pem = pulumi.Output.all(resolved, *pair)
    return pulumi.Output.secret(pem.apply(lambda values: bundle(*values)))


def gateway_args(settings: Settings, runtime: ContainerRuntime, *, container_name: str, edge_network: pulumi.Input[str],
                 docker_host: Optional[str], after: Sequence[pulumi.Resource] = (),
                 balancer_recovery_seconds: Optional[int] = None) -> GatewayArgs:
    """A gateway container's arguments: what differs between platforms is where it runs and what it waits for."""
    tls_host_paths = None
    if settings.gateway_tls and settings.gateway_tls_certificate_path and settings.gateway_tls_key_path:
        tls_host_paths = TlsHostPaths(certificate=settings.gateway_tls_certificate_path, key=settings.gateway_tls_key_path)
    return GatewayArgs(
        container_name=container_name,
        image=settings.gateway_image,
        edge_network=edge_network,
        bind_address=settings.gateway_bind_address,
        http_port=settings.gateway_http_port,
        https_port=settings.gateway_https_port if settings.gateway_tls else None,
        preview_port=settings.gateway_preview_port,
        tls_host_paths=tls_host_paths,
        runtime=runtime,
        docker_host=docker_host,
        after=after,
        balancer_recovery_seconds=balancer_recovery_seconds,
    )


def gateway_url(settings: Settings) -> str:
    host = settings.gateway_server_name
    if settings.gateway_tls:
        return f"https://{host}" + ("" if settings.gateway_https_port == 443 else f":{settings.gateway_https_port}")
    return f"http://{host}" + ("" if settings.gateway_http_port == 80 else f":{settings.gateway_http_port}")
