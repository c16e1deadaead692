"""Production behaviour of the gateway, each proven against a real nginx on 127.0.0.1:
TLS profiles, SNI, limits, CORS, headers, client address, request ids, retries, logs."""

import gzip
import http.client
import json
import ssl
import subprocess
import sys
from pathlib import Path

import crossplane
import pytest

from carecircle.rendering import render_nginx_conf
from nginx_harness import client_context, running_gateway, settings_for, stub_upstreams

SECURITY_HEADERS = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "content-security-policy": "default-src 'none'; frame-ancestors 'none'",
}
OPEN = {"carecircle:gatewayRateLimitAllowlist": ["127.0.0.0/8"]}


@pytest.fixture
def prod(tmp_path):
    with stub_upstreams(3) as upstreams, running_gateway(tmp_path, settings_for("prod", OPEN), upstreams) as gateway:
        yield gateway


@pytest.fixture
def staging(tmp_path):
    with stub_upstreams(2) as upstreams, running_gateway(tmp_path, settings_for("staging", OPEN), upstreams) as gateway:
        yield gateway


# ---- TLS ------------------------------------------------------------------------------------

def test_modern_profile_refuses_tls_1_2(prod):
    with pytest.raises(ssl.SSLError, match="(?i)protocol version|unsupported protocol"):
        prod.handshake(prod.server_name, client_context(maximum=ssl.TLSVersion.TLSv1_2))
    with prod.handshake(prod.server_name, client_context()) as accepted:
        assert accepted.version() == "TLSv1.3"


def test_intermediate_profile_accepts_tls_1_2(staging):
    with staging.handshake(staging.server_name, client_context(maximum=ssl.TLSVersion.TLSv1_2)) as accepted:
        assert accepted.version() == "TLSv1.2"
        assert accepted.cipher()[0].startswith(("ECDHE-", "DHE-"))


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1_1 is deprecated:DeprecationWarning")
@pytest.mark.parametrize("stack", ["prod", "staging"])
def test_tls_1_1_is_always_refused_by_the_server(request, stack):
    gateway = request.getfixturevalue(stack)
    context = client_context(minimum=ssl.TLSVersion.TLSv1_1, maximum=ssl.TLSVersion.TLSv1_1)
    context.set_ciphers("DEFAULT:@SECLEVEL=0")  # let this client offer TLS 1.1 at all
    with pytest.raises(ssl.SSLError) as refused:
        gateway.handshake(gateway.server_name, context)
    # The server's alert, not a client that could not offer the version.
    assert "NO_PROTOCOLS_AVAILABLE" not in str(refused.value)
    assert "protocol version" in str(refused.value).lower() or "unsupported protocol" in str(refused.value).lower()


def test_unknown_sni_is_refused(prod):
    with pytest.raises(ssl.SSLError, match="(?i)unrecognized name"):
        prod.handshake("evil.example", client_context())
    with pytest.raises(ssl.SSLError, match="(?i)unrecognized name"):
        prod.handshake(None, client_context())  # no SNI at all (a scan by IP address)


def test_http2_is_offered(prod):
    with prod.handshake(prod.server_name, client_context(alpn=["h2", "http/1.1"])) as accepted:
        assert accepted.selected_alpn_protocol() == "h2"


def test_plain_http_redirects_with_308_and_unknown_host_gets_nothing(prod):
    status, headers, _ = prod.request("POST", "/api/care-plans?draft=1", body=b"{}")
    assert status == 308 and headers["location"] == "https://api.carecircle.example/api/care-plans?draft=1"
    with pytest.raises((http.client.RemoteDisconnected, ConnectionResetError)):  # 444: closed without a response
        prod.request("GET", "/api/ping", headers={"Host": "other.example"})


# ---- headers, limits --------------------------------------------------------------------------

def assert_hardened(headers, tls=True):
    for name, value in SECURITY_HEADERS.items():
        assert headers.get(name) == value, (name, headers)
    if tls:
        assert headers["strict-transport-security"] == "max-age=63072000; includeSubDomains"
    assert "server" not in headers or headers["server"] == "nginx"  # no version
    assert headers.get("x-request-id")
    assert "x-powered-by" not in headers


