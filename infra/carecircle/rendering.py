"""Pure rendering of the gateway's nginx configuration from settings.

Upstream servers are passed in as data, so tests can point them at local stubs and the program
at the api containers' names on the edge network.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Optional, Sequence

import jinja2

from .settings import Settings

TEMPLATES = Path(__file__).parent / "templates"
HEALTH_PATHS = ("/health", "/ready", "/live")
WORKER_CONNECTIONS = 4096
# Below Node's default keepAliveTimeout (5 s): nginx drops an idle connection before Node does.
UPSTREAM_KEEPALIVE_TIMEOUT = "4s"
# Mozilla's intermediate cipher list (TLS 1.2; TLS 1.3 suites are not set by ssl_ciphers).
INTERMEDIATE_CIPHERS = (
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"
    "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"
    "DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384:DHE-RSA-CHACHA20-POLY1305"
)
TLS_PROTOCOLS = {"modern": "TLSv1.3", "intermediate": "TLSv1.2 TLSv1.3"}

_environment = jinja2.Environment(
    loader=jinja2.FileSystemLoader(TEMPLATES),
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
    keep_trailing_newline=True,
    autoescape=False,
)


@dataclass(frozen=True)
class GatewayPorts:
    """Ports nginx listens on inside its container (unprivileged, so above 1024)."""

    http: int = 8080
    https: int = 8443


@dataclass(frozen=True)
class NginxPaths:
    """Where nginx keeps its pid/temp files and writes the access log."""

    runtime_dir: str = "/tmp/nginx"
    access_log: str = "/dev/stdout"


@dataclass(frozen=True)
class TlsFiles:
    certificate: str
    key: str


CONTAINER_TLS = TlsFiles(certificate="/etc/nginx/tls/fullchain.pem", key="/etc/nginx/tls/privkey.pem")


def render_nginx_conf(
    settings: Settings,
    upstreams: Mapping[str, Sequence[str]],
    ports: GatewayPorts = GatewayPorts(),
    paths: NginxPaths = NginxPaths(),
    tls_files: Optional[TlsFiles] = CONTAINER_TLS,
) -> str:
    """nginx.conf for the stack; `upstreams` maps a service name to its `host:port` servers."""
    missing = {route.service for route in settings.gateway_routes} - set(upstreams)
    if missing or not upstreams.get("api"):
        raise ValueError(f"no upstream servers for {sorted(missing) or ['api']}")
    https_port = settings.gateway_https_port
    return _environment.get_template("nginx.conf.j2").render(
        g=settings,
        stack=settings.stack,
        environment=settings.environment,
        server_name=settings.gateway_server_name,
        upstreams=upstreams,
        routes=settings.gateway_routes,
        health_paths=HEALTH_PATHS,
        ports=ports,
        paths=paths,
        tls=tls_files if settings.gateway_tls else None,
        tls_protocols=TLS_PROTOCOLS[settings.gateway_tls_profile],
        tls_ciphers=INTERMEDIATE_CIPHERS,
        https_port_suffix="" if https_port == 443 else f":{https_port}",
        worker_connections=WORKER_CONNECTIONS,
        upstream_keepalive_timeout=UPSTREAM_KEEPALIVE_TIMEOUT,
        # Each replica at most once per request.
        upstream_tries=max(len(servers) for servers in upstreams.values()),
    )
