"""A real nginx on 127.0.0.1 high ports, fronting stub upstreams that echo what they receive.

The nginx is the one of the line production runs (1.30), unpacked by bin/fetch-nginx into
.cache/nginx-current (CARECIRCLE_NGINX overrides the path); never the system's.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import random
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator, Mapping, Optional, Sequence, Union

from carecircle.offline import stack_settings
from carecircle.rendering import DOCKER_DNS, GatewayPorts, NginxPaths, TlsFiles, UpstreamSpec, render_nginx_conf
from carecircle.settings import Settings

if TYPE_CHECKING:
    from h2_client import H2Client

REPO_ROOT = Path(__file__).resolve().parents[1]
FETCHED_NGINX = REPO_ROOT / ".cache" / "nginx-current" / "nginx"
NGINX = os.environ.get("CARECIRCLE_NGINX") or str(FETCHED_NGINX)


def nginx() -> str:
    """The nginx binary the tests run, or a failure that says how to get it."""
    if not os.access(NGINX, os.X_OK):
        raise RuntimeError(f"no nginx at {NGINX}: run bin/fetch-nginx (it unpacks the nginx of production's line, "
                           "1.30, into .cache/nginx-current; bin/test runs it), or point CARECIRCLE_NGINX at one")
    return NGINX


def nginx_on_path(directory: Path) -> str:
    """A PATH whose `nginx` is the tested one (for scripts that call `nginx`, like gateway-apply.sh)."""
    bin_dir = directory / "nginx-bin"
    bin_dir.mkdir(exist_ok=True)
    link = bin_dir / "nginx"
    if not link.is_symlink():
        link.symlink_to(nginx())  # the wrapper finds its root through the link
    return f"{bin_dir}:{os.environ.get('PATH', '')}"


# Every header the gateway promises on every response it sends (2xx to 5xx); HSTS on HTTPS ones.
SECURITY_HEADERS = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "content-security-policy": "default-src 'none'; frame-ancestors 'none'",
    "permissions-policy": "camera=(), microphone=(), geolocation=()",
}
HSTS = "max-age=63072000; includeSubDomains"


def assert_hardened(headers: dict, hsts: bool = True) -> None:
    """The promised security headers, once each, a request id, and no version or api fingerprint."""
    for name, value in SECURITY_HEADERS.items():
        assert headers.get(name) == value, (name, headers)
    if hsts:
        assert headers.get("strict-transport-security") == HSTS, headers
    else:
        assert "strict-transport-security" not in headers, headers  # never over plain HTTP (RFC 6797 7.2)
    assert "server" not in headers or headers["server"] == "nginx"  # no version
    assert headers.get("x-request-id")
    assert "x-powered-by" not in headers


def settings_for(stack: str, overrides: Optional[dict] = None) -> Settings:
    return stack_settings(stack, overrides=overrides)


def _ephemeral_ports() -> range:
    try:
        low, high = (int(n) for n in Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    except (OSError, ValueError):
        low, high = 32768, 60999
    return range(low, high + 1)


def free_port() -> int:
    """A port free on 127.0.0.1 now, outside the kernel's ephemeral range: between this call and
    nginx's bind, no outgoing connection (of this test or another process) can be given it."""
    ephemeral = _ephemeral_ports()
    for _ in range(200):
        port = random.randrange(10_000, 65_000)
        if port in ephemeral:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port outside the ephemeral range")