def test_security_headers_on_200_404_413_and_429(tmp_path):
    settings = settings_for("prod", {"carecircle:gatewayClientMaxBodySize": "1k",
                                     "carecircle:gatewayRateLimitPerSecond": 1, "carecircle:gatewayRateLimitBurst": 3})
    with stub_upstreams(1) as upstreams, running_gateway(tmp_path, settings, upstreams) as gateway:
        status, headers, _ = gateway.request("GET", "/api/ping", tls=True)
        assert status == 200
        assert_hardened(headers)
        status, headers, body = gateway.request("GET", "/nowhere", tls=True)
        assert status == 404 and json.loads(body)["statusCode"] == 404
        assert_hardened(headers)
        status, headers, body = gateway.request("POST", "/api/notes", tls=True, body=b"x" * 2048,
                                                headers={"Content-Type": "application/json"})
        assert status == 413 and json.loads(body)["statusCode"] == 413
        assert_hardened(headers)
        statuses = []
        for _ in range(10):
            status, headers, body = gateway.request("GET", "/api/ping", tls=True)
            statuses.append(status)
            if status == 429:
                assert json.loads(body)["statusCode"] == 429
                assert_hardened(headers)
        assert 429 in statuses
        assert len(upstreams.servers[0].hits) < 10


def test_rate_limit_allows_the_burst_then_429(tmp_path):
    settings = settings_for("dev", {"carecircle:gatewayRateLimitPerSecond": 1, "carecircle:gatewayRateLimitBurst": 5})
    with stub_upstreams(1) as upstreams, running_gateway(tmp_path, settings, upstreams) as gateway:
        statuses = [gateway.request("GET", "/api/ping")[0] for _ in range(12)]
    assert statuses[:6] == [200] * 6  # the first request plus a burst of 5
    assert statuses[6:] == [429] * 6


def test_allow_listed_clients_are_not_limited(tmp_path):
    settings = settings_for("dev", {"carecircle:gatewayRateLimitPerSecond": 1, "carecircle:gatewayRateLimitBurst": 0,
                                    "carecircle:gatewayRateLimitAllowlist": ["127.0.0.1/32"]})
    with stub_upstreams(1) as upstreams, running_gateway(tmp_path, settings, upstreams) as gateway:
        assert [gateway.request("GET", "/api/ping")[0] for _ in range(15)] == [200] * 15


def test_body_limit(tmp_path):
    settings = settings_for("dev", {"carecircle:gatewayClientMaxBodySize": "2k", **OPEN})
    with stub_upstreams(1) as upstreams, running_gateway(tmp_path, settings, upstreams) as gateway:
        assert gateway.request("POST", "/api/notes", body=b"x" * 2000)[0] == 200
        assert gateway.request("POST", "/api/notes", body=b"x" * 3000)[0] == 413
        assert upstreams.servers[0].hits == ["POST"]


def test_json_is_gzipped(staging):
    status, headers, body = staging.request("GET", "/api/ping?pad=" + "x" * 300, tls=True, headers={"Accept-Encoding": "gzip"})
    assert status == 200 and headers["content-encoding"] == "gzip"
    assert json.loads(gzip.decompress(body))["path"].startswith("/api/ping")


# ---- CORS -------------------------------------------------------------------------------------

def test_cors_for_an_allowed_origin(prod):
    status, headers, _ = prod.request("GET", "/api/ping", tls=True, headers={"Origin": "https://app.carecircle.example"})
    assert status == 200
    assert headers["access-control-allow-origin"] == "https://app.carecircle.example"  # echoed, the api's * hidden
    assert headers["access-control-allow-credentials"] == "true"
    assert "Origin" in headers["vary"]


def test_no_cors_for_a_foreign_origin(prod):
    status, headers, _ = prod.request("GET", "/api/ping", tls=True, headers={"Origin": "https://evil.example"})
    assert status == 200
    assert "access-control-allow-origin" not in headers and "access-control-allow-credentials" not in headers
    assert "Origin" in headers["vary"]


