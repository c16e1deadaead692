"""HTTP/2 held to the promises HTTP/1.1 keeps, on a real nginx (production's line), with a client
that sends what a browser never would (nginx_harness.H2Client): JSON errors, no upgrade reaching the
api, limits per stream, and an access log that stays JSON when a stream ends without an answer. What
nginx cannot do over HTTP/2 is shown as it is: a header field over the limit ends the connection."""

import base64
import json
import os

import hyperframe.frame
import pytest

from nginx_harness import free_port, running_gateway, settings_for, stub_upstreams

OPEN = {"carecircle:gatewayRateLimitAllowlist": ["127.0.0.0/8"]}
PSEUDO = [(":method", "GET"), (":scheme", "https"), (":authority", "api.carecircle.example"), (":path", "/api/notes")]


@pytest.fixture(scope="module")
def prod(tmp_path_factory):
    settings = settings_for("prod", {**OPEN, "carecircle:gatewayClientMaxBodySize": "1k", "carecircle:gatewayRoutes": [
        {"path": "/api/", "service": "api", "websocket": True}]})
    with stub_upstreams(1) as upstreams, running_gateway(tmp_path_factory.mktemp("h2"), settings, upstreams) as gateway:
        gateway.upstreams = upstreams
        yield gateway


ERRORS = {
    # name: (header list, body, status)
    "unrouted path": ([*PSEUDO[:3], (":path", "/nowhere")], None, 404),
    "TRACE": ([(":method", "TRACE"), *PSEUDO[1:]], None, 405),
    "body too large": ([(":method", "POST"), *PSEUDO[1:], ("content-length", "2048")], b"x" * 2048, 413),
    "upper-case header name": ([*PSEUDO, ("X-Upper", "1")], None, 400),
    "no :authority": ([*PSEUDO[:2], PSEUDO[3]], None, 400),
    "method the api does not serve": ([(":method", "PROPFIND"), *PSEUDO[1:]], None, 501),
}


@pytest.mark.parametrize("name", ERRORS)
def test_errors_are_json_over_http2(prod, name):
    header_list, body, status = ERRORS[name]
    with prod.h2() as client:
        stream = client.send("", "", raw_headers=header_list, body=body)
        response = client.wait([stream])[0]
    assert response.status == status and response.headers["content-type"] == "application/json", (response.status, response.body[:200])
    assert json.loads(response.body)["statusCode"] == status
    assert json.loads(response.body)["requestId"] == response.headers["x-request-id"]


def test_the_api_down_is_a_json_502_over_http2(tmp_path):
    with running_gateway(tmp_path, settings_for("prod", OPEN), [f"127.0.0.1:{free_port()}"]) as gateway, gateway.h2() as client:
        response = client.request("GET", "/api/notes")
    assert response.status == 502 and json.loads(response.body)["statusCode"] == 502


def test_an_upgrade_over_http2_never_reaches_the_api(prod):
    """HTTP/2 has no Upgrade (RFC 9113 8.2.2): passed on, the api would answer 101 on a stream nginx
    cannot switch. Over HTTP/1.1 the same route still upgrades."""
    with prod.h2() as client:
        response = client.request("GET", "/api/socket", headers=[("upgrade", "websocket"), ("connection", "upgrade")])
    received = json.loads(response.body)["headers"]
    assert response.status == 200 and "upgrade" not in received and "connection" not in received
    assert prod.echo("/api/socket", tls=True, headers={"Upgrade": "websocket", "Connection": "Upgrade"})["headers"]["upgrade"] == "websocket"


def test_the_limits_count_every_stream_of_a_connection(tmp_path):
    settings = settings_for("prod", {"carecircle:gatewayRateLimitPerSecond": 1, "carecircle:gatewayRateLimitBurst": 3})
    with stub_upstreams(1) as upstreams, running_gateway(tmp_path, settings, upstreams) as gateway, gateway.h2() as client:
        responses = client.wait([client.send("GET", "/api/notes") for _ in range(10)])
    assert sorted(r.status for r in responses) == [200] * 4 + [429] * 6


