"""Whatever numeric, time or size value the gateway settings accept, the rendered configuration is
one the real nginx (production's line) accepts: hypothesis draws values at and inside each key's
limits, for many keys at once, and `nginx -t` must pass on the result (without a warning)."""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, example, given, reject
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from carecircle.rendering import GatewayPorts, NginxPaths, TlsFiles, Upstream, render_nginx_conf
from carecircle.settings import ConfigError
from carecircle.settings.gateway import GatewaySettings
from carecircle.stackfiles import base_config
from nginx_harness import make_certificate, nginx_test, settings_for

UNITS_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000}


@dataclass(frozen=True)
class Bound:
    kind: str  # int, time, seconds (a time nginx reads in whole seconds) or size
    low: int  # int: the value; time/seconds: milliseconds; size: bytes
    high: int


GIB = 1024 * 1024 * 1024
# Every numeric, time and size key of the gateway, with the limits its type enforces (the test
# below fails when a key of that kind is added without a line here).
BOUNDS = {
    "carecircle:gatewayPreviewPort": Bound("int", 1, 65535),
    "carecircle:gatewayHttpPort": Bound("int", 1, 65535),
    "carecircle:gatewayHttpsPort": Bound("int", 1, 65535),
    "carecircle:gatewayWorkerShutdownTimeout": Bound("time", 1, 3600_000),
    "carecircle:gatewayHstsMaxAge": Bound("int", 0, 2**31 - 1),
    "carecircle:gatewayRateLimitPerSecond": Bound("int", 1, 100_000),
    "carecircle:gatewayRateLimitBurst": Bound("int", 0, 100_000),
    "carecircle:gatewayUserRateLimitPerSecond": Bound("int", 1, 100_000),
    "carecircle:gatewayUserRateLimitBurst": Bound("int", 0, 100_000),
    "carecircle:gatewayClientMaxBodySize": Bound("size", 1, GIB),
    "carecircle:gatewayClientHeaderTimeout": Bound("time", 1, 300_000),
    "carecircle:gatewayClientBodyTimeout": Bound("time", 1, 300_000),
    "carecircle:gatewayProxyConnectTimeout": Bound("time", 1, 75_000),
    "carecircle:gatewayProxyReadTimeout": Bound("time", 1, 3600_000),
    "carecircle:gatewayUpstreamMaxFails": Bound("int", 1, 100),
    "carecircle:gatewayUpstreamFailTimeout": Bound("seconds", 1000, 3600_000),
    "carecircle:gatewayProxyNextUpstreamTries": Bound("int", 1, 10),
    "carecircle:gatewayProxyNextUpstreamTimeout": Bound("time", 1, 3600_000),
    "carecircle:gatewayResolverValid": Bound("seconds", 1000, 600_000),
    "carecircle:gatewayAcmeRenewalMarginDays": Bound("int", 1, 3650),
}


def at_the_limit(bound: Bound, high: bool) -> str | int:
    value = bound.high if high else bound.low
    if bound.kind == "int":
        return value
    if bound.kind == "size":
        return f"{value // (1024 * 1024)}m" if high else f"{value}"
    return f"{value // 1000}s" if value % 1000 == 0 else f"{value}ms"


# The published ports are drawn from disjoint ranges (still reaching 1 and 65535): a port published
# twice is a rule across keys, not a limit.
PORT_RANGES = {"carecircle:gatewayHttpPort": (1, 20000), "carecircle:gatewayHttpsPort": (20001, 40000),
               "carecircle:gatewayPreviewPort": (40001, 65535)}


