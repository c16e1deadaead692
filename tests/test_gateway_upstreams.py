"""Upstreams on a real nginx (production's line): what counts as a replica failure, how far retries
go, and upstream names nginx re-resolves (the Swarm design's `tasks.<service>`), against a DNS
server of the test's own on 127.0.0.1."""

import contextlib
import json
import socket
import time

import pytest

from carecircle.rendering import Upstream, render_nginx_conf
from dns_stub import dns_stub
from nginx_harness import closing_replicas, free_port, running_gateway, settings_for, stub_upstreams

OPEN = {"carecircle:gatewayRateLimitAllowlist": ["127.0.0.0/8"]}


def replies(gateway, count, method="GET", path="/api/ping"):
    return [gateway.request(method, path, body=b"{}" if method == "POST" else None) for _ in range(count)]


# ---- a replica failure is a connect error or a timeout, never the api's own answer -------------

def test_one_replica_answering_503_never_empties_the_upstream(tmp_path):
    """The api's 503 (e.g. /ready while a dependency is down) is its answer: passed on, not retried,
    and not counted against the replica, which keeps its share of the traffic."""
    with stub_upstreams(2, statuses={1: 503}) as upstreams, \
            running_gateway(tmp_path, settings_for("dev", OPEN), upstreams) as gateway:
        answered = replies(gateway, 40)
        failing, healthy = upstreams.servers
    # Each worker takes turns on its own: about half each, far past max_fails (3), and the failing
    # replica is still in rotation at the end.
    assert len(failing.hits) + len(healthy.hits) == 40 and min(len(failing.hits), len(healthy.hits)) >= 15
    assert 503 in [status for status, _, _ in answered[-10:]]
    for status, _, body in answered:
        assert json.loads(body)["replica"] == (1 if status == 503 else 2)  # the api's own body, not the gateway's


def test_every_replica_answering_503_briefly_never_empties_the_upstream(tmp_path):
    with stub_upstreams(2) as upstreams, running_gateway(tmp_path, settings_for("dev", OPEN), upstreams) as gateway:
        for server in upstreams.servers:
            server.status = 503
        during = replies(gateway, 20)  # 10 per replica, past max_fails (3) on each
        for server in upstreams.servers:
            server.status = 200
        after = replies(gateway, 4)
    assert all(status == 503 and "replica" in json.loads(body) for status, _, body in during)
    # At once, not after fail_timeout (10 s): no replica was taken out.
    assert [status for status, _, _ in after] == [200] * 4


def test_a_slow_replica_gets_few_requests_while_the_others_answer_at_once(tmp_path):
    """A replica that answers 300 ms late (a slow node) under concurrent clients: the gateway sends each
    request to the replica with the fewest in flight, so the slow one takes far less than its third."""
    import concurrent.futures

    with stub_upstreams(3) as upstreams, running_gateway(tmp_path, settings_for("dev", OPEN), upstreams) as gateway:
        slow = upstreams.servers[0]
        slow.delay = 0.3

        def client(_: int) -> list[int]:
            return [status for status, _, _ in replies(gateway, 25)]

        with concurrent.futures.ThreadPoolExecutor(max_workers=6) as pool:
            statuses = [status for batch in pool.map(client, range(6)) for status in batch]
    assert statuses == [200] * 150
    hits = [len(server.hits) for server in upstreams.servers]
    assert sum(hits) == 150 and hits[0] < 150 * 0.15, hits  # round robin: a third (50)


def test_retries_are_bounded_in_tries(tmp_path):
    """Replicas that accept and close (a crash): a GET tries at most gatewayProxyNextUpstreamTries."""
    settings = settings_for("dev", {**OPEN, "carecircle:gatewayProxyNextUpstreamTries": 2})
    with closing_replicas(4) as (addresses, accepted), running_gateway(tmp_path, settings, addresses) as gateway:
        status, _, body = gateway.request("GET", "/api/ping")
        assert status == 502 and json.loads(body)["statusCode"] == 502
        time.sleep(0.2)
        assert sum(accepted) == 2


