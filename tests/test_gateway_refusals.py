"""What the gateway refuses before routing, on a real nginx (production's line), over HTTP/1.1 and
HTTP/2: HTTP/0.9 (closed, nothing sent), a declared body over the limit (a JSON 413 and not one
error-log line, however many), a method the api does not serve (a JSON 501). Each refusal comes
after the limits (tests/test_gateway_limits.py counts them)."""

import json
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from carecircle.rendering import decimal_above
from nginx_harness import answered_status, running_gateway, settings_for, stub_upstreams

OPEN = {"carecircle:gatewayRateLimitAllowlist": ["127.0.0.0/8"]}
HOST = "api.carecircle.example"


@pytest.fixture(scope="module")
def prod(tmp_path_factory):
    settings = settings_for("prod", {**OPEN, "carecircle:gatewayClientMaxBodySize": "1k"})
    with stub_upstreams(2) as upstreams, running_gateway(tmp_path_factory.mktemp("refusals"), settings, upstreams) as gateway:
        gateway.upstreams = upstreams
        yield gateway


def api_hits(gateway) -> int:
    return sum(len(server.hits) for server in gateway.upstreams.servers)


# ---- HTTP/0.9 ------------------------------------------------------------------------------------

@pytest.mark.parametrize("request_line, tls", [
    (b"GET /api/notes\r\n", True),  # over TLS, the server the SNI chose
    (f"GET https://{HOST}/api/notes\r\n".encode(), True),  # the Host in an absolute URI: the api's server
    (f"GET http://{HOST}/api/notes\r\n".encode(), False),  # plain HTTP: the redirect's server
    (b"GET /nowhere\r\n", True),  # what would be a 404
    (b"GET https://other.example/api/notes\r\n", True),  # another Host: what would be a 421
])
def test_http09_is_closed_without_a_byte(prod, request_line, tls):
    """An HTTP/0.9 answer has no status line and no header (no HSTS, CSP, request id): none is sent."""
    before = api_hits(prod)
    answer, _ = prod.raw(request_line, tls=tls)
    assert answer == b"" and api_hits(prod) == before


def test_http09_requests_count_against_the_limit(tmp_path):
    settings = settings_for("prod", {"carecircle:gatewayRateLimitPerSecond": 1, "carecircle:gatewayRateLimitBurst": 3})
    with stub_upstreams(1) as upstreams, running_gateway(tmp_path, settings, upstreams) as gateway:
        closed = [gateway.raw(b"GET /api/notes\r\n", tls=True)[0] for _ in range(5)]
        after = gateway.request("GET", "/api/notes", tls=True)[0]
        entries = [json.loads(line) for line in gateway.access_log(at_least=6)]
    assert closed == [b""] * 5 and after == 429
    assert sorted(e["status"] for e in entries) == [429, 429, 444, 444, 444, 444]


# ---- a declared body over the limit -------------------------------------------------------------

@given(limit=st.integers(1, 2**30), number=st.integers(0, 2**40) | st.integers(0, 2**12), zeros=st.integers(0, 3))
def test_the_size_regex_matches_exactly_the_numbers_above_the_limit(limit, number, zeros):
    """nginx compares Content-Length with the limit as text, through this regex (leading zeros
    allowed, as nginx reads them)."""
    assert bool(re.fullmatch("0*" + decimal_above(limit), "0" * zeros + str(number))) == (number > limit)
    assert bool(re.fullmatch("0*" + decimal_above(limit), str(limit + 1))) and not re.fullmatch("0*" + decimal_above(limit), str(limit))


def post_h1(gateway, length: str, body: bytes) -> tuple:
    answer, _ = gateway.raw(f"POST /api/notes?access_token=t0k3n HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: {length}\r\n"
                            "Referer: https://app.carecircle.example/?session=s3cr3t\r\nConnection: close\r\n\r\n".encode() + body, tls=True)
    head, _, rest = answer.partition(b"\r\n\r\n")
    return answered_status(answer), rest