@st.composite
def value_of(draw, bound: Bound, key: str = "") -> str | int:
    if key in PORT_RANGES:
        low, high = PORT_RANGES[key]
        return draw(st.sampled_from([low, high]) | st.integers(low, high))
    where = draw(st.sampled_from(["low", "high", "inside"]))
    if where != "inside":
        return at_the_limit(bound, where == "high")
    if bound.kind == "int":
        return draw(st.integers(bound.low, bound.high))
    if bound.kind == "size":
        unit, scale = draw(st.sampled_from([("", 1), ("k", 1024), ("m", 1024 * 1024)]))
        return f"{draw(st.integers(max(1, -(-bound.low // scale)), bound.high // scale))}{unit}"
    units = ["s", "m", "h"] if bound.kind == "seconds" else ["ms", "s", "m", "h"]
    unit = draw(st.sampled_from([u for u in units if bound.high // UNITS_MS[u] >= 1]))
    low = max(1, -(-bound.low // UNITS_MS[unit]))
    return f"{draw(st.integers(low, min(bound.high // UNITS_MS[unit], 9_999_999)))}{unit}"


def test_every_numeric_gateway_key_has_its_bounds_here():
    _, base = base_config()
    numeric = {key for key, value in base.items() if key.startswith("carecircle:gateway")
               and re.fullmatch(r"[0-9]+(?:ms|s|m|h|k)?", str(value))}
    fields = {f"carecircle:{field.alias}" for field in GatewaySettings.model_fields.values()}
    assert numeric <= set(BOUNDS) <= fields, (numeric - set(BOUNDS), set(BOUNDS) - fields)


CROSS_RULES = ("shorter than", "already published", "do not fit", "grace period must be longer")


def accepted_or_only_crossed(changes: dict):
    """Staging's settings with `changes`; None when only a rule across keys refuses them."""
    try:
        return settings_for("staging", changes)
    except ConfigError as error:
        assert all(any(words in p.message for words in CROSS_RULES) for p in error.problems), error
        return None


@pytest.mark.parametrize("key", sorted(BOUNDS))
def test_each_limit_is_the_one_the_settings_enforce(key):
    """Just past a limit is refused with the limit in the message; at the limit is accepted (its
    own rules pass: a read timeout of 1ms is refused only because retries must end before it)."""
    bound = BOUNDS[key]
    accepted_or_only_crossed({key: at_the_limit(bound, True)})
    accepted_or_only_crossed({key: at_the_limit(bound, False)})
    beyond = bound.high + 1 if bound.kind == "int" else "1025m" if bound.kind == "size" else f"{bound.high // 1000 + 1}s"
    limit = str(bound.high) if bound.kind == "int" else "1024m" if bound.kind == "size" else f"{bound.high // 1000}s"
    with pytest.raises(ConfigError) as refused:
        settings_for("staging", {key: beyond})
    assert any(p.key == key and limit in p.message for p in refused.value.problems), refused.value


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("boundaries")
    return directory, make_certificate(directory, "api.carecircle.example")


# Every key at its lower, then its upper limit (but for the pairs a rule across keys orders: ports
# published once each, retries ending before the read timeout).
ALL_LOW = {**{key: at_the_limit(bound, False) for key, bound in BOUNDS.items()},
           "carecircle:gatewayHttpsPort": 2, "carecircle:gatewayPreviewPort": 3, "carecircle:gatewayProxyReadTimeout": "2ms"}
ALL_HIGH = {**{key: at_the_limit(bound, True) for key, bound in BOUNDS.items()},
            "carecircle:gatewayHttpsPort": 65534, "carecircle:gatewayPreviewPort": 65533,
            "carecircle:gatewayProxyNextUpstreamTimeout": "3599s"}


@hypothesis_settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(changes=st.fixed_dictionaries({}, optional={key: value_of(bound, key) for key, bound in BOUNDS.items()}))
@example(changes=ALL_LOW)
@example(changes=ALL_HIGH)
def test_accepted_values_render_a_config_nginx_accepts(workdir, changes):
    directory, tls = workdir
    # Only rules across keys may refuse a combination of values that are each within their limits.
    settings = accepted_or_only_crossed(changes)
    if settings is None:
        reject()
    conf = directory / "nginx.conf"
    conf.write_text(render_nginx_conf(
        settings, {"api": ["127.0.0.1:3001", "127.0.0.1:3002"], "api_idle": Upstream(("tasks.api-green:3000",), resolve=True)},
        ports=GatewayPorts(18080, 18443, 18081, 18082), paths=NginxPaths(runtime_dir=str(directory), access_log=str(directory / "a.log")),
        tls_files=TlsFiles(tls.certificate, tls.key)))
    checked = nginx_test(directory, conf)
    assert checked.returncode == 0 and "[warn]" not in checked.stderr and "[emerg]" not in checked.stderr, (changes, checked.stderr)