def test_retries_are_bounded_in_time(tmp_path):
    """A request that timed out reading from one replica is not sent to the next
    (gatewayProxyNextUpstreamTimeout is shorter than gatewayProxyReadTimeout): one wait, one replica."""
    settings = settings_for("dev", {**OPEN, "carecircle:gatewayProxyReadTimeout": "1s",
                                    "carecircle:gatewayProxyNextUpstreamTimeout": "500ms",
                                     "carecircle:gatewayProxyConnectTimeout": "150ms"})
    with stub_upstreams(3, delay=3) as upstreams, running_gateway(tmp_path, settings, upstreams) as gateway:
        started = time.monotonic()
        status, _, body = gateway.request("GET", "/api/slow")
        elapsed = time.monotonic() - started
        hits = sum(len(server.hits) for server in upstreams.servers)
    assert status == 504 and json.loads(body) | {"requestId": ""} == {"statusCode": 504, "message": "Gateway Timeout", "requestId": ""}
    assert hits == 1 and elapsed < 2.5, (hits, elapsed)


# ---- what is sent to a second replica, by method ---------------------------------------------------

# A replica that failed after it received the request (it closed the connection without an answer,
# as one that crashed on it): GET, HEAD, OPTIONS, PUT and DELETE are idempotent (RFC 9110 9.2.2) and
# go to the next replica, up to gatewayProxyNextUpstreamTries; POST and PATCH never.
REPLAYED = {"GET": 3, "HEAD": 3, "OPTIONS": 3, "PUT": 3, "DELETE": 3, "POST": 1, "PATCH": 1}


def send(gateway, protocol: str, method: str, path: str, body) -> tuple[int, bytes]:
    """One request over HTTP/1.1 or HTTP/2 (TLS); its status and body."""
    if protocol == "h1":
        status, _, answer = gateway.request(method, path, tls=True, body=body)
        return status, answer
    with gateway.h2() as client:
        response = client.request(method, path, body=body)
    return response.status, response.body


@pytest.mark.parametrize("protocol", ["h1", "h2"])
def test_what_is_sent_again_after_a_replica_failed_on_it(tmp_path, protocol):
    settings = settings_for("prod", {**OPEN, "carecircle:gatewayUpstreamMaxFails": 100})
    with closing_replicas(3) as (addresses, accepted), running_gateway(tmp_path, settings, addresses) as gateway:
        statuses = {send(gateway, protocol, method, "/api/notes", b"{}" if method in ("POST", "PUT", "PATCH") else None)[0]
                    for method in REPLAYED}
        entries = [json.loads(line) for line in gateway.access_log(at_least=len(REPLAYED))]
        time.sleep(0.3)  # the replicas count in their own threads
    # Each try is an address in the access log's upstream_addr, and a connection a replica accepted.
    assert {e["method"]: len(e["upstream_addr"].split(", ")) for e in entries} == REPLAYED and statuses == {502}
    assert sum(accepted) == sum(REPLAYED.values())


@pytest.mark.parametrize("protocol", ["h1", "h2"])
def test_a_request_no_replica_received_goes_to_the_next_whatever_its_method(tmp_path, protocol):
    """A refused connection means the request was never sent: every method, its body whole."""
    settings = settings_for("prod", {**OPEN, "carecircle:gatewayUpstreamMaxFails": 100})
    with stub_upstreams(2) as upstreams:
        dead = upstreams[0]
        upstreams.servers[0].shutdown()
        upstreams.servers[0].server_close()
        with running_gateway(tmp_path, settings, [dead, upstreams[1]]) as gateway:
            body = b'{"note":"' + b"x" * 3000 + b'"}'
            for method in REPLAYED:
                # Six requests: at least three on one worker, whose turns alternate between the replicas.
                for _ in range(6):
                    sent = body if method in ("POST", "PUT", "PATCH") else None
                    status, answer = send(gateway, protocol, method, "/api/notes/1?x=%2F", sent)
                    assert status == 200, (method, status)
                    if method != "HEAD":
                        echoed = json.loads(answer)
                        assert echoed["path"] == "/api/notes/1?x=%2F" and echoed["headers"].get("content-length") == (
                            str(len(body)) if sent else None), (method, echoed["headers"])
            entries = [json.loads(line) for line in gateway.access_log(at_least=6 * len(REPLAYED))]
    # Each method was refused by the dead replica at least once, then answered by the live one.
    assert {e["method"] for e in entries if e["upstream_addr"] == f"{dead}, {upstreams[1]}"} == set(REPLAYED)