def test_a_stream_ended_without_an_answer_is_logged_as_json(prod):
    """A header block HPACK cannot decode ends the connection; nginx logs the stream with no
    status (it prints 000, which is not a JSON number): logged as 0."""
    logged = len(prod.access_log(at_least=0))
    with prod.h2() as client:
        assert client.request("GET", "/api/notes?first").status == 200
        broken = hyperframe.frame.HeadersFrame(client.conn.get_next_available_stream_id(), flags=["END_HEADERS", "END_STREAM"],
                                               data=b"\x82\x87\x84\x41\x8a" + b"\xff" * 5)
        client.send_frame(broken)
        client.wait([1], seconds=1)
    entries = [json.loads(line) for line in prod.access_log(at_least=logged + 2)[logged:]]
    assert sorted(e["status"] for e in entries) == [0, 200], entries


def test_the_method_logged_is_the_one_the_client_sent(prod):
    """nginx answers an error page as GET ($request_method reads GET): the log reads the request line."""
    logged = len(prod.access_log(at_least=0))
    with prod.h2() as client:
        client.request("POST", "/api/notes?h2", headers=[("content-length", "2048")], body=b"x" * 2048)
    prod.request("DELETE", "/nowhere?h1", tls=True)
    entries = [json.loads(line) for line in prod.access_log(at_least=logged + 2)[logged:]]
    assert sorted((e["method"], e["status"]) for e in entries) == [("DELETE", 404), ("POST", 413)]


# ---- what nginx cannot do over HTTP/2 ------------------------------------------------------------

BIG = base64.b64encode(os.urandom(9000)).decode()  # 12000 characters: over 8 KiB even Huffman-coded


@pytest.mark.parametrize("name, path, extra", [("header", "/api/notes", [("x-big", BIG)]), ("cookie", "/api/notes", [("cookie", "a=" + BIG)]),
                                               ("path", "/api/" + BIG, [])])
def test_a_header_field_over_the_limit_ends_the_connection(prod, name, path, extra):
    """nginx checks a field's length while decoding the header block and answers with a connection
    error (src/http/v2/ngx_http_v2.c, ngx_http_v2_state_field_len: GOAWAY ENHANCE_YOUR_CALM), never
    with a 431/414 on the stream: the client's other streams on that connection end unanswered,
    though the api may already be handling them. Over HTTP/1.1 the same request is a JSON 431/414."""
    prod.upstreams.servers[0].delay = 0.5
    try:
        with prod.h2() as client:
            in_flight = client.send("GET", "/api/slow")
            client.wait([in_flight], seconds=0.2)
            oversized = client.send("GET", path, headers=extra)
            responses = client.wait([in_flight, oversized], seconds=3)
            goaway = client.goaway
    finally:
        prod.upstreams.servers[0].delay = 0
    assert goaway == 0xB and [r.status for r in responses] == [None, None]
    headers = "".join(f"{n}: {v}\r\n" for n, v in extra)
    answer, _ = prod.raw(f"GET {path} HTTP/1.1\r\nHost: {prod.server_name}\r\n{headers}Connection: close\r\n\r\n".encode(), tls=True)
    assert answer.startswith(b"HTTP/1.1 414 " if name == "path" else b"HTTP/1.1 431 ")


def test_nginx_measures_an_http2_header_field_huffman_coded(prod):
    """The 8 KiB limit applies to the field as sent: Huffman-coded, 9,000 `a` fit in it (5,625
    bytes) and reach the api over HTTP/2, where HTTP/1.1 answers 431 (the README says so)."""
    with prod.h2() as client:
        response = client.request("GET", "/api/notes", headers=[("x-big", "a" * 9000)])
    assert response.status == 200 and json.loads(response.body)["headers"]["x-big"] == "a" * 9000
    assert prod.request("GET", "/api/notes", tls=True, headers={"X-Big": "a" * 9000})[0] == 431
