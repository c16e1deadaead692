"""Addresses and names the gateway's nginx reads: every CIDR the settings accept is one nginx reads
(ngx_ptocidr) and every server name or exact CORS origin they accept fits nginx's hashes, at any
accepted length; what nginx would refuse (or warn about) the settings refuse first, naming the key.
Each claim about nginx is checked on nginx 1.30 (production's line)."""

from __future__ import annotations

import ipaddress
import string

import pytest
from config_checks import accepted, consumer_workdir, minimal_http, nginx_checks, nginx_output, refused, settings_or_error
from hypothesis import HealthCheck, event, example, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from carecircle.settings import ConfigError

PROPERTY = hypothesis_settings(max_examples=40, deadline=None,
                               suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return consumer_workdir(tmp_path_factory)


CIDR_KEYS = ("carecircle:gatewayTrustedProxies", "carecircle:gatewayRateLimitAllowlist", "carecircle:gatewayLoadBalancers")

# ---- CIDRs ------------------------------------------------------------------------------------

# Python's ipaddress reads each of these as a network; nginx's ngx_ptocidr does not (or reads another).
PYTHON_ONLY_CIDRS = [
    "10.0.0.0/255.0.0.0",  # a netmask after the '/': nginx takes it for a host name
    "10.0.0.0/0.255.255.255",  # a hostmask
    "192.168.0.0/255.255.0.0",
    "fe80::%eth0/64",  # an IPv6 zone
    "fe80::1%lo",
]
# Not networks at all, or not written as nginx reads them.
NOT_CIDRS = ["10.0.0.1/8", "10.0.0.0/33", "2001:db8::/129", "10.0.0/8", "010.0.0.0/8", "10.0.0.0 /8", "10.0.0.0/8 ", "all",
             "[2001:db8::]/32", "10.0.0.0/-1", "0x0a000000/8", "10.0.0.0/8/8", "::ffff:10.0.0.0/33x", "localhost"]


@pytest.mark.parametrize("cidr", PYTHON_ONLY_CIDRS + NOT_CIDRS)
@pytest.mark.parametrize("key", CIDR_KEYS)
def test_a_cidr_nginx_would_not_read_is_refused(cidr, key):
    assert "CIDR" in refused("dev", {key: [cidr]}, key)


@pytest.mark.parametrize("cidr", PYTHON_ONLY_CIDRS[:3])
def test_the_netmask_forms_python_reads_are_refused_by_nginx_itself(workdir, cidr):
    """Why they are refused: nginx 1.30 refuses them (so the settings are not stricter than nginx)."""
    directory, _ = workdir
    code, output = nginx_output(directory, minimal_http(directory, f"    set_real_ip_from {cidr};"))
    assert code != 0 and "[emerg]" in output, output


def test_a_padded_prefix_length_both_read_as_the_same_network_is_accepted(workdir):
    directory, _ = workdir
    nginx_checks(accepted("dev", {"carecircle:gatewayTrustedProxies": ["10.0.0.0/08", "2001:db8::/032"]}), directory, None)


def test_the_fix_suggests_the_network_in_prefix_form():
    error = settings_or_error("dev", {"carecircle:gatewayTrustedProxies": ["10.0.0.0/255.0.0.0"]})
    assert isinstance(error, ConfigError)
    assert error.problems[0].fix.endswith(" 10.0.0.0/8 --stack dev")


def ipv4_network(draw) -> ipaddress.IPv4Network:
    prefix = draw(st.integers(0, 32))
    return ipaddress.ip_network((draw(st.integers(0, 2**32 - 1)) >> (32 - prefix) << (32 - prefix) if prefix else 0, prefix))


def ipv6_network(draw) -> ipaddress.IPv6Network:
    prefix = draw(st.integers(0, 128))
    return ipaddress.ip_network((draw(st.integers(0, 2**128 - 1)) >> (128 - prefix) << (128 - prefix) if prefix else 0, prefix))


@st.composite
def written_cidr(draw) -> str:
    """A network in one of the spellings both Python and nginx read."""
    if draw(st.booleans()):
        network = ipv4_network(draw)
        return str(network) if network.prefixlen < 32 or draw(st.booleans()) else str(network.network_address)
    network = ipv6_network(draw)
    spelling = draw(st.sampled_from(["compressed", "exploded", "upper", "mapped"]))
    if spelling == "mapped" and network.prefixlen >= 96:
        mapped = ipaddress.ip_address("::ffff:0:0").packed[:12] + network.network_address.packed[12:]
        return f"::ffff:{ipaddress.IPv4Address(mapped[12:])}/{network.prefixlen}"
    text = network.exploded if spelling == "exploded" else network.compressed
    return text.upper() if spelling == "upper" else text


@PROPERTY
@given(trusted=st.lists(written_cidr(), min_size=1, max_size=6), allowlist=st.lists(written_cidr(), max_size=6),
       balancers=st.booleans())
@example(trusted=["10.0.0.0/8", "::ffff:10.0.0.0/104", "2001:DB8::/32", "0.0.0.0/0"], allowlist=["::/0"], balancers=False)
@example(trusted=["0.0.0.0/0"], allowlist=["0.0.0.0/0", "0.0.0.0/1"], balancers=False)
def test_every_cidr_the_settings_accept_is_one_nginx_reads(workdir, trusted, allowlist, balancers):
    directory, tls = workdir
    key = "carecircle:gatewayLoadBalancers" if balancers else "carecircle:gatewayTrustedProxies"
    outcome = settings_or_error("dev", {key: trusted, "carecircle:gatewayRateLimitAllowlist": allowlist})
    networks = [[ipaddress.ip_network(c) for c in cidrs] for cidrs in (trusted, allowlist)]
    if any(len(set(n)) != len(n) for n in networks):  # the same network twice: refused, see below
        assert isinstance(outcome, ConfigError) and "twice" in str(outcome)
        event("refused: a network listed twice")
        return
    assert not isinstance(outcome, ConfigError), str(outcome)
    nginx_checks(outcome, directory, None)
    event("accepted, and nginx -t passed")


@pytest.mark.parametrize("key, cidrs", [
    ("carecircle:gatewayRateLimitAllowlist", ["10.0.0.0/8", "10.0.0.0/8"]),
    ("carecircle:gatewayTrustedProxies", ["2001:db8::/32", "2001:DB8::/32"]),
    ("carecircle:gatewayTrustedProxies", ["2001:db8::/32", "2001:db8:0::/32"]),
    ("carecircle:gatewayLoadBalancers", ["10.1.0.0/16", "172.16.0.0/12", "10.1.0.0/16"]),
])
def test_a_network_listed_twice_is_refused(key, cidrs):
    assert "twice" in refused("dev", {key: cidrs}, key)


def test_nginx_warns_on_a_network_listed_twice_in_a_geo(workdir):
    directory, _ = workdir
    code, output = nginx_output(directory, minimal_http(directory, "    geo $x { default 0; 2001:db8::/32 1; 2001:DB8::/32 1; }"))
    assert code == 0 and "[warn]" in output and "duplicate network" in output, output


# ---- server names and exact CORS origins: nginx's hashes -------------------------------------

ALNUM = string.ascii_lowercase + string.digits


@st.composite
def host_label(draw) -> str:
    """A DNS label of 1 to 63 characters (RFC 1123), its length drawn evenly."""
    length = draw(st.integers(1, 63))
    ends = draw(st.text(alphabet=ALNUM, min_size=min(length, 2), max_size=min(length, 2)))
    middle = draw(st.text(alphabet=ALNUM + "-", min_size=max(0, length - 2), max_size=max(0, length - 2)))
    return ends[0] + middle + ends[1:]


@st.composite
def host_name(draw, longest: int = 253) -> str:
    labels = draw(st.lists(host_label(), min_size=1, max_size=6))
    while len(".".join(labels)) > longest:
        labels.pop()
    return ".".join(labels) or "a"


@PROPERTY
@given(server_name=host_name(), origins=st.lists(st.tuples(st.sampled_from(["https", "http"]), host_name(240),
                                                        st.none() | st.integers(1, 65535)), max_size=12))
@example(server_name="a" * 63 + "." + "b" * 63 + "." + "c" * 63 + "." + "d" * 61, origins=[("https", "x" * 47, None)])
def test_server_names_and_origins_of_any_accepted_length_fit_nginx(workdir, server_name, origins):
    """nginx's default hash buckets (64 bytes) hold 46 characters; the rendered file sizes them."""
    directory, tls = workdir
    written = [f"{scheme}://{host}" + (f":{port}" if port else "") for scheme, host, port in origins]
    outcome = settings_or_error("dev", {"carecircle:gatewayServerName": server_name, "carecircle:gatewayCorsOrigins": written})
    if isinstance(outcome, ConfigError):  # only what a browser never sends, or a duplicate, is refused
        assert all(p.key in ("carecircle:gatewayCorsOrigins", "carecircle:gatewayServerName") for p in outcome.problems)
        assert any(("default port" in p.message or "twice" in p.message or "not an origin" in p.message)
                   for p in outcome.problems), outcome
        event("refused: an origin no browser sends, or listed twice")
        return
    nginx_checks(outcome, directory, tls)
    event("accepted, and nginx -t passed")


def test_sixty_four_origins_of_the_longest_length_fit_without_a_warning(workdir):
    directory, tls = workdir
    origins = [f"https://{i:02d}{'a' * 61}.{'b' * 63}.{'c' * 63}.{'d' * 58}" for i in range(64)]
    settings = accepted("dev", {"carecircle:gatewayCorsOrigins": origins, "carecircle:gatewayServerName": "x" * 63 + ".example"})
    nginx_checks(settings, directory, tls)


@pytest.mark.parametrize("origin, words", [
    ("https://app.carecircle.example:443", "default port"), ("http://app.carecircle.example:80", "default port"),
    ("https://app.carecircle.example:70000", "port above 65535"), ("https://" + "a" * 64 + ".example", "not an origin"),
    ("https://" + ".".join(["a" * 60] * 5), "not an origin"), ("https://App.carecircle.example", "not an origin"),
    ("https://app.carecircle.example/", "not an origin"), ("https://-app.carecircle.example", "not an origin"),
    ("https://app..carecircle.example", "not an origin"), ("https://app.carecircle.example:0443", "not an origin"),
])
def test_an_origin_no_browser_sends_is_refused(origin, words):
    assert words in refused("dev", {"carecircle:gatewayCorsOrigins": [origin]}, "carecircle:gatewayCorsOrigins")


def test_an_origin_listed_twice_is_refused_as_nginx_refuses_it(workdir):
    directory, tls = workdir
    twice = ["https://app.carecircle.example", "https://app.carecircle.example"]
    assert "twice" in refused("dev", {"carecircle:gatewayCorsOrigins": twice}, "carecircle:gatewayCorsOrigins")
    code, output = nginx_output(directory, minimal_http(directory, '    map $http_origin $o { "https://a.example" 1; "https://a.example" 1; }'))
    assert code != 0 and "conflicting parameter" in output, output


def test_a_long_server_name_fails_nginx_at_its_default_bucket_size(workdir):
    """Why the rendered file sizes the hashes: the default bucket holds 46 characters, not 47."""
    directory, _ = workdir
    server = ("    server {{ listen 127.0.0.1:18090 default_server; server_name _; }}\n"
              "    server {{ listen 127.0.0.1:18090; server_name {name}; }}")
    assert nginx_output(directory, minimal_http(directory, server.format(name="a" * 46)))[0] == 0
    code, output = nginx_output(directory, minimal_http(directory, server.format(name="a" * 47)))
    assert code != 0 and "server_names_hash_bucket_size" in output, output


# ---- the gateway image's nginx line ------------------------------------------------------------

@pytest.mark.parametrize("stack, image", [
    ("dev", "nginx:1.24-alpine"), ("dev", "nginx:1.25.0"), ("dev", "nginx:1.22"), ("dev", "nginx:stable-alpine"),
    ("dev", "nginx:mainline"), ("dev", "nginx:alpine"), ("dev", "nginx@sha256:" + "a" * 64), ("dev", "nginx"),
    ("staging", "nginx:1.27.2-alpine"), ("staging", "nginx:1.26"), ("staging", "nginx:1.25.5"),
    ("prod", "nginx:1.26.3@sha256:" + "a" * 64), ("dev", "nginx:1-alpine"),
])
def test_a_gateway_image_whose_nginx_cannot_run_the_config_is_refused(stack, image):
    message = refused(stack, {"carecircle:gatewayImage": image}, "carecircle:gatewayImage")
    assert "nginx" in message and ("1.25.1" in message or "1.27.3" in message)


@pytest.mark.parametrize("stack, image", [
    ("dev", "nginx:1.25"), ("dev", "nginx:1.25.1-alpine"), ("staging", "nginx:1.27.3"), ("staging", "nginx:1.27-alpine"),
    ("staging", "registry.example:5000/mirror/nginx:1.30.6"), ("prod", "nginx:1.30-alpine@sha256:" + "b" * 64),
    ("dev", "nginxinc/nginx-unprivileged:1.30-alpine-slim"), ("dev", "nginx:2.0"),
])
def test_a_gateway_image_of_a_line_that_runs_the_config_is_accepted(stack, image):
    accepted(stack, {"carecircle:gatewayImage": image})


def test_the_directives_that_set_those_lines_are_in_the_rendered_files(workdir):
    """The floors are `http2 on` (nginx 1.25.1) on every stack and `server ... resolve` (1.27.3) on swarm:
    if the template stopped using them, the floors would be stale."""
    directory, tls = workdir
    nginx_checks(accepted("staging"), directory, tls)
    rendered = (directory / "nginx.conf").read_text()
    assert "http2 on;" in rendered and " resolve max_fails=" in rendered
