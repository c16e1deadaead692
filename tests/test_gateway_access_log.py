"""The access log on a pipe, as in the container (/dev/stdout read by Docker's log driver), on a real
nginx (production's line) with two workers writing it at once: every line whole JSON, even when the
reader is slow (the buffer is at most 4 KiB = PIPE_BUF, so each write is atomic), every line within
about a second (the flush), and no line longer than the buffer, whatever a client sends."""

import json
import socket
import subprocess
import threading
import time
from contextlib import contextmanager
from http.client import HTTPConnection
from typing import Iterator

from carecircle.rendering import GatewayPorts
from nginx_harness import free_port, nginx, nginx_test, settings_for, stop, wait_for_port, write_conf

THREADS, REQUESTS = 8, 250


class PipeReader:
    """Reads nginx's stdout slowly (1 KiB every 10 ms: the pipe fills and the workers block, as with
    a slow log driver), keeping when each chunk arrived."""

    def __init__(self, process: subprocess.Popen):
        self.chunks: list[tuple[float, bytes]] = []
        self.thread = threading.Thread(target=self._read, args=(process,), daemon=True)
        self.thread.start()

    def _read(self, process: subprocess.Popen) -> None:
        while True:
            time.sleep(0.01)
            data = process.stdout.read1(1024)  # type: ignore[union-attr]
            if not data:
                return
            self.chunks.append((time.monotonic(), data))

    @property
    def data(self) -> bytes:
        return b"".join(chunk for _, chunk in self.chunks)


@contextmanager
def logging_gateway(tmp_path) -> Iterator[tuple[GatewayPorts, PipeReader]]:
    """The dev gateway (rate limits allow-listed) with its access log on a slowly read pipe; stopped,
    and its log read to the end, when the block ends."""
    settings = settings_for("dev", {"carecircle:gatewayRateLimitAllowlist": ["127.0.0.0/8"]})
    ports = GatewayPorts(http=free_port(), https=free_port(), preview=free_port(), status=free_port())
    conf = write_conf(tmp_path, settings, [f"127.0.0.1:{free_port()}"], ports, None, access_log="/dev/stdout")
    conf.write_text(conf.read_text().replace("worker_processes auto;", "worker_processes 2;"))  # two writers, whatever the machine
    checked = nginx_test(tmp_path, conf)
    assert checked.returncode == 0, checked.stderr
    with open(tmp_path / "error.log", "ab") as error_log:
        process = subprocess.Popen([nginx(), "-e", "stderr", "-p", str(tmp_path), "-c", str(conf), "-g", "daemon off;"],
                                   stdout=subprocess.PIPE, stderr=error_log)
    try:
        wait_for_port(ports.status, process)
        reader = PipeReader(process)
        yield ports, reader
    finally:
        stop(process)
    reader.thread.join(timeout=10)


def test_lines_stay_whole_and_timely_on_a_pipe_with_concurrent_workers(tmp_path):
    with logging_gateway(tmp_path) as (ports, reader):
        def client(index: int) -> None:
            conn = HTTPConnection("127.0.0.1", ports.http, timeout=30)
            for request in range(REQUESTS):
                conn.request("GET", f"/t{index}/r{request}?pad={'x' * 150}", headers={"Host": "localhost"})
                conn.getresponse().read()
            conn.close()

        threads = [threading.Thread(target=client, args=(i,)) for i in range(THREADS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        time.sleep(2.5)  # every buffer flushed
        # A lone request: its line arrives within the flush interval (1 s), not when a buffer fills.
        mark = len(reader.data)
        sent = time.monotonic()
        conn = HTTPConnection("127.0.0.1", ports.http, timeout=5)
        conn.request("GET", "/lone", headers={"Host": "localhost"})
        conn.getresponse().read()
        conn.close()
        while b'"path":"/lone"' not in reader.data[mark:] and time.monotonic() - sent < 5:
            time.sleep(0.01)
        lone_delay = time.monotonic() - sent
    lines = reader.data.split(b"\n")
    assert lines.pop() == b""  # ends with a whole line
    entries = [json.loads(line) for line in lines]  # a torn or interleaved line fails here
    paths = [e["path"] for e in entries]
    assert len(entries) == THREADS * REQUESTS + 1
    assert len(set(paths)) == len(paths) and {e["status"] for e in entries} == {404}
    # The flush timer writes it about 1 s later (more on a loaded machine); a buffer that waits to fill
    # never writes a lone line, which the 5 s wait above then reaches.
    assert lone_delay < 4, lone_delay


def test_a_line_never_outgrows_the_buffer(tmp_path):
    """Whatever the client puts in the fields that are logged, a line stays below 4 KiB (one write)."""
    with logging_gateway(tmp_path) as (ports, reader):
        hostile = ("\x01" * 3000 + '"\\' * 1000).encode("latin-1")
        request = (b"GET /" + b'"' * 3000 + b"?q=" + b"x" * 2000 + b" HTTP/1.1\r\nHost: localhost\r\nUser-Agent: " + hostile +
                   b"\r\nX-Request-ID: " + b"a" * 128 + b"\r\nConnection: close\r\n\r\n")
        for host in (b"localhost", b"\x02" * 3000):
            with socket.create_connection(("127.0.0.1", ports.http), timeout=5) as sock:
                sock.sendall(request.replace(b"Host: localhost", b"Host: " + host))
                while sock.recv(65536):
                    pass
        time.sleep(1.5)
    lines = reader.data.split(b"\n")[:-1]
    assert len(lines) == 2
    entries = []
    for line in lines:
        assert len(line) < 4096, len(line)
        entries.append(json.loads(line))
    assert all(len(e["path"]) <= 512 for e in entries)
    # The first request's fields, cut short (the second one's bad Host ended its header parsing: a 400).
    assert sorted(e["status"] for e in entries) == [400, 404]
    assert next(e for e in entries if e["status"] == 404)["user_agent"] == "\x01" * 200
