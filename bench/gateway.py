"""Gateway throughput and latency with wrk on loopback.

Upstreams are nginx stubs (so the upstream is not the bottleneck). Measures:
  (a) a stub hit directly,
  (b) the generated prod-profile gateway over HTTP and over HTTPS (JSON access log formatted, written to /dev/null),
  (c) a naive proxy config without upstream keepalive (HTTP/1.0 to the upstream, a new connection per request),
and prints requests/s, p50 and p99 latency and the ratios b/a and b/c, all from the same run.

    .venv/bin/python bench/gateway.py [--duration 10] [--connections 32] [--threads 2]

Needs nginx, wrk and openssl (apt-get install nginx wrk openssl).
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "infra"), str(ROOT / "tests")]

from carecircle.rendering import GatewayPorts, NginxPaths, render_nginx_conf  # noqa: E402
from nginx_harness import free_port, make_certificate, settings_for  # noqa: E402

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
REPLICAS = 3

def nginx_conf(directory: Path, workers: str, body: str) -> str:
    """A minimal unprivileged nginx.conf around `body` (the http-level directives and servers)."""
    d = directory
    return (f"worker_processes {workers};\npid {d}/nginx.pid;\nerror_log stderr warn;\n"
            "events { worker_connections 4096; }\n"
            f"http {{\n    client_body_temp_path {d}/cb; proxy_temp_path {d}/p; fastcgi_temp_path {d}/f; "
            f"uwsgi_temp_path {d}/u; scgi_temp_path {d}/s;\n    access_log off;\n{body}\n}}\n")


STUB_SERVER = """    server {{ listen 127.0.0.1:{port}; location / {{ default_type application/json; return 200 '{{"ok":true}}'; }} }}"""
NAIVE_BODY = """    upstream api {{
{servers}
    }}
    server {{ listen 127.0.0.1:{port}; location / {{ proxy_pass http://api; }} }}"""

def start_nginx(directory: Path, conf: str) -> subprocess.Popen:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "nginx.conf"
    path.write_text(conf)
    subprocess.run([NGINX, "-t", "-q", "-e", "stderr", "-p", str(directory), "-c", str(path)], check=True)
    process = subprocess.Popen([NGINX, "-e", "stderr", "-p", str(directory), "-c", str(path), "-g", "daemon off;"])
    time.sleep(0.5)
    return process


def wrk(url: str, args: argparse.Namespace) -> dict[str, float]:
    out = subprocess.run(
        ["wrk", f"-t{args.threads}", f"-c{args.connections}", f"-d{args.duration}s", "--latency", url],
        capture_output=True, text=True, check=True,
    ).stdout
    def latency(label: str) -> float:
        value, unit = re.search(rf"^\s+{label}\s+([\d.]+)(us|ms|s)\s*$", out, re.M).groups()  # type: ignore[union-attr]
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: (.*)", out)
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
        "p50": latency("50%"),
        "p99": latency("99%"),
        "non2xx": int(errors.group(1)) if errors else 0,
        "socket_errors": socket_errors.group(1) if socket_errors else "none",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    processes = []
    results: dict[str, dict[str, float]] = {}
    gateway_urls: dict[str, str] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        try:
            stub_ports = [free_port() for _ in range(REPLICAS)]
            stub_body = "    keepalive_requests 100000;\n" + "\n".join(STUB_SERVER.format(port=p) for p in stub_ports)
            processes.append(start_nginx(work / "stub", nginx_conf(work / "stub", "1", stub_body)))
            upstreams = {"api": [f"127.0.0.1:{p}" for p in stub_ports]}
            # The prod profile; allow-listed so the rate limit does not throttle the load generator,
            # and served as "localhost" so wrk's SNI matches the certificate's server.
            open_limits = {"carecircle:gatewayRateLimitAllowlist": ["127.0.0.0/8"], "carecircle:gatewayServerName": "localhost"}
            prod = settings_for("prod", open_limits)
            # Prod refuses TLS off; the HTTP row is the same prod profile with only TLS switched off.
            for label, settings in (("http", prod.model_copy(update={"gateway_tls": False})), ("https", prod)):
                directory = work / f"gateway-{label}"
                directory.mkdir()
                ports = GatewayPorts(http=free_port(), https=free_port(), preview=free_port(), status=free_port())
                tls = make_certificate(directory, "localhost") if settings.gateway_tls else None
                conf = render_nginx_conf(settings, upstreams, ports=ports,
                                         paths=NginxPaths(runtime_dir=str(directory), access_log="/dev/null"), tls_files=tls)
                processes.append(start_nginx(directory, conf))
                gateway_urls[f"(b) prod gateway {label.upper()}"] = f"{label}://localhost:{ports.https if tls else ports.http}/api/ping"
            naive_port = free_port()
            naive_body = NAIVE_BODY.format(port=naive_port, servers="\n".join(f"        server {u};" for u in upstreams["api"]))
            processes.append(start_nginx(work / "naive", nginx_conf(work / "naive", "auto", naive_body)))

            targets = {"(a) upstream direct": f"http://127.0.0.1:{stub_ports[0]}/api/ping",
                       **gateway_urls,
                       "(c) naive proxy, no upstream keepalive": f"http://127.0.0.1:{naive_port}/api/ping"}
            for label, url in targets.items():
                results[label] = wrk(url, args)
        finally:
            for process in processes:
                process.terminate()
                process.wait(timeout=10)

    print(f"wrk -t{args.threads} -c{args.connections} -d{args.duration}s --latency, loopback, {REPLICAS} stub replicas")
    print("| target | requests/s | p50 ms | p99 ms | non-2xx | socket errors |")
    print("|---|---|---|---|---|---|")
    for label, r in results.items():
        print(f"| {label} | {r['rps']:.0f} | {r['p50']:.2f} | {r['p99']:.2f} | {r['non2xx']} | {r['socket_errors']} |")
    a, c = results["(a) upstream direct"], results["(c) naive proxy, no upstream keepalive"]
    for label in ("(b) prod gateway HTTP", "(b) prod gateway HTTPS"):
        b = results[label]
        print(f"{label}: b/a = {b['rps'] / a['rps']:.2f} of direct throughput, b/c = {b['rps'] / c['rps']:.2f}x the naive proxy")


if __name__ == "__main__":
    main()
