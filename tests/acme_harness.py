"""Real components for the ACME tests: Debian's pebble (Let's Encrypt's test CA) on 127.0.0.1, two
edge gateways on the nginx of production's line (each started from the bootstrap config and
configured by the stack's own gateway-apply.sh, as in the containers), and an L4 balancer in front of
them that speaks the PROXY protocol as the stacks' load balancers do and records which edge each
connection reached. Every process is stopped by pid when its context ends."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Optional

from carecircle.acme import GatewayShell, obtain
from carecircle.rendering import (
    APPLY_SCRIPT,
    GatewayPorts,
    NginxPaths,
    gateway_bundle,
    render_bootstrap_conf,
    render_challenge_responder_conf,
    render_nginx_conf,
    shipped_tls_files,
)
from carecircle.settings import Settings
from dns_stub import DnsStub, dns_stub
from nginx_harness import free_port, nginx, nginx_on_path, settings_for, stop, wait_for_port

SERVER_NAME = "api.staging.carecircle.example"
EMAIL = "ops@carecircle.example"
# What the stacks in these tests differ in from staging: an L4 balancer on 127.0.0.0/8 in front (the
# PROXY protocol), every test client allow-listed from the rate limits.
GATEWAY_OVERRIDES = {"carecircle:gatewayLoadBalancers": ["127.0.0.0/8"], "carecircle:gatewayTrustedProxies": [],
                     "carecircle:gatewayRateLimitAllowlist": ["127.0.0.0/8"], "carecircle:gatewayServerName": SERVER_NAME}


# A stack switched to gatewayTls acme (the account key is a secret: ACME_SECRETS).
ACME_CONFIG = {"carecircle:gatewayTls": "acme", "carecircle:gatewayAcmeEmail": EMAIL, "carecircle:gatewayTlsCertificate": None,
               "carecircle:gatewayTlsKey": None, "carecircle:gatewayTlsCertificatePath": None, "carecircle:gatewayTlsKeyPath": None}
ACME_SECRETS = {"carecircle:gatewayAcmeAccountKey": "-----BEGIN PRIVATE KEY-----\nYWNjb3VudA==\n-----END PRIVATE KEY-----\n"}


def acme_settings(stack: str, overrides: Optional[dict] = None) -> Settings:
    from carecircle.offline import stack_config
    from carecircle.settings import parse_settings

    _, config, secret_keys = stack_config(stack, overrides={**ACME_CONFIG, **(overrides or {})}, secrets=ACME_SECRETS)
    return parse_settings(stack, config, secret_keys)


def acme_evaluation(stack: str, overrides: Optional[dict] = None, resource_outputs: Optional[dict] = None):
    from carecircle.offline import evaluate_stack

    return evaluate_stack(stack, overrides={**ACME_CONFIG, **(overrides or {})}, secrets=ACME_SECRETS, resource_outputs=resource_outputs)


def account_key(directory: Path) -> str:
    path = directory / "account.pem"
    subprocess.run(["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", str(path)],
                   check=True, capture_output=True, timeout=30)
    return path.read_text()


# ---- pebble ----------------------------------------------------------------------------------------

@dataclass
class Pebble:
    directory_url: str
    management_url: str
    listener_ca: Path  # pebble's own HTTPS certificate (REQUESTS_CA_BUNDLE for the ACME client)
    process: subprocess.Popen

    def issuing_roots(self) -> str:
        """The root the certificates pebble issues chain to (regenerated at every start)."""
        import requests

        return requests.get(f"{self.management_url}/roots/0", verify=str(self.listener_ca), timeout=5).text

    def forget_authorizations(self, account_key_pem: str) -> int:
        """Deactivate the account's valid authorizations (RFC 8555 section 7.5.2), so that its next order is
        validated afresh; returns how many. Even with PEBBLE_AUTHZREUSE=0, pebble reuses a valid one when
        rand.Intn(100) draws 0 (wfe/wfe.go, makeAuthorizations: `rand.Intn(100) > authzReusePercent`):
        1 order in 100 would be issued without a validation request. Trusts the listener while it asks."""
        from acme import client, errors, messages

        from carecircle.acme import _account

        jwk, alg = _account(account_key_pem)
        net = client.ClientNetwork(jwk, alg=alg, verify_ssl=str(self.listener_ca))
        ca = client.ClientV2(client.ClientV2.get_directory(self.directory_url, net), net)
        try:
            ca.new_account(messages.NewRegistration.from_data(only_return_existing=True))
        except errors.ConflictError as existing:  # the account's URL, as pebble answers an existing key
            net.account = messages.RegistrationResource(uri=existing.location, body=messages.Registration())
        orders = ca._post_as_get(ca._post_as_get(net.account.uri).json()["orders"]).json()["orders"]
        forgotten = 0
        for order in orders:
            for url in ca._post_as_get(order).json()["authorizations"]:
                authorization = messages.Authorization.from_json(ca._post_as_get(url).json())
                if authorization.status == messages.STATUS_VALID:
                    ca.deactivate_authorization(messages.AuthorizationResource(uri=url, body=authorization))
                    forgotten += 1
        return forgotten


@contextlib.contextmanager
def pebble(directory: Path, dns: DnsStub, http_port: int, eab_required: bool = False) -> Iterator[Pebble]:
    """pebble validating HTTP-01 on 127.0.0.1:`http_port` (where the balancer listens: as a real CA
    reaches port 80 of whatever the name resolves to), resolving names with `dns`."""
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = directory / "pebble.pem", directory / "pebble-key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)
    listen, management = free_port(), free_port()
    config = directory / "pebble.json"
    config.write_text(json.dumps({"pebble": {
        "listenAddress": f"127.0.0.1:{listen}", "managementListenAddress": f"127.0.0.1:{management}",
        "certificate": str(cert), "privateKey": str(key), "httpPort": http_port, "tlsPort": free_port(),
        "ocspResponderURL": "", "externalAccountBindingRequired": eab_required,
        **({"externalAccountMACKeys": {"kid-1": "zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W"}} if eab_required else {}),
    }}))
    # No sleep before validating, no nonce refused on purpose, a fresh authorization for 99 orders in 100
    # (a test that needs the renewal's challenges answered makes sure with Pebble.forget_authorizations).
    # (forget_authorizations lists the account's orders on one page.)
    env = {**os.environ, "PEBBLE_VA_NOSLEEP": "1", "PEBBLE_WFE_NONCEREJECT": "0", "PEBBLE_AUTHZREUSE": "0",
           "PEBBLE_WFE_ORDERS_PER_PAGE": "1000"}
    with open(directory / "pebble.log", "ab") as log:
        process = subprocess.Popen(["pebble", "-config", str(config), "-dnsserver", dns.address], stdout=log, stderr=log, env=env)
    try:
        wait_for_port(listen, process)
        yield Pebble(f"https://127.0.0.1:{listen}/dir", f"https://127.0.0.1:{management}", cert, process)
    finally:
        stop(process)


@contextlib.contextmanager
def trusting(ca: Path) -> Iterator[None]:
    """The ACME client (requests) trusts pebble's listener, as it trusts Let's Encrypt's by default."""
    previous = os.environ.get("REQUESTS_CA_BUNDLE")
    os.environ["REQUESTS_CA_BUNDLE"] = str(ca)
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("REQUESTS_CA_BUNDLE", None)
        else:
            os.environ["REQUESTS_CA_BUNDLE"] = previous