class _Echo(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _reply(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        self.server.hits.append(self.command)  # type: ignore[attr-defined]
        if self.server.delay:  # type: ignore[attr-defined]
            time.sleep(self.server.delay)  # type: ignore[attr-defined]
        status = self.server.status  # type: ignore[attr-defined]
        body = json.dumps({
            "pool": self.server.pool,  # type: ignore[attr-defined]
            "replica": self.server.replica,  # type: ignore[attr-defined]
            "address": self.server.server_address[0],
            "method": self.command,
            "path": self.path,
            "headers": {k.lower(): v for k, v in self.headers.items()},
        }).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        # What an api's own CORS/security middleware might add; the gateway must not duplicate it.
        self.send_header("Access-Control-Allow-Origin", "*")
        self.send_header("X-Powered-By", "Express")
        for name, value in self.server.extra_headers.items():  # type: ignore[attr-defined]
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _reply

    def log_message(self, *args) -> None:  # keep test output clean
        pass


class StubUpstreams(list):
    """`host:port` of each replica (a list, as render_nginx_conf takes it), plus their servers."""

    servers: list[ThreadingHTTPServer]


class _StubServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # socketserver's default backlog of 5 refuses connections under load

    def handle_error(self, request, client_address) -> None:
        # The gateway dropping a connection it no longer needs is part of what the tests provoke.
        if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            super().handle_error(request, client_address)


@contextlib.contextmanager
def stub_upstreams(count: int, statuses: Optional[dict[int, int]] = None, pool: str = "blue",
                   extra_headers: Optional[dict[str, str]] = None, addresses: Optional[Sequence[str]] = None,
                   port: int = 0, delay: float = 0) -> Iterator[StubUpstreams]:
    """`count` echo replicas of one pool; `statuses` makes replica N answer every request with that
    status (change `server.status` to change it later); `extra_headers` go on every response;
    replica N listens on addresses[N-1] (default 127.0.0.1) and `port` (default: any); each waits
    `delay` seconds (change `server.delay`) before it answers."""
    servers = []
    try:
        for replica in range(1, count + 1):
            server = _StubServer(((addresses or ["127.0.0.1"] * count)[replica - 1], port), _Echo)
            server.pool = pool  # type: ignore[attr-defined]
            server.replica = replica  # type: ignore[attr-defined]
            server.status = (statuses or {}).get(replica, 200)  # type: ignore[attr-defined]
            server.hits = []  # type: ignore[attr-defined]
            server.extra_headers = extra_headers or {}  # type: ignore[attr-defined]
            server.delay = delay  # type: ignore[attr-defined]
            threading.Thread(target=server.serve_forever, daemon=True).start()
            servers.append(server)
        upstreams = StubUpstreams(f"{s.server_address[0]}:{s.server_address[1]}" for s in servers)
        upstreams.servers = servers
        yield upstreams
    finally:
        for server in servers:
            server.shutdown()
            server.server_close()


@contextlib.contextmanager
def closing_replicas(count: int) -> Iterator[tuple[list[str], list[int]]]:
    """`count` replicas that accept a connection, read the request and close it without answering
    (a process that crashed on it): `host:port` of each, and how many connections each accepted."""
    listeners = [socket.create_server(("127.0.0.1", 0)) for _ in range(count)]
    accepted = [0] * count
    stop_event = threading.Event()

    def serve(index: int) -> None:
        listeners[index].settimeout(0.1)
        while not stop_event.is_set():
            try:
                conn, _ = listeners[index].accept()
            except (socket.timeout, OSError):
                continue
            accepted[index] += 1
            with conn:
                conn.settimeout(2)
                received = b""
                with contextlib.suppress(OSError):
                    while b"\r\n\r\n" not in received and (chunk := conn.recv(65536)):
                        received += chunk

    threads = [threading.Thread(target=serve, args=(i,), daemon=True) for i in range(count)]
    for thread in threads:
        thread.start()
    try:
        yield [f"127.0.0.1:{listener.getsockname()[1]}" for listener in listeners], accepted
    finally:
        stop_event.set()
        for thread in threads:
            thread.join(timeout=5)
        for listener in listeners:
            listener.close()


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

    def __init__(self, sni: Optional[str], port: int, context: ssl.SSLContext, source_address=None):
        super().__init__(sni or "127.0.0.1", port, context=context, timeout=5, source_address=source_address)
        self.sni = sni

    def connect(self) -> None:
        sock = socket.create_connection(("127.0.0.1", self.port), self.timeout, self.source_address)
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


def answered_status(answer: bytes) -> Union[int, str]:
    """The status of a raw HTTP/1.x answer, or "closed" when nginx sent nothing."""
    if not answer:
        return "closed"
    return int(answer.split(b" ", 2)[1])


def joined_headers(pairs: list[tuple[str, str]]) -> dict[str, str]:
    """Headers by lower-case name; a header sent twice reads "a, b" (so a duplicate is seen)."""
    headers: dict[str, str] = {}
    for name, value in pairs:
        name = name.lower()
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return headers


@dataclass
class RunningGateway:
    directory: Path
    ports: GatewayPorts
    server_name: str
    process: Optional[subprocess.Popen] = None

    def request(self, method: str, path: str, tls: bool = False, body: Optional[bytes] = None,
                headers: Optional[dict] = None, context: Optional[ssl.SSLContext] = None,
                source: Optional[str] = None, port: Optional[int] = None, timeout: float = 5) -> tuple[int, dict, bytes]:
        """One request on a new connection; `source` is the client's address (any 127.x.y.z)."""
        source_address = (source, 0) if source else None
        if tls:
            conn: http.client.HTTPConnection = PinnedHTTPSConnection(
                self.server_name, port or self.ports.https, context or client_context(), source_address=source_address)
        else:
            conn = http.client.HTTPConnection("127.0.0.1", port or self.ports.http, timeout=timeout, source_address=source_address)
        try:
            conn.request(method, path, body=body, headers={"Host": self.server_name, **(headers or {})})
            response = conn.getresponse()
            return response.status, joined_headers(response.getheaders()), response.read()
        finally:
            conn.close()

    def echo(self, path: str, **kwargs) -> dict:
        status, _, body = self.request("GET", path, **kwargs)
        assert status == 200, (status, body)
        return json.loads(body)

    def raw(self, data: bytes, port: Optional[int] = None, source: Optional[str] = None, tls: bool = False,
            timeout: float = 5) -> tuple[bytes, float]:
        """Send bytes as they are on a new connection; what came back until nginx closed it (or
        `timeout`), and after how many seconds."""
        sock = socket.create_connection(("127.0.0.1", port or (self.ports.https if tls else self.ports.http)), timeout=timeout,
                                        source_address=(source, 0) if source else None)
        started = time.monotonic()
        try:
            if tls:
                sock = client_context().wrap_socket(sock, server_hostname=self.server_name)
            if data:
                sock.sendall(data)
            received = b""
            with contextlib.suppress(socket.timeout, ConnectionResetError, ssl.SSLError):
                while chunk := sock.recv(65536):
                    received += chunk
            return received, time.monotonic() - started
        finally:
            sock.close()

    @contextlib.contextmanager
    def h2(self, source: Optional[str] = None) -> Iterator["H2Client"]:
        """An HTTP/2 connection to the HTTPS listener (closed when the block ends)."""
        from h2_client import H2Client  # it uses this module's TLS context and header helpers

        client = H2Client(self.ports.https, self.server_name, source=source)
        try:
            yield client
        finally:
            client.close()

    def handshake(self, sni: Optional[str], context: ssl.SSLContext) -> ssl.SSLSocket:
        """A bare TLS handshake; raises ssl.SSLError when the gateway refuses it."""
        sock = socket.create_connection(("127.0.0.1", self.ports.https), timeout=5)
        try:
            return context.wrap_socket(sock, server_hostname=sni)
        except Exception:
            sock.close()
            raise

    def access_log(self, at_least: int, seconds: float = 5) -> list[str]:
        """The access log once it has `at_least` lines (nginx writes it in 4 KiB chunks, at least
        every second)."""
        deadline = time.monotonic() + seconds
        while True:
            path = self.directory / "access.log"
            lines = path.read_text().splitlines() if path.exists() else []
            if len(lines) >= at_least or time.monotonic() > deadline:
                return lines
            time.sleep(0.05)

    def error_log(self) -> str:
        path = self.directory / "error.log"
        return path.read_text() if path.exists() else ""


Upstreams = Union[Sequence[str], Mapping[str, UpstreamSpec]]


def _described(upstreams: Upstreams) -> Mapping[str, UpstreamSpec]:
    return upstreams if isinstance(upstreams, Mapping) else {"api": list(upstreams)}


def write_conf(directory: Path, settings: Settings, upstreams: Upstreams, ports: GatewayPorts,
               tls_files: Optional[TlsFiles], resolver: str = DOCKER_DNS, access_log: Optional[str] = None,
               runtime_dir: Optional[Path] = None) -> Path:
    conf = directory / "nginx.conf"
    conf.write_text(render_nginx_conf(
        settings, _described(upstreams), ports=ports,
        paths=NginxPaths(runtime_dir=str(runtime_dir or directory), access_log=access_log or str(directory / "access.log")),
        tls_files=tls_files, resolver=resolver,
    ))
    return conf


def nginx_test(directory: Path, conf: Path) -> subprocess.CompletedProcess:
    return subprocess.run([nginx(), "-t", "-e", "stderr", "-p", str(directory), "-c", str(conf)],
                          capture_output=True, text=True, timeout=30)


def stop(process: subprocess.Popen, seconds: float = 15) -> None:
    """Stop an nginx master (and so its workers) by its pid: graceful first, then killed."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=seconds)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=seconds)


@contextlib.contextmanager
def running_gateway(directory: Path, settings: Settings, upstreams: Upstreams, resolver: str = DOCKER_DNS,
                    edit: Optional[Callable[[str], str]] = None) -> Iterator[RunningGateway]:
    """nginx with the stack's rendered config (`edit` may change its text first), its error log in
    directory/error.log; stopped by pid when the block ends, whatever happened in it."""
    ports = GatewayPorts(http=free_port(), https=free_port(), preview=free_port(), status=free_port())
    tls_files = make_certificate(directory, settings.gateway_server_name) if settings.gateway_tls else None
    # The temporary files (a body over 16 KiB, a spooled response) are written by the workers, which
    # run as another user when the tests run as root: a runtime directory that user can reach.
    runtime = Path(tempfile.mkdtemp(prefix="carecircle-nginx-"))
    runtime.chmod(0o755)
    try:
        conf = write_conf(directory, settings, upstreams, ports, tls_files, resolver=resolver, runtime_dir=runtime)
        if edit:
            conf.write_text(edit(conf.read_text()))
        checked = nginx_test(directory, conf)
        assert checked.returncode == 0, checked.stderr
        with open(directory / "error.log", "ab") as error_log:
            process = subprocess.Popen([nginx(), "-e", "stderr", "-p", str(directory), "-c", str(conf), "-g", "daemon off;"],
                                       stdout=subprocess.DEVNULL, stderr=error_log)
        try:
            wait_for_port(ports.status, process)
            yield RunningGateway(directory, ports, settings.gateway_server_name, process)
        finally:
            stop(process)
    finally:
        shutil.rmtree(runtime, ignore_errors=True)
