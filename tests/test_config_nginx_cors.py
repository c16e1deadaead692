"""CORS origin patterns as nginx's PCRE reads them: any pattern the settings accept passes `nginx -t`
and matches, in the running gateway, exactly the origins Python's `re` says it matches (the settings
judge a pattern with Python); patterns outside the shared grammar, or slow to match a client's
Origin, are refused. In staging and prod, credentials go only to HTTPS origins of one domain."""

from __future__ import annotations

import re
import string

import pytest
from config_checks import accepted, refused, settings_or_error
from hypothesis import HealthCheck, event, example, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from carecircle.settings import ConfigError
from nginx_harness import running_gateway, stub_upstreams

KEY = "carecircle:gatewayCorsOrigins"
OPEN = {"carecircle:gatewayRateLimitAllowlist": ["127.0.0.0/8"]}


def allowed_origins(gateway, origins: list[str]) -> list[str]:
    """The origins the running gateway echoes in Access-Control-Allow-Origin."""
    echoed = []
    for origin in origins:
        _, headers, _ = gateway.request("GET", "/_gateway/health", headers={"Origin": origin})
        if headers.get("access-control-allow-origin") == origin:
            echoed.append(origin)
    return echoed


# ---- the grammar, generated -----------------------------------------------------------------------

LITERALS = st.sampled_from(list("abcxz019-"))
ATOMS = st.one_of(LITERALS, st.sampled_from(["\\.", "\\d", "\\-", ".", "[a-z]", "[a-z0-9-]", "[^.]", "[0-9]", "[a-c.]"]))
REPEAT = st.sampled_from(["", "", "?", "*", "+"])


@st.composite
def group(draw) -> str:
    alternatives = draw(st.lists(st.lists(st.tuples(ATOMS, REPEAT).map("".join), min_size=1, max_size=3).map("".join),
                                 min_size=1, max_size=3))
    return ("(?:" if draw(st.booleans()) else "(") + "|".join(alternatives) + ")"


@st.composite
def origin_pattern(draw) -> str:
    scheme = draw(st.sampled_from(["^https://", "^http://", "^https?://"]))
    pieces = []
    for _ in range(draw(st.integers(1, 5))):
        if draw(st.integers(0, 4)) == 0:
            body = draw(group())
            inner = body[3:] if body.startswith("(?:") else body[1:]
            # a group may repeat (* or +) only when nothing inside it repeats or alternates
            pieces.append(body + ("?" if re.search(r"[?*+|]", inner) and draw(st.booleans()) else
                                  "" if re.search(r"[?*+|]", inner) else draw(REPEAT)))
        else:
            pieces.append(draw(ATOMS) + draw(REPEAT))
    tail = draw(st.sampled_from(["", "\\.carecircle\\.example", "\\.example", ":8443", "\\.a\\.b:80"]))
    return "~" + scheme + "".join(pieces) + tail + "$"


@st.composite
def probes(draw, pattern: str) -> list[str]:
    """Origins the pattern matches (by Python's re) and origins that are near misses."""
    regex = pattern[1:]
    visible = st.characters(min_codepoint=0x21, max_codepoint=0x7E)  # what a request header carries here
    matching = draw(st.lists(st.from_regex(regex, fullmatch=True, alphabet=visible), max_size=4))
    hosts = st.text(alphabet=string.ascii_lowercase + string.digits + ".-", min_size=1, max_size=20)
    others = draw(st.lists(st.builds(lambda s, h, t: s + h + t, st.sampled_from(["https://", "http://"]), hosts,
                                     st.sampled_from(["", ".carecircle.example", ".example", ":8443"])), max_size=4))
    return [*matching, *others, *(m + "x" for m in matching[:1]), *(m.upper() for m in matching[:1])]


@hypothesis_settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(data=st.data())
@example(data=None)
def test_an_accepted_pattern_matches_in_nginx_what_python_says_it_matches(tmp_path_factory, data):
    if data is None:  # the committed example shape
        patterns, origins = ["~^https://[a-z0-9-]+\\.carecircle\\.example$"], ["https://app.carecircle.example",
                                                                                 "https://evil.example", "https://a.b.carecircle.example"]
    else:
        patterns = data.draw(st.lists(origin_pattern(), min_size=1, max_size=3, unique=True))
        origins = [o for p in patterns for o in data.draw(probes(p))]
    outcome = settings_or_error("dev", {**OPEN, KEY: patterns})
    assert not isinstance(outcome, ConfigError), str(outcome)
    expected = [o for o in origins if any(re.search(p[1:], o) for p in patterns)]
    with stub_upstreams(1) as upstreams, running_gateway(tmp_path_factory.mktemp("cors"), outcome, upstreams) as gateway:
        assert allowed_origins(gateway, origins) == expected, (patterns, origins)
    event("accepted, and nginx matched as Python")


# ---- what the grammar refuses ----------------------------------------------------------------------

