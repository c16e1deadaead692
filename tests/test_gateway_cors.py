"""CORS on a real nginx (production's line), over HTTP/1.1 and HTTP/2: an allowed origin is echoed
(never *), exactly as configured (case included) or by an anchored pattern; preflights are answered
by the gateway; other origins get no CORS header."""

import pytest

from nginx_harness import assert_hardened, running_gateway, settings_for, stub_upstreams

OPEN = {"carecircle:gatewayRateLimitAllowlist": ["127.0.0.0/8"]}
ALLOWED = "https://app.carecircle.example"


@pytest.fixture(scope="module")
def prod(tmp_path_factory):
    with stub_upstreams(1) as upstreams, running_gateway(tmp_path_factory.mktemp("cors"), settings_for("prod", OPEN), upstreams) as gateway:
        yield gateway


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
    assert_hardened(headers)
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


@pytest.mark.parametrize("origin", ["HTTPS://APP.CARECIRCLE.EXAMPLE", "https://App.carecircle.example", "https://app.carecircle.examplE",
                                    "https://app-carecircle.example"])
def test_an_exact_origin_matches_only_as_written(prod, origin):
    """nginx compares a map's plain strings regardless of case: the origin must not be echoed, with
    credentials, for another spelling of it."""
    preflight = {"Origin": origin, "Access-Control-Request-Method": "PATCH"}
    for method, headers in (("GET", {"Origin": origin}), ("OPTIONS", preflight)):
        status, answer, _ = prod.request(method, "/api/ping", tls=True, headers=headers)
        with prod.h2() as client:
            response = client.request(method, "/api/ping", headers=[(name.lower(), value) for name, value in headers.items()])
        for got in (answer, response.headers):
            assert "access-control-allow-origin" not in got and "access-control-allow-credentials" not in got, (method, got)
    with prod.h2() as client:
        allowed = client.request("GET", "/api/ping", headers=[("origin", ALLOWED)]).headers
    assert allowed["access-control-allow-origin"] == ALLOWED and allowed["access-control-allow-credentials"] == "true"


def test_a_pattern_is_case_sensitive_too(tmp_path):
    settings = settings_for("dev", {"carecircle:gatewayCorsOrigins": ["~^https://[a-z0-9-]+\\.carecircle\\.example$"], **OPEN})
    with stub_upstreams(1) as upstreams, running_gateway(tmp_path, settings, upstreams) as gateway:
        assert "access-control-allow-origin" not in gateway.request("GET", "/api/ping", headers={"Origin": "https://PR-12.carecircle.example"})[1]
