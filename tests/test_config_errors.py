"""Invalid config stops the program before anything is declared, with one message that names
every offending key, the stack and the command that fixes it."""

import string

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from carecircle.offline import evaluate_stack
from carecircle.settings import ConfigError, Settings
from helpers import on_engine


def config_error(stack, overrides=None, secrets=None) -> ConfigError:
    with pytest.raises(ConfigError) as raised:
        evaluate_stack(stack, overrides=overrides, secrets=secrets)
    error = raised.value
    assert error.declared == [], "resources were declared before the config error"
    return error


def problem(error: ConfigError, key: str, path: str = ""):
    matches = [p for p in error.problems if p.key == key and p.path == path]
    assert matches, f"no problem reported for {key}{path}: {error}"
    assert f"{key}{path}" in str(error) and matches[0].fix in str(error)
    return matches[0]


def test_prod_needs_two_api_replicas():
    found = problem(config_error("prod", {"carecircle:apiBlueReplicas": 1}), "carecircle:apiBlueReplicas")
    assert "at least 2" in found.message
    assert found.fix == "pulumi config set carecircle:apiBlueReplicas 2 --stack prod"


def test_staging_needs_tls():
    found = problem(config_error("staging", {"carecircle:gatewayTls": False}), "carecircle:gatewayTls")
    assert found.fix == "pulumi config set carecircle:gatewayTls true --stack staging"


@pytest.mark.parametrize("image", ["ghcr.io/carecircle/api:latest", "ghcr.io/carecircle/api"])
def test_prod_images_must_be_pinned(image):
    found = problem(config_error("prod", {"carecircle:apiBlueImage": image}), "carecircle:apiBlueImage")
    assert "pinned" in found.message
    assert found.fix.startswith("pulumi config set carecircle:apiBlueImage 'ghcr.io/carecircle/api:<version>'")


def test_dev_may_use_an_unpinned_image():
    evaluate_stack("dev", overrides={"carecircle:redisImage": "redis"})


def test_prod_images_may_be_pinned_by_digest():
    evaluate_stack("prod", overrides={"carecircle:apiBlueImage": "ghcr.io/carecircle/api@sha256:" + "a" * 64})


@pytest.mark.parametrize("key", ["carecircle:postgresHostPort", "carecircle:redisHostPort", "carecircle:rabbitmqManagementHostPort"])
def test_staging_publishes_no_data_service_port(key):
    found = problem(config_error("staging", {key: 5432}), key)
    assert found.fix == f"pulumi config rm {key} --stack staging"


@pytest.mark.parametrize("key, mode", [
    ("carecircle:databaseUrl", "carecircle:postgresMode"),
    ("carecircle:redisUrl", "carecircle:redisMode"),
    ("carecircle:rabbitmqUrl", "carecircle:rabbitmqMode"),
])
def test_external_data_service_needs_its_secret_url(key, mode):
    found = problem(config_error("prod", {key: None}), key)
    assert f"required when {mode} is external" in found.message
    assert found.fix.startswith(f"pulumi config set --secret {key} ")


def test_secret_url_must_have_the_right_scheme():
    error = config_error("prod", secrets={"carecircle:redisUrl": "http://oops.example"})
    assert "redis:// or rediss://" in problem(error, "carecircle:redisUrl").message
    assert "oops.example" not in str(error)  # never echo a secret


def test_supplied_jwt_secret_must_be_long():
    error = config_error("dev", secrets={"carecircle:jwtSecret": "too-short-secret"})
    found = problem(error, "carecircle:jwtSecret")
    assert "at least 32" in found.message
    assert found.fix.startswith("pulumi config set --secret carecircle:jwtSecret")
    assert "too-short-secret" not in str(error)


def test_secret_key_stored_in_plain_text_is_refused():
    error = config_error("dev", {"carecircle:jwtSecret": "x" * 40})
    assert "plain text" in problem(error, "carecircle:jwtSecret").message
    assert "x" * 40 not in str(error)


@pytest.mark.parametrize("key, value", [("carecircle:apiBlueReplicas", 0), ("carecircle:workersReplicas", -1)])
def test_replica_floors(key, value):
    problem(config_error("dev", {key: value}), key)


def test_zero_workers_is_allowed():
    evaluation = evaluate_stack("dev", overrides={"carecircle:workersReplicas": 0})
    assert not [n for n in evaluation.containers if "workers" in n]


@pytest.mark.parametrize("key, value", [
    ("carecircle:apiPort", 0), ("carecircle:gatewayHttpPort", 70000), ("carecircle:postgresHostPort", "http"),
])
def test_port_numbers_must_be_valid(key, value):
    problem(config_error("dev", {key: value}), key)


