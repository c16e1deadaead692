"""Old nginx workers piling up under repeated applies, on the nginx of production's line.

Each apply (gateway-apply.sh: nginx -t, swap, `nginx -s reload`) starts new workers; the old ones
stop accepting but live on until their last connection closes or `worker_shutdown_timeout` ends
it. WebSockets keep connections open, so applies in quick succession leave one generation of
workers per apply, each holding the WebSockets it accepted. This measures the worst case: WebSocket
clients that stay connected (a message every 2 s) and new ones opening after every apply, applies
one after the other. Reported every half second: nginx worker processes (and how many are shutting
down), their memory (RSS summed, and PSS, which counts shared pages once), and WebSockets still
open; then how long after the last apply the old workers are gone.

Uses the stack's rendering and gateway-apply.sh (tests/switch_harness.py), with pools that answer
WebSocket upgrades (101, then echo) and plain requests, all on 127.0.0.1.

    .venv/bin/python bench/pileup.py [--applies 10] [--interval 1.0] [--websockets 40] [--shutdown-timeout 30s]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Iterator

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "infra"), str(ROOT / "tests")]

from switch_harness import switchable_gateway  # noqa: E402


@contextlib.contextmanager
def websocket_pool(count: int, pool: str = "blue") -> Iterator[list[str]]:
    """`count` replicas: an Upgrade: websocket request gets 101 and an echo; any other gets JSON."""
    listeners = [socket.create_server(("127.0.0.1", 0), backlog=512) for _ in range(count)]
    stop = threading.Event()

    def handle(conn: socket.socket) -> None:
        with contextlib.suppress(OSError), conn:
            buffer = b""
            while not stop.is_set():
                while b"\r\n\r\n" not in buffer:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buffer += data
                head, _, buffer = buffer.partition(b"\r\n\r\n")
                if b"\nupgrade: websocket" in head.lower():
                    conn.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
                    while data := conn.recv(65536):
                        conn.sendall(data)
                    return
                body = json.dumps({"pool": pool}).encode()
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))

    def serve(listener: socket.socket) -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except (socket.timeout, OSError):
                continue
            threading.Thread(target=handle, args=(conn,), daemon=True).start()

    threads = [threading.Thread(target=serve, args=(listener,), daemon=True) for listener in listeners]
    for thread in threads:
        thread.start()
    try:
        yield [f"127.0.0.1:{listener.getsockname()[1]}" for listener in listeners]
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=5)
        for listener in listeners:
            listener.close()


class WebSockets:
    """Client WebSockets through the gateway, kept busy (2 bytes every 2 s), counted while open."""

    def __init__(self, port: int, host: str):
        self.port, self.host = port, host
        self.open: list[socket.socket] = []
        self.closed_by_server = 0
        self.lock = threading.Lock()
        self.stop = threading.Event()
        threading.Thread(target=self._keep_busy, daemon=True).start()

    def connect(self, count: int) -> None:
        for _ in range(count):
            sock = socket.create_connection(("127.0.0.1", self.port), timeout=5)
            sock.sendall(f"GET /api/ws HTTP/1.1\r\nHost: {self.host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n".encode())
            answer = b""
            while b"\r\n\r\n" not in answer:
                answer += sock.recv(4096)
            assert answer.startswith(b"HTTP/1.1 101 "), answer[:100]
            with self.lock:
                self.open.append(sock)

    def _keep_busy(self) -> None:
        while not self.stop.wait(2):
            with self.lock:
                sockets = list(self.open)
            for sock in sockets:
                try:
                    sock.sendall(b"hi")
                    if sock.recv(16) == b"":
                        raise ConnectionResetError
                except OSError:
                    with self.lock:
                        if sock in self.open:
                            self.open.remove(sock)
                            self.closed_by_server += 1
                    sock.close()

    def close(self) -> None:
        self.stop.set()
        with self.lock:
            for sock in self.open:
                sock.close()


def workers(master: int) -> list[tuple[int, bool, int, int]]:
    """(pid, shutting down, RSS KiB, PSS KiB) of each worker of the nginx master `master`."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            status = (proc / "status").read_text()
            if int(status.split("PPid:")[1].split()[0]) != master:
                continue
            title = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            rss = int(status.split("VmRSS:")[1].split()[0])
            pss = int((proc / "smaps_rollup").read_text().split("Pss:")[1].split()[0])
            found.append((int(proc.name), "shutting down" in title, rss, pss))
    return [w for w in found if "cache" not in str(w)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--applies", type=int, default=10)
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between applies")
    parser.add_argument("--websockets", type=int, default=40, help="new WebSockets opened after each apply")
    parser.add_argument("--shutdown-timeout", default="30s", help="gatewayWorkerShutdownTimeout")
    args = parser.parse_args()
    overrides = {"carecircle:gatewayWorkerShutdownTimeout": args.shutdown_timeout}
    samples: list[tuple[float, int, int, int, int, int]] = []
    with tempfile.TemporaryDirectory() as tmp, \
            switchable_gateway(Path(tmp), overrides=overrides, pools=websocket_pool, stderr=open(Path(tmp) / "error.log", "wb")) as gateway:
        assert gateway.switch("blue").returncode == 0
        time.sleep(1)
        master = gateway.master_pid
        baseline = workers(master)
        clients = WebSockets(gateway.ports.http, gateway.settings.gateway_server_name)
        started = time.monotonic()
        stop = threading.Event()

        def sample() -> None:
            while not stop.wait(0.5):
                now = workers(master)
                with clients.lock:
                    held = len(clients.open)
                samples.append((time.monotonic() - started, len(now), sum(w[1] for w in now), sum(w[2] for w in now),
                                sum(w[3] for w in now), held))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        clients.connect(args.websockets)
        color = "blue"
        applied = []
        for _ in range(args.applies):
            color = "green" if color == "blue" else "blue"
            result = gateway.switch(color)
            assert result.returncode == 0, result.stderr
            applied.append(time.monotonic() - started)
            clients.connect(args.websockets)
            time.sleep(args.interval)
        last_apply = applied[-1]
        # Until only the current generation is left (bounded by the shutdown timeout plus slack).
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            current = workers(master)
            if current and not any(w[1] for w in current) and len(current) <= len(baseline):
                break
            time.sleep(0.5)
        gone_after = time.monotonic() - started - last_apply
        time.sleep(3)  # let the clients notice closed connections
        stop.set()
        sampler.join(timeout=5)
        clients.close()
    print(f"worker_shutdown_timeout {args.shutdown_timeout}; {args.applies} applies {args.interval}s apart; "
          f"{args.websockets} new WebSockets after each apply (and {args.websockets} before the first)")
    print(f"workers before: {len(baseline)} (RSS {sum(w[2] for w in baseline) / 1024:.1f} MiB, PSS {sum(w[3] for w in baseline) / 1024:.1f} MiB)")
    print(f"peak: {max(s[1] for s in samples)} workers alive ({max(s[2] for s in samples)} shutting down), "
          f"RSS {max(s[3] for s in samples) / 1024:.1f} MiB summed, PSS {max(s[4] for s in samples) / 1024:.1f} MiB, "
          f"{max(s[5] for s in samples)} WebSockets open")
    print(f"old workers gone {gone_after:.1f} s after the last apply; WebSockets closed by the gateway: {clients.closed_by_server} "
          f"of {args.websockets * (args.applies + 1)}")
    print("| t (s) | workers | shutting down | RSS MiB | PSS MiB | WebSockets open |")
    print("|---|---|---|---|---|---|")
    for t, count, shutting, rss, pss, held in samples[::4]:
        print(f"| {t:.1f} | {count} | {shutting} | {rss / 1024:.1f} | {pss / 1024:.1f} | {held} |")


if __name__ == "__main__":
    main()
