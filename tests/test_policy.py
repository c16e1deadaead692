"""The policy pack's rules: every stack passes, and each rule fires on a deliberately broken declaration."""

import copy

import pytest

from carecircle.audit.policy_check import check, load_policies
from carecircle.offline import evaluate_stack


def broken(evaluation, docker_name=None, name=None, **changes):
    """The evaluation's resources with one resource changed (by Docker name or resource name)."""
    resources = copy.deepcopy(evaluation.resources)
    target = next(r for r in resources if (docker_name and r.inputs.get("name") == docker_name) or r.name == name)
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


@pytest.mark.parametrize("stack", ["dev", "staging", "prod"])
def test_every_stack_passes(stacks, stack):
    assert check(stacks[stack].resources) == []


def test_the_pack_has_every_rule():
    assert {p.name for p in load_policies().POLICIES} == {
        "no-public-data-ports", "dev-ports-on-loopback", "container-operability", "images-pinned",
        "data-volumes-protected", "data-services-internal-only", "no-plaintext-secrets", "tls-on"}


@pytest.fixture(scope="module")
def staging_with_data():
    return evaluate_stack("staging", overrides={"carecircle:postgresMode": "container"})


def test_data_service_port_in_staging(staging_with_data):
    resources = broken(staging_with_data, "carecircle-staging-postgres",
                       ports=[{"internal": 5432, "external": 5432, "ip": "127.0.0.1"}])
    assert fired(resources) == {"no-public-data-ports"}


def test_dev_port_not_on_loopback(stacks):
    resources = broken(stacks["dev"], "carecircle-dev-gateway", ports=[{"internal": 8080, "external": 8080, "ip": "0.0.0.0"}])
    assert fired(resources) == {"dev-ports-on-loopback"}


@pytest.mark.parametrize("change", [{"healthcheck": None}, {"restart": "no"}, {"logOpts": {"max-size": "10m"}}, {"logDriver": "syslog"}])
def test_container_without_healthcheck_restart_or_rotation(stacks, change):
    assert fired(broken(stacks["prod"], "carecircle-prod-workers-1", **change)) == {"container-operability"}


def test_unpinned_images(stacks):
    assert fired(broken(stacks["staging"], "carecircle-staging-api-blue-1", image="ghcr.io/carecircle/api:latest")) == {"images-pinned"}
    assert fired(broken(stacks["staging"], "carecircle-staging-api-blue-1", image="ghcr.io/carecircle/api")) == {"images-pinned"}
    tag_only = broken(stacks["prod"], "carecircle-prod-api-blue-1", image="ghcr.io/carecircle/api:1.0.0")
    assert fired(tag_only) == {"images-pinned"}  # prod needs a digest by default...
    assert fired(tag_only, {"images-pinned": {"digestRequiredIn": []}}) == set()  # ...configurable


def test_unprotected_volume(staging_with_data):
    assert fired(broken(staging_with_data, "carecircle-staging-postgres-data", protect=False)) == {"data-volumes-protected"}


def test_data_service_on_a_public_network(stacks):
    assert fired(broken(stacks["dev"], "carecircle-dev-backend", internal=False)) == {"data-services-internal-only"}


@pytest.mark.parametrize("entry", ["POSTGRES_PASSWORD=postgres", "JWT_SECRET=changeme",
                                   "DATABASE_URL=postgresql://app:secret@db:5432/carecircle"])
def test_hard_coded_secret(stacks, entry):
    api = next(r for r in stacks["dev"].resources if r.inputs.get("name") == "carecircle-dev-api-blue-1")
    resources = broken(stacks["dev"], "carecircle-dev-api-blue-1", envs=[*api.inputs["envs"], entry])
    assert fired(resources) == {"no-plaintext-secrets"}


def test_gateway_without_https_in_prod(stacks):
    gateway = next(r for r in stacks["prod"].resources if r.inputs.get("name") == "carecircle-prod-gateway")
    http_only = [p for p in gateway.inputs["ports"] if int(p["internal"]) != 8443]
    assert fired(broken(stacks["prod"], "carecircle-prod-gateway", ports=http_only)) == {"tls-on"}


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
