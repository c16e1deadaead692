"""Config a hostile or careless user could write: every class of bad input ends in the one clear
error naming the key, nothing declared, no traceback. Property tests generate such values for every
key of each kind (tests/config_values.py knows every key and a value its stack accepts)."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from carecircle.offline import evaluate_stack
from carecircle.settings import ConfigError
from carecircle.settings.loading import STACK_ENVIRONMENT_EXCEPTIONS, environment_of_stack
from config_values import Key, every_key, of_kind, override

PROPERTY = hypothesis_settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def refused(stack: str, **kwargs) -> ConfigError:
    with pytest.raises(ConfigError) as raised:
        evaluate_stack(stack, **kwargs)
    assert raised.value.declared == [], "resources were declared before the config error"
    assert "Traceback" not in str(raised.value)
    return raised.value


def problem_on(error: ConfigError, key: str):
    found = [p for p in error.problems if p.key == key]
    assert found, f"no problem reported on {key}: {error}"
    assert all(p.fix.startswith(("pulumi config", "set ", "pulumi stack rename")) for p in found)
    return found[0]


# ---- identity: a stack cannot change what it is ---------------------------------------------------

@pytest.mark.parametrize("stack, declared", [("prod", "dev"), ("prod", "staging"), ("staging", "dev"), ("dev", "prod")])
def test_a_stack_cannot_declare_another_environment(stack, declared):
    found = problem_on(refused(stack, overrides={"carecircle:environment": declared}), "carecircle:environment")
    assert f"is a {stack} stack" in found.message
    assert found.fix == f"pulumi config set carecircle:environment {stack} --stack {stack}"


@pytest.mark.parametrize("stack, environment", [("prod", "prod"), ("prod-eu", "prod"), ("dev-alice", "dev"), ("staging-2", "staging"),
                                                ("production", None), ("pr-123", None), ("devel", None)])
def test_the_environment_is_the_first_word_of_the_stack_name(stack, environment):
    assert STACK_ENVIRONMENT_EXCEPTIONS == {}, "an exception was added: extend this test with it"
    assert environment_of_stack(stack) == environment


def test_an_unbound_stack_name_is_refused(tmp_path):
    from carecircle.offline import evaluate_config
    from carecircle.stackfiles import load_stack_config

    project, config, secret_keys = load_stack_config("prod")
    with pytest.raises(ConfigError) as raised:
        evaluate_config("production", project, config, secret_keys)
    assert "does not say its environment" in problem_on(raised.value, "carecircle:environment").message


def test_the_stack_name_is_not_a_config_key():
    found = problem_on(refused("prod", overrides={"carecircle:stack": "dev"}), "carecircle:stack")
    assert found.message == "is not a known key (a typo?)"


@pytest.mark.parametrize("key, words", [
    ("carecirle:apiPort", "nothing in this program reads the namespace 'carecirle'"),
    ("docker:hots", "is not a config key of the docker provider"),
    ("aws:region", "nothing in this program reads the namespace 'aws'"),
])
def test_keys_nothing_reads_are_refused(key, words):
    found = problem_on(refused("dev", overrides={key: "x"}), key)
    assert words in found.message and found.fix == f"pulumi config rm {key} --stack dev"


def test_the_docker_providers_own_keys_and_the_engines_are_allowed():
    evaluate_stack("prod", overrides={"docker:sshOpts": '["-o","ServerAliveInterval=30"]', "pulumi:tags": '{"team":"care"}'})


# ---- trust that covers everyone -------------------------------------------------------------------

@pytest.mark.parametrize("key", ["carecircle:gatewayTrustedProxies", "carecircle:gatewayLoadBalancers", "carecircle:gatewayRateLimitAllowlist"])
@pytest.mark.parametrize("cidrs", [["0.0.0.0/0"], ["::/0"], ["0.0.0.0/1", "128.0.0.0/1"], ["10.0.0.0/8", "::/1", "8000::/1"]])
def test_trusting_every_address_is_refused_in_staging_and_prod(key, cidrs):
    for stack in ("staging", "prod"):
        assert "covers every address" in problem_on(refused(stack, overrides={key: cidrs}), key).message
    evaluate_stack("dev", overrides={key: cidrs})  # a developer's own machine


@pytest.mark.parametrize("pattern, words", [
    ("~^https://app\\.example|https://evil\\.example$", "top-level '|'"),
    ("~^https://(a|b)\\.example$|^https://evil\\.example$", "top-level '|'"),
    ("~^https://a\";add_header;\"\\.example$", "may hold only"),
    ("~^https://a\\.example$\"; add_header X 1; \"", "visible ASCII only"),
    ("~^https://a{1,3}\\.example$", "may hold only"),
    ("~https://a\\.example$", "must be anchored"),
    ("~^https://a\\.example", "must be anchored"),
    ("~^https://(a\\.example$", "not a valid regular expression"),
])
def test_cors_patterns_are_anchored_whole_and_hold_only_origin_characters(pattern, words):
    error = refused("prod", overrides={"carecircle:gatewayCorsOrigins": [pattern]})
    assert words in problem_on(error, "carecircle:gatewayCorsOrigins").message


def test_a_grouped_alternation_is_a_valid_cors_pattern():
    evaluate_stack("prod", overrides={"carecircle:gatewayCorsOrigins": ["~^https://(app|admin)\\.carecircle\\.example$"]})


@pytest.mark.parametrize("host, stack", [
    ("ssh://-oProxyCommand=touch@x", "prod"), ("ssh://deploy@-oProxyCommand=x", "prod"), ("ssh://deploy@host;reboot", "prod"),
    ("ssh://deploy@host:70000", "prod"), ("ssh://deploy@host\n", "prod"), ("ssh://deploy@", "prod"), ("ssh://host", "prod"),
    ("tcp://docker.example:2375", "prod"), ("tcp://127.0.0.1:2375", "dev"), ("unix:///var/run/docker.sock", "prod"),
    ("unix://relative.sock", "dev"), ("http://docker.example", "dev"),
])
def test_docker_host_takes_only_well_formed_ssh_or_a_dev_socket(host, stack):
    problem_on(refused(stack, overrides={"docker:host": host}), "docker:host")


@pytest.mark.parametrize("host, stack", [
    ("ssh://deploy@docker-host.example", "prod"), ("ssh://deploy@10.0.0.5:2222", "prod"), ("ssh://deploy@[2001:db8::1]", "prod"),
    ("unix:///var/run/docker.sock", "dev"),
])
def test_well_formed_docker_hosts_are_accepted(host, stack):
    evaluate_stack(stack, overrides={"docker:host": host})


# ---- numbers and addresses the consumer would refuse --------------------------------------------

def test_prod_hsts_max_age_has_a_floor():
    found = problem_on(refused("prod", overrides={"carecircle:gatewayHstsMaxAge": 300}), "carecircle:gatewayHstsMaxAge")
    assert "31536000" in found.message
    evaluate_stack("staging", overrides={"carecircle:gatewayHstsMaxAge": 300})


@pytest.mark.parametrize("stack, changes, key", [
    ("prod", {"carecircle:gatewayHttpsPort": 80}, "carecircle:gatewayHttpsPort"),
    ("prod", {"carecircle:gatewayPreviewPort": 443}, "carecircle:gatewayPreviewPort"),  # 0.0.0.0:443 holds 127.0.0.1:443
    ("dev", {"carecircle:postgresHostPort": 8080}, "carecircle:postgresHostPort"),
    ("dev", {"carecircle:redisHostPort": 5432}, "carecircle:redisHostPort"),
])
def test_a_port_published_twice_on_one_address_is_refused(stack, changes, key):
    found = problem_on(refused(stack, overrides=changes), key)
    assert "already published by" in found.message


def test_the_same_port_on_different_addresses_is_fine():
    evaluate_stack("dev", overrides={"carecircle:gatewayBindAddress": "127.0.0.2", "carecircle:postgresHostPort": 8080})


@pytest.mark.parametrize("subnet", ["172.17.0.0/24", "172.16.0.0/12", "172.17.255.0/24"])
def test_an_edge_subnet_on_dockers_default_bridge_is_refused(subnet):
    assert "default bridge" in problem_on(refused("dev", overrides={"carecircle:edgeSubnet": subnet}), "carecircle:edgeSubnet").message


@pytest.mark.parametrize("key, value, limit", [
    ("carecircle:gatewayRateLimitPerSecond", 100_001, "100000"), ("carecircle:gatewayRateLimitBurst", -1, "0 and 100000"),
    ("carecircle:gatewayUpstreamMaxFails", 0, "1 and 100"), ("carecircle:gatewayProxyConnectTimeout", "76s", "75s"),
    ("carecircle:gatewayProxyReadTimeout", "2h", "3600s"), ("carecircle:gatewayClientMaxBodySize", "2048m", "1024m"),
    ("carecircle:gatewayClientHeaderTimeout", "301s", "300s"), ("carecircle:apiPort", 65536, "65535"),
    ("carecircle:logMaxFiles", 101, "100"), ("carecircle:apiMemoryMb", 32, "64"), ("carecircle:traceSampleRate", "1.5", "at most 1"),
    ("carecircle:gatewayUserRateLimitPerSecond", 0, "1 and 100000"), ("carecircle:gatewayUserRateLimitBurst", 100_001, "0 and 100000"),
    ("carecircle:gatewayProxyNextUpstreamTries", 11, "1 and 10"), ("carecircle:gatewayProxyNextUpstreamTimeout", "61m", "3600s"),
    ("carecircle:gatewayResolverValid", "601s", "600s"), ("carecircle:gatewayUpstreamFailTimeout", "2h", "3600s"),
])
def test_numbers_beyond_what_the_consumer_takes_name_the_limit(key, value, limit):
    assert limit in problem_on(refused("staging", overrides={key: value}), key).message


@pytest.mark.parametrize("key", ["carecircle:gatewayTlsCertificatePath", "carecircle:gatewayTlsKeyPath", "carecircle:workersHeartbeatFile",
                                 "carecircle:apiHealthPath", "carecircle:gatewayServerName", "carecircle:namePrefix"])
def test_an_empty_string_fails_validation_not_later(key):
    problem_on(refused("staging", overrides={key: ""}), key)


def test_a_secure_value_faked_offline_still_validates():
    """Every secret key may be a `secure:` placeholder in a committed stack file: its fake is of its kind."""
    from carecircle.stackfiles import fake_secret

    secrets = {k.key: fake_secret(k.key, "v1:placeholder") for k in of_kind("secret")}
    assert "carecircle:sentryDsn" in secrets and "carecircle:jwtSecret" in secrets
    # alertEmailPassword goes with the rest of the e-mail receiver's keys (plain ones).
    email = {"carecircle:alertEmailTo": "oncall@carecircle.example", "carecircle:alertEmailFrom": "alerts@carecircle.example",
             "carecircle:alertEmailSmarthost": "smtp.example.com:587", "carecircle:alertEmailUsername": "alerts"}
    evaluate_stack("prod", overrides=email, secrets={key: value for key, value in secrets.items() if "Tls" not in key} | {
        "carecircle:gatewayTlsCertificate": secrets["carecircle:gatewayTlsCertificate"],
        "carecircle:gatewayTlsKey": secrets["carecircle:gatewayTlsKey"]})


# ---- properties: every key of a kind ------------------------------------------------------------

INVISIBLE = [" ", "\t", "\n", "\r", "\x0b", "\x0c", "\x00", "\x7f", "\u00a0", "\u2028", "\u200b", "\ufeff"]
LOOK_ALIKES = {"a": "\u0430", "e": "\u0435", "o": "\u043e", "p": "\u0440", "c": "\u0441", "x": "\u0445", "i": "\u0456",
               "0": "\uff10", "1": "\u0661", "2": "\u06f2", "3": "\u0969", "5": "\uff15", "/": "\u2215", ".": "\u2024", ":": "\uff1a"}
TEXT_KEYS = [k for k in every_key() if k.kind in ("str", "choice", "int", "float", "bool")
             or (k.kind == "secret" and "Tls" not in k.key)]


def disguised(value: str, draw) -> str:
    """`value` with one invisible character added or one character swapped for a look-alike."""
    swappable = [i for i, char in enumerate(value) if char in LOOK_ALIKES]
    if swappable and draw(st.booleans()):
        i = draw(st.sampled_from(swappable))
        return value[:i] + LOOK_ALIKES[value[i]] + value[i + 1:]
    char = draw(st.sampled_from(INVISIBLE))
    where = draw(st.sampled_from(["end", "start", "middle"]))
    if where == "end":
        return value + char
    if where == "start":
        return char + value
    middle = len(value) // 2
    return value[:middle] + char + value[middle:]


@PROPERTY
@given(data=st.data())
def test_invisible_and_look_alike_characters_are_refused_in_every_key(data):
    key: Key = data.draw(st.sampled_from(TEXT_KEYS))
    value = data.draw(st.builds(lambda d: disguised(str(key.value), d.draw), st.data()))
    problem_on(refused(key.stack, **override(key, value)), key.key)


@PROPERTY
@given(data=st.data())
def test_invisible_characters_are_refused_inside_list_elements(data):
    key: Key = data.draw(st.sampled_from([k for k in of_kind("list") if k.key != "carecircle:gatewayRoutes"]))
    import json

    elements = json.loads(key.value) if key.value else []
    elements = elements or {"carecircle:gatewayRateLimitAllowlist": ["10.0.0.0/8"], "carecircle:gatewayTrustedProxies": ["10.0.0.0/8"],
                            "carecircle:gatewayLoadBalancers": ["10.0.0.0/8"]}.get(key.key, ["x"])
    i = data.draw(st.integers(0, len(elements) - 1))
    elements[i] = data.draw(st.builds(lambda d: disguised(elements[i], d.draw), st.data()))
    problem_on(refused(key.stack, overrides={key.key: elements}), key.key)


NOT_INTEGERS = st.one_of(
    st.sampled_from(["1_000", "+3", "3.0", "1e3", "0x10", "010", "00", "3 ", " 3", "3\n", "٣", "３", "-", "", "true", "99999999999999"]),
    st.integers(min_value=1, max_value=9).map(lambda n: "0" + str(n)),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
)


@PROPERTY
@given(key=st.sampled_from(of_kind("int")), value=NOT_INTEGERS)
def test_integers_are_plain_ascii_decimal_in_every_integer_key(key, value):
    problem_on(refused(key.stack, **override(key, value)), key.key)


@PROPERTY
@given(key=st.sampled_from(of_kind("float")), value=st.sampled_from(["nan", "inf", "-inf", "1e400", "1e3", "0.5 ", "٠.٥", "0,5", "", ".5", "+0.5"]))
def test_decimals_are_finite_ascii_in_every_decimal_key(key, value):
    problem_on(refused(key.stack, **override(key, value)), key.key)


@PROPERTY
@given(key=st.sampled_from(of_kind("bool")), value=st.sampled_from(["yes", "no", "on", "off", "1", "0", "y", "t", "TRUE", "true ", ""]))
def test_booleans_are_true_or_false_in_every_boolean_key(key, value):
    problem_on(refused(key.stack, **override(key, value)), key.key)