@pytest.mark.parametrize("key, value", [("carecircle:namePrefix", "Care Circle!"), ("carecircle:postgresUser", "drop;table")])
def test_names_must_be_safe(key, value):
    problem(config_error("dev", {key: value}), key)


def test_prod_needs_a_remote_docker_host():
    found = problem(config_error("prod", {"docker:host": None}), "docker:host")
    assert found.fix == "pulumi config set docker:host ssh://deploy@docker-host.example --stack prod"


def test_unknown_key_is_a_typo():
    found = problem(config_error("dev", {"carecircle:apiReplica": 2}), "carecircle:apiReplica")
    assert found.fix == "pulumi config rm carecircle:apiReplica --stack dev"


def test_bad_route_reports_its_path_inside_the_list():
    error = config_error("dev", {"carecircle:gatewayRoutes": [{"path": "api", "service": "web"}]})
    assert problem(error, "carecircle:gatewayRoutes", "[0].path").fix == (
        "pulumi config set --path 'carecircle:gatewayRoutes[0].path' /api/ --stack dev")
    problem(error, "carecircle:gatewayRoutes", "[0].service")


def test_tls_needs_certificate_and_key():
    error = config_error("prod", {"carecircle:gatewayTlsKey": None})
    assert "certificate and its key" in problem(error, "carecircle:gatewayTlsKey").message


def test_build_context_is_dev_only():
    problem(config_error("prod", {"carecircle:apiBuildContext": "dev/stub-app"}), "carecircle:apiBuildContext")


def test_every_problem_in_one_message():
    error = config_error("prod", {"carecircle:apiBlueReplicas": 1, "carecircle:gatewayTls": False, "carecircle:apiBlueImage": "x:latest"})
    text = str(error)
    assert text.startswith("Invalid configuration for stack 'prod' (3 problems); nothing was declared.")
    for key in ("carecircle:apiBlueReplicas", "carecircle:gatewayTls", "carecircle:apiBlueImage"):
        assert key in text
    assert "Traceback" not in text


@pytest.mark.parametrize("key, value, words", [
    ("carecircle:gatewayRateLimitAllowlist", ["10.0.0.1/8"], "not a CIDR"),
    ("carecircle:gatewayTrustedProxies", ["lb.internal"], "not a CIDR"),
    ("carecircle:gatewayCorsOrigins", ["*"], "not an origin"),
    ("carecircle:gatewayCorsOrigins", ["https://app.example/path"], "not an origin"),
    ("carecircle:gatewayCorsOrigins", ["~https://.*\\.example"], "must be anchored"),
    ("carecircle:gatewayProxyReadTimeout", "60 seconds", "nginx time"),
    ("carecircle:gatewayClientMaxBodySize", "1 GB", "nginx size"),
    ("carecircle:gatewayTlsProfile", "old", "'modern' or 'intermediate'"),
    ("carecircle:gatewayLoadBalancers", ["lb.internal"], "not a CIDR"),
    ("carecircle:gatewayResolverValid", "500ms", "whole seconds"),
    ("carecircle:gatewayUpstreamFailTimeout", "1500ms", "whole seconds"),
    ("carecircle:gatewaySessionCookie", "sid;evil", "cookie name"),
    ("carecircle:gatewaySessionCookie", "s" * 65, "at most 64"),
    ("carecircle:gatewayProxyNextUpstreamTries", 0, "between 1 and 10"),
    ("carecircle:gatewayRoutes", [{"path": "/api/", "service": "api", "websocket": "yes"}], "true or false"),
])
def test_gateway_settings_are_checked(key, value, words):
    error = config_error("staging", {key: value})
    found = [p for p in error.problems if p.key == key]  # a list element is reported at its index
    assert found and words in found[0].message, str(error)


def test_load_balancers_and_trusted_proxies_exclude_each_other():
    error = config_error("prod", {"carecircle:gatewayLoadBalancers": ["10.1.0.0/16"], "carecircle:gatewayTrustedProxies": ["10.2.0.0/16"]})
    found = problem(error, "carecircle:gatewayTrustedProxies")
    assert "not both" in found.message and "written by the client" in found.message
    assert found.fix == "set carecircle:gatewayTrustedProxies in Pulumi.prod.yaml, e.g. []"
    evaluate_stack("prod", overrides={"carecircle:gatewayLoadBalancers": ["10.1.0.0/16"]})  # either alone is fine
    evaluate_stack("prod", overrides={"carecircle:gatewayTrustedProxies": ["10.2.0.0/16"]})


