"""Rate limits on a real nginx (production's line): every request a client can send counts, whatever
answers it, malformed ones included, over HTTP/1.1 and HTTP/2; a per-credential limit on top of the
per-address one; no credential in any log; and a 429 flood does not flood the error log."""

import http.client
import json

import pytest

from nginx_harness import answered_status, running_gateway, settings_for, stub_upstreams

TOKEN = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiI0MiJ9." + "s" * 40 + "SIGNATUREtail0123456789"  # JWT-like, 100+ characters
COOKIE = "s%3A" + "k" * 30 + ".Zm9vYmFyYmF6cXV4cXV1eHF1dXhxdXV4cXV1eHF1dXhxdXV4cXV1eA"


def limits(per_ip_rate=1, per_ip_burst=3, per_user_rate=1, per_user_burst=3, **more):
    return {"carecircle:gatewayRateLimitPerSecond": per_ip_rate, "carecircle:gatewayRateLimitBurst": per_ip_burst,
            "carecircle:gatewayUserRateLimitPerSecond": per_user_rate, "carecircle:gatewayUserRateLimitBurst": per_user_burst,
            **more}


def status_of(gateway, method, path, **kwargs):
    """The status, or "closed" when nginx closed the connection without answering (444)."""
    try:
        return gateway.request(method, path, **kwargs)[0]
    except (http.client.RemoteDisconnected, ConnectionResetError):
        return "closed"


# ---- every request counts ----------------------------------------------------------------------

PREFLIGHT = {"Origin": "https://app.carecircle.example", "Access-Control-Request-Method": "PATCH"}
KINDS = {
    # what the client sends -> what answers it while within the limit
    "cors preflight": (dict(method="OPTIONS", path="/api/notes", tls=True, headers=PREFLIGHT), 204),
    "preflight to an unrouted path": (dict(method="OPTIONS", path="/nowhere", tls=True, headers=PREFLIGHT), 204),
    "unrouted path": (dict(method="GET", path="/nowhere", tls=True), 404),
    "gateway health": (dict(method="GET", path="/_gateway/health", tls=True), 200),
    "plain-HTTP redirect": (dict(method="GET", path="/api/notes"), 308),
    "unknown Host": (dict(method="GET", path="/", headers={"Host": "scanner.example"}), "closed"),
    "a proxied route": (dict(method="GET", path="/api/notes", tls=True), 200),
}


@pytest.mark.parametrize("kind", KINDS)
def test_every_request_counts_whatever_answers_it(tmp_path, kind):
    request, answer = KINDS[kind]
    with stub_upstreams(1) as upstreams, running_gateway(tmp_path, settings_for("prod", limits()), upstreams) as gateway:
        statuses = [status_of(gateway, **request) for _ in range(7)]
    # The first request and a burst of 3, then refused (an unknown Host is refused by closing, too).
    refused = "closed" if answer == "closed" else 429
    assert statuses == [answer] * 4 + [refused] * 3, statuses


def test_all_kinds_share_one_budget_per_address(tmp_path):
    with stub_upstreams(1) as upstreams, running_gateway(tmp_path, settings_for("prod", limits()), upstreams) as gateway:
        statuses = [status_of(gateway, **request) for request, _ in KINDS.values()]
        # Requests nginx closes without an answer count too: 4 of them use this address's budget.
        scans = [status_of(gateway, **KINDS["unknown Host"][0], source="127.0.0.2") for _ in range(4)]
        after_scans = status_of(gateway, "GET", "/api/notes", tls=True, source="127.0.0.2")
    assert statuses == [answer for _, answer in list(KINDS.values())[:4]] + [429, "closed", 429]
    assert scans == ["closed"] * 4 and after_scans == 429


# ---- malformed requests count too ------------------------------------------------------------------

