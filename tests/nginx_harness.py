"""A real nginx on 127.0.0.1 high ports, fronting stub upstreams that echo what they receive."""

from __future__ import annotations

import contextlib
import http.client
import json
import shutil
import socket
import ssl
import subprocess
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator, Optional

from carecircle.offline import stack_settings
from carecircle.rendering import GatewayPorts, NginxPaths, TlsFiles, render_nginx_conf
from carecircle.settings import Settings

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


def settings_for(stack: str, overrides: Optional[dict] = None) -> Settings:
    return stack_settings(stack, overrides=overrides)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Echo(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _reply(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        self.server.hits.append(self.command)  # type: ignore[attr-defined]
        status = self.server.status  # type: ignore[attr-defined]
        body = json.dumps({
            "pool": self.server.pool,  # type: ignore[attr-defined]
            "replica": self.server.replica,  # type: ignore[attr-defined]
            "method": self.command,
            "path": self.path,
            "headers": {k.lower(): v for k, v in self.headers.items()},
        }).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        # What an api's own CORS/security middleware might add; the gateway must not duplicate it.
        self.send_header("Access-Control-Allow-Origin", "*")
        self.send_header("X-Powered-By", "Express")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _reply

    def log_message(self, *args) -> None:  # keep test output clean
        pass


class StubUpstreams(list):
    """`host:port` of each replica (a list, as render_nginx_conf takes it), plus their servers."""

    servers: list[ThreadingHTTPServer]


class _StubServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # socketserver's default backlog of 5 refuses connections under load


@contextlib.contextmanager
def stub_upstreams(count: int, statuses: Optional[dict[int, int]] = None, pool: str = "blue") -> Iterator[StubUpstreams]:
    """`count` echo replicas of one pool; `statuses` makes replica N answer every request with that status."""
    servers = []
    for replica in range(1, count + 1):
        server = _StubServer(("127.0.0.1", 0), _Echo)
        server.pool = pool  # type: ignore[attr-defined]
        server.replica = replica  # type: ignore[attr-defined]
        server.status = (statuses or {}).get(replica, 200)  # type: ignore[attr-defined]
        server.hits = []  # type: ignore[attr-defined]
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
    upstreams = StubUpstreams(f"127.0.0.1:{s.server_address[1]}" for s in servers)
    upstreams.servers = servers
    try:
        yield upstreams
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()


def make_certificate(directory: Path, host: str) -> TlsFiles:
    cert, key = directory / "fullchain.pem", directory / "privkey.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN={host}",
         "-addext", f"subjectAltName=DNS:{host}", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )
    return TlsFiles(certificate=str(cert), key=str(key))


class PinnedHTTPSConnection(http.client.HTTPSConnection):
    """HTTPS to 127.0.0.1 that still sends the host name as SNI (and in Host)."""

    def __init__(self, sni: Optional[str], port: int, context: ssl.SSLContext):
        super().__init__(sni or "127.0.0.1", port, context=context, timeout=5)
        self.sni = sni

    def connect(self) -> None:
        sock = socket.create_connection(("127.0.0.1", self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.sni)  # type: ignore[attr-defined]


def client_context(minimum=None, maximum=None, alpn=None) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    if minimum:
        context.minimum_version = minimum
    if maximum:
        context.maximum_version = maximum
    if alpn:
        context.set_alpn_protocols(alpn)
    return context


def wait_for_port(port: int, process: subprocess.Popen, seconds: float = 10) -> None:
    """Until `process` accepts connections on 127.0.0.1:port (bounded; fails if it exits)."""
    deadline = time.monotonic() + seconds
    while True:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
            return
        assert process.poll() is None and time.monotonic() < deadline, f"{process.args[0]} did not start"
        time.sleep(0.05)


@dataclass
class RunningGateway:
    directory: Path
    ports: GatewayPorts
    server_name: str

    def request(self, method: str, path: str, tls: bool = False, body: Optional[bytes] = None,
                headers: Optional[dict] = None, context: Optional[ssl.SSLContext] = None) -> tuple[int, dict, bytes]:
        if tls:
            conn = PinnedHTTPSConnection(self.server_name, self.ports.https, context or client_context())
        else:
            conn = http.client.HTTPConnection("127.0.0.1", self.ports.http, timeout=5)
        try:
            conn.request(method, path, body=body, headers={"Host": self.server_name, **(headers or {})})
            response = conn.getresponse()
            return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
        finally:
            conn.close()

    def echo(self, path: str, **kwargs) -> dict:
        status, _, body = self.request("GET", path, **kwargs)
        assert status == 200, (status, body)
        return json.loads(body)

    def handshake(self, sni: Optional[str], context: ssl.SSLContext) -> ssl.SSLSocket:
        """A bare TLS handshake; raises ssl.SSLError when the gateway refuses it."""
        sock = socket.create_connection(("127.0.0.1", self.ports.https), timeout=5)
        try:
            return context.wrap_socket(sock, server_hostname=sni)
        except Exception:
            sock.close()
            raise

    def access_log(self, at_least: int) -> list[str]:
        """The access log once it has `at_least` lines (nginx logs just after sending the response)."""
        deadline = time.monotonic() + 5
        while True:
            lines = (self.directory / "access.log").read_text().splitlines()
            if len(lines) >= at_least or time.monotonic() > deadline:
                return lines
            time.sleep(0.05)


def write_conf(directory: Path, settings: Settings, upstreams: list[str], ports: GatewayPorts,
               tls_files: Optional[TlsFiles]) -> Path:
    conf = directory / "nginx.conf"
    conf.write_text(render_nginx_conf(
        settings, {"api": upstreams}, ports=ports,
        paths=NginxPaths(runtime_dir=str(directory), access_log=str(directory / "access.log")),
        tls_files=tls_files,
    ))
    return conf


def nginx_test(directory: Path, conf: Path) -> subprocess.CompletedProcess:
    return subprocess.run([NGINX, "-t", "-e", "stderr", "-p", str(directory), "-c", str(conf)],
                          capture_output=True, text=True, timeout=30)


@contextlib.contextmanager
def running_gateway(directory: Path, settings: Settings, upstreams: list[str]) -> Iterator[RunningGateway]:
    ports = GatewayPorts(http=free_port(), https=free_port(), preview=free_port(), status=free_port())
    tls_files = make_certificate(directory, settings.gateway_server_name) if settings.gateway_tls else None
    conf = write_conf(directory, settings, upstreams, ports, tls_files)
    checked = nginx_test(directory, conf)
    assert checked.returncode == 0, checked.stderr
    process = subprocess.Popen([NGINX, "-e", "stderr", "-p", str(directory), "-c", str(conf), "-g", "daemon off;"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_for_port(ports.http, process)
        yield RunningGateway(directory, ports, settings.gateway_server_name)
    finally:
        process.terminate()
        process.wait(timeout=10)