@pytest.mark.parametrize("retries, read", [("60s", "60s"), ("2m", "60s"), ("1500ms", "1s")])
def test_retries_must_end_before_a_read_timeout(retries, read):
    error = config_error("staging", {"carecircle:gatewayProxyNextUpstreamTimeout": retries, "carecircle:gatewayProxyReadTimeout": read})
    found = problem(error, "carecircle:gatewayProxyNextUpstreamTimeout")
    assert f"shorter than gatewayProxyReadTimeout ({read})" in found.message
    evaluate_stack("staging", overrides={"carecircle:gatewayProxyNextUpstreamTimeout": "999ms", "carecircle:gatewayProxyReadTimeout": "1s",
                                         "carecircle:gatewayProxyConnectTimeout": "333ms"})


def test_switching_to_a_pool_without_an_image_is_refused():
    found = problem(config_error("prod", {"carecircle:apiActiveColor": "green"}), "carecircle:apiGreenImage")
    assert "green pool runs" in found.message
    # and the (now active) green pool needs its replicas too
    assert "at least 2" in problem(config_error("prod", {"carecircle:apiActiveColor": "green"}), "carecircle:apiGreenReplicas").message


def test_a_running_idle_pool_needs_an_image():
    problem(config_error("staging", {"carecircle:apiGreenReplicas": 2}), "carecircle:apiGreenImage")


def test_idle_pool_may_scale_to_zero_without_an_image():
    evaluation = evaluate_stack("prod", overrides={"carecircle:apiGreenReplicas": 0})
    assert not [name for name in evaluation.containers if "green" in name]


def test_build_context_and_pool_image_exclude_each_other():
    found = problem(config_error("dev", {"carecircle:apiBlueImage": "ghcr.io/carecircle/api:1.0.0"}), "carecircle:apiBlueImage")
    assert "apiBuildContext" in found.message


def test_active_pool_needs_a_replica_even_in_dev():
    problem(config_error("dev", {"carecircle:apiBlueReplicas": 0}), "carecircle:apiBlueReplicas")


def test_replicas_must_fit_the_edge_subnet():
    """On one engine the pools have fixed addresses in the edge subnet; Swarm gives tasks their own."""
    found = problem(config_error("dev", {"carecircle:apiBlueReplicas": 57}), "carecircle:apiBlueReplicas")
    assert "at most 56 replicas per pool" in found.message
    on_engine("prod", {"carecircle:apiBlueReplicas": 57, "carecircle:edgeSubnet": "172.30.0.0/23"})  # prod's config on one engine
    evaluate_stack("prod", overrides={"carecircle:apiBlueReplicas": 57, "carecircle:swarmConvergeTimeout": "67m"})


@pytest.mark.parametrize("subnet", ["8.8.8.0/24", "172.30.0.0/27", "172.30.0.1/24", "not-a-subnet"])
def test_edge_subnet_must_be_private_and_large_enough(subnet):
    problem(config_error("dev", {"carecircle:edgeSubnet": subnet}), "carecircle:edgeSubnet")


def test_cors_credentials_need_explicit_origins():
    error = config_error("dev", {"carecircle:gatewayCorsAllowCredentials": True, "carecircle:gatewayCorsOrigins": []})
    assert "explicit list of origins" in problem(error, "carecircle:gatewayCorsAllowCredentials").message


# ---- property: malformed settings of every kind end in the clear error ----------------------

KEYS = [f"carecircle:{field.alias}" if ":" not in (field.alias or "") else field.alias
        for name, field in Settings.model_fields.items() if name != "stack"] + ["carecircle:notAKey"]
junk = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-10**6, max_value=10**6),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(alphabet=string.printable, max_size=40),
    st.lists(st.one_of(st.text(max_size=5), st.integers()), max_size=3),
    st.dictionaries(st.text(max_size=6), st.one_of(st.text(max_size=6), st.integers()), max_size=3),
    st.lists(st.dictionaries(st.sampled_from(["path", "service", "stripPrefix", "x"]),
                             st.one_of(st.text(max_size=8), st.booleans()), max_size=3), max_size=2),
)


@hypothesis_settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stack=st.sampled_from(["dev", "staging", "prod"]), changes=st.dictionaries(st.sampled_from(KEYS), junk, min_size=1, max_size=4))
def test_malformed_settings_always_end_in_the_clear_error(stack, changes):
    try:
        evaluation = evaluate_stack(stack, overrides=changes)
    except ConfigError as error:
        assert error.declared == []
        assert error.problems
        for found in error.problems:
            assert found.key.startswith(("carecircle:", "docker:host", "docker:registryAuth", "docker:sshOpts"))
            assert found.fix.startswith(("pulumi config", "set carecircle:", "set docker:sshOpts"))
        assert str(error).startswith(f"Invalid configuration for stack '{stack}'")
    else:
        assert evaluation.containers  # a valid change still declares the stack