HOST = b"api.carecircle.example"
CLOSE = b"Connection: close\r\n"  # a 429 keeps the connection: the sender waits for nothing
# What nginx itself refuses before limit_req could run (its request line, headers or declared body),
# sent as raw HTTP/1.1 (over TLS unless said) -> its answer while within the limit.
MALFORMED = {
    "bad request line": (b"G3T / HTTP/1.1\r\nHost: %s\r\n" + CLOSE + b"\r\n", 400),
    "no Host": (b"GET /api/notes HTTP/1.1\r\n" + CLOSE + b"\r\n", 400),
    "invalid header line": (b"GET /api/notes HTTP/1.1\r\nHost: %s\r\nX-Bad\x01: 1\r\n" + CLOSE + b"\r\n", 400),
    "two Host headers": (b"GET /api/notes HTTP/1.1\r\nHost: %s\r\nHost: %s\r\n" + CLOSE + b"\r\n", 400),
    "URI too long": (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: %s\r\n" + CLOSE + b"\r\n", 414),
    "header too large": (b"GET /api/notes HTTP/1.1\r\nHost: %s\r\nX-Big: " + b"a" * 9000 + b"\r\n" + CLOSE + b"\r\n", 431),
    "body too large": (b"POST /api/notes HTTP/1.1\r\nHost: %s\r\nContent-Length: 5000\r\n" + CLOSE + b"\r\n" + b"x" * 5000, 413),
    "TRACE": (b"TRACE / HTTP/1.1\r\nHost: %s\r\n" + CLOSE + b"\r\n", 405),
    "unknown transfer coding": (b"POST /api/notes HTTP/1.1\r\nHost: %s\r\nTransfer-Encoding: gzip\r\n" + CLOSE + b"\r\n", 501),
    "method the api does not serve": (b"PROPFIND /api/notes HTTP/1.1\r\nHost: %s\r\n" + CLOSE + b"\r\n", 501),
    "HTTP version": (b"GET / HTTP/2.0\r\nHost: %s\r\n" + CLOSE + b"\r\n", 505),
    "plain HTTP on the HTTPS port": (b"GET /api/notes HTTP/1.1\r\nHost: %s\r\n" + CLOSE + b"\r\n", 400),
    "bad request line, plain HTTP": (b"G3T / HTTP/1.1\r\nHost: %s\r\n" + CLOSE + b"\r\n", 400),
}
# The same over HTTP/2, each on its own stream of one connection: the header list as sent.
PSEUDO = [(":method", "GET"), (":scheme", "https"), (":authority", HOST.decode()), (":path", "/api/notes")]
MALFORMED_H2 = {
    "bad method": ([(":method", "G3T"), *PSEUDO[1:]], 400),
    "no path": (PSEUDO[:3], 400),
    "upper-case header name": ([*PSEUDO, ("X-Upper", "1")], 400),
    "TRACE": ([(":method", "TRACE"), *PSEUDO[1:]], 405),
    "body too large": ([(":method", "POST"), *PSEUDO[1:], ("content-length", "5000")], 413),
    "method the api does not serve": ([(":method", "PROPFIND"), *PSEUDO[1:]], 501),
}


@pytest.fixture(scope="module")
def limited(tmp_path_factory):
    """One gateway for the malformed kinds, each sent from its own address (rate 1/s, burst 3)."""
    settings = settings_for("prod", limits(**{"carecircle:gatewayClientMaxBodySize": "1k"}))
    with stub_upstreams(1) as upstreams, running_gateway(tmp_path_factory.mktemp("limited"), settings, upstreams) as gateway:
        yield gateway


@pytest.mark.parametrize("index, kind", list(enumerate(MALFORMED)))
def test_malformed_requests_count_and_are_refused_over_the_limit(limited, index, kind):
    data, answer = MALFORMED[kind]
    source = f"127.0.5.{index + 1}"
    plain = kind.endswith("plain HTTP")
    port = limited.ports.https if kind == "plain HTTP on the HTTPS port" else None
    statuses = [answered_status(limited.raw(data.replace(b"%s", HOST), tls=not plain and port is None, port=port, source=source)[0])
                for _ in range(7)]
    # The first and a burst of 3 get their error, then 429 (the plain-HTTP default server closes the
    # connection instead); and the address's next valid request is refused too.
    assert statuses == [answer] * 4 + ["closed" if plain else 429] * 3, statuses
    assert limited.request("GET", "/api/notes", tls=True, source=source)[0] == 429


@pytest.mark.parametrize("index, kind", list(enumerate(MALFORMED_H2)))
def test_malformed_http2_streams_count_and_are_refused_over_the_limit(limited, index, kind):
    header_list, answer = MALFORMED_H2[kind]
    with limited.h2(source=f"127.0.6.{index + 1}") as client:
        streams = [client.send("", "", raw_headers=header_list, end_stream=not kind.startswith("body"))
                   for _ in range(7)]
        responses = client.wait(streams)
        after = client.request("GET", "/api/notes")
    assert [r.status for r in responses] == [answer] * 4 + [429] * 3, [(r.status, r.reset) for r in responses]
    assert all(json.loads(r.body)["statusCode"] == r.status for r in responses)
    assert after.status == 429


# ---- per credential ------------------------------------------------------------------------------

@pytest.mark.parametrize("credential", [{"Authorization": f"Bearer {TOKEN}"}, {"Authorization": f"bearer   {TOKEN}"},
                                        {"Cookie": f"theme=dark; carecircle_session={COOKIE}; lang=en"}, {"Authorization": "Bearer short-opaque-token"}])
def test_one_user_spread_over_many_addresses_is_limited(tmp_path, credential):
    """Each address sends one request, far within the per-address limit; the credential's limit
    (rate 1/s, burst 3) still stops the user."""
    with stub_upstreams(1) as upstreams, running_gateway(tmp_path, settings_for("prod", limits()), upstreams) as gateway:
        statuses = [gateway.request("GET", "/api/notes", tls=True, headers=credential, source=f"127.0.1.{i}")[0]
                    for i in range(1, 13)]
    assert statuses[:4] == [200] * 4 and statuses[4:].count(429) >= 7, statuses


def test_many_users_behind_one_nat_address_are_not_limited_as_one(tmp_path):
    """20 users behind one address, 3 requests each: with the per-address limit sized for the NAT
    (burst 60) nobody is refused, though each user's own limit is tight (burst 3)."""
    settings = settings_for("prod", limits(per_ip_burst=60))
    with stub_upstreams(1) as upstreams, running_gateway(tmp_path, settings, upstreams) as gateway:
        statuses = [gateway.request("GET", "/api/notes", tls=True, headers={"Authorization": f"Bearer user-{user}-token"},
                                    source="127.0.2.1")[0] for _ in range(3) for user in range(20)]
    assert statuses == [200] * 60


def test_with_the_per_address_limit_not_sized_for_it_a_nat_is_limited_as_one(tmp_path):
    """The trade-off, shown: the per-address limit applies to everyone behind the address."""
    with stub_upstreams(1) as upstreams, running_gateway(tmp_path, settings_for("prod", limits()), upstreams) as gateway:
        statuses = [gateway.request("GET", "/api/notes", tls=True, headers={"Authorization": f"Bearer user-{user}-token"},
                                    source="127.0.2.2")[0] for user in range(10)]
    assert statuses[:4] == [200] * 4 and set(statuses[4:]) == {429}


def test_without_a_credential_only_the_per_address_limit_applies(tmp_path):
    settings = settings_for("prod", limits(per_ip_burst=10, per_user_burst=0))
    with stub_upstreams(1) as upstreams, running_gateway(tmp_path, settings, upstreams) as gateway:
        anonymous = [gateway.request("GET", "/api/notes", tls=True, source="127.0.3.1")[0] for _ in range(8)]
        # A Basic credential, a foreign cookie, an empty bearer: no credential the limit knows.
        others = [gateway.request("GET", "/api/notes", tls=True, headers=h, source="127.0.3.2")[0] for h in (
            {"Authorization": "Basic dXNlcjpwYXNz"}, {"Cookie": "other_session=abc"}, {"Authorization": "Bearer "}, {})]
        with_token = [gateway.request("GET", "/api/notes", tls=True, headers={"Authorization": "Bearer t0k3n"},
                                      source="127.0.3.3")[0] for _ in range(3)]
    assert anonymous == [200] * 8 and others == [200] * 4
    assert with_token == [200, 429, 429]  # the credential's limit: rate 1/s, no burst


def test_the_bearer_token_is_the_credential_when_both_are_sent(tmp_path):
    settings = settings_for("prod", limits(per_ip_burst=50, per_user_burst=0))
    with stub_upstreams(1) as upstreams, running_gateway(tmp_path, settings, upstreams) as gateway:
        cookie = {"Cookie": f"carecircle_session={COOKIE}"}
        first = gateway.request("GET", "/api/notes", tls=True, headers={**cookie, "Authorization": "Bearer a"})[0]
        second = gateway.request("GET", "/api/notes", tls=True, headers={**cookie, "Authorization": "Bearer b"})[0]
        cookie_only = [gateway.request("GET", "/api/notes", tls=True, headers=cookie)[0] for _ in range(2)]
    assert (first, second) == (200, 200)  # two tokens, two users: the shared cookie does not join them
    assert cookie_only == [200, 429]


def test_the_session_cookie_name_is_a_setting(tmp_path):
    settings = settings_for("prod", limits(per_ip_burst=50, per_user_burst=0, **{"carecircle:gatewaySessionCookie": "connect.sid"}))
    with stub_upstreams(1) as upstreams, running_gateway(tmp_path, settings, upstreams) as gateway:
        def twice(cookie):
            return [gateway.request("GET", "/api/notes", tls=True, headers={"Cookie": cookie})[0] for _ in range(2)]
        short, long = twice("connect.sid=s%3Aabc.def"), twice(f"a=1; connect.sid={COOKIE}")
        lookalike, default_name = twice("connectXsid=s%3Aabc.def"), twice(f"carecircle_session={COOKIE}")
    assert short == [200, 429] and long == [200, 429]
    assert lookalike == [200, 200] and default_name == [200, 200]  # not the configured name: no credential


def test_no_credential_in_any_log_and_no_error_log_flood(tmp_path):
    settings = settings_for("prod", limits())
    with stub_upstreams(1) as upstreams, running_gateway(tmp_path, settings, upstreams) as gateway:
        statuses = [gateway.request("GET", f"/api/notes?i={i}", tls=True, source=f"127.0.4.{i}",
                                    headers={"Authorization": f"Bearer {TOKEN}", "Cookie": f"carecircle_session={COOKIE}"})[0]
                    for i in range(1, 41)]
        assert statuses.count(429) >= 30
        entries = [json.loads(line) for line in gateway.access_log(at_least=40)]
        error_log = gateway.error_log()
        logs = (tmp_path / "access.log").read_text() + error_log
    assert sum(1 for e in entries if e["status"] == 429) == statuses.count(429)  # the access log is the record
    assert "limiting requests" not in error_log  # not one error line per refused request
    for secret in (TOKEN, TOKEN[-64:], TOKEN[-20:], COOKIE, COOKIE[-64:], COOKIE[-20:]):
        assert secret not in logs