def test_preflight_is_answered_by_the_gateway(prod):
    request = {"Origin": "https://app.carecircle.example", "Access-Control-Request-Method": "PATCH",
               "Access-Control-Request-Headers": "authorization,content-type"}
    status, headers, body = prod.request("OPTIONS", "/api/care-plans/7", tls=True, headers=request)
    assert status == 204 and body == b""
    assert headers["access-control-allow-origin"] == "https://app.carecircle.example"
    assert "PATCH" in headers["access-control-allow-methods"]
    assert "Authorization" in headers["access-control-allow-headers"]
    assert headers["access-control-max-age"] == "600"
    foreign = {**request, "Origin": "https://evil.example"}
    status, headers, _ = prod.request("OPTIONS", "/api/care-plans/7", tls=True, headers=foreign)
    assert status == 204 and "access-control-allow-origin" not in headers


def test_cors_patterns_are_anchored(tmp_path):
    settings = settings_for("dev", {"carecircle:gatewayCorsOrigins": ["~^https://[a-z0-9-]+\\.carecircle\\.example$"], **OPEN})
    with stub_upstreams(1) as upstreams, running_gateway(tmp_path, settings, upstreams) as gateway:
        allowed = gateway.request("GET", "/api/ping", headers={"Origin": "https://pr-12.carecircle.example"})[1]
        assert allowed["access-control-allow-origin"] == "https://pr-12.carecircle.example"
        assert "access-control-allow-credentials" not in allowed  # credentials off in dev
        for origin in ("https://pr-12.carecircle.example.evil.io", "https://evil.io/?https://a.carecircle.example"):
            assert "access-control-allow-origin" not in gateway.request("GET", "/api/ping", headers={"Origin": origin})[1]


# ---- what reaches the api ---------------------------------------------------------------------

def test_request_id_is_generated_or_propagated(prod):
    status, headers, body = prod.request("GET", "/api/ping", tls=True)
    generated = json.loads(body)["headers"]["x-request-id"]
    assert len(generated) == 32 and headers["x-request-id"] == generated
    status, headers, body = prod.request("GET", "/api/ping", tls=True, headers={"X-Request-ID": "trace-abc-123"})
    assert json.loads(body)["headers"]["x-request-id"] == "trace-abc-123" == headers["x-request-id"]
    _, _, body = prod.request("GET", "/api/ping", tls=True, headers={"X-Request-ID": "bad id\" with quotes"})
    assert json.loads(body)["headers"]["x-request-id"] != "bad id\" with quotes"


def test_forwarded_for_is_trusted_only_from_configured_proxies(tmp_path):
    trusted = settings_for("dev", {"carecircle:gatewayTrustedProxies": ["127.0.0.1/32"], **OPEN})
    with stub_upstreams(1) as upstreams, running_gateway(tmp_path, trusted, upstreams) as gateway:
        echoed = gateway.echo("/api/ping", headers={"X-Forwarded-For": "203.0.113.9"})["headers"]
        assert echoed["x-forwarded-for"] == "203.0.113.9" and echoed["x-real-ip"] == "203.0.113.9"


def test_websocket_upgrade_and_upstream_keepalive(staging):
    echoed = staging.echo("/api/socket", tls=True, headers={"Upgrade": "websocket", "Connection": "Upgrade"})["headers"]
    assert echoed["upgrade"] == "websocket" and echoed["connection"] == "upgrade"
    plain = staging.echo("/api/ping", tls=True)["headers"]
    assert "connection" not in plain  # no "close": the upstream connection is kept alive


def test_down_replica_is_skipped_for_get(tmp_path):
    with stub_upstreams(2) as upstreams:
        dead = upstreams[0]
        upstreams.servers[0].shutdown()
        upstreams.servers[0].server_close()  # replica 1 refuses connections
        with running_gateway(tmp_path, settings_for("staging", OPEN), [dead, upstreams[1]]) as gateway:
            replies = [gateway.request("GET", "/api/ping", tls=True) for _ in range(10)]
    assert [status for status, _, _ in replies] == [200] * 10
    assert {json.loads(body)["replica"] for _, _, body in replies} == {2}


