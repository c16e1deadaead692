"""Every error the gateway produces itself, on a real nginx (production's line): the api's JSON shape
({"statusCode", "message"} plus the request id), the same status in the status line and the body,
the security headers, and the X-Request-ID header equal to the body's requestId. 408 sends nothing."""

import json
import socket
import time

import pytest

from nginx_harness import answered_status, assert_hardened, free_port, joined_headers, running_gateway, settings_for, stub_upstreams

OPEN = {"carecircle:gatewayRateLimitAllowlist": ["127.0.0.0/8"]}
HOST = "api.carecircle.example"


def parse(answer: bytes) -> tuple[int, dict, bytes]:
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = joined_headers([tuple(part.strip() for part in line.split(":", 1)) for line in lines[1:]])  # type: ignore[misc]
    length = int(headers.get("content-length", len(body)))
    return status, headers, body[:length]


def assert_json_error(status: int, headers: dict, body: bytes, expected: int, hsts: bool = True) -> None:
    assert status == expected, (status, body)
    assert headers["content-type"] == "application/json", headers
    error = json.loads(body)
    assert error["statusCode"] == expected and isinstance(error["message"], str) and error["message"]
    assert error["requestId"] == headers["x-request-id"]
    assert b"<html" not in body.lower()
    assert_hardened(headers, hsts=hsts)


@pytest.fixture
def prod(tmp_path):
    settings = settings_for("prod", {**OPEN, "carecircle:gatewayClientMaxBodySize": "1k", "carecircle:gatewayProxyReadTimeout": "1s",
                                     "carecircle:gatewayProxyNextUpstreamTimeout": "500ms",
                                     "carecircle:gatewayProxyConnectTimeout": "150ms"})
    with stub_upstreams(1) as upstreams, running_gateway(
            tmp_path, settings, {"api": upstreams, "api_idle": []},
            # A location that fails inside nginx, to see the 500 page (no route of a correct config does).
            edit=lambda conf: conf.replace("        location = /_gateway/preflight {",
                                           "        location = /_test/internal-error {\n            return 500;\n        }\n\n"
                                           "        location = /_gateway/preflight {", 1)) as gateway:
        gateway.upstreams = upstreams
        yield gateway


