"""Blue-green switching on a real nginx, the way the stack does it: the gateway starts from the
bootstrap config, and every configuration is applied by the stack's own gateway-apply.sh
(bundle on stdin: nginx -t, swap, graceful reload). Shared by the tests and bench/switch.py."""

from __future__ import annotations

import contextlib
import http.client
import os
import statistics
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Callable, ContextManager, Iterator, Optional

from carecircle.rendering import APPLY_SCRIPT, GatewayPorts, NginxPaths, gateway_bundle, render_bootstrap_conf, render_nginx_conf
from carecircle.settings import Settings
from nginx_harness import free_port, nginx, nginx_on_path, settings_for, stop, stub_upstreams, wait_for_port

# The environment for the system tools the tests run by name (promtool, prometheus: tests/test_monitoring.py).
# nginx is never found this way: switchable_gateway puts the tested one first on PATH.
ENV = {**os.environ, "PATH": os.environ.get("PATH", "") + ":/usr/sbin"}


@dataclass
class SwitchableGateway:
    settings: Settings
    paths: NginxPaths
    ports: GatewayPorts
    pools: dict[str, list[str]]
    process: subprocess.Popen
    env: dict[str, str]

    def render(self, active: str, broken_upstream: Optional[str] = None) -> str:
        settings = self.settings.model_copy(update={"api_active_color": active})
        idle = "green" if active == "blue" else "blue"
        active_servers = [broken_upstream] if broken_upstream else self.pools[active]
        conf = render_nginx_conf(settings, {"api": active_servers, "api_idle": self.pools[idle]},
                                 ports=self.ports, paths=self.paths, tls_files=None)
        return gateway_bundle(self.paths, conf)

    def apply_bundle(self, bundle: str) -> subprocess.CompletedProcess:
        """Exactly what the stack's pulumi-command runs inside the gateway container."""
        return subprocess.run(["sh", "-c", APPLY_SCRIPT], input=bundle, capture_output=True, text=True, timeout=60,
                              env={**self.env, "CARECIRCLE_NGINX_DIR": self.paths.config_dir})

    def switch(self, active: str) -> subprocess.CompletedProcess:
        return self.apply_bundle(self.render(active))

    @property
    def master_pid(self) -> int:
        return int(Path(self.paths.runtime_dir, "nginx.pid").read_text())


@contextlib.contextmanager
def switchable_gateway(directory: Path, replicas: int = 2, stack: str = "dev", overrides: Optional[dict] = None,
                       pools: Callable[..., ContextManager[list[str]]] = stub_upstreams,
                       stderr: Optional[IO] = None) -> Iterator[SwitchableGateway]:
    """nginx started from the bootstrap config, blue and green pools from `pools(replicas, pool=...)`
    (echo stubs by default); stopped by pid when the block ends."""
    settings = settings_for(stack, {"carecircle:gatewayRateLimitAllowlist": ["127.0.0.0/8"], **(overrides or {})})
    paths = NginxPaths(runtime_dir=str(directory / "run"), access_log=str(directory / "access.log"),
                       config_dir=str(directory / "conf"))
    ports = GatewayPorts(http=free_port(), https=free_port(), preview=free_port(), status=free_port())
    for sub in ("run", "conf"):
        (directory / sub).mkdir()
    Path(paths.active_conf).write_text(render_bootstrap_conf(ports, paths))
    # gateway-apply.sh calls `nginx` by name, as in the container: the tested one comes first on PATH.
    env = {**os.environ, "PATH": nginx_on_path(directory)}
    with pools(replicas, pool="blue") as blue, pools(replicas, pool="green") as green:
        # Started like the container: nginx -c <active.conf>, in the foreground.
        process = subprocess.Popen([nginx(), "-e", "stderr", "-c", paths.active_conf, "-g", "daemon off;"],
                                   stdout=subprocess.DEVNULL, stderr=stderr, env=env)
        try:
            wait_for_port(ports.status, process)
            yield SwitchableGateway(settings, paths, ports, {"blue": list(blue), "green": list(green)}, process, env)
        finally:
            stop(process)


# ---- bounded load with keep-alive clients ---------------------------------------------------

