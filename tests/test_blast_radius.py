"""What routine changes do to prod, by pulumi-docker's and pulumi-command's own replace semantics:
no release step, switch, route/limit/CORS or certificate change replaces or restarts a container."""

import pytest

from carecircle.audit import blast_radius
from carecircle.audit.changes import action_for, by_action, compare, live_changes
from carecircle.offline import evaluate_stack


@pytest.fixture(scope="module")
def results():
    return {scenario.change: by_action(changes) for scenario, changes in blast_radius.run("prod")}


GREEN = ["api-green-1", "api-green-2", "api-green-3"]
BLUE = ["api-blue-1", "api-blue-2", "api-blue-3"]
WORKERS = ["workers-1", "workers-2", "workers-3"]


@pytest.mark.parametrize("change, expected", [
    # Prometheus learns the new targets through its own in-place reload (monitoring-config).
    ("release: bring up the idle pool (green) on a new image", {"create": GREEN, "update": ["gateway-config", "monitoring-config"]}),
    ("new image on the running idle pool", {"replace": GREEN}),
    ("switch the active pool (blue -> green)", {"update": ["gateway-config"]}),
    ("rollback (green -> blue)", {"update": ["gateway-config"]}),
    ("scale the idle pool to zero", {"delete": GREEN, "update": ["gateway-config", "monitoring-config"]}),
    ("add a route", {"update": ["gateway-config"]}),
    ("change the rate limit", {"update": ["gateway-config"]}),
    ("change the CORS origins", {"update": ["gateway-config"]}),
    ("renew the TLS certificate (PEM in config)", {"update": ["gateway-config"]}),
    ("rotate the database URL (secret)", {"replace": BLUE + WORKERS}),  # its consumers, nothing else
    ("new workers image", {"replace": WORKERS}),
    ("raise the api memory limit", {"update": [*BLUE, "monitoring-config"]}),  # the memory alert's limit
])
def test_blast_radius(results, change, expected):
    assert results[change] == expected


def test_a_changed_secret_shows_as_changed_without_its_value():
    before = evaluate_stack("prod")
    after = evaluate_stack("prod", secrets={"carecircle:databaseUrl": "postgresql://x:rotated-value@h/db"})
    changes = live_changes(compare(before, after))
    assert changes and all(c.inputs == ("envs",) and c.secret_inputs == ("envs",) for c in changes)


def test_unchanged_config_changes_nothing():
    assert live_changes(compare(evaluate_stack("prod"), evaluate_stack("prod"))) == []


@pytest.mark.parametrize("keys, action", [
    (["image"], "replace"), (["envs"], "replace"), (["ports"], "replace"), (["uploads"], "replace"),
    (["labels"], "replace"), (["networksAdvanced"], "replace"), (["command"], "replace"), (["cpus"], "replace"),
    (["memory"], "update"), (["restart"], "update"), (["healthcheck"], "no live change"),
    (["memory", "image"], "replace"),
])
def test_container_semantics(keys, action):
    assert action_for("docker:index/container:Container", keys) == action


def test_other_types():
    assert action_for("docker:index/network:Network", ["labels"]) == "replace"
    assert action_for("docker:index/volume:Volume", ["labels"]) == "replace"
    assert action_for("command:local:Command", ["stdin"]) == "update"
    assert action_for("command:local:Command", ["triggers"]) == "replace"
