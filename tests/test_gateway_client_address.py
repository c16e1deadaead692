"""The client address on a real nginx (production's line), both ways: behind L4 load balancers
(gatewayLoadBalancers: the PROXY protocol, believed from those addresses only) and without them
(X-Forwarded-For believed from gatewayTrustedProxies only, as before)."""

import json

import pytest

from nginx_harness import running_gateway, settings_for, stub_upstreams
from switch_harness import switchable_gateway

BALANCER = {"carecircle:gatewayLoadBalancers": ["127.0.0.1/32"], "carecircle:gatewayRateLimitAllowlist": ["127.0.0.0/8"]}


def proxy_v1(client: str, port: int) -> bytes:
    return f"PROXY TCP4 {client} 127.0.0.1 40000 {port}\r\n".encode()


def proxy_v2(client: str, port: int) -> bytes:
    import socket
    import struct

    addresses = socket.inet_aton(client) + socket.inet_aton("127.0.0.1") + struct.pack("!HH", 40000, port)
    return b"\r\n\r\n\x00\r\nQUIT\n" + bytes([0x21, 0x11]) + struct.pack("!H", len(addresses)) + addresses


def get(host: str, path: str = "/api/ping", extra: str = "") -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n{extra}\r\n".encode()


def echoed(answer: bytes) -> dict:
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 "), answer[:200]
    return json.loads(body)["headers"]


@pytest.fixture
def behind_balancer(tmp_path):
    with stub_upstreams(1) as upstreams, running_gateway(tmp_path, settings_for("dev", BALANCER), upstreams) as gateway:
        yield gateway


def test_the_client_address_comes_from_the_proxy_protocol_of_a_balancer(behind_balancer):
    gateway = behind_balancer
    for header in (proxy_v1("203.0.113.7", gateway.ports.http), proxy_v2("203.0.113.7", gateway.ports.http)):
        headers = echoed(gateway.raw(header + get(gateway.server_name, extra="X-Forwarded-For: 6.6.6.6\r\n"))[0])
        # X-Forwarded-For is the client's own text behind an L4 balancer: never believed.
        assert headers["x-real-ip"] == "203.0.113.7" and headers["x-forwarded-for"] == "203.0.113.7"
    entries = [json.loads(line) for line in gateway.access_log(at_least=2)]
    assert {e["remote_addr"] for e in entries} == {"203.0.113.7"}


def test_a_proxy_header_from_anyone_else_is_not_believed(behind_balancer):
    gateway = behind_balancer
    answer, _ = gateway.raw(proxy_v1("203.0.113.7", gateway.ports.http) + get(gateway.server_name), source="127.0.0.3")
    assert echoed(answer)["x-real-ip"] == "127.0.0.3"


def test_a_connection_without_the_proxy_protocol_gets_nothing(behind_balancer):
    gateway = behind_balancer
    answer, seconds = gateway.raw(get(gateway.server_name))
    assert answer == b"" and seconds < 2  # closed at once, no HTML, no JSON
    assert "broken header" in gateway.error_log()


def test_the_rate_limit_is_per_client_behind_the_balancer(tmp_path):
    settings = settings_for("dev", {"carecircle:gatewayLoadBalancers": ["127.0.0.1/32"], "carecircle:gatewayRateLimitPerSecond": 1,
                                    "carecircle:gatewayRateLimitBurst": 1})
    with stub_upstreams(1) as upstreams, running_gateway(tmp_path, settings, upstreams) as gateway:
        def status(client):
            return gateway.raw(proxy_v1(client, gateway.ports.http) + get(gateway.server_name))[0].split(b" ", 2)[1]
        first = [status("203.0.113.7") for _ in range(3)]
        other = [status("198.51.100.9") for _ in range(2)]
    assert first == [b"200", b"200", b"429"] and other == [b"200", b"200"]


def test_tls_listeners_take_the_proxy_protocol_too(tmp_path):
    settings = settings_for("prod", BALANCER)
    with stub_upstreams(1) as upstreams, running_gateway(tmp_path, settings, upstreams) as gateway:
        import socket
        import ssl

        from nginx_harness import client_context

        sock = socket.create_connection(("127.0.0.1", gateway.ports.https), timeout=5)
        sock.sendall(proxy_v1("203.0.113.8", gateway.ports.https))
        with client_context().wrap_socket(sock, server_hostname=gateway.server_name) as tls:
            tls.sendall(get(gateway.server_name))
            answer = b""
            while chunk := tls.recv(65536):
                answer += chunk
        assert echoed(answer)["x-real-ip"] == "203.0.113.8"
        with pytest.raises((ssl.SSLError, ConnectionResetError, OSError)):  # no PROXY header: the handshake fails
            gateway.handshake(gateway.server_name, client_context())
        # The plain-HTTP redirect listener is public too.
        answer, _ = gateway.raw(proxy_v1("203.0.113.8", gateway.ports.http) + get(gateway.server_name))
        assert answer.startswith(b"HTTP/1.1 308 ")


