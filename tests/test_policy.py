"""The policy pack's rules: every stack passes, and each rule fires on a deliberately broken declaration.

The counter-examples below are what config (or a careless program change) could forge: labels that
lie about the environment or the role, a port without a bind address, a data service that does not
say it is one. Each must still be caught."""

import copy

import pytest
from hypothesis import given
from hypothesis import strategies as st

from carecircle.audit.policy_check import check, load_policies
from carecircle.settings import loading
from helpers import DATA_SERVICES, strict_on_engine

pack = load_policies()
ALL_DATA = DATA_SERVICES
ROLE = "com.carecircle.role"


def _find(resources, docker_name=None, name=None):
    matches = [r for r in resources if (docker_name and r.inputs.get("name") == docker_name) or (name and r.name == name)]
    assert len(matches) == 1, f"expected one resource {docker_name or name}, found {len(matches)}"
    return matches[0]


def broken(evaluation, docker_name=None, name=None, **changes):
    """The evaluation's resources with one resource changed (by Docker name or resource name)."""
    resources = copy.deepcopy(evaluation.resources if hasattr(evaluation, "resources") else evaluation)
    target = _find(resources, docker_name, name)
    for key, value in changes.items():
        if key == "protect":
            target.protect = value
        elif value is None:
            target.inputs.pop(key, None)
        else:
            target.inputs[key] = value
    return resources


def fired(resources, config=None):
    return {v.policy for v in check(resources, config)}


@pytest.fixture(scope="module")
def strict_stacks(engine_stacks):
    """dev, and staging's and prod's config on one engine as a program would declare it in staging and prod
    (helpers.strict_on_engine; the settings refuse it): the pack's rules for containers there."""
    return {"dev": engine_stacks["dev"], **{stack: strict_on_engine(stack) for stack in ("staging", "prod")}}


@pytest.mark.parametrize("stack", ["dev", "staging", "prod"])
def test_every_stack_passes(stacks, engine_stacks, strict_stacks, stack):
    assert check(stacks[stack].resources) == []  # as committed: staging and prod on Swarm
    assert check(engine_stacks[stack].resources) == []  # their config rehearsed on one engine (dev stacks)
    assert check(strict_stacks[stack].resources) == []  # and those containers judged as staging's and prod's


def test_the_pack_has_every_rule():
    assert {p.name for p in load_policies().POLICIES} == {
        "no-public-data-ports", "dev-ports-on-loopback", "container-operability", "images-pinned",
        "data-volumes-protected", "data-services-internal-only", "no-plaintext-secrets", "tls-on",
        "swarm-replicas-spread", "swarm-rollback-on-failure", "swarm-no-env-secrets", "service-operability", "alerts-reach-a-person", "monitoring-on",
        "encrypted-connections", "production-runtime", "cors-credentials-owned-origins"}


@pytest.fixture(scope="module")
def staging_with_data():
    return strict_on_engine("staging", overrides={"carecircle:postgresMode": "container"})


def test_data_service_port_in_staging(staging_with_data):
    resources = broken(staging_with_data, "carecircle-dev-staging-rehearsal-postgres",
                       ports=[{"internal": 5432, "external": 5432, "ip": "127.0.0.1"}])
    assert fired(resources) == {"no-public-data-ports"}


def test_dev_port_not_on_loopback(strict_stacks):
    resources = broken(strict_stacks["dev"], "carecircle-dev-gateway", ports=[{"internal": 8080, "external": 8080, "ip": "0.0.0.0"}])
    assert fired(resources) == {"dev-ports-on-loopback"}


@pytest.mark.parametrize("change", [{"healthcheck": None}, {"restart": "no"}, {"logOpts": {"max-size": "10m"}}, {"logDriver": "syslog"}])
def test_container_without_healthcheck_restart_or_rotation(strict_stacks, change):
    # In staging/prod a container that does not restart also breaks production-runtime.
    expected = {"container-operability", *(["production-runtime"] if "restart" in change else [])}
    assert fired(broken(strict_stacks["prod"], "carecircle-dev-prod-rehearsal-workers-1", **change)) == expected


def test_unpinned_images(strict_stacks):
    assert fired(broken(strict_stacks["staging"], "carecircle-dev-staging-rehearsal-api-blue-1", image="ghcr.io/carecircle/api:latest")) == {"images-pinned"}
    assert fired(broken(strict_stacks["staging"], "carecircle-dev-staging-rehearsal-api-blue-1", image="ghcr.io/carecircle/api")) == {"images-pinned"}
    tag_only = broken(strict_stacks["prod"], "carecircle-dev-prod-rehearsal-api-blue-1", image="ghcr.io/carecircle/api:1.0.0")
    assert fired(tag_only) == {"images-pinned"}  # prod needs a digest by default...
    assert fired(tag_only, {"images-pinned": {"digestRequiredIn": []}}) == set()  # ...configurable


