"""Gateway throughput and latency with wrk on loopback, on the nginx of production's line.

Upstreams are nginx stubs (so the upstream is not the bottleneck). Measures, in each run:
  (a) a stub hit directly,
  (b) the generated prod gateway over HTTP and over HTTPS,
  (t) a hand-tuned reference with the same features (bench/tuned-gateway.conf.j2), HTTP and HTTPS,
  (c) a naive proxy config without upstream keepalive (HTTP/1.0 to the upstream, a new connection per request),
and prints requests/s, p50 and p99 latency per target, then generated/tuned and generated/naive per
run with their median and spread (min-max). The targets run one after the other, in a rotated order
each run, so a slow moment of the machine does not always hit the same row.

The JSON access log of (b) and (t) goes where it goes in a container: nginx's stdout, a pipe, read
by this process as fast as it can (--log devnull writes it to /dev/null instead).

    .venv/bin/python bench/gateway.py [--duration 10] [--connections 32] [--threads 2] [--runs 3] [--log pipe|devnull]
                                      [--baseline-rev HEAD] [--variant 'LABEL:OLD=>NEW' ...]
                                      [--tuned-variant 'LABEL:OLD=>NEW' ...] [--only http|https]

--baseline-rev REV adds rows (r) for the gateway configuration as a git revision of this repository
rendered it (same settings, ports and log), to see what a change costs. --variant adds rows (v) for the
generated configuration with the text OLD replaced by NEW (several with one LABEL apply together),
--tuned-variant rows (u) for the hand-tuned one so edited: to measure what one directive costs.
--only measures one protocol.

Needs wrk and openssl, and the nginx bin/fetch-nginx unpacks (the tests' nginx).
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Optional

import jinja2

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "infra"), str(ROOT / "tests")]

from carecircle.rendering import GatewayPorts, NginxPaths, render_nginx_conf  # noqa: E402
from nginx_harness import free_port, make_certificate, nginx, settings_for, stop, wait_for_port  # noqa: E402

REPLICAS = 3
TUNED = ROOT / "bench" / "tuned-gateway.conf.j2"


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


class Nginx:
    """One nginx under test, stopped by its pid; its stdout (the access log) drained by a thread."""

    def __init__(self, directory: Path, conf: str, port: int, pipe: bool = False):
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / "nginx.conf"
        path.write_text(conf)
        subprocess.run([nginx(), "-t", "-q", "-e", "stderr", "-p", str(directory), "-c", str(path)], check=True)
        self.process = subprocess.Popen([nginx(), "-e", "stderr", "-p", str(directory), "-c", str(path), "-g", "daemon off;"],
                                        stdout=subprocess.PIPE if pipe else subprocess.DEVNULL)
        self.logged = 0
        if pipe:
            threading.Thread(target=self._drain, daemon=True).start()
        wait_for_port(port, self.process)

    def _stats(self) -> list[tuple[int, list[str]]]:
        """(pid, /proc/<pid>/stat fields after the name) of the master and its workers."""
        found = []
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit():
                continue
            try:
                fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(proc.name) == self.process.pid or int(fields[1]) == self.process.pid:
                found.append((int(proc.name), fields))
        return found

    def cpu_seconds(self) -> float:
        """CPU time (user + system) used so far by the master and its workers."""
        return sum(int(fields[11]) + int(fields[12]) for _, fields in self._stats()) / os.sysconf("SC_CLK_TCK")

    def workers_cpus(self) -> list[int]:
        """The CPU each worker last ran on."""
        return [int(fields[36]) for pid, fields in self._stats() if pid != self.process.pid]

    def _drain(self) -> None:
        while data := self.process.stdout.read1(65536):  # type: ignore[union-attr]
            self.logged += data.count(b"\n")

    def stop(self) -> None:
        stop(self.process)


def wrk(url: str, args: argparse.Namespace, server: Optional[Nginx] = None) -> dict:
    """wrk's figures, plus the CPU the nginx under test spent per request (microseconds): a figure
    that depends far less than requests/s on what else the machine is doing; and how often (share of
    samples, every 20 ms) two of its workers last ran on the same CPU, each taking turns on a core
    while another core may be free."""
    cpu_before = server.cpu_seconds() if server else 0.0
    samples: list[list[int]] = []
    sampled = threading.Event()

    def sample() -> None:
        while server and not sampled.wait(0.02):
            samples.append(server.workers_cpus())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        out = subprocess.run(
            ["wrk", f"-t{args.threads}", f"-c{args.connections}", f"-d{args.duration}s", "--latency", url],
            capture_output=True, text=True, check=True,
        ).stdout
    finally:
        sampled.set()
        sampler.join()
    several = [cpus for cpus in samples if len(cpus) > 1]
    def latency(label: str) -> float:
        value, unit = re.search(rf"^\s+{label}\s+([\d.]+)(us|ms|s)\s*$", out, re.M).groups()  # type: ignore[union-attr]
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]
    cpu = server.cpu_seconds() - cpu_before if server else 0.0
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: (.*)", out)
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    return {
        "cpu_us": cpu / requests * 1e6 if requests else 0.0,
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
        "p50": latency("50%"),
        "p99": latency("99%"),
        "non2xx": int(errors.group(1)) if errors else 0,
        "socket_errors": socket_errors.group(1) if socket_errors else "none",
        "stacked": sum(len(set(cpus)) < len(cpus) for cpus in several) / len(several) if several else None,
    }


def tuned_conf(directory: Path, ports: GatewayPorts, upstreams: list[str], tls, access_log: str) -> str:
    template = jinja2.Template(TUNED.read_text(), undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    return template.render(dir=directory, http_port=ports.http, https_port=ports.https, status_port=ports.status,
                           server_name="localhost", upstreams=upstreams, tls=tls, access_log=access_log)


RENDER_AT_REVISION = """
import sys
sys.path[:0] = [sys.argv[1] + "/infra", sys.argv[1] + "/tests"]
from nginx_harness import settings_for
from carecircle.rendering import GatewayPorts, NginxPaths, TlsFiles, render_nginx_conf
proto, directory, http, https, preview, status, upstreams, log, cert, key = sys.argv[2:12]
settings = settings_for("prod", {"carecircle:gatewayRateLimitAllowlist": ["127.0.0.0/8"], "carecircle:gatewayServerName": "localhost"})
if proto == "http":
    settings = settings.model_copy(update={"gateway_tls": False})
