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
    return _environment.get_template("nginx.conf.j2").render(
        stack=settings.stack,
        environment=settings.environment,
        server_name=settings.gateway_server_name,
        upstreams=upstreams,
        routes=settings.gateway_routes,
        health_paths=HEALTH_PATHS,
        ports=ports,
        paths=paths,
        tls=tls_files if settings.gateway_tls else None,
    )