def test_unprotected_volume(staging_with_data):
    assert fired(broken(staging_with_data, "carecircle-dev-staging-rehearsal-postgres-data", protect=False)) == {"data-volumes-protected"}


def test_data_service_on_a_public_network(strict_stacks):
    assert fired(broken(strict_stacks["dev"], "carecircle-dev-backend", internal=False)) == {"data-services-internal-only"}


@pytest.mark.parametrize("entry", ["POSTGRES_PASSWORD=postgres", "JWT_SECRET=changeme",
                                   "DATABASE_URL=postgresql://app:secret@db:5432/carecircle"])
def test_hard_coded_secret(strict_stacks, entry):
    api = next(r for r in strict_stacks["dev"].resources if r.inputs.get("name") == "carecircle-dev-api-blue-1")
    resources = broken(strict_stacks["dev"], "carecircle-dev-api-blue-1", envs=[*api.inputs["envs"], entry])
    assert fired(resources) == {"no-plaintext-secrets"}


def test_gateway_without_https_in_prod(strict_stacks):
    gateway = next(r for r in strict_stacks["prod"].resources if r.inputs.get("name") == "carecircle-dev-prod-rehearsal-gateway")
    http_only = [p for p in gateway.inputs["ports"] if int(p["internal"]) != 8443]
    assert fired(broken(strict_stacks["prod"], "carecircle-dev-prod-rehearsal-gateway", ports=http_only)) == {"tls-on"}


def test_the_pack_serves_every_rule_as_the_pulumi_cli_loads_it():
    """Run policy/__main__.py the way `pulumi preview --policy-pack policy` does: it prints the port of
    its analyzer; ask the analyzer what it enforces."""
    import subprocess
    import sys

    import grpc
    from google.protobuf import empty_pb2
    from pulumi.runtime.proto import analyzer_pb2_grpc

    from conftest import REPO_ROOT

    process = subprocess.Popen([sys.executable, "__main__.py"], cwd=REPO_ROOT / "policy", stdout=subprocess.PIPE, text=True)
    try:
        port = int(process.stdout.readline())
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            info = analyzer_pb2_grpc.AnalyzerStub(channel).GetAnalyzerInfo(empty_pb2.Empty(), timeout=10)
    finally:
        process.terminate()
        process.wait(timeout=10)
    assert info.name == "carecircle"
    assert {p.name for p in info.policies} == {p.name for p in load_policies().POLICIES}
    assert all(p.enforcementLevel == 1 for p in info.policies)  # mandatory


# --- The environment is the stack's, whatever the labels say ---------------------------------------

def relabeled(resources, **values):
    """Every resource's com.carecircle.<key> label set to value (what config could write)."""
    resources = copy.deepcopy(resources)
    for resource in resources:
        for label in resource.inputs.get("labels") or []:
            key = label["label"].removeprefix("com.carecircle.")
            if key in values:
                label["value"] = values[key]
    return resources


def on_stack(resources, stack):
    """The same resources as the engine would name them in another stack."""
    resources = copy.deepcopy(resources)
    for resource in resources:
        old = pack.stack_of(resource.urn)
        assert old, resource.urn
        resource.urn = resource.urn.replace(f"urn:pulumi:{old}::", f"urn:pulumi:{stack}::", 1)
    return resources


STACK_NAMES = ["dev", "staging", "prod", "prod-eu", "dev-alice", "staging-2", "staging-eu-west", "production", "develop",
               "qa", "prod_eu", "Prod", "PROD", "-prod", "", "dev-", "prod--x", "dev.1", "stagingx", "prod-", "prod.eu",
               "pr0d", "staging\n", " prod"]


def test_pack_and_program_bind_stack_names_alike():
    assert pack.STACK_ENVIRONMENT_EXCEPTIONS == loading.STACK_ENVIRONMENT_EXCEPTIONS
    assert pack.ENVIRONMENTS == loading.ENVIRONMENTS
    for name in [*STACK_NAMES, *loading.STACK_ENVIRONMENT_EXCEPTIONS]:
        assert pack.environment_of_stack(name) == loading.environment_of_stack(name), name
    assert pack.environment_of_stack("prod-eu") == "prod" and pack.environment_of_stack("production") is None