REQUESTS = {
    # name: (bytes sent over TLS to the main server, expected status)
    "unrouted path": (b"GET /nowhere HTTP/1.1\r\nHost: %s\r\n\r\n", 404),
    "no Host": (b"GET / HTTP/1.1\r\n\r\n", 400),
    "two Host headers": (b"GET / HTTP/1.1\r\nHost: %s\r\nHost: %s\r\n\r\n", 400),
    "invalid method (request line)": (b"G3T / HTTP/1.1\r\nHost: %s\r\n\r\n", 400),
    "invalid URI (request line)": (b"GET foo HTTP/1.1\r\nHost: %s\r\n\r\n", 400),
    "TRACE": (b"TRACE / HTTP/1.1\r\nHost: %s\r\n\r\n", 405),
    "body too large": (b"POST /api/notes HTTP/1.1\r\nHost: %s\r\nContent-Length: 5000\r\n\r\n" + b"x" * 5000, 413),
    "URI too long (request line)": (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: %s\r\n\r\n", 414),
    "header too large": (b"GET / HTTP/1.1\r\nHost: %s\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n", 431),
    "cookie too large": (b"GET / HTTP/1.1\r\nHost: %s\r\nCookie: a=" + b"a" * 9000 + b"\r\n\r\n", 431),
    "internal error": (b"GET /_test/internal-error HTTP/1.1\r\nHost: %s\r\n\r\n", 500),
    "unknown transfer coding": (b"POST /api/notes HTTP/1.1\r\nHost: %s\r\nTransfer-Encoding: gzip\r\n\r\n", 501),
    "HTTP version": (b"GET / HTTP/2.0\r\nHost: %s\r\n\r\n", 505),
    "upstream timeout": (b"GET /api/slow HTTP/1.1\r\nHost: %s\r\n\r\n", 504),
}


@pytest.mark.parametrize("name", REQUESTS)
def test_errors_are_json_with_headers_and_request_id(prod, name):
    data, expected = REQUESTS[name]
    if name == "upstream timeout":
        prod.upstreams.servers[0].delay = 3
    answer, _ = prod.raw(data.replace(b"%s", HOST.encode()), tls=True, timeout=5)
    assert_json_error(*parse(answer), expected)


def test_upstream_down_is_502_and_says_502(tmp_path):
    """Status and body agree (it used to be a 502 with a body saying 503)."""
    with running_gateway(tmp_path, settings_for("prod", OPEN), [f"127.0.0.1:{free_port()}"]) as gateway:
        assert_json_error(*gateway.request("GET", "/api/ping", tls=True), 502)


def test_the_idle_pool_preview_without_replicas_is_503(prod):
    status, headers, body = prod.request("GET", "/api/ping", port=prod.ports.preview)
    assert_json_error(status, headers, body, 503, hsts=False)


def test_rate_limited_is_429(tmp_path):
    settings = settings_for("prod", {"carecircle:gatewayRateLimitPerSecond": 1, "carecircle:gatewayRateLimitBurst": 0})
    with stub_upstreams(1) as upstreams, running_gateway(tmp_path, settings, upstreams) as gateway:
        gateway.request("GET", "/api/ping", tls=True)
        assert_json_error(*gateway.request("GET", "/api/ping", tls=True), 429)


@pytest.mark.parametrize("data, expected", [
    (b"GET / HTTP/1.1\r\n\r\n", 400), (b"get / HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
    (b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 9000 + b"\r\n\r\n", 431),
])
def test_errors_before_the_host_is_known_are_json_on_the_plain_port(prod, data, expected):
    """The plain-HTTP default server answers these (no Host to choose a server by yet)."""
    assert_json_error(*parse(prod.raw(data)[0]), expected, hsts=False)


def test_plain_http_sent_to_the_https_port_is_a_json_400(prod):
    answer, _ = prod.raw(b"GET / HTTP/1.1\r\nHost: %s\r\n\r\n" % HOST.encode(), port=prod.ports.https)
    assert_json_error(*parse(answer), 400)


def test_a_stalled_client_gets_nothing_not_an_html_408(tmp_path):
    """nginx sends nothing on a client timeout (408): the connection is closed, with no byte of HTML."""
    settings = settings_for("dev", {**OPEN, "carecircle:gatewayClientHeaderTimeout": "1s", "carecircle:gatewayClientBodyTimeout": "1s"})
    with stub_upstreams(1) as upstreams, running_gateway(tmp_path, settings, upstreams) as gateway:
        for partial in (b"GET /api/ping HTTP/1.1\r\nHost: localhost\r\n",  # headers never finished
                        b"POST /api/notes HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100\r\n\r\n{"):  # body never finished
            sock = socket.create_connection(("127.0.0.1", gateway.ports.http), timeout=5)
            try:
                sock.sendall(partial)
                started = time.monotonic()
                received = sock.recv(65536)
                waited = time.monotonic() - started
            finally:
                sock.close()
            assert received == b"" and 0.8 < waited < 3, (received[:100], waited)
        entries = [json.loads(line) for line in gateway.access_log(at_least=2)]
    assert [(e["status"], e["bytes"]) for e in entries] == [(408, 0), (408, 0)]


def test_head_gets_the_status_without_a_body(prod):
    answer, _ = prod.raw(b"HEAD /nowhere HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n" % HOST.encode(), tls=True)
    head, _, rest = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 404 ") and rest == b""


def test_only_an_upstream_failure_writes_the_request_line_to_the_error_log(tmp_path):
    """nginx appends the request line (query string included), the upstream URI and the Referer to
    every error line written while handling a request (ngx_http_log_error_handler,
    src/http/ngx_http_request.c); no directive removes them. Whatever the gateway answers itself
    writes no such line; a request that fails upstream writes one per replica tried (the README says
    what that means for the error log)."""
    secret = "t0k3n-in-a-url"
    settings = settings_for("prod", {**OPEN, "carecircle:gatewayClientMaxBodySize": "1k"})
    with running_gateway(tmp_path, settings, [f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"]) as gateway:
        referer = {"Referer": f"https://app.carecircle.example/reset?token={secret}"}
        answered = [gateway.request(method, f"{path}?access_token={secret}", tls=tls, headers=referer, body=body)[0]
                    for method, path, tls, body in [("GET", "/nowhere", True, None), ("POST", "/api/notes", True, b"x" * 2048),
                                                    ("PROPFIND", "/api/notes", True, None), ("GET", "/api/notes", False, None)]]
        with gateway.h2() as client:
            answered += [client.request("POST", f"/api/notes?access_token={secret}", body=b"x" * 2048,
                                        headers=[("content-length", "2048"), ("referer", referer["Referer"])]).status,
                         client.request("GET", f"/api/notes?access_token={secret}", headers=[("X-Upper", "1")]).status]
        answered.append(answered_status(gateway.raw(f"GET /api/notes?access_token={secret}\r\n".encode(), tls=True)[0]))
        quiet = gateway.error_log()
        failed = gateway.request("GET", f"/api/notes?access_token={secret}", tls=True, headers=referer)[0]
        written = gateway.error_log()[len(quiet):].splitlines()
    assert answered == [404, 413, 501, 308, 413, 400, "closed"] and secret not in quiet
    assert failed == 502 and len(written) == 2 and all(secret in line and "referrer:" in line for line in written), written


@pytest.mark.parametrize("protocol", ["h1", "h2"])
def test_a_request_that_succeeds_writes_no_line_even_when_nginx_spools_its_body(tmp_path, protocol):
    """A body over 16 KiB goes to a temporary file, which nginx reports as a warning carrying the
    request line: the server that proxies logs errors only."""
    secret = "t0k3n-in-a-url"
    with stub_upstreams(1) as upstreams, running_gateway(tmp_path, settings_for("prod", OPEN), upstreams) as gateway:
        path, body = f"/api/uploads?access_token={secret}", b"x" * 100_000
        if protocol == "h1":
            status = gateway.request("POST", path, tls=True, body=body)[0]
        else:
            with gateway.h2() as client:
                status = client.request("POST", path, body=body).status
        logged = gateway.error_log()
    assert status == 200 and upstreams.servers[0].hits == ["POST"]
    assert logged == "", logged
