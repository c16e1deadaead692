"""Production behaviour of the gateway, each proven against a real nginx (production's line) on
127.0.0.1: TLS profiles, SNI, headers, limits, client address, request ids, upgrades, retries,
logs, and static analysis of every stack's rendered file."""

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
from nginx_harness import assert_hardened, client_context, free_port, running_gateway, settings_for, stub_upstreams

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


def test_http2_is_offered_over_tls_only(prod):
    with prod.handshake(prod.server_name, client_context(alpn=["h2", "http/1.1"])) as accepted:
        assert accepted.selected_alpn_protocol() == "h2"
    # `http2 on` is set in the TLS servers only: the plain port speaks no h2c (prior knowledge).
    answer, _ = prod.raw(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 400 ")


def test_plain_http_redirects_with_308_and_unknown_host_gets_nothing(prod):
    status, headers, _ = prod.request("POST", "/api/care-plans?draft=1", body=b"{}")
    assert status == 308 and headers["location"] == "https://api.carecircle.example/api/care-plans?draft=1"
    with pytest.raises((http.client.RemoteDisconnected, ConnectionResetError)):  # 444: closed without a response
        prod.request("GET", "/api/ping", headers={"Host": "other.example"})


# ---- headers --------------------------------------------------------------------------------

def test_security_headers_on_2xx_3xx_4xx_and_5xx(tmp_path):
    """Every promised header on each class of response (see nginx_harness.SECURITY_HEADERS)."""
    settings = settings_for("prod", {"carecircle:gatewayClientMaxBodySize": "1k",
                                     "carecircle:gatewayRateLimitPerSecond": 1, "carecircle:gatewayRateLimitBurst": 3})
    with stub_upstreams(1) as upstreams, running_gateway(tmp_path, settings, upstreams) as gateway:
        status, headers, _ = gateway.request("GET", "/api/ping", tls=True)
        assert status == 200
        assert_hardened(headers)
        status, headers, _ = gateway.request("GET", "/api/ping", source="127.0.0.2")  # plain HTTP: the redirect
        assert status == 308
        assert_hardened(headers, hsts=False)
        status, headers, body = gateway.request("GET", "/nowhere", tls=True, source="127.0.0.3")
        assert status == 404 and json.loads(body)["statusCode"] == 404
        assert_hardened(headers)
        status, headers, body = gateway.request("POST", "/api/notes", tls=True, body=b"x" * 2048,
                                                headers={"Content-Type": "application/json"}, source="127.0.0.4")
        assert status == 413 and json.loads(body)["statusCode"] == 413
        assert_hardened(headers)
        statuses = []
        for _ in range(10):
            status, headers, body = gateway.request("GET", "/api/ping", tls=True, source="127.0.0.5")
            statuses.append(status)
            if status == 429:
                assert json.loads(body)["statusCode"] == 429
                assert_hardened(headers)
        assert 429 in statuses
    # 5xx: no replica answers (nothing listens on its port).
    (tmp_path / "down").mkdir()
    with running_gateway(tmp_path / "down", settings, [f"127.0.0.1:{free_port()}"]) as gateway:
        status, headers, body = gateway.request("GET", "/api/ping", tls=True)
        assert status == 502 and json.loads(body)["statusCode"] == 502
        assert_hardened(headers)


def test_the_apis_own_security_headers_never_duplicate_the_gateways(tmp_path):
    api_headers = {"Permissions-Policy": "camera=*", "Referrer-Policy": "unsafe-url", "Content-Security-Policy": "default-src *",
                   "X-Frame-Options": "ALLOW", "X-Request-ID": "from-the-api"}
    with stub_upstreams(1, extra_headers=api_headers) as upstreams, \
            running_gateway(tmp_path, settings_for("prod", OPEN), upstreams) as gateway:
        status, headers, _ = gateway.request("GET", "/api/ping", tls=True)
    assert status == 200
    assert_hardened(headers)
    assert headers["x-request-id"] != "from-the-api"


# ---- limits -----------------------------------------------------------------------------------

def test_rate_limit_allows_the_burst_then_429(tmp_path):
    settings = settings_for("dev", {"carecircle:gatewayRateLimitPerSecond": 1, "carecircle:gatewayRateLimitBurst": 5})
    with stub_upstreams(1) as upstreams, running_gateway(tmp_path, settings, upstreams) as gateway:
        statuses = [gateway.request("GET", "/api/ping")[0] for _ in range(12)]
    assert statuses[:6] == [200] * 6  # the first request plus a burst of 5
    assert statuses[6:] == [429] * 6


def test_allow_listed_clients_are_not_limited(tmp_path):
    settings = settings_for("dev", {"carecircle:gatewayRateLimitPerSecond": 1, "carecircle:gatewayRateLimitBurst": 0,
                                    "carecircle:gatewayUserRateLimitPerSecond": 1, "carecircle:gatewayUserRateLimitBurst": 0,
                                    "carecircle:gatewayRateLimitAllowlist": ["127.0.0.1/32"]})
    with stub_upstreams(1) as upstreams, running_gateway(tmp_path, settings, upstreams) as gateway:
        assert [gateway.request("GET", "/api/ping", headers={"Authorization": "Bearer t"})[0] for _ in range(15)] == [200] * 15


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


def test_a_client_keeps_its_connection_past_1000_requests(staging):
    """keepalive_requests raised: nginx's default (1000) would close this connection at request 1000
    (and an HTTPS client would pay a new handshake)."""
    from nginx_harness import PinnedHTTPSConnection

    conn = PinnedHTTPSConnection(staging.server_name, staging.ports.https, client_context())
    try:
        conn.connect()
        first = conn.sock
        for count in range(1, 1101):
            conn.request("GET", "/_gateway/health", headers={"Host": staging.server_name})
            response = conn.getresponse()
            response.read()
            assert response.status == 200 and not response.will_close, f"closed at request {count}"
        assert conn.sock is first
    finally:
        conn.close()


# ---- what reaches the api ---------------------------------------------------------------------

def test_a_clients_request_id_is_never_kept_but_logged_apart(prod):
    status, headers, body = prod.request("GET", "/api/ping", tls=True)
    generated = json.loads(body)["headers"]["x-request-id"]
    assert len(generated) == 32 and headers["x-request-id"] == generated
    for claimed in ("trace-abc-123", "bad id\" with quotes"):
        status, headers, body = prod.request("GET", "/api/ping", tls=True, headers={"X-Request-ID": claimed})
        forwarded = json.loads(body)["headers"]["x-request-id"]
        assert forwarded != claimed and len(forwarded) == 32 and headers["x-request-id"] == forwarded
    entries = [json.loads(line) for line in prod.access_log(at_least=3)]  # each worker flushes its own buffer: any order
    assert sorted(e["client_request_id"] for e in entries) == sorted(["", "trace-abc-123", "(malformed)"])
    assert len({e["request_id"] for e in entries}) == 3 and "trace-abc-123" not in {e["request_id"] for e in entries}


def test_a_trusted_proxys_request_id_is_kept(tmp_path):
    settings = settings_for("dev", {"carecircle:gatewayTrustedProxies": ["127.0.0.2/32"], **OPEN})
    with stub_upstreams(1) as upstreams, running_gateway(tmp_path, settings, upstreams) as gateway:
        echoed = gateway.echo("/api/ping", headers={"X-Request-ID": "lb-7f3a"}, source="127.0.0.2")
        assert echoed["headers"]["x-request-id"] == "lb-7f3a"
        # A client that claims to come through the proxy, sending directly: not kept.
        echoed = gateway.echo("/api/ping", headers={"X-Request-ID": "lb-7f3a", "X-Forwarded-For": "127.0.0.2"}, source="127.0.0.3")
        assert echoed["headers"]["x-request-id"] != "lb-7f3a"
        # Malformed, even from the proxy: generated.
        echoed = gateway.echo("/api/ping", headers={"X-Request-ID": "a b"}, source="127.0.0.2")
        assert len(echoed["headers"]["x-request-id"]) == 32


def test_forwarded_for_is_trusted_only_from_configured_proxies(tmp_path):
    trusted = settings_for("dev", {"carecircle:gatewayTrustedProxies": ["127.0.0.1/32"], **OPEN})
    with stub_upstreams(1) as upstreams, running_gateway(tmp_path, trusted, upstreams) as gateway:
        echoed = gateway.echo("/api/ping", headers={"X-Forwarded-For": "203.0.113.9"})["headers"]
        assert echoed["x-forwarded-for"] == "203.0.113.9" and echoed["x-real-ip"] == "203.0.113.9"
        echoed = gateway.echo("/api/ping", headers={"X-Forwarded-For": "203.0.113.9"}, source="127.0.0.2")["headers"]
        assert echoed["x-forwarded-for"] == "127.0.0.2"


def test_websocket_upgrade_and_upstream_keepalive(staging):
    echoed = staging.echo("/api/socket", tls=True, headers={"Upgrade": "websocket", "Connection": "Upgrade"})["headers"]
    assert echoed["upgrade"] == "websocket" and echoed["connection"] == "upgrade"
    plain = staging.echo("/api/ping", tls=True)["headers"]
    assert "connection" not in plain  # no "close": the upstream connection is kept alive


@pytest.mark.parametrize("upgrade", ["h2c", "HTTP/2.0", "TLS/1.2", "websocket, h2c", "foo"])
def test_no_other_upgrade_reaches_the_api(staging, upgrade):
    headers = {"Upgrade": upgrade, "Connection": "Upgrade, HTTP2-Settings", "HTTP2-Settings": "AAMAAABkAARAAAAAAAIAAAAA"}
    echoed = staging.echo("/api/socket", tls=True, headers=headers)["headers"]
    assert "upgrade" not in echoed and "connection" not in echoed and "http2-settings" not in echoed


def test_websocket_passes_only_on_routes_that_allow_it(tmp_path):
    settings = settings_for("dev", {**OPEN, "carecircle:gatewayRoutes": [
        {"path": "/api/", "service": "api"}, {"path": "/ws/", "service": "api", "websocket": True},
        {"path": "/api/live/", "service": "api", "websocket": True}]})
    upgrade = {"Upgrade": "websocket", "Connection": "Upgrade"}
    with stub_upstreams(1) as upstreams, running_gateway(tmp_path, settings, upstreams) as gateway:
        assert gateway.echo("/ws/feed", headers=upgrade)["headers"]["upgrade"] == "websocket"
        assert gateway.echo("/api/live/feed", headers=upgrade)["headers"]["upgrade"] == "websocket"  # the longest prefix decides
        for path in ("/api/feed", "/health", "/ready"):
            echoed = gateway.echo(path, headers=upgrade)["headers"]
            assert "upgrade" not in echoed and "connection" not in echoed, path


# ---- replicas ---------------------------------------------------------------------------------

def test_down_replica_is_skipped_for_get(tmp_path):
    with stub_upstreams(2) as upstreams:
        dead = upstreams[0]
        upstreams.servers[0].shutdown()
        upstreams.servers[0].server_close()  # replica 1 refuses connections
        with running_gateway(tmp_path, settings_for("staging", OPEN), [dead, upstreams[1]]) as gateway:
            replies = [gateway.request("GET", "/api/ping", tls=True) for _ in range(10)]
    assert [status for status, _, _ in replies] == [200] * 10
    assert {json.loads(body)["replica"] for _, _, body in replies} == {2}


def test_a_refused_post_goes_to_the_next_replica(tmp_path):
    """A refused connection means the request was never sent: safe to send elsewhere, even a POST."""
    with stub_upstreams(2) as upstreams:
        dead = upstreams[0]
        upstreams.servers[0].shutdown()
        upstreams.servers[0].server_close()
        with running_gateway(tmp_path, settings_for("staging", OPEN), [dead, upstreams[1]]) as gateway:
            statuses = [gateway.request("POST", "/api/notes", tls=True, body=b"{}")[0] for _ in range(4)]
        assert statuses == [200] * 4 and upstreams.servers[1].hits == ["POST"] * 4


def test_the_apis_own_503_is_its_answer_not_a_retry(tmp_path):
    with stub_upstreams(2, statuses={1: 503}) as upstreams, \
            running_gateway(tmp_path, settings_for("staging", OPEN), upstreams) as gateway:
        replies = [gateway.request(method, "/api/notes", tls=True, body=b"{}" if method == "POST" else None)
                   for method in ("GET", "GET", "POST", "POST")]
        failing, healthy = upstreams.servers
    # Each request reached exactly one replica; the failing one's 503 is passed on as the api wrote it.
    assert len(failing.hits) + len(healthy.hits) == 4 and failing.hits and healthy.hits
    assert [status for status, _, _ in replies].count(503) == len(failing.hits)
    assert all(json.loads(body)["replica"] == 1 for status, _, body in replies if status == 503)


# ---- logs -------------------------------------------------------------------------------------

def test_every_access_log_line_is_json(staging):
    staging.request("GET", "/api/ping?x=1", tls=True)
    staging.request("GET", "/nowhere", tls=True)
    staging.request("GET", "/health", tls=True, headers={"User-Agent": 'quote" and \\ backslash'})
    lines = staging.access_log(at_least=3)
    assert len(lines) >= 3
    entries = [json.loads(line) for line in lines]
    for entry in entries:
        assert {"time", "request_id", "client_request_id", "method", "path", "status", "bytes", "request_time",
                "upstream_addr", "upstream_status", "upstream_response_time"} <= set(entry)
    assert any(e["path"] == "/api/ping" and e["status"] == 200 and e["upstream_addr"] for e in entries)
    # The path the client asked for, not the error page nginx answered it with.
    assert any(e["status"] == 404 and e["path"] == "/nowhere" for e in entries)
    assert any(e["user_agent"] == 'quote" and \\ backslash' for e in entries)


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
    # Nothing answers in the rewrite phase of a public server (it runs before limit_req) except
    # named locations and the internal error location, reached only after limit_req ran.
    for directive, parents in directives:
        if directive["directive"] == "return" and len(parents) == 3:
            server, location = parents[1], parents[2]
            listens = [d["args"] for d in server["block"] if d["directive"] == "listen"]
            status_listener = any(args[0] == "8082" for args in listens)
            assert status_listener or location["args"][0].startswith("@") or location["args"] == ["=", "/_gateway/error"] \
                or (listens == [["8081"]]), (location["args"], listens)
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
        # nginx 1.30: `http2 on` in the TLS servers, never the deprecated `listen ... http2`.
        assert len(contexts("http2")) == 1 and not any("http2" in d["args"] for d, _ in directives if d["directive"] == "listen")