def test_pack_and_program_apply_an_exceptions_table_alike(monkeypatch):
    """The tables are empty today; the day one gets an entry, both must honour it the same way."""
    table = {"legacy-eu": "prod", "prod-sandbox": "dev", "qa": "staging"}
    monkeypatch.setattr(loading, "STACK_ENVIRONMENT_EXCEPTIONS", table)
    monkeypatch.setattr(pack, "STACK_ENVIRONMENT_EXCEPTIONS", table)
    for name in [*STACK_NAMES, *table]:
        assert pack.environment_of_stack(name) == loading.environment_of_stack(name), name
    assert pack.environment("urn:pulumi:prod-sandbox::carecircle::docker:index/volume:Volume::x") == "dev"


@given(st.one_of(st.text(max_size=24), st.builds(lambda head, tail: head + tail,
                                                   st.sampled_from(["dev", "staging", "prod", "Dev", "prod-", "staging_"]),
                                                   st.text(alphabet="-_.abcdefgprodstaging0123456789\n ", max_size=12))))
def test_pack_and_program_agree_on_any_stack_name(name):
    assert pack.environment_of_stack(name) == loading.environment_of_stack(name)


@pytest.mark.parametrize("urn, expected", [
    ("urn:pulumi:prod::carecircle::docker:index/container:Container::x", "prod"),
    ("urn:pulumi:prod-eu::carecircle::carecircle:app:AppService$docker:index/container:Container::x", "prod"),
    ("urn:pulumi:dev-alice::carecircle::docker:index/volume:Volume::x", "dev"),
    ("urn:pulumi:staging::carecircle::docker:index/volume:Volume::x", "staging"),
    ("urn:pulumi:qa::carecircle::docker:index/volume:Volume::x", "prod"),  # unbound: the strictest
    ("urn:pulumi:::carecircle::docker:index/volume:Volume::x", "prod"),
    ("not-a-urn", "prod"),
])
def test_environment_comes_from_the_urn(urn, expected):
    assert pack.environment(urn) == expected


def test_prod_stack_labelled_dev_still_gets_the_prod_rules(strict_stacks):
    forged = relabeled(strict_stacks["prod"].resources, environment="dev", stack="dev")
    assert {label["value"] for r in forged for label in r.inputs.get("labels") or [] if label["label"].endswith("environment")} == {"dev"}
    assert fired(forged) == set()
    assert fired(broken(forged, "carecircle-dev-prod-rehearsal-api-blue-1", image="ghcr.io/carecircle/api:1.0.0")) == {"images-pinned"}
    assert fired(broken(forged, "carecircle-dev-prod-rehearsal-api-blue-1", image="ghcr.io/carecircle/api:latest")) == {"images-pinned"}
    assert fired(broken(forged, "carecircle-dev-prod-rehearsal-prometheus-data", protect=False)) == {"data-volumes-protected"}
    gateway = _find(forged, "carecircle-dev-prod-rehearsal-gateway")
    http_only = [p for p in gateway.inputs["ports"] if int(p["internal"]) != 8443]
    assert fired(broken(forged, "carecircle-dev-prod-rehearsal-gateway", ports=http_only)) == {"tls-on"}


def test_dev_stack_labelled_prod_still_gets_the_dev_rules(strict_stacks):
    forged = relabeled(strict_stacks["dev"].resources, environment="prod", stack="prod")
    assert fired(forged) == set()
    public = broken(forged, "carecircle-dev-gateway", ports=[{"internal": 8080, "external": 8080, "ip": "0.0.0.0"}])
    assert fired(public) == {"dev-ports-on-loopback"}


def test_an_unbound_stack_name_gets_the_prod_rules(strict_stacks):
    dev_as_qa = on_stack(strict_stacks["dev"].resources, "qa")
    violations = {(v.policy, v.message.split(":")[0]) for v in check(dev_as_qa)}
    # dev's data services publish (on loopback) and its images carry no digest: both refused in prod
    assert {("no-public-data-ports", f"carecircle-dev-{s}") for s in ("postgres", "redis", "rabbitmq")} <= violations
    assert ("images-pinned", "carecircle-dev-postgres") in violations
    assert not [v for v in violations if v[0] == "dev-ports-on-loopback"]
    assert fired(on_stack(strict_stacks["prod"].resources, "prod-eu")) == set()
    assert fired(on_stack(strict_stacks["dev"].resources, "dev-alice")) == set()


