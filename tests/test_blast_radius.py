"""What routine changes do to prod, by pulumi-docker's and pulumi-command's own replace semantics. On
Swarm (prod as committed) nothing is ever replaced delete-first: a change inside a pool is a rolling
update, a secret rotation a new secret plus a rolling update; no release step, switch, route, limit or
certificate change restarts anything. On one engine (prod's config rehearsed in a dev stack, dev's platform)
secrets and images replace containers delete-first."""

import pytest

from carecircle.audit import blast_radius
from carecircle.audit.changes import action_for, by_action, compare, live_changes
from carecircle.offline import evaluate_stack
from carecircle.provider_semantics import SERVICE
from helpers import on_engine


@pytest.fixture(scope="module")
def results():
    return {scenario.change: by_action(changes) for scenario, changes in blast_radius.run("prod", on_engine=True)}


@pytest.fixture(scope="module")
def swarm_results():
    return {scenario.change: changes for scenario, changes in blast_radius.run("prod")}


API, WORKERS_SERVICE, GATEWAYS = "carecircle-prod-api-blue", "carecircle-prod-workers", ["gateway-1-config", "gateway-2-config"]
# Each Prometheus reloads its targets and rules in place (a new pool's tasks; ApiDown follows the active pool).
PROMETHEUS = ["monitoring-prometheus-1-config", "monitoring-prometheus-2-config"]


@pytest.mark.parametrize("change, rolled, replaced, updated", [
    ("release: bring up the idle pool (green) on a new image", [], [], [*GATEWAYS, *PROMETHEUS]),
    ("new image on the running idle pool", ["carecircle-prod-api-green"], ["carecircle-prod-api-green-rollout"], []),
    ("switch the active pool (blue -> green)", [], [], [*GATEWAYS, *PROMETHEUS]),
    ("rollback (green -> blue)", [], [], [*GATEWAYS, *PROMETHEUS]),
    ("add a route", [], [], GATEWAYS),
    ("change the rate limit", [], [], GATEWAYS),
    ("change the CORS origins", [], [], GATEWAYS),
    ("renew the TLS certificate (PEM in config)", [], [], GATEWAYS),
    # a new Swarm secret (created before the old one goes), the services roll onto it; each rollout is waited for
    ("rotate the database URL (secret)", [API, WORKERS_SERVICE], [f"{API}-rollout", "carecircle-prod-database-url", f"{WORKERS_SERVICE}-rollout"], []),
    ("new workers image", [WORKERS_SERVICE], [f"{WORKERS_SERVICE}-rollout"], []),
    ("raise the api memory limit", [API], [f"{API}-rollout"], PROMETHEUS),
])
def test_swarm_blast_radius(swarm_results, change, rolled, replaced, updated):
    live = live_changes(swarm_results[change])
    assert sorted(c.name for c in live if c.type == SERVICE and c.action == "update") == rolled
    assert all(c.type != SERVICE or c.action == "update" for c in live if c.action != "create" and c.action != "delete")
    assert sorted(c.name for c in live if c.action == "replace") == replaced
    assert sorted(c.name for c in live if c.action == "update" and c.type != SERVICE) == updated
    # nothing that serves is ever replaced: no service, no gateway container
    assert not [c for c in live if c.action == "replace" and c.type in (SERVICE, "docker:index/container:Container")]


GREEN = ["api-green-1", "api-green-2", "api-green-3"]
BLUE = ["api-blue-1", "api-blue-2", "api-blue-3"]
WORKERS = ["workers-1", "workers-2", "workers-3"]


@pytest.mark.parametrize("change, expected", [
    # Prometheus learns the new targets and the active pool (ApiDown) through its own in-place reload.
    ("release: bring up the idle pool (green) on a new image", {"create": GREEN, "update": ["gateway-config", "monitoring-prometheus-config"]}),
    ("new image on the running idle pool", {"replace": GREEN}),
    ("switch the active pool (blue -> green)", {"update": ["gateway-config", "monitoring-prometheus-config"]}),
    ("rollback (green -> blue)", {"update": ["gateway-config", "monitoring-prometheus-config"]}),
    ("scale the idle pool to zero", {"delete": GREEN, "update": ["gateway-config", "monitoring-prometheus-config"]}),
    ("add a route", {"update": ["gateway-config"]}),
    ("change the rate limit", {"update": ["gateway-config"]}),
    ("change the CORS origins", {"update": ["gateway-config"]}),
    ("renew the TLS certificate (PEM in config)", {"update": ["gateway-config"]}),
    ("rotate the database URL (secret)", {"replace": BLUE + WORKERS}),  # its consumers, nothing else
    ("new workers image", {"replace": WORKERS}),
    ("raise the api memory limit", {"update": [*BLUE, "monitoring-prometheus-config"]}),  # the memory alert's limit
])
def test_blast_radius(results, change, expected):
    assert results[change] == expected


def test_a_changed_secret_shows_as_changed_without_its_value():
    before = on_engine("prod")
    after = on_engine("prod", secrets={"carecircle:databaseUrl": "postgresql://x:rotated-value@h/db?sslmode=require"})
    changes = live_changes(compare(before, after))
    assert changes and all(c.inputs == ("envs",) and c.secret_inputs == ("envs",) for c in changes)
    rotated = live_changes(compare(evaluate_stack("prod"), evaluate_stack("prod", secrets={"carecircle:databaseUrl": "postgresql://x:rotated-value@h/db?sslmode=require"})))
    secret = next(c for c in rotated if c.type == "docker:index/secret:Secret")
    assert secret.inputs == ("data",) and secret.secret_inputs == ("data",)


def test_unchanged_config_changes_nothing():
    assert live_changes(compare(evaluate_stack("prod"), evaluate_stack("prod"))) == []
    assert live_changes(compare(on_engine("prod"), on_engine("prod"))) == []


@pytest.mark.parametrize("keys, action", [
    (["image"], "replace"), (["envs"], "replace"), (["ports"], "replace"), (["uploads"], "replace"),
    (["labels"], "replace"), (["networksAdvanced"], "replace"), (["command"], "replace"), (["cpus"], "replace"),
    (["memory"], "update"), (["restart"], "update"), (["healthcheck"], "no live change"),
    (["memory", "image"], "replace"),
])
def test_container_semantics(keys, action):
    assert action_for("docker:index/container:Container", keys) == action


@pytest.mark.parametrize("path, action", [
    ("taskSpec.containerSpec.image", "update"), ("taskSpec.containerSpec.secrets.secretId", "update"),
    ("taskSpec.resources.limits.memoryBytes", "update"), ("mode.replicated.replicas", "update"), ("updateConfig.delay", "update"),
    ("taskSpec.networksAdvanceds.id", "replace"), ("taskSpec.containerSpec.labels.value", "replace"),
    ("taskSpec.containerSpec.hosts", "replace"), ("name", "replace"), ("auth.password", "replace"),
])
def test_service_semantics(path, action):
    assert action_for(SERVICE, [path]) == action


def test_other_types():
    assert action_for("docker:index/network:Network", ["labels"]) == "replace"
    assert action_for("docker:index/volume:Volume", ["labels"]) == "replace"
    assert action_for("command:local:Command", ["stdin"]) == "update"
    assert action_for("command:local:Command", ["triggers"]) == "replace"
