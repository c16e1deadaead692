"""Pure rendering of the gateway's nginx configuration from settings.

Upstream servers are passed in as data, so tests can point them at local stubs and the program at
the api pools' fixed addresses on the edge network. The files are shipped as a bundle (a base64 tar)
that `templates/gateway-apply.sh` unpacks, tests with `nginx -t` and loads with a graceful reload,
so a configuration change never replaces the gateway container.
"""

from __future__ import annotations

import base64
import hashlib
import io
import tarfile
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

jinja_templates = jinja2.Environment(
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
    preview: int = 8081  # the idle pool, for verifying a release before the switch
    status: int = 8082  # loopback only: what the gateway serves, for the apply script


@dataclass(frozen=True)
class NginxPaths:
    """Where nginx keeps its pid/temp files, writes the access log and keeps the shipped files."""

    runtime_dir: str = "/tmp"
    access_log: str = "/dev/stdout"
    config_dir: str = "/etc/nginx/carecircle"

    @property
    def active_conf(self) -> str:
        return f"{self.config_dir}/active.conf"


@dataclass(frozen=True)
class TlsFiles:
    certificate: str
    key: str


# Where a certificate kept on the Docker host is mounted (read-only) in the gateway container.
HOST_MOUNTED_TLS = TlsFiles(certificate="/etc/nginx/tls/fullchain.pem", key="/etc/nginx/tls/privkey.pem")
APPLY_SCRIPT = (TEMPLATES / "gateway-apply.sh").read_text()
CONFIG_ID_PLACEHOLDER = "@config-id@"


def shipped_tls_files(paths: NginxPaths, certificate: str, key: str) -> TlsFiles:
    """Paths of a PEM certificate shipped in the bundle: a directory per certificate, so a new one is
    tested beside the one in use and the old one is removed only after the reload."""
    tls_id = hashlib.sha256((certificate + key).encode()).hexdigest()[:16]
    return TlsFiles(certificate=f"{paths.config_dir}/tls/{tls_id}/fullchain.pem", key=f"{paths.config_dir}/tls/{tls_id}/privkey.pem")


def tar_bundle(entries: Mapping[str, str], mode: int = 0o600) -> str:
    """Files (relative path -> text) as a base64 tar, for an apply script's stdin. Deterministic, so
    an unchanged configuration is an unchanged input."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, text in sorted(entries.items()):
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), 0, mode
            tar.addfile(info, io.BytesIO(data))
    return base64.b64encode(buffer.getvalue()).decode()


def gateway_bundle(paths: NginxPaths, conf: str, files: Mapping[str, str] = {}) -> str:
    """The bundle gateway-apply.sh takes: `next.conf` plus `files` (absolute paths under
    paths.config_dir)."""
    return tar_bundle({"next.conf": conf, **{path.removeprefix(paths.config_dir + "/"): text for path, text in files.items()}})


def render_bootstrap_conf(ports: GatewayPorts = GatewayPorts(), paths: NginxPaths = NginxPaths()) -> str:
    """What the gateway container starts with, before its configuration is applied: health only.
    It depends on nothing that changes, so it never forces the container to be replaced."""
    return jinja_templates.get_template("bootstrap.conf.j2").render(ports=ports, paths=paths)


def render_nginx_conf(
    settings: Settings,
    upstreams: Mapping[str, Sequence[str]],
    ports: GatewayPorts = GatewayPorts(),
    paths: NginxPaths = NginxPaths(),
    tls_files: Optional[TlsFiles] = HOST_MOUNTED_TLS,
) -> str:
    """nginx.conf for the stack. `upstreams` maps an upstream name to its `host:port` servers:
    `api` is the active pool (required), `api_idle` the idle one (may be empty)."""
    missing = {route.service for route in settings.gateway_routes} - set(upstreams)
    if missing or not upstreams.get("api"):
        raise ValueError(f"no upstream servers for {sorted(missing) or ['api']}")
    upstreams = {name: servers for name, servers in upstreams.items() if servers}
    https_port = settings.gateway_https_port
    conf = jinja_templates.get_template("nginx.conf.j2").render(
        config_id=CONFIG_ID_PLACEHOLDER,
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
        active_color=settings.api_active_color,
        preview=settings.gateway_preview_port is not None,
        upstream_keepalive_timeout=UPSTREAM_KEEPALIVE_TIMEOUT,
        # Each replica at most once per request.
        upstream_tries=len(upstreams["api"]),
    )
    # The id names this exact file, so the apply script can tell when nginx serves it.
    return conf.replace(CONFIG_ID_PLACEHOLDER, hashlib.sha256(conf.encode()).hexdigest()[:16])