# --- A container is what it runs, whatever its role label says ---------------------------------------

@pytest.fixture(scope="module")
def staging_all_data():
    return strict_on_engine("staging", overrides=ALL_DATA)


def without_role(resource_inputs_labels, role=None):
    labels = [label for label in resource_inputs_labels if label["label"] != ROLE]
    return labels + ([{"label": ROLE, "value": role}] if role else [])


@pytest.mark.parametrize("role", [None, "api"])  # the label dropped, or lying
def test_postgres_without_its_role_label_publishing_in_staging_is_flagged(staging_with_data, role):
    postgres = _find(staging_with_data.resources, "carecircle-dev-staging-rehearsal-postgres")
    resources = broken(staging_with_data, "carecircle-dev-staging-rehearsal-postgres", labels=without_role(postgres.inputs["labels"], role),
                       ports=[{"internal": 5432, "external": 5432, "ip": "127.0.0.1"}])
    assert fired(resources) == {"no-public-data-ports"}


ANONYMOUS = {"image": "ghcr.io/carecircle/store:1.0", "volumes": None, "command": None, "entrypoints": None, "mounts": None,
             "ports": [{"internal": 8000, "external": 8000, "ip": "127.0.0.1"}]}
DIGEST = "@sha256:" + "a" * 64


@pytest.mark.parametrize("evidence", [
    {"image": "registry.example:5000/library/postgres:15.6" + DIGEST},
    {"image": "docker.io/bitnami/redis:7.2"},
    {"image": "mongo:7"},
    {"image": "MariaDB:11"},
    {"volumes": [{"volumeName": "store", "containerPath": "/var/lib/postgresql/data/pgdata"}]},
    {"volumes": [{"hostPath": "/srv/rabbit", "containerPath": "/var/lib/rabbitmq/"}]},
    {"mounts": [{"type": "volume", "source": "store", "target": "/data"}]},
    {"command": ["sh", "-c", "exec redis-server --appendonly yes"]},
    {"entrypoints": ["/usr/local/bin/mongod", "--bind_ip_all"]},
    {"command": ["postgres", "-c", "max_connections=200"]},
    {"ports": [{"internal": 6379, "external": 6379, "ip": "127.0.0.1"}]},
    {"labels": [{"label": ROLE, "value": "rabbitmq"}]},  # the label is still evidence, just never the only kind
], ids=lambda evidence: next(iter(evidence)) + ":" + str(next(iter(evidence.values())))[:40])
def test_a_data_service_is_recognised_by_any_one_piece_of_evidence(staging_with_data, evidence):
    postgres = _find(staging_with_data.resources, "carecircle-dev-staging-rehearsal-postgres")
    base = {**ANONYMOUS, "labels": without_role(postgres.inputs["labels"])}
    anonymous = broken(staging_with_data, "carecircle-dev-staging-rehearsal-postgres", **base)
    assert fired(anonymous) == set(), "without evidence it is not a data service: the cases below each add one piece"
    assert fired(broken(anonymous, "carecircle-dev-staging-rehearsal-postgres", **evidence)) == {"no-public-data-ports"}


@pytest.mark.parametrize("stack", ["dev", "staging_all_data", "prod"])
def test_what_each_real_container_is(request, strict_stacks, stack):
    evaluation = strict_stacks.get(stack) or request.getfixturevalue(stack)
    data = {name for name, c in evaluation.containers.items() if pack.data_service_evidence(c.inputs)}
    environment = pack.environment(next(iter(evaluation.containers.values())).urn)
    gateways = {name for name, c in evaluation.containers.items() if pack.gateway_evidence(c.inputs, environment)}
    prefix = f"carecircle-{evaluation.stack}-"
    expected_data = {"postgres", "redis", "rabbitmq"} if stack != "prod" else set()
    assert data == {prefix + s for s in expected_data}  # the exporters, prometheus and the apps are not
    assert gateways == {prefix + "gateway"}


def test_data_service_on_a_routable_network_without_its_label_is_flagged(strict_stacks):
    redis = _find(strict_stacks["dev"].resources, "carecircle-dev-redis")
    unlabelled = broken(strict_stacks["dev"], "carecircle-dev-redis", labels=without_role(redis.inputs["labels"]))
    assert fired(unlabelled) == set()
    on_edge = broken(unlabelled, "carecircle-dev-redis", networksAdvanced=[{"name": "carecircle-dev-edge"}])
    assert fired(on_edge) == {"data-services-internal-only"}
    also_edge = broken(unlabelled, "carecircle-dev-redis", networksAdvanced=[{"name": "carecircle-dev-backend"}, {"name": "carecircle-dev-edge"}])
    assert fired(also_edge) == {"data-services-internal-only"}
    default_bridge = broken(unlabelled, "carecircle-dev-redis", networksAdvanced=None)
    assert fired(default_bridge) == {"data-services-internal-only"}
    host = broken(unlabelled, "carecircle-dev-redis", networkMode="host")
    assert fired(host) == {"data-services-internal-only", "dev-ports-on-loopback"}


