"""A tiny authoritative DNS server on 127.0.0.1 (UDP), standing in for Docker's embedded DNS in
the tests of upstreams nginx re-resolves. Answers A queries from a dict the test changes while it
runs: a name with a list of addresses gets them (TTL 600, as Docker's DNS), a name with [] gets
NOERROR with no data, an unknown name NXDOMAIN. Every other query type: NOERROR, no data."""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from typing import Iterator, Optional

DOCKER_TTL = 600


class DnsStub:
    def __init__(self) -> None:
        self.records: dict[str, list[str]] = {}
        self.queries: list[tuple[float, str, int]] = []  # (time, name, qtype)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                query, client = self.sock.recvfrom(512)
            except (socket.timeout, OSError):
                continue
            answer = self.answer(query)
            if answer:
                with contextlib.suppress(OSError):
                    self.sock.sendto(answer, client)

    def answer(self, query: bytes) -> Optional[bytes]:
        if len(query) < 12:
            return None
        ident, flags, qdcount = struct.unpack("!HHH", query[:6])
        labels, offset = [], 12
        while offset < len(query) and query[offset]:
            length = query[offset]
            labels.append(query[offset + 1:offset + 1 + length].decode("ascii", "replace").lower())
            offset += 1 + length
        offset += 1
        if qdcount != 1 or offset + 4 > len(query):
            return None
        qtype, _ = struct.unpack("!HH", query[offset:offset + 4])
        question = query[12:offset + 4]
        name = ".".join(labels)
        self.queries.append((time.monotonic(), name, qtype))
        addresses = self.records.get(name)
        rcode = 3 if addresses is None else 0  # NXDOMAIN for an unknown name
        answers = b""
        count = 0
        if qtype == 1 and addresses:
            for address in addresses:
                answers += struct.pack("!HHHIH", 0xC00C, 1, 1, DOCKER_TTL, 4) + socket.inet_aton(address)
                count += 1
        # QR, AA, the client's RD; no recursion offered.
        header = struct.pack("!HHHHHH", ident, 0x8400 | (flags & 0x0100) | rcode, 1, count, 0, 0)
        return header + question + answers

    def a_queries(self, name: str) -> list[float]:
        return [t for t, n, qtype in self.queries if n == name and qtype == 1]


@contextlib.contextmanager
def dns_stub() -> Iterator[DnsStub]:
    stub = DnsStub()
    stub._thread.start()
    try:
        yield stub
    finally:
        stub._stop.set()
        stub._thread.join(timeout=5)
        stub.sock.close()