# ---- upstream names nginx re-resolves ----------------------------------------------------------

def served_by(gateway, count=9):
    """The addresses of the replicas that answered `count` requests (None for a non-200)."""
    seen = []
    for _ in range(count):
        status, _, body = gateway.request("GET", "/api/ping")
        seen.append(json.loads(body)["address"] if status == 200 else None)
    return seen


def wait_for(condition, seconds):
    """Seconds until condition() held (polled), or fail after `seconds`."""
    started = time.monotonic()
    while True:
        if condition():
            return time.monotonic() - started
        assert time.monotonic() - started < seconds, "not within the bound"
        time.sleep(0.1)


def test_resolved_upstream_follows_dns(tmp_path):
    """`server tasks.<service>:<port> resolve`: nginx follows the name's addresses while running,
    within gatewayResolverValid + 1 s, whatever the DNS TTL (600 s here, like Docker's)."""
    port = free_port()
    settings = settings_for("dev", {**OPEN, "carecircle:gatewayResolverValid": "1s"})
    addresses = ["127.0.0.2", "127.0.0.3", "127.0.0.4"]
    with dns_stub() as dns, stub_upstreams(3, addresses=addresses, port=port):
        name = "tasks.api-blue"
        dns.records[name] = ["127.0.0.2"]
        spec = {"api": Upstream((f"{name}:{port}",), resolve=True)}
        with running_gateway(tmp_path, settings, spec, resolver=dns.address) as gateway:
            bound = 1 + 1 + 1.5  # valid + nginx's extra second + polling and slack
            wait_for(lambda: set(served_by(gateway, 3)) == {"127.0.0.2"}, bound)
            dns.records[name] = addresses  # scaled up
            wait_for(lambda: set(served_by(gateway)) == set(addresses), bound)
            dns.records[name] = ["127.0.0.3"]  # two tasks gone
            wait_for(lambda: set(served_by(gateway)) == {"127.0.0.3"}, bound)
            dns.records[name] = []  # no task at all (NOERROR, no data): 502, JSON
            wait_for(lambda: set(served_by(gateway, 3)) == {None}, bound)
            status, headers, body = gateway.request("GET", "/api/ping")
            assert status == 502 and json.loads(body)["statusCode"] == 502
            del dns.records[name]  # NXDOMAIN: the same
            time.sleep(bound)
            assert set(served_by(gateway, 3)) == {None}
            dns.records[name] = ["127.0.0.4"]  # back
            wait_for(lambda: set(served_by(gateway, 3)) == {"127.0.0.4"}, bound)
            queries = dns.a_queries(name)
            intervals = [b - a for a, b in zip(queries, queries[1:], strict=False)]
            assert "could not be resolved" in gateway.error_log()
    # One worker re-resolves for all (the zone is shared), every valid + 1 s: never the 600 s TTL.
    assert intervals and max(intervals) < 3, intervals


