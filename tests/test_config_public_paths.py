"""The api's metrics (apiMetricsPath, on the api's own port) are never reachable from the internet:
for any routes and metrics path the settings accept, no request to the running gateway reaches the
api at a path Express would answer with the metrics. Express matches a route case-insensitively and
with or without a trailing slash (path-to-regexp with `sensitive` and `strict` off), on the path as
sent (not percent-decoded)."""

from __future__ import annotations

import re
import string

import pytest
from config_checks import refused, settings_or_error
from hypothesis import HealthCheck, event, example, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from carecircle.settings import ConfigError
from nginx_harness import running_gateway, stub_upstreams

OPEN = {"carecircle:gatewayRateLimitAllowlist": ["127.0.0.0/8"]}


def express_serves(route: str, path: str) -> bool:
    """Whether Express's default router sends a request for `path` to the route `route`."""
    pathname = path.split("?", 1)[0]
    return re.fullmatch(re.escape(route.rstrip("/")) + "/?", pathname, re.IGNORECASE) is not None


def spellings(public: str) -> list[str]:
    """Ways a client can write a path that nginx and Express might read as `public`."""
    head, _, last = public.rstrip("/").rpartition("/")
    encoded = "".join(f"%{ord(c):02x}" if c.isalpha() else c for c in last[:1]) + last[1:]
    return [public, public.upper(), public.rstrip("/") + "/", public.title(), f"{head}/{encoded}", f"{head}//{last}",
            f"{head}/./{last}", f"{head}/x/../{last}", public + "?x=1", public.rstrip("/") + "%2F", public + ";x", public + "/."]


def reached_metrics(gateway, upstreams, metrics: str, routes: list[dict]) -> list[tuple[str, str]]:
    """(public path, path the api received) of every request that reached the api at its metrics."""
    candidates = {metrics, "/health", "/ready", "/live"}
    candidates |= {route["path"] + metrics.lstrip("/") for route in routes}
    reached = []
    for public in sorted(candidates):
        for path in spellings(public):
            server = upstreams.servers[0]
            before = len(server.hits)
            status, _, body = gateway.request("GET", path)
            if len(server.hits) > before and status == 200:
                received = __import__("json").loads(body)["path"]
                if express_serves(metrics, received):
                    reached.append((path, received))
    return reached


SEGMENT = st.text(alphabet=string.ascii_lowercase + string.digits + "-_", min_size=1, max_size=8)


@st.composite
def routes_and_metrics(draw) -> tuple[list[dict], str]:
    routes = draw(st.lists(st.builds(lambda segments, strip: {"path": "/" + "/".join(segments) + "/", "service": "api",
                                                              "stripPrefix": strip},
                                     st.lists(SEGMENT, min_size=1, max_size=2), st.booleans()),
                           min_size=1, max_size=3, unique_by=lambda r: r["path"]))
    under = draw(st.sampled_from([None, *[r["path"] for r in routes]]))
    metrics = (under or "/") + "/".join(draw(st.lists(SEGMENT, min_size=1, max_size=2)))
    return routes, metrics + draw(st.sampled_from(["", "/"]))


@hypothesis_settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(case=routes_and_metrics())
@example(case=([{"path": "/api/", "service": "api", "stripPrefix": True}], "/metrics"))
@example(case=([{"path": "/v1/", "service": "api", "stripPrefix": True}, {"path": "/api/", "service": "api"}], "/internal/metrics/"))
def test_no_accepted_configuration_lets_the_internet_reach_the_metrics(tmp_path_factory, case):
    routes, metrics = case
    outcome = settings_or_error("dev", {**OPEN, "carecircle:gatewayRoutes": routes, "carecircle:apiMetricsPath": metrics})
    if isinstance(outcome, ConfigError):  # the metrics path under a route that keeps its prefix
        assert {p.key for p in outcome.problems} == {"carecircle:apiMetricsPath"}, outcome
        event("refused: metrics under a route that keeps its prefix")
        return
    with stub_upstreams(1) as upstreams, running_gateway(tmp_path_factory.mktemp("paths"), outcome, upstreams) as gateway:
        assert reached_metrics(gateway, upstreams, metrics, routes) == []
        # the route itself still works: a path beside the metrics reaches the api
        assert gateway.request("GET", routes[0]["path"] + "other")[0] == 200
    event("accepted, and no request reached the metrics")


def test_a_route_that_strips_its_prefix_would_forward_the_metrics_path_without_the_gateways_refusal(tmp_path):
    """Why the gateway refuses it: without that location nginx forwards /api/metrics as /metrics."""
    from config_checks import accepted

    settings = accepted("dev", {**OPEN, "carecircle:gatewayRoutes": [{"path": "/api/", "service": "api", "stripPrefix": True}]})
    without = re.compile(r'        location ~\* "[^"]*" \{\n            try_files /\.carecircle-none =404;\n        \}\n')
    with stub_upstreams(1) as upstreams, running_gateway(tmp_path, settings, upstreams, edit=lambda conf: without.sub("", conf)) as gateway:
        assert reached_metrics(gateway, upstreams, "/metrics", [{"path": "/api/"}])


@pytest.mark.parametrize("routes, metrics", [
    ([{"path": "/api/", "service": "api"}], "/api/metrics"),
    ([{"path": "/api/", "service": "api"}], "/API/Metrics"),
    ([{"path": "/API/", "service": "api"}], "/api/metrics"),  # Express reads /API/metrics as /api/metrics
    ([{"path": "/api/", "service": "api"}], "/api"),
    ([{"path": "/api/v1/", "service": "api"}], "/api/v1/metrics/"),
    ([{"path": "/api/", "service": "api"}], "/health"),
    ([{"path": "/api/", "service": "api"}], "/Ready/"),
    ([{"path": "/api/", "service": "api"}], "/live"),
])
def test_a_metrics_path_the_gateway_forwards_as_it_is_is_refused(routes, metrics):
    refused("prod", {"carecircle:gatewayRoutes": routes, "carecircle:apiMetricsPath": metrics}, "carecircle:apiMetricsPath")
