"""The per-credential limit keys on the credential as the api reads it, on a real nginx (production's
line), over HTTP/1.1 and HTTP/2: every spelling the api accepts for one bearer token or session
cookie is one key, and a session cookie spelled as the api would read differently is refused.

What the api reads, as a NestJS api's usual libraries read it: passport-jwt's bearer extractor
(lib/auth_header.js: /(\\S+)\\s+(\\S+)/, the scheme compared case-insensitively) and the `cookie`
package (0.7, under express-session and cookie-parser: pairs split on ';', name and value trimmed of
spaces and tabs, one pair of quotes dropped, the first pair of a name wins, a value holding a %
percent-decoded)."""

import pytest

from nginx_harness import running_gateway, settings_for, stub_upstreams

TOKEN = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiI0MiJ9." + "s" * 40 + "SIGNATUREtail0123456789"
# As express-session sets it: "s:<id>.<signature>" through encodeURIComponent.
COOKIE = "s%3A" + "k" * 30 + ".Zm9vYmFyYmF6cXV4cXV1eHF1dXhxdXV4cXV1eHF1dXhxdXV4cXV1eA%2B%2F"
# Each address sends one request: far within the per-address limit (burst 100); the credential's
# own limit is rate 1/s, no burst.
LIMITS = {"carecircle:gatewayRateLimitPerSecond": 1, "carecircle:gatewayRateLimitBurst": 100,
          "carecircle:gatewayUserRateLimitPerSecond": 1, "carecircle:gatewayUserRateLimitBurst": 0}

BEARER_SPELLINGS = [
    f"Bearer {TOKEN}", f"bearer   {TOKEN}", f"BEARER {TOKEN}", f"Bearer\t{TOKEN}",
    f"Bearer {TOKEN} more",  # passport takes the first word after the scheme
    f"Bearer\xa0{TOKEN}",  # JavaScript's \s includes U+00A0 (Node reads header bytes as latin1)
    f"Bearer {TOKEN}\xa0more",
]
COOKIE_SPELLINGS = [
    f"carecircle_session={COOKIE}", f"carecircle_session ={COOKIE}", f"a=1; carecircle_session= {COOKIE} ; b=2",
    f'carecircle_session="{COOKIE}"', f"carecircle_session={COOKIE}; carecircle_session=other",  # the first pair wins
    f"theme; carecircle_session={COOKIE}",  # a pair without '=' is skipped
]
# The api percent-decodes these to the same value; the gateway cannot, so it refuses them.
MISSPELLED_COOKIES = [
    "carecircle_session=" + COOKIE.replace("%3A", "%3a"),  # lower-case escape
    "carecircle_session=" + COOKIE.replace("s%3A", "%73%3A"),  # an escape for a character that needs none
    "carecircle_session=" + COOKIE.replace("%3A", ":%6B"),  # a literal ':' next to escapes
]


def send(gateway, protocol: str, headers: dict, source: str) -> int:
    if protocol == "h1":
        return gateway.request("GET", "/api/notes", tls=True, headers=headers, source=source)[0]
    with gateway.h2(source=source) as client:
        return client.request("GET", "/api/notes", headers=[(name.lower(), value) for name, value in headers.items()]).status


@pytest.fixture(scope="module")
def limited(tmp_path_factory):
    with stub_upstreams(1) as upstreams, running_gateway(tmp_path_factory.mktemp("credentials"), settings_for("prod", LIMITS),
                                                         upstreams) as gateway:
        yield gateway


@pytest.mark.parametrize("protocol, subnet", [("h1", 1), ("h2", 2)])
def test_every_spelling_of_a_bearer_token_is_one_credential(limited, protocol, subnet):
    token = f"{TOKEN}-{protocol}"
    statuses = [send(limited, protocol, {"Authorization": spelling.replace(TOKEN, token)}, f"127.0.{subnet}.{i + 1}")
                for i, spelling in enumerate(BEARER_SPELLINGS)]
    assert statuses == [200] + [429] * (len(BEARER_SPELLINGS) - 1), statuses


@pytest.mark.parametrize("protocol, subnet", [("h1", 3), ("h2", 4)])
def test_every_spelling_of_a_session_cookie_is_one_credential(limited, protocol, subnet):
    cookie = COOKIE + protocol
    statuses = [send(limited, protocol, {"Cookie": spelling.replace(COOKIE, cookie)}, f"127.0.{subnet}.{i + 1}")
                for i, spelling in enumerate(COOKIE_SPELLINGS)]
    assert statuses == [200] + [429] * (len(COOKIE_SPELLINGS) - 1), statuses


@pytest.mark.parametrize("protocol, subnet", [("h1", 5), ("h2", 6)])
def test_a_session_cookie_the_api_would_decode_differently_is_refused(limited, protocol, subnet):
    statuses = [send(limited, protocol, {"Cookie": cookie}, f"127.0.{subnet}.{i + 1}") for i, cookie in enumerate(MISSPELLED_COOKIES)]
    assert statuses == [400] * len(MISSPELLED_COOKIES), statuses


def test_a_value_without_escapes_is_read_as_it_is(limited):
    """The decoded spelling (the api reads "s:..." and "s%3A..." as one session) is a second key: the
    only other spelling the gateway accepts, so a credential gets at most twice its limit."""
    decoded = COOKIE.replace("%3A", ":").replace("%2B", "+").replace("%2F", "/") + "x"
    encoded = COOKIE + "x"
    statuses = [send(limited, "h1", {"Cookie": f"carecircle_session={value}"}, f"127.0.7.{i + 1}")
                for i, value in enumerate([decoded, decoded, encoded, encoded])]
    assert statuses == [200, 429, 200, 429], statuses


def test_other_names_and_schemes_are_no_credential(limited):
    """Not the session cookie's name (nor a name that merely contains it), not the bearer scheme:
    only the per-address limit applies."""
    others = [{"Cookie": f"xcarecircle_session={COOKIE}"}, {"Cookie": f"carecircle_sessionx={COOKIE}"},
              {"Authorization": f"Basic {TOKEN}"}, {"Authorization": f"xBearer {TOKEN}"}, {"Authorization": f"Bearer{TOKEN}"}]
    statuses = [send(limited, "h1", headers, f"127.0.8.{i + 1}") for i, headers in enumerate(others * 2)]
    assert statuses == [200] * 10, statuses