@pytest.mark.parametrize("length, expected", [("1024", 200), ("1025", 413), ("0001025", 413), ("99999999999", 413), ("0001024", 200)])
def test_a_declared_body_over_the_limit_is_a_json_413_over_http1(prod, length, expected):
    log_before = prod.error_log()
    status, rest = post_h1(prod, length, b"x" * min(int(length), 1025))
    assert status == expected, (status, rest[:200])
    if expected == 413:
        assert json.loads(rest[rest.index(b"{"):].split(b"\n")[0])["statusCode"] == 413
    assert prod.error_log() == log_before  # refused by the gateway, not by nginx's own check


@pytest.mark.parametrize("length, expected", [("1024", 200), ("1025", 413), ("5000000", 413)])
def test_a_declared_body_over_the_limit_is_a_json_413_over_http2(prod, length, expected):
    with prod.h2() as client:
        response = client.request("POST", "/api/notes", headers=[("content-length", length)], body=b"x" * min(int(length), 1024))
    assert response.status == expected, (response.status, response.body[:200])
    if expected == 413:
        assert response.headers["content-type"] == "application/json" and json.loads(response.body)["statusCode"] == 413


def test_bodies_over_the_limit_write_nothing_to_the_error_log(prod):
    """nginx's own check writes an error line per request (two over HTTP/2, with the query string and
    the Referer): 200 such streams on one connection would be 400 lines. The refusal writes none."""
    log_before = prod.error_log()
    with prod.h2() as client:
        streams = [client.send("POST", f"/api/notes?access_token=t0k3n{i}", end_stream=False,
                               headers=[("content-length", "5000"), ("referer", "https://app.carecircle.example/?session=s3cr3t")])
                   for i in range(200)]
        responses = client.wait(streams, seconds=15)
    for _ in range(20):
        assert post_h1(prod, "5000", b"x" * 5000)[0] == 413
    assert [r.status for r in responses] == [413] * 200
    logged = prod.error_log()[len(log_before):]
    assert logged == "", logged[:500]


def test_a_body_without_a_declared_length_over_the_limit_is_still_refused(prod):
    """No declared length (chunked over HTTP/1.1, DATA frames alone over HTTP/2): nginx's own check,
    while reading; a JSON 413 and one error line each (with the request line: a client pays the limit
    in bytes for each line it causes)."""
    log_before = prod.error_log()
    chunk = b"x" * 1000
    data = (f"POST /api/notes HTTP/1.1\r\nHost: {HOST}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n".encode()
            + (b"%x\r\n" % len(chunk) + chunk + b"\r\n") * 2 + b"0\r\n\r\n")
    answer = prod.raw(data, tls=True)[0]
    with prod.h2() as client:
        response = client.request("POST", "/api/notes", body=b"x" * 3000)
    assert answered_status(answer) == 413 and json.loads(answer[answer.index(b"{"):].split(b"\n")[0])["statusCode"] == 413
    assert response.status == 413 and json.loads(response.body)["statusCode"] == 413
    logged = prod.error_log()[len(log_before):].splitlines()
    assert len(logged) == 2 and all("too large" in line for line in logged), logged


# ---- methods --------------------------------------------------------------------------------------

SERVED = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


@pytest.mark.parametrize("method", ["PROPFIND", "MERGE", "LOCK", "PURGE", "FOO"])
def test_a_method_the_api_does_not_serve_is_a_json_501(prod, method):
    """nginx would pass any method and treat an unknown one as idempotent (sent to the next replica
    after a failure); only the methods the api serves reach it."""
    before = api_hits(prod)
    status, headers, body = prod.request(method, "/api/notes", tls=True)
    with prod.h2() as client:
        response = client.request(method, "/api/notes")
    assert (status, json.loads(body)["statusCode"]) == (501, 501)
    assert (response.status, json.loads(response.body)["statusCode"]) == (501, 501)
    assert api_hits(prod) == before


def test_the_methods_the_api_serves_reach_it(prod):
    before = api_hits(prod)
    statuses = [prod.request(method, "/api/notes", tls=True, body=b"{}" if method in ("POST", "PUT", "PATCH") else None)[0]
                for method in SERVED]
    with prod.h2() as client:
        statuses += [client.request(method, "/api/notes").status for method in SERVED]
    assert statuses == [200] * 14 and api_hits(prod) == before + 14
