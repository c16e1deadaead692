"""Pure rendering of the gateway's nginx configuration from settings.

Upstream servers are passed in as data (`Upstream`), so tests can point them at local stubs and the
program at the api pools' fixed addresses on the edge network, or (Swarm) at `tasks.<service>` names
that nginx re-resolves. The files are shipped as a bundle (a base64 tar) that
`templates/gateway-apply.sh` unpacks, tests with `nginx -t` and loads with a graceful reload, so a
configuration change never replaces the gateway container.

The template targets nginx 1.30 (the stable line every stack runs: `http2 on;`, `server ... resolve`).
"""

from __future__ import annotations

import base64
import hashlib
import io
import ipaddress
import re
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Optional, Sequence, Union

import jinja2

from .settings import Settings
from .settings.types import nginx_size_bytes

TEMPLATES = Path(__file__).parent / "templates"
HEALTH_PATHS = ("/health", "/ready", "/live")
WORKER_CONNECTIONS = 4096
# Below Node's default keepAliveTimeout (5 s): nginx drops an idle connection before Node does.
UPSTREAM_KEEPALIVE_TIMEOUT = "4s"
# Requests a client may send on one keep-alive connection (HTTP/1.1 and HTTP/2). nginx's default, 1000,
# makes an HTTPS client reconnect (a TLS handshake, ~550 us of server CPU) every 1000 requests; the
# limit exists to free a connection's memory now and then, which keepalive_time (1 h) still does.
CLIENT_KEEPALIVE_REQUESTS = 10_000
# The access log is written in chunks of at most 4 KiB (PIPE_BUF: one write into Docker's log pipe
# is atomic, so lines of several workers never interleave) and at least every second.
ACCESS_LOG_BUFFER = "4k"
ACCESS_LOG_FLUSH = "1s"
# Docker's embedded DNS server, on every user-defined (and overlay) network.
DOCKER_DNS = "127.0.0.11"
RESOLVER_TIMEOUT = "2s"
# Mozilla's intermediate cipher list (TLS 1.2; TLS 1.3 suites are not set by ssl_ciphers).
INTERMEDIATE_CIPHERS = (
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"
    "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"
    "DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384:DHE-RSA-CHACHA20-POLY1305"
)
TLS_PROTOCOLS = {"modern": "TLSv1.3", "intermediate": "TLSv1.2 TLSv1.3"}
POINTER = 8  # sizeof(void *) on the 64-bit platforms the gateway runs on
CACHE_LINE = 64  # nginx rounds a hash bucket size up to its cache line (and defaults to one)

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

    @property
    def acme_root(self) -> str:
        """Served at /.well-known/acme-challenge/ on the HTTP port: ACME HTTP-01 tokens live under it
        (templates/gateway-challenge.sh writes them)."""
        return f"{self.config_dir}/acme"


@dataclass(frozen=True)
class Upstream:
    """The servers of one upstream, each `host:port`. Fixed servers (engine mode: the api pools'
    fixed addresses) are resolved once, at start and reload. `resolve`: each server is a DNS name
    (Swarm: `tasks.<pool service>`) that nginx re-resolves while running, every
    gatewayResolverValid + 1 s, one peer per address it gets (none while the name has no address)."""

    servers: tuple[str, ...]
    resolve: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "servers", tuple(self.servers))
        for server in self.servers:
            host = r"[a-z0-9](?:[a-z0-9_.-]*[a-z0-9])?" if self.resolve else r"[A-Za-z0-9](?:[A-Za-z0-9_.-]*[A-Za-z0-9])?"
            if not re.fullmatch(rf"{host}:[0-9]{{1,5}}", server):
                raise ValueError(f"upstream server {server!r} is not host:port" + (" with a DNS name" if self.resolve else ""))


UpstreamSpec = Union[Upstream, Sequence[str]]


@dataclass(frozen=True)
class TlsFiles:
    certificate: str
    key: str


# Where a certificate kept on the Docker host is mounted (read-only) in the gateway container.
HOST_MOUNTED_TLS = TlsFiles(certificate="/etc/nginx/tls/fullchain.pem", key="/etc/nginx/tls/privkey.pem")
APPLY_SCRIPT = (TEMPLATES / "gateway-apply.sh").read_text()
CONFIG_ID_PLACEHOLDER = "@config-id@"


def decimal_above(limit: int) -> str:
    """A regex (PCRE, unanchored) matching the decimal numbers, without leading zeros, above
    `limit`: nginx maps compare text, so a number is compared digit by digit. A longer number, or
    one of the same length that keeps the first i digits of `limit` and has a larger next one."""
    digits = str(limit)
    longer = f"[1-9][0-9]{{{len(digits)},}}"
    same_length = []
    for i, digit in enumerate(digits):
        if digit == "9":
            continue
        rest = len(digits) - i - 1
        larger = "9" if digit == "8" else f"[{int(digit) + 1}-9]"
        same_length.append(digits[:i] + larger + ("" if rest == 0 else "[0-9]" if rest == 1 else f"[0-9]{{{rest}}}"))
    return "(?:" + "|".join([longer, *same_length]) + ")"


def cors_origin_regex(origin: str) -> str:
    """An allowed origin as a map key: anchored patterns as configured, an exact origin as a
    case-sensitive regex that matches it only (a map's plain strings ignore case)."""
    if origin.startswith("~"):
        return origin
    return "~^" + re.sub(r"([.^$*+?()\[\]{}|\\])", r"\\\1", origin) + "$"


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