# ---- the L4 balancer ---------------------------------------------------------------------------------

@dataclass
class Balancer:
    """TCP on 127.0.0.1:`port` to the edges' `backends` (host, port), one connection to the next edge in
    turn (or to `only`), each preceded by a PROXY v1 header with the client's address when the edges
    take the PROXY protocol."""

    port: int
    backends: list[tuple[str, int]]
    proxy_protocol: bool = True
    only: Optional[int] = None
    connections: list[int] = field(default_factory=list)  # the edge index each connection went to
    _turn: int = 0

    def pick(self) -> int:
        if self.only is not None:
            return self.only
        self._turn += 1
        return (self._turn - 1) % len(self.backends)


def _pipe(source: socket.socket, target: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := source.recv(65536):
            target.sendall(data)
    with contextlib.suppress(OSError):
        target.shutdown(socket.SHUT_WR)


@contextlib.contextmanager
def balancer(ports: list[int], hosts: Optional[list[str]] = None, proxy_protocol: bool = True) -> Iterator[Balancer]:
    """In front of edge i at hosts[i] (127.0.0.1 by default), port ports[i]."""
    listener = socket.create_server(("127.0.0.1", free_port()))
    listener.settimeout(0.1)
    state = Balancer(listener.getsockname()[1], list(zip(hosts or ["127.0.0.1"] * len(ports), ports, strict=True)), proxy_protocol)
    stopping = threading.Event()
    open_sockets: list[socket.socket] = []

    def serve() -> None:
        while not stopping.is_set():
            try:
                client, (address, client_port) = listener.accept()
            except (socket.timeout, OSError):
                continue
            edge = state.pick()
            state.connections.append(edge)
            try:
                upstream = socket.create_connection(state.backends[edge], timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            client.settimeout(None)
            open_sockets.extend((client, upstream))
            if state.proxy_protocol:
                upstream.sendall(f"PROXY TCP4 {address} 127.0.0.1 {client_port} {state.port}\r\n".encode())
            threading.Thread(target=_pipe, args=(client, upstream), daemon=True).start()
            threading.Thread(target=_pipe, args=(upstream, client), daemon=True).start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        stopping.set()
        thread.join(timeout=5)
        listener.close()
        for sock in open_sockets:
            with contextlib.suppress(OSError):
                sock.close()


# ---- the edge gateways -----------------------------------------------------------------------------

@dataclass
class EdgeGateway:
    name: str
    settings: Settings
    paths: NginxPaths
    ports: GatewayPorts
    env: dict[str, str]
    process: subprocess.Popen

    @property
    def shell(self) -> GatewayShell:
        """gateway-challenge.sh runs here as it runs in the container (`docker exec` there)."""
        return GatewayShell(("env", f"CARECIRCLE_NGINX_DIR={self.paths.config_dir}", f"PATH={self.env['PATH']}"), {},
                            render_challenge_responder_conf(self.settings, self.ports, self.paths))

    def apply(self, upstreams: list[str], certificate: str, key: str) -> subprocess.CompletedProcess:
        """The stack's bundle for this certificate, applied by gateway-apply.sh (nginx -t, swap, reload)."""
        tls = shipped_tls_files(self.paths, certificate, key)
        conf = render_nginx_conf(self.settings, {"api": upstreams}, ports=self.ports, paths=self.paths, tls_files=tls)
        bundle = gateway_bundle(self.paths, conf, {tls.certificate: certificate, tls.key: key})
        return subprocess.run(["sh", "-c", APPLY_SCRIPT], input=bundle, capture_output=True, text=True, timeout=60,
                              env={**self.env, "CARECIRCLE_NGINX_DIR": self.paths.config_dir})

    @property
    def master_pid(self) -> int:
        return int(Path(self.paths.runtime_dir, "nginx.pid").read_text())

    def served_certificate(self, server_name: str = SERVER_NAME) -> bytes:
        """The DER certificate this gateway presents for `server_name` (PROXY header first)."""
        sock = socket.create_connection(("127.0.0.1", self.ports.https), timeout=5)
        sock.sendall(f"PROXY TCP4 127.0.0.1 127.0.0.1 40000 {self.ports.https}\r\n".encode())
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
        with context.wrap_socket(sock, server_hostname=server_name) as tls:
            return tls.getpeercert(binary_form=True)

    def tokens(self) -> list[str]:
        directory = Path(self.paths.acme_root, ".well-known", "acme-challenge")
        return sorted(p.name for p in directory.iterdir()) if directory.exists() else []


@contextlib.contextmanager
def edge_gateways(count: int = 2, overrides: Optional[dict] = None) -> Iterator[list[EdgeGateway]]:
    """`count` gateways started from the bootstrap config, as a new container is. Their files live in a
    directory nginx's unprivileged workers can reach (pytest's tmp_path is private to root), as
    /etc/nginx/carecircle is in the container."""
    settings = settings_for("staging", {**GATEWAY_OVERRIDES, **(overrides or {})})
    gateways: list[EdgeGateway] = []
    directory = Path(tempfile.mkdtemp(prefix="carecircle-acme-"))
    directory.chmod(0o755)
    try:
        for index in range(1, count + 1):
            root = directory / f"edge-{index}"
            paths = NginxPaths(runtime_dir=str(root / "run"), access_log=str(root / "access.log"), config_dir=str(root / "conf"))
            ports = GatewayPorts(http=free_port(), https=free_port(), preview=free_port(), status=free_port())
            for sub in ("run", "conf"):
                (root / sub).mkdir(parents=True)
            Path(paths.active_conf).write_text(render_bootstrap_conf(ports, paths))
            env = {**os.environ, "PATH": nginx_on_path(root)}
            with open(root / "error.log", "ab") as error_log:
                process = subprocess.Popen([nginx(), "-e", "stderr", "-c", paths.active_conf, "-g", "daemon off;"],
                                           stdout=subprocess.DEVNULL, stderr=error_log, env=env)
            gateways.append(EdgeGateway(f"edge-{index}", settings, paths, ports, env, process))
            wait_for_port(ports.status, process)
        yield gateways
    finally:
        for gateway in gateways:
            stop(gateway.process)
        shutil.rmtree(directory, ignore_errors=True)


@dataclass
class AcmeSite:
    """Two edges behind a balancer, the name resolving to it, pebble validating through it."""

    gateways: list[EdgeGateway]
    http: Balancer  # what the CA reaches (port 80 of the name)
    https: Balancer  # what clients reach (port 443)
    dns: DnsStub
    ca: Pebble
    account_key: str
    upstreams: list[str] = field(default_factory=list)  # the api replicas behind both edges

    @property
    def settings(self) -> Settings:
        return self.gateways[0].settings

    def obtain(self, directory_url: Optional[str] = None):
        """One order, its challenges on every gateway, as the certificate's provider runs it."""
        with trusting(self.ca.listener_ca):
            return obtain(directory_url or self.ca.directory_url, [SERVER_NAME], EMAIL, self.account_key, [g.shell for g in self.gateways])


@contextlib.contextmanager
def acme_site(directory: Path, eab_required: bool = False) -> Iterator[AcmeSite]:
    with edge_gateways() as gateways, dns_stub() as dns, \
            balancer([g.ports.http for g in gateways]) as http, balancer([g.ports.https for g in gateways]) as https, \
            pebble(directory / "pebble", dns, http.port, eab_required) as ca:
        dns.records[SERVER_NAME] = ["127.0.0.1"]
        yield AcmeSite(gateways, http, https, dns, ca, account_key(directory))


def wait_until(what: str, check, timeout: float = 10) -> float:
    """Seconds until `check()` is true (bounded)."""
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < timeout, f"{what}: not within {timeout} s"
        time.sleep(0.05)
    return time.monotonic() - started
