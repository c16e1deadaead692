"""Rate limits on a real nginx (production's line): every request a client can send counts, whatever
answers it; a per-credential limit on top of the per-address one; no credential in any log; and a
429 flood does not flood the error log."""

import http.client
import json

import pytest

from nginx_harness import running_gateway, settings_for, stub_upstreams

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