def test_failing_replica_is_retried_for_get(tmp_path):
    with stub_upstreams(2, statuses={1: 503}) as upstreams, \
            running_gateway(tmp_path, settings_for("staging", OPEN), upstreams) as gateway:
        statuses = [gateway.request("GET", "/api/ping", tls=True)[0] for _ in range(2)]
        failing, healthy = upstreams.servers
    assert statuses == [200, 200]
    assert failing.hits and healthy.hits == ["GET", "GET"]  # each 503 was retried on replica 2


def test_failing_replica_is_never_retried_for_post(tmp_path):
    with stub_upstreams(2, statuses={1: 503}) as upstreams, \
            running_gateway(tmp_path, settings_for("staging", OPEN), upstreams) as gateway:
        statuses = [gateway.request("POST", "/api/notes", tls=True, body=b"{}")[0] for _ in range(2)]
        failing, healthy = upstreams.servers
    # A POST that reached the failing replica is answered 503 instead of being sent again:
    # every POST was delivered exactly once.
    assert failing.hits and len(failing.hits) + len(healthy.hits) == 2
    assert statuses.count(503) == len(failing.hits)


def test_every_access_log_line_is_json(staging):
    staging.request("GET", "/api/ping?x=1", tls=True)
    staging.request("GET", "/nowhere", tls=True)
    staging.request("GET", "/health", tls=True, headers={"User-Agent": 'quote" and \\ backslash'})
    lines = staging.access_log(at_least=3)
    assert len(lines) >= 3
    entries = [json.loads(line) for line in lines]
    for entry in entries:
        assert {"time", "request_id", "method", "path", "status", "bytes", "request_time",
                "upstream_addr", "upstream_status", "upstream_response_time"} <= set(entry)
    assert any(e["path"] == "/api/ping" and e["status"] == 200 and e["upstream_addr"] for e in entries)
    assert any(e["status"] == 404 for e in entries)


# ---- static analysis of every stack's rendered config ----------------------------------------

def rendered(stack, tmp_path):
    path = tmp_path / f"{stack}.conf"
    path.write_text(render_nginx_conf(settings_for(stack), {"api": ["127.0.0.1:3001", "127.0.0.1:3002"]}))
    return path


@pytest.mark.parametrize("stack", ["dev", "staging", "prod"])
def test_gixy_finds_nothing(tmp_path, stack):
    result = subprocess.run([str(Path(sys.executable).parent / "gixy"), str(rendered(stack, tmp_path))], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def walk(block, parents=()):
    for directive in block:
        yield directive, parents
        yield from walk(directive.get("block", []), (*parents, directive))


@pytest.mark.parametrize("stack", ["dev", "staging", "prod"])
def test_structure(tmp_path, stack):
    parsed = crossplane.parse(str(rendered(stack, tmp_path)), combine=True)
    assert parsed["status"] == "ok", parsed["errors"]
    directives = list(walk(parsed["config"][0]["parsed"]))
    def contexts(name):
        return [tuple(p["directive"] for p in parents) for d, parents in directives if d["directive"] == name]

    # add_header only in servers: a location with one would silently drop every inherited header.
    assert set(contexts("add_header")) == {("http", "server")}
    assert set(contexts("proxy_pass")) == {("http", "server", "location")}
    assert contexts("server_tokens") == [("http",)]
    upstream = next(d for d, _ in directives if d["directive"] == "upstream")
    inner = {d["directive"]: d["args"] for d in upstream["block"]}
    assert inner["keepalive_timeout"] == ["4s"] and "keepalive" in inner
    rlimit = next(int(d["args"][0]) for d, _ in directives if d["directive"] == "worker_rlimit_nofile")
    connections = next(int(d["args"][0]) for d, _ in directives if d["directive"] == "worker_connections")
    assert rlimit >= 2 * connections
    if stack != "dev":
        assert contexts("ssl_protocols") == [("http",)]
        protocols = next(d["args"] for d, _ in directives if d["directive"] == "ssl_protocols")
        assert protocols == (["TLSv1.3"] if stack == "prod" else ["TLSv1.2", "TLSv1.3"])
        assert any(d["directive"] == "ssl_reject_handshake" for d, _ in directives)