OUTSIDE_THE_GRAMMAR = [
    ("~^https://(a+)+\\.carecircle\\.example$", "repeats inside"),  # exponential backtracking on a hostile Origin
    ("~^https://(a|aa)*\\.carecircle\\.example$", "repeats inside"),
    ("~^https://(?:[a-z]+\\.)*carecircle\\.example$", "repeats inside"),
    ("~^https://a\\t\\.carecircle\\.example$", "escapes"),  # nginx's parser would turn \t into a tab
    ("~^https://a\\\\\\.carecircle\\.example$", "escapes"),  # and \\ into \
    ("~^https://a\\n\\.carecircle\\.example$", "escapes"),
    ("~^https://\\Qa\\E\\.carecircle\\.example$", "escapes"),  # PCRE only
    ("~^https://[[:alpha:]]+\\.carecircle\\.example$", "classes"),  # PCRE only
    ("~^https://(?i)app\\.carecircle\\.example$", "may hold only"),
    ("~^https://(?=a)a\\.carecircle\\.example$", "may hold only"),
    ("~^https://(?<n>a)\\.carecircle\\.example$", "may hold only"),
    ("~^https://a{2}\\.carecircle\\.example$", "may hold only"),
    ("~^https://a**\\.carecircle\\.example$", "repeat after a repeat"),
    ("~^https://a+?\\.carecircle\\.example$", "repeat after a repeat"),
    ("~^https://()\\.carecircle\\.example$", "empty group"),
    ("~^https://a)\\.carecircle\\.example$", "closes no group"),
    ("~^https://[z-a]\\.carecircle\\.example$", "not a valid regular expression"),
    ("~^https://app\\.carecircle\\.example\\$", "anchored"),
    ("~^https://$", "no host"),
    ("~^ftp://app\\.carecircle\\.example$", "anchored"),
    ("~^https://app\\.example$|^https://evil\\.example$", "top-level '|'"),
    ("~^https://a\"\\.carecircle\\.example$", "may hold only"),
    ("~^https://a;\\.carecircle\\.example$", "may hold only"),
    ("~^https://a\\.carecircle\\.example$ ", "visible ASCII"),
    ("~^https://a@b\\.carecircle\\.example$", "may hold only"),
    ("~^https://a#\\.carecircle\\.example$", "may hold only"),
]


@pytest.mark.parametrize("pattern, words", OUTSIDE_THE_GRAMMAR)
def test_a_pattern_outside_the_grammar_both_engines_read_alike_is_refused(pattern, words):
    assert words in refused("dev", {KEY: [pattern]}, KEY)


# ---- credentials in staging and prod --------------------------------------------------------------

WILDCARDS_WITH_CREDENTIALS = [
    "~^https://.*$", "~^https://.+\\.example$", "~^https://[a-z0-9-]+\\.example$", "~^https://[a-z]+carecircle\\.example$",
    "~^https://app\\.carecircle\\.[a-z]+$", "~^https://(app|evil)\\.example$", "~^https://app\\.carecircle\\.example.*$",
    "~^https://[a-z0-9.-]+$", "~^https://app\\.carecircle\\.examples?$", "~^https://app\\.carecircle\\.example\\d$",
    # two literal labels that are a public suffix: anyone registers a name under them
    "~^https://[a-z]+\\.co\\.uk$", "~^https://[a-z0-9-]+\\.github\\.io$", "~^https://.*\\.com\\.au$",
]
CLEAR_WITH_CREDENTIALS = ["http://app.carecircle.example", "~^https?://app\\.carecircle\\.example$",
                          "~^http://[a-z]+\\.carecircle\\.example$"]
OWN_DOMAIN = ["~^https://[a-z0-9-]+\\.carecircle\\.example$", "~^https://(app|admin)\\.carecircle\\.example$",
              "~^https://app\\.carecircle\\.example$", "~^https://.*\\.carecircle\\.example$",
              "~^https://[a-z]+\\.staging\\.carecircle\\.example:8443$", "https://app.carecircle.example:8443",
              "~^https://[a-z]+\\.carecircle\\.co\\.uk$"]


@pytest.mark.parametrize("stack", ["staging", "prod"])
@pytest.mark.parametrize("origin", WILDCARDS_WITH_CREDENTIALS + CLEAR_WITH_CREDENTIALS)
def test_credentials_never_go_to_a_wildcard_or_clear_origin_in_staging_and_prod(stack, origin):
    message = refused(stack, {KEY: [origin], "carecircle:gatewayCorsAllowCredentials": True}, KEY)
    assert ("wildcard" in message) or ("HTTPS origins only" in message)
    accepted(stack, {KEY: [origin], "carecircle:gatewayCorsAllowCredentials": False})  # without credentials: a choice
    accepted("dev", {KEY: [origin], "carecircle:gatewayCorsAllowCredentials": True})  # a developer's own machine


@pytest.mark.parametrize("origin", OWN_DOMAIN)
def test_credentials_may_go_to_https_origins_of_the_stacks_own_domain(origin):
    accepted("prod", {KEY: [origin], "carecircle:gatewayCorsAllowCredentials": True})


def test_why_a_wildcard_is_refused_the_gateway_would_credential_anyone(tmp_path):
    """Accepted in dev, the 1-label wildcard gives credentials to a domain anyone registers."""
    settings = accepted("dev", {**OPEN, KEY: ["~^https://[a-z0-9-]+\\.example$"], "carecircle:gatewayCorsAllowCredentials": True})
    with stub_upstreams(1) as upstreams, running_gateway(tmp_path, settings, upstreams) as gateway:
        _, headers, _ = gateway.request("GET", "/_gateway/health", headers={"Origin": "https://attacker.example"})
    assert headers["access-control-allow-origin"] == "https://attacker.example"
    assert headers["access-control-allow-credentials"] == "true"