@pytest.mark.parametrize("port", [{"internal": 8080, "external": 8080}, {"internal": 8080, "external": 8080, "ip": ""}],
                         ids=["ip-missing", "ip-empty"])
def test_dev_port_without_a_bind_address_is_flagged(strict_stacks, port):
    """Docker binds a port published without an address to 0.0.0.0: every interface of the host."""
    gateway = _find(strict_stacks["dev"].resources, "carecircle-dev-gateway")
    ports = [p for p in gateway.inputs["ports"] if int(p["internal"]) != 8080] + [port]
    violations = check(broken(strict_stacks["dev"], "carecircle-dev-gateway", ports=ports))
    assert [(v.policy, v.message) for v in violations] == [
        ("dev-ports-on-loopback", "carecircle-dev-gateway: port 8080 is published on 0.0.0.0, not 127.0.0.1")]


def test_gateway_without_its_label_still_needs_https(strict_stacks):
    gateway = _find(strict_stacks["prod"].resources, "carecircle-dev-prod-rehearsal-gateway")
    http_only = [p for p in gateway.inputs["ports"] if int(p["internal"]) != 8443]
    unlabelled = broken(strict_stacks["prod"], "carecircle-dev-prod-rehearsal-gateway", labels=without_role(gateway.inputs["labels"], "workers"))
    assert fired(unlabelled) == set()
    assert fired(broken(unlabelled, "carecircle-dev-prod-rehearsal-gateway", ports=http_only)) == {"tls-on"}
    loopback_only = [{**p, "ip": "127.0.0.1"} for p in http_only]  # an nginx image publishing ports is the gateway
    assert fired(broken(unlabelled, "carecircle-dev-prod-rehearsal-gateway", ports=loopback_only)) == {"tls-on"}
    https_on_loopback = [{**p, "ip": "127.0.0.1"} if int(p["internal"]) == 8443 else p for p in gateway.inputs["ports"]]
    assert fired(broken(unlabelled, "carecircle-dev-prod-rehearsal-gateway", ports=https_on_loopback)) == {"tls-on"}


def test_any_container_published_to_the_network_in_prod_must_serve_https(strict_stacks):
    api = broken(strict_stacks["prod"], "carecircle-dev-prod-rehearsal-api-blue-1", ports=[{"internal": 3000, "external": 3000}])
    assert fired(api) == {"tls-on"}


@pytest.mark.parametrize("change", [
    {"labels": [{"label": "com.carecircle.db", "value": "postgresql://carecircle:0123456789abcdef0123@db:5432/x"}]},
    {"command": ["node", "worker.js", "--db=postgresql://carecircle:0123456789abcdef0123@db:5432/x"]},
    {"healthcheck": {"tests": ["CMD", "pg_isready", "-d", "postgresql://u:0123456789abcdef0123@db/x"], "interval": "10s"}},
], ids=["label", "command", "healthcheck"])
def test_url_with_a_password_outside_the_environment(strict_stacks, change):
    resources = broken(strict_stacks["dev"], "carecircle-dev-workers-1", **change)
    assert fired(resources) == {"no-plaintext-secrets"}


def test_evidence_that_a_preview_cannot_know_yet_is_skipped_not_fatal():
    """In a preview the engine hands the pack unknown values (behind pulumi-policy's proxy, which
    raises on reading one): the other evidence still counts."""
    from pulumi_policy.proxy import UNKNOWN_STRING_VALUE, unknown_checking_proxy

    props = unknown_checking_proxy({"name": "x", "image": UNKNOWN_STRING_VALUE,
                                    "volumes": [{"volumeName": UNKNOWN_STRING_VALUE, "containerPath": "/var/lib/postgresql/data"}],
                                    "ports": [{"internal": 5432.0, "external": 5432.0}]})
    assert pack.data_service_evidence(props) == ["data mounted at /var/lib/postgresql/data", "serves data port 5432"]
    assert pack.gateway_evidence(props, "prod") == ["publishes ports on 0.0.0.0"]
