"""Bounded HTTPS load through the gateways of the edge nodes, as clients behind an L4 load balancer
see it. The balancer health-checks each edge node with a TCP connect every 0.5 s and takes a node out
after 2 failed checks, back in after 2 good ones (HAProxy's `check inter 500 fall 2 rise 2`); each
request goes to the next edge node in service. A retrying client tries once more through the balancer
when a request fails (connection refused/reset/timeout or a 5xx), on the next edge node in service
(the same one when it is the only one), as a load balancer's retry or a client's own would; a
non-retrying client counts every failure. Every response says which pool, version and task answered
(the api stand-in's headers)."""

from __future__ import annotations

import http.client
import socket
import ssl
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Optional


@dataclass(frozen=True)
class Outcome:
    at: float  # seconds since the load started, when the client sent the request
    took: float  # seconds until the outcome, the retry included
    ok: bool
    status: int  # 0: no response
    edge: str
    retried: bool
    version: str = ""
    pool: str = ""
    task: str = ""
    error: str = ""
    first_error: str = ""  # what made a retrying client retry ("" when the first try answered)


class _Connection(http.client.HTTPSConnection):
    """HTTPS to a node's address with the gateway's host name as SNI."""

    def __init__(self, address: str, server_name: str, timeout: float):
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        super().__init__(server_name, 443, context=context, timeout=timeout)
        self.address = address

    def connect(self) -> None:
        sock = socket.create_connection((self.address, 443), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)  # type: ignore[attr-defined]


class _Balancer:
    """Which edge nodes are in service, by TCP health checks as an L4 load balancer runs them."""

    INTERVAL, CHECK_TIMEOUT, FALL, RISE = 0.5, 0.5, 2, 2

    def __init__(self, edges: dict[str, str], stop: threading.Event):
        self.edges, self._stop = edges, stop
        self.in_service = {name: True for name in edges}
        self._streak = {name: 0 for name in edges}  # consecutive checks that disagree with in_service
        self.changes: list[tuple[float, str, bool]] = []  # (monotonic time, edge, now in service)
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def join(self) -> None:
        self._thread.join(timeout=self.INTERVAL + self.CHECK_TIMEOUT * len(self.edges) + 1)

    def _healthy(self, address: str) -> bool:
        try:
            socket.create_connection((address, 443), self.CHECK_TIMEOUT).close()
            return True
        except OSError:
            return False

    def _run(self) -> None:
        while not self._stop.is_set():
            for name, address in self.edges.items():
                if self._healthy(address) == self.in_service[name]:
                    self._streak[name] = 0
                    continue
                self._streak[name] += 1
                if self._streak[name] >= (self.RISE if not self.in_service[name] else self.FALL):
                    self.in_service[name], self._streak[name] = not self.in_service[name], 0
                    self.changes.append((time.monotonic(), name, self.in_service[name]))
            self._stop.wait(self.INTERVAL)

    def pick(self, turn: int, after: Optional[str] = None) -> str:
        """The edge node for request number `turn`; for a retry, the next one in service after `after`."""
        names = sorted(self.edges)
        serving = [name for name in names if self.in_service[name]] or names
        if after is None:
            return serving[turn % len(serving)]
        later = [name for name in serving if name > after] + [name for name in serving if name <= after]
        return later[0]


@dataclass
class Load:
    """`clients` threads per kind (retrying and not), each sending a request every `pause` seconds
    through the balancer, keeping connections alive between requests."""

    edges: dict[str, str]  # edge node name -> address
    server_name: str
    path: str = "/api/load"
    clients: int = 2
    pause: float = 0.05
    timeout: float = 5.0
    outcomes: dict[bool, list[Outcome]] = field(default_factory=lambda: {True: [], False: []})
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _started: float = 0.0
    balancer: _Balancer = field(init=False)

    def __post_init__(self) -> None:
        self.balancer = _Balancer(self.edges, self._stop)

    def __enter__(self) -> "Load":
        self._started = time.monotonic()
        self.balancer.start()
        for retrying in (True, False):
            for index in range(self.clients):
                thread = threading.Thread(target=self._client, args=(retrying, index), daemon=True)
                thread.start()
                self._threads.append(thread)
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=self.timeout * 3)
        self.balancer.join()

    def elapsed(self) -> float:
        return time.monotonic() - self._started

    def _request(self, connections: dict[str, Optional[_Connection]], edge: str) -> tuple[int, dict, str]:
        connection = connections.get(edge)
        if connection is None:
            connection = connections[edge] = _Connection(self.edges[edge], self.server_name, self.timeout)
        try:
            connection.request("GET", self.path, headers={"Host": self.server_name})
            response = connection.getresponse()
            response.read()
            headers = {k.lower(): v for k, v in response.getheaders()}
            if headers.get("connection", "").lower() == "close":
                connection.close()
                connections[edge] = None
            return response.status, headers, ""
        except (OSError, http.client.HTTPException) as error:
            connection.close()
            connections[edge] = None
            return 0, {}, f"{type(error).__name__}: {error}"

    def _client(self, retrying: bool, index: int) -> None:
        connections: dict[str, Optional[_Connection]] = {}
        turn = index
        while not self._stop.is_set():
            edge = self.balancer.pick(turn)
            turn += 1
            sent = self.elapsed()
            status, headers, error = self._request(connections, edge)
            retried, first_error = False, ""
            if retrying and (status == 0 or status >= 500):
                first_error = f"{edge}: {error or status}"
                retried, edge = True, self.balancer.pick(turn, after=edge)
                status, headers, error = self._request(connections, edge)
            outcome = Outcome(at=sent, took=self.elapsed() - sent, ok=200 <= status < 300, status=status, edge=edge,
                              retried=retried, version=headers.get("x-standin-version", ""),
                              pool=headers.get("x-standin-pool", ""), task=headers.get("x-standin-task", ""),
                              error=error, first_error=first_error)
            with self._lock:
                self.outcomes[retrying].append(outcome)
            self._stop.wait(self.pause)
        for connection in connections.values():
            if connection is not None:
                connection.close()

    # ---- figures ----

    def requests(self, retrying: bool) -> list[Outcome]:
        with self._lock:
            return list(self.outcomes[retrying])

    def failed(self, retrying: bool, after: float = 0.0) -> list[Outcome]:
        return [o for o in self.requests(retrying) if not o.ok and o.at >= after]

    def summary(self) -> dict[str, object]:
        figures: dict[str, object] = {"seconds": round(self.elapsed(), 1)}
        for retrying, kind in ((True, "retrying"), (False, "plain")):
            done = self.requests(retrying)
            figures[f"{kind}_requests"] = len(done)
            figures[f"{kind}_failed"] = sum(not o.ok for o in done)
            figures[f"{kind}_statuses"] = dict(Counter(o.status for o in done if not o.ok))
        return figures

    def out_of_service_after(self, edge: str, since: float) -> Optional[float]:
        """Seconds from `since` (load time) until the balancer took `edge` out (None: it never did)."""
        for at, name, serving in self.balancer.changes:
            if name == edge and not serving and at - self._started >= since:
                return at - self._started - since
        return None

    def balancer_changes(self) -> list[tuple[float, str, bool]]:
        """(seconds into the load, edge, in service) each time the balancer took an edge out or back."""
        return [(round(at - self._started, 1), name, serving) for at, name, serving in self.balancer.changes]

    def versions(self, after: float = 0.0) -> Counter:
        return Counter((o.pool, o.version) for kind in (True, False) for o in self.requests(kind) if o.ok and o.at >= after)