STALE = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError, http.client.BadStatusLine)


@dataclass
class ClientRecord:
    retries_once: bool
    requests: int = 0
    failures: int = 0  # requests that got no response at all
    server_errors: int = 0  # 5xx responses
    stale_connections: int = 0  # keep-alive connections found closed when reused
    responses: list[tuple[float, str]] = field(default_factory=list)  # (start time, pool)
    error_bodies: list[bytes] = field(default_factory=list)


def _client(gateway: SwitchableGateway, record: ClientRecord, stop: threading.Event, max_requests: int) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", gateway.ports.http, timeout=5)
    headers = {"Host": gateway.settings.gateway_server_name}
    while not stop.is_set() and record.requests < max_requests:
        record.requests += 1
        started = time.monotonic()
        attempts = 2 if record.retries_once else 1
        for attempt in range(attempts):
            try:
                conn.request("GET", "/api/ping", headers=headers)
                response = conn.getresponse()
                body = response.read()
            except STALE:
                record.stale_connections += 1
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", gateway.ports.http, timeout=5)
                if attempt + 1 == attempts:
                    record.failures += 1
                continue
            if response.status >= 500:
                record.server_errors += 1
                record.error_bodies.append(body[:80])
            else:
                pool = body.split(b'"pool": "', 1)[1].split(b'"', 1)[0].decode()
                record.responses.append((started, pool))
            break
    conn.close()


@dataclass
class SwitchRun:
    clients: list[ClientRecord]
    switches: list[tuple[float, float, str]]  # (command started, command finished, new active pool)

    def of(self, retries_once: bool) -> dict[str, int]:
        chosen = [c for c in self.clients if c.retries_once == retries_once]
        return {key: sum(getattr(c, key) for c in chosen) for key in ("requests", "failures", "server_errors", "stale_connections")}

    def settle_times(self) -> list[float]:
        """Per switch: seconds from the switch command's start to the last request *started* after
        it that still reached the old pool (0 when none did)."""
        responses = sorted(r for c in self.clients for r in c.responses)
        times = []
        for index, (started, _, pool) in enumerate(self.switches):
            until = self.switches[index + 1][0] if index + 1 < len(self.switches) else float("inf")
            stale = [t for t, p in responses if started <= t < until and p != pool]
            times.append(max(stale) - started if stale else 0.0)
        return times

    def late_requests_on_old_pool(self, grace: float) -> int:
        """Requests started more than `grace` seconds after a switch command finished that still
        reached the old pool."""
        responses = [r for c in self.clients for r in c.responses]
        late = 0
        for index, (_, finished, pool) in enumerate(self.switches):
            until = self.switches[index + 1][0] if index + 1 < len(self.switches) else float("inf")
            late += sum(1 for t, p in responses if finished + grace <= t < until and p != pool)
        return late


def run_switches(gateway: SwitchableGateway, switches: int, interval: float, clients_per_kind: int,
                 max_requests: int = 50_000) -> SwitchRun:
    """Load from retrying and non-retrying keep-alive clients while switching blue/green `switches` times."""
    records = [ClientRecord(retries_once=True) for _ in range(clients_per_kind)]
    records += [ClientRecord(retries_once=False) for _ in range(clients_per_kind)]
    stop = threading.Event()
    threads = [threading.Thread(target=_client, args=(gateway, r, stop, max_requests), daemon=True) for r in records]
    for thread in threads:
        thread.start()
    done: list[tuple[float, float, str]] = []
    try:
        time.sleep(interval)
        active = "blue"
        for _ in range(switches):
            active = "green" if active == "blue" else "blue"
            started = time.monotonic()
            result = gateway.switch(active)
            assert result.returncode == 0, result.stderr
            done.append((started, time.monotonic(), active))
            time.sleep(interval)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
    return SwitchRun(records, done)


def summary(run: SwitchRun) -> str:
    settle = run.settle_times()
    return (f"retrying clients: {run.of(True)}; non-retrying clients: {run.of(False)}; "
            f"switches: {len(run.switches)}; settle seconds: median {statistics.median(settle):.3f}, max {max(settle):.3f}")