def test_resolved_upstream_config_is_valid_without_a_resolver_answering(tmp_path):
    """nginx -t and start need no DNS answer: a gateway starts before any task exists."""
    settings = settings_for("prod")
    conf = render_nginx_conf(settings, {"api": Upstream(("tasks.api-blue:3000",), resolve=True),
                                        "api_idle": Upstream(("tasks.api-green:3000",), resolve=True)})
    assert "resolver 127.0.0.11 valid=5s ipv6=off;" in conf
    assert "zone api 64k;" in conf and "server tasks.api-blue:3000 resolve max_fails=3 fail_timeout=10s;" in conf
    fixed = render_nginx_conf(settings, {"api": ["172.30.0.16:3000"]})
    assert "resolver" not in fixed and "zone api" not in fixed  # engine mode: as before


@pytest.mark.parametrize("server, resolve", [("tasks.api-blue", True), ("tasks.api-blue:3000;", True), ("a b:1", False),
                                             ("api:3000 backup", False), ("TASKS.API:3000", True)])
def test_an_upstream_server_is_host_and_port_only(server, resolve):
    with pytest.raises(ValueError, match="not host:port"):
        Upstream((server,), resolve=resolve)


@contextlib.contextmanager
def unanswered_connects(addresses: list[str], port: int):
    """Listeners whose accept queue is full: a connect to them hangs (the kernel drops the SYN), as one to a
    replica on a node cut off from the network does."""
    listeners, fillers = [], []
    try:
        for address in addresses:
            listener = socket.socket()
            listener.bind((address, port))
            listener.listen(0)  # room for one connection, taken below
            listeners.append(listener)
            fillers.append(socket.create_connection((address, port), timeout=2))
        yield
    finally:
        for sock in fillers + listeners:
            sock.close()


@pytest.mark.parametrize("replaced_while_waiting", [False, True])
def test_a_request_waiting_on_a_lost_replica_fails_when_the_name_changes_under_it(tmp_path, replaced_while_waiting):
    """nginx's own limit, behind the rare 502 of a node cut off (docs/scaling.md, "A node cut off"): once a
    re-resolved upstream's addresses change, a request that began with the old list gets no further try
    (src/http/modules/ngx_http_upstream_least_conn_module.c, ngx_http_upstream_get_least_conn_peer: `rrp->config
    != *peers->config` -> NGX_BUSY, "no live upstreams"; a new list of one address ends the tries at once,
    ngx_http_upstream_free_round_robin_peer), even when the new list holds live replicas."""
    port = free_port()
    settings = settings_for("dev", {**OPEN, "carecircle:gatewayResolverValid": "1s", "carecircle:gatewayProxyConnectTimeout": "4s",
                                    "carecircle:gatewayProxyNextUpstreamTries": 2, "carecircle:gatewayProxyNextUpstreamTimeout": "10s"})
    lost, replacements = ["127.0.0.2", "127.0.0.3"], ["127.0.0.4", "127.0.0.5"]
    with dns_stub() as dns, unanswered_connects(lost, port), stub_upstreams(2, addresses=replacements, port=port) as live:
        name = "tasks.api-blue"
        dns.records[name] = lost
        spec = {"api": Upstream((f"{name}:{port}",), resolve=True)}
        with running_gateway(tmp_path, settings, spec, resolver=dns.address) as gateway:
            # Right after a resolution: the request starts with the lost replicas, and the next resolution
            # (within valid + 1 s) falls inside its first try's 4 s connect timeout.
            resolved = len(dns.a_queries(name))
            wait_for(lambda: len(dns.a_queries(name)) > resolved, 5)
            if replaced_while_waiting:  # Swarm replaced the lost replicas: the next resolution gives the new ones
                dns.records[name] = replacements
            started = time.monotonic()
            status, _, body = gateway.request("GET", "/api/ping", timeout=15)
            elapsed = time.monotonic() - started
            log = gateway.error_log()
    assert status == (502 if replaced_while_waiting else 504), (status, body)
    assert ("no live upstreams" in log) == replaced_while_waiting, log
    # Changed under it: one connect timeout, then refused, though the new list's replicas answer.
    assert 3.5 < elapsed < (6 if replaced_while_waiting else 10), elapsed
    assert not any(server.hits for server in live.servers)