def test_without_balancers_a_proxy_header_is_a_bad_request(tmp_path):
    """Today's behaviour: no PROXY protocol; X-Forwarded-For believed from trusted proxies only."""
    settings = settings_for("dev", {"carecircle:gatewayTrustedProxies": ["127.0.0.1/32"], "carecircle:gatewayRateLimitAllowlist": ["127.0.0.0/8"]})
    with stub_upstreams(1) as upstreams, running_gateway(tmp_path, settings, upstreams) as gateway:
        answer, _ = gateway.raw(proxy_v1("203.0.113.7", gateway.ports.http) + get(gateway.server_name))
        assert answer.startswith(b"HTTP/1.1 400 ") and b'"statusCode":400' in answer
        headers = echoed(gateway.raw(get(gateway.server_name, extra="X-Forwarded-For: 203.0.113.9\r\n"))[0])
        assert headers["x-real-ip"] == "203.0.113.9"
        headers = echoed(gateway.raw(get(gateway.server_name, extra="X-Forwarded-For: 203.0.113.9\r\n"), source="127.0.0.5")[0])
        assert headers["x-real-ip"] == "127.0.0.5"


def test_health_and_apply_never_use_a_proxy_protocol_listener(tmp_path, stacks):
    """The container healthcheck and gateway-apply.sh ask the status listener, which takes plain HTTP."""
    for evaluation in stacks.values():
        gateways = [r for name, r in evaluation.containers.items() if "-gateway" in name]
        assert gateways
        for gateway in gateways:
            assert "http://127.0.0.1:8082/_gateway/health" in gateway.inputs["healthcheck"]["tests"][1]
    with switchable_gateway(tmp_path, overrides={"carecircle:gatewayLoadBalancers": ["127.0.0.1/32"]}) as gateway:
        import urllib.request

        first = gateway.switch("blue")
        assert first.returncode == 0, first.stderr
        second = gateway.switch("green")  # a reload while the public listeners take only the PROXY protocol
        assert second.returncode == 0, second.stderr
        with urllib.request.urlopen(f"http://127.0.0.1:{gateway.ports.status}/_gateway/health", timeout=5) as health:
            assert health.read() == b"ok\n"


# What a client may write about its address, scheme, host or URL, and who believes it: request-ip
# (lib/index.js, in its order), Express/Fastify (X-Forwarded-*), Spring (Forwarded, X-Forwarded-Port,
# -Prefix), Rails/Rack (X-Forwarded-Ssl, -Scheme), IIS/Symfony (X-Original-URL, X-Rewrite-URL).
CLAIMS = ["X-Client-IP", "CF-Connecting-IP", "Fastly-Client-IP", "True-Client-IP", "X-Real-IP", "X-Cluster-Client-IP",
          "X-Forwarded", "Forwarded-For", "Forwarded", "X-AppEngine-User-IP", "CF-Pseudo-IPv4", "X-Forwarded-For",
          "X-Forwarded-Host", "X-Forwarded-Port", "X-Forwarded-Prefix", "X-Forwarded-Proto", "X-Forwarded-Scheme",
          "X-Forwarded-Ssl", "X-Forwarded-Server", "X-Original-Forwarded-For", "X-Original-URL", "X-Rewrite-URL",
          "X-Original-Host", "X-Host"]
FORGED = "203.0.113.66"


@pytest.mark.parametrize("protocol", ["h1", "h2"])
def test_no_claim_of_the_client_reaches_the_api(tmp_path, protocol):
    """Only what the gateway vouches for: its own X-Real-IP, X-Forwarded-For/-Proto/-Host."""
    settings = settings_for("prod", {"carecircle:gatewayRateLimitAllowlist": ["127.0.0.0/8"]})
    with stub_upstreams(1) as upstreams, running_gateway(tmp_path, settings, upstreams) as gateway:
        if protocol == "h1":
            body = gateway.request("GET", "/api/ping", tls=True, headers={name: FORGED for name in CLAIMS})[2]
        else:
            with gateway.h2() as client:
                body = client.request("GET", "/api/ping", headers=[(name.lower(), FORGED) for name in CLAIMS]).body
    received = json.loads(body)["headers"]
    assert {name: value for name, value in received.items() if FORGED in value} == {}
    assert (received["x-real-ip"], received["x-forwarded-for"]) == ("127.0.0.1", "127.0.0.1")
    assert (received["x-forwarded-proto"], received["x-forwarded-host"]) == ("https", gateway.server_name)


def test_malformed_requests_behind_the_balancer_count_against_their_client(tmp_path):
    """nginx refuses them before its post-read phase, where the PROXY protocol's address is taken;
    the error location still counts them against the client's address, never the balancer's (which
    would limit every client behind it)."""
    settings = settings_for("dev", {"carecircle:gatewayLoadBalancers": ["127.0.0.1/32"], "carecircle:gatewayRateLimitPerSecond": 1,
                                    "carecircle:gatewayRateLimitBurst": 1})
    with stub_upstreams(1) as upstreams, running_gateway(tmp_path, settings, upstreams) as gateway:
        def status(client, request):
            return gateway.raw(proxy_v1(client, gateway.ports.http) + request)[0].split(b" ", 2)[1:2]
        malformed = [status("203.0.113.7", b"GET / HTTP/1.1\r\nHost: localhost\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n") for _ in range(2)]
        other = status("198.51.100.9", get(gateway.server_name))
        same = status("203.0.113.7", get(gateway.server_name))
    assert malformed == [[b"431"], [b"431"]] and other == [b"200"] and same == [b"429"]