def hash_bucket_size(keys: Sequence[str]) -> int:
    """A server_names/map hash bucket size that holds two of the longest key. nginx's ngx_hash_init
    (src/core/ngx_hash.c) fails when one key does not fit a bucket: a key takes a pointer, a length and
    the key padded to a pointer (NGX_HASH_ELT_SIZE), a bucket ends in a pointer. Room for two keys lets
    it find a table size without a warning whatever the keys hash to."""
    longest = max((len(key.encode()) for key in keys), default=0)
    element = POINTER + -(-(longest + 2) // POINTER) * POINTER
    return max(CACHE_LINE, -(-(2 * element + POINTER) // CACHE_LINE) * CACHE_LINE)


def geo_networks(cidrs: Sequence[str]) -> list[str]:
    """CIDRs for a `geo` block, whose `default` already is 0.0.0.0/0 and ::/0 (nginx warns "duplicate
    network" when one is listed): a whole family is written as its two halves, each network once."""
    halves = {"0.0.0.0/0": ["0.0.0.0/1", "128.0.0.0/1"], "::/0": ["::/1", "8000::/1"]}
    written: dict[object, str] = {}
    for cidr in cidrs:
        for network in halves.get(str(ipaddress.ip_network(cidr)), [cidr]):
            written.setdefault(ipaddress.ip_network(network), network)
    return list(written.values())


def metrics_paths(settings: Settings) -> list[str]:
    """Regexes (nginx `location ~*`) of the public paths a route that strips its prefix would forward to
    the api's metrics path: `/api/` strips `/api/metrics` to `/metrics`. Express routes ignore case and
    a trailing slash (path-to-regexp, sensitive and strict off); nginx matches the decoded, normalised
    path, so an encoded or dotted spelling is caught too."""
    metrics = settings.api_metrics_path.strip("/")
    return [f"^{re.escape(route.path + metrics)}/?$" for route in settings.gateway_routes if route.strip_prefix]


def render_bootstrap_conf(ports: GatewayPorts = GatewayPorts(), paths: NginxPaths = NginxPaths()) -> str:
    """What the gateway container starts with, before its configuration is applied: health only.
    It depends on nothing that changes, so it never forces the container to be replaced."""
    return jinja_templates.get_template("bootstrap.conf.j2").render(ports=ports, paths=paths, responder=None)


@dataclass(frozen=True)
class ChallengeResponder:
    """How a gateway still on its bootstrap configuration answers ACME HTTP-01 challenges."""

    proxy_protocol: bool


def render_challenge_responder_conf(settings: Settings, ports: GatewayPorts = GatewayPorts(), paths: NginxPaths = NginxPaths()) -> str:
    """The bootstrap configuration that also answers ACME challenges on the HTTP port (a stack's first
    certificate is requested before its gateways have a stack configuration, which needs the
    certificate). gateway-challenge.sh installs it only on a gateway still on its bootstrap."""
    return jinja_templates.get_template("bootstrap.conf.j2").render(
        ports=ports, paths=paths, responder=ChallengeResponder(proxy_protocol=bool(settings.gateway_load_balancers)))


def render_nginx_conf(
    settings: Settings,
    upstreams: Mapping[str, UpstreamSpec],
    ports: GatewayPorts = GatewayPorts(),
    paths: NginxPaths = NginxPaths(),
    tls_files: Optional[TlsFiles] = HOST_MOUNTED_TLS,
    resolver: str = DOCKER_DNS,
) -> str:
    """nginx.conf (nginx 1.30) for the stack. `upstreams` maps an upstream name to an `Upstream` (a
    plain sequence of `host:port` is fixed servers): `api` is the active pool (required), `api_idle`
    the idle one (may be empty). `resolver` is the DNS server for re-resolved upstreams (Docker's;
    tests point it at their own)."""
    described = {name: spec if isinstance(spec, Upstream) else Upstream(tuple(spec)) for name, spec in upstreams.items()}
    missing = {route.service for route in settings.gateway_routes} - set(described)
    if missing or not described.get("api") or not described["api"].servers:
        raise ValueError(f"no upstream servers for {sorted(missing) or ['api']}")
    described = {name: upstream for name, upstream in described.items() if upstream.servers}
    https_port = settings.gateway_https_port
    conf = jinja_templates.get_template("nginx.conf.j2").render(
        config_id=CONFIG_ID_PLACEHOLDER,
        g=settings,
        stack=settings.stack,
        environment=settings.environment,
        server_name=settings.gateway_server_name,
        upstreams=described,
        resolver=resolver if any(u.resolve for u in described.values()) else None,
        resolver_timeout=RESOLVER_TIMEOUT,
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
        client_keepalive_requests=CLIENT_KEEPALIVE_REQUESTS,
        access_log_buffer=ACCESS_LOG_BUFFER,
        access_log_flush=ACCESS_LOG_FLUSH,
        session_cookie_regex=re.escape(settings.gateway_session_cookie),
        cors_origins=[cors_origin_regex(origin) for origin in settings.gateway_cors_origins],
        body_limit_bytes=nginx_size_bytes(settings.gateway_client_max_body_size),
        body_size_above=decimal_above(nginx_size_bytes(settings.gateway_client_max_body_size)),
        server_names_hash_bucket_size=hash_bucket_size([settings.gateway_server_name]),
        metrics_paths=metrics_paths(settings),
        geo_networks=geo_networks,
        map_hash_bucket_size=hash_bucket_size([origin for origin in settings.gateway_cors_origins if not origin.startswith("~")]),
        proxy_protocol=bool(settings.gateway_load_balancers),
    )
    # The id names this exact file, so the apply script can tell when nginx serves it.
    return conf.replace(CONFIG_ID_PLACEHOLDER, hashlib.sha256(conf.encode()).hexdigest()[:16])