print(render_nginx_conf(settings, {"api": upstreams.split(",")}, ports=GatewayPorts(int(http), int(https), int(preview), int(status)),
                        paths=NginxPaths(runtime_dir=directory, access_log=log), tls_files=TlsFiles(cert, key) if proto == "https" else None))
"""


def conf_at_revision(revision: str, work: Path, proto: str, directory: Path, ports: GatewayPorts, upstreams: list[str],
                     tls, access_log: str) -> str:
    """The prod gateway configuration as `revision` of this repository renders it."""
    tree = work / f"tree-{revision.replace('/', '_')}"
    if not tree.exists():
        tree.mkdir()
        archive = subprocess.run(["git", "-C", str(ROOT), "archive", revision], capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
    return subprocess.run(
        [sys.executable, "-c", RENDER_AT_REVISION, str(tree), proto, str(directory), str(ports.http), str(ports.https), str(ports.preview),
         str(ports.status), ",".join(upstreams), access_log, tls.certificate if tls else "", tls.key if tls else ""],
        capture_output=True, text=True, check=True).stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--log", choices=["pipe", "devnull"], default="pipe")
    parser.add_argument("--baseline-rev", help="also measure the gateway configuration of this git revision")
    parser.add_argument("--variant", action="append", default=[], help="LABEL:OLD=>NEW, a row for the generated configuration so edited")
    parser.add_argument("--tuned-variant", action="append", default=[], help="LABEL:OLD=>NEW, a row for the tuned configuration so edited")
    parser.add_argument("--only", choices=["http", "https"], help="measure this protocol only")
    args = parser.parse_args()
    # Each row: its label, the configuration it starts from, and the edits made to that text.
    rows: dict[str, tuple[str, list[tuple[str, str]]]] = {"(b) generated": ("generated", []), "(t) tuned": ("tuned", [])}
    if args.baseline_rev:
        rows[f"(r) {args.baseline_rev}"] = ("baseline", [])
    for option, base, prefix in ((args.variant, "generated", "(v)"), (args.tuned_variant, "tuned", "(u) tuned,")):
        for variant in option:
            label, _, edit = variant.partition(":")
            old, arrow, new = edit.partition("=>")
            if not (label and old and arrow):
                parser.error(f"{variant!r} is not LABEL:OLD=>NEW")
            rows.setdefault(f"{prefix} {label}", (base, []))[1].append((old, new))
    pipe = args.log == "pipe"
    access_log = "/dev/stdout" if pipe else "/dev/null"

    servers: list[Nginx] = []
    runs: list[dict[str, dict]] = []
    loads: list[float] = []  # the machine's 1-minute load average after each run (other work included)
    version = subprocess.run([nginx(), "-v"], capture_output=True, text=True).stderr.strip()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        try:
            stub_ports = [free_port() for _ in range(REPLICAS)]
            stub_body = "    keepalive_requests 100000;\n" + "\n".join(STUB_SERVER.format(port=p) for p in stub_ports)
            servers.append(Nginx(work / "stub", nginx_conf(work / "stub", "1", stub_body), stub_ports[0]))
            upstreams = [f"127.0.0.1:{p}" for p in stub_ports]
            # The prod profile; allow-listed so the rate limits do not throttle the load generator,
            # and served as "localhost" so wrk's SNI matches the certificate's server.
            open_limits = {"carecircle:gatewayRateLimitAllowlist": ["127.0.0.0/8"], "carecircle:gatewayServerName": "localhost"}
            prod = settings_for("prod", open_limits)
            targets: dict[str, str] = {"(a) upstream direct": f"http://127.0.0.1:{stub_ports[0]}/api/ping"}
            measured: dict[str, Nginx] = {"(a) upstream direct": servers[0]}
            # Prod refuses TLS off; the HTTP rows are the same prod profile with only TLS switched off.
            protocols = (("http", prod.model_copy(update={"gateway_tls": False})), ("https", prod))
            for label, settings in (p for p in protocols if args.only in (None, p[0])):
                for number, (row, (base, edits)) in enumerate(rows.items()):
                    directory = work / f"{number}-{label}"
                    directory.mkdir()
                    ports = GatewayPorts(http=free_port(), https=free_port(), preview=free_port(), status=free_port())
                    tls = make_certificate(directory, "localhost") if settings.gateway_tls else None
                    if base == "generated":
                        conf = render_nginx_conf(settings, {"api": upstreams}, ports=ports,
                                                 paths=NginxPaths(runtime_dir=str(directory), access_log=access_log), tls_files=tls)
                    elif base == "tuned":
                        conf = tuned_conf(directory, ports, upstreams, tls, access_log)
                    else:
                        conf = conf_at_revision(args.baseline_rev, work, label, directory, ports, upstreams, tls, access_log)
                    for old, new in edits:
                        if old not in conf:
                            sys.exit(f"{row}: {old!r} is not in the {base} configuration")
                        conf = conf.replace(old, new)
                    servers.append(Nginx(directory, conf, ports.status, pipe=pipe))
                    targets[f"{row} {label.upper()}"] = f"{label}://localhost:{ports.https if tls else ports.http}/api/ping"
                    measured[f"{row} {label.upper()}"] = servers[-1]
            naive_port = free_port()
            naive_body = NAIVE_BODY.format(port=naive_port, servers="\n".join(f"        server {u};" for u in upstreams))
            servers.append(Nginx(work / "naive", nginx_conf(work / "naive", "auto", naive_body), naive_port))
            targets["(c) naive proxy, no upstream keepalive"] = f"http://127.0.0.1:{naive_port}/api/ping"
            measured["(c) naive proxy, no upstream keepalive"] = servers[-1]

            labels = list(targets)
            for run in range(args.runs):
                order = labels[run % len(labels):] + labels[:run % len(labels)]
                results = {}
                for label in order:
                    results[label] = wrk(targets[label], args, measured[label])
                    time.sleep(1)
                runs.append(results)
                loads.append(os.getloadavg()[0])
        finally:
            for server in servers:
                server.stop()

    print(f"{version}; wrk -t{args.threads} -c{args.connections} -d{args.duration}s --latency, loopback, {REPLICAS} stub replicas, "
          f"access log: {'a pipe (stdout), drained' if pipe else '/dev/null'}, {args.runs} run(s); "
          f"load average after each run: {', '.join(f'{x:.1f}' for x in loads)}")
    print("| target | requests/s (median of runs) | min - max | nginx CPU us/request (median) | min - max | p50 ms | p99 ms | p99 min - max | "
          "workers sharing a CPU (% of samples, per run) | non-2xx | socket errors |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for label in labels:
        rps = [r[label]["rps"] for r in runs]
        cpu = [r[label]["cpu_us"] for r in runs]
        last = runs[-1][label]
        p50 = statistics.median(r[label]["p50"] for r in runs)
        p99s = [r[label]["p99"] for r in runs]
        non2xx = sum(r[label]["non2xx"] for r in runs)
        stacked = [r[label]["stacked"] for r in runs]
        shared = ", ".join(f"{x:.0%}" for x in stacked) if None not in stacked else "-"
        print(f"| {label} | {statistics.median(rps):.0f} | {min(rps):.0f} - {max(rps):.0f} | {statistics.median(cpu):.1f} | "
              f"{min(cpu):.1f} - {max(cpu):.1f} | {p50:.2f} | {statistics.median(p99s):.2f} | {min(p99s):.2f} - {max(p99s):.2f} | "
              f"{shared} | {non2xx} | {last['socket_errors']} |")
    print()
    print("Ratios per run (requests/s: above 1 is faster; CPU per request and p99: below 1 is cheaper, shorter):")
    print("| ratio | per run | median | min - max |")
    print("|---|---|---|---|")
    for proto in ("HTTP", "HTTPS") if args.only is None else (args.only.upper(),):
        others = [(f"(t) tuned {proto}", "tuned"), ("(c) naive proxy, no upstream keepalive", "naive")]
        if args.baseline_rev:
            others.append((f"(r) {args.baseline_rev} {proto}", args.baseline_rev))
        for other, name in others:
            for metric, unit in (("rps", "requests/s"), ("cpu_us", "CPU per request"), ("p99", "p99 latency")):
                ratios = [r[f"(b) generated {proto}"][metric] / r[other][metric] for r in runs]
                print(f"| generated/{name} {proto}, {unit} | {', '.join(f'{x:.2f}' for x in ratios)} | {statistics.median(ratios):.2f} | "
                      f"{min(ratios):.2f} - {max(ratios):.2f} |")


if __name__ == "__main__":
    main()
