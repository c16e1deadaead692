"""The diff on swarm stacks reads with Swarm's semantics: a task-spec change is a rolling update, a
replica change a scale, a rotated secret a new secret created before the old one goes, a replaced
container delete-first. The JSON keeps its fields and values, for scripts."""

from __future__ import annotations

import copy
import json

import pytest

from carecircle.audit import diffing, effects
from carecircle.audit.changes import ResourceChange
from carecircle.offline import evaluate_stack

SERVICE = "docker:index/service:Service"
SECRET = "docker:index/secret:Secret"
CONTAINER = "docker:index/container:Container"
ROLLING_START_FIRST = ("rolling update: Swarm restarts its tasks start-first (each new task healthy before an old one stops), "
                       "1 at a time, on failure rollback")
NEW_SECRET = "new secret under a new name, created before the old one is deleted; the services move to it by a rolling update"
DELETE_FIRST = "delete-first: the container is down from its deletion until the new one runs"
ROTATED = {"carecircle:databaseUrl": "postgresql://fake:rotated-0123456789@db.fake.invalid:5432/carecircle?sslmode=require"}


def changes_of(stack="prod", before=None, after=None, secrets_after=None, across_stacks=False):
    old = diffing.snapshot(evaluate_stack(stack, overrides=before or {}))
    new = diffing.snapshot(evaluate_stack(stack, overrides={**(before or {}), **(after or {})}, secrets=secrets_after or {}))
    return diffing.diff(old, new, across_stacks=across_stacks)


def by_name(changes):
    return {c.name: c for c in changes}


@pytest.fixture(scope="module")
def memory():
    return changes_of(after={"carecircle:apiMemoryMb": 2048})


@pytest.fixture(scope="module")
def scale():
    return changes_of(after={"carecircle:apiBlueReplicas": 4})


@pytest.fixture(scope="module")
def rotation():
    return changes_of(secrets_after=ROTATED)


@pytest.fixture(scope="module")
def gateway_image():
    return changes_of(after={"carecircle:gatewayImage": "nginx:1.30.1-alpine@sha256:" + "2" * 64})


def test_a_task_spec_change_is_a_rolling_update(memory):
    api = by_name(memory)["carecircle-prod-api-blue"]
    assert (api.type, api.action) == (SERVICE, "update") and api.effect == ROLLING_START_FIRST
    markdown = diffing.markdown("prod", memory)
    assert "- **1 Swarm services rolled (their tasks restarted in each service's update order; see below):** carecircle-prod-api-blue" in markdown
    assert (f"| update | {ROLLING_START_FIRST} | {SERVICE} | carecircle-prod-api-blue | "
            "taskSpec.resources.limits.memoryBytes, taskSpec.resources.reservation.memoryBytes |") in markdown
    assert (f"update: {SERVICE} carecircle-prod-api-blue -- {ROLLING_START_FIRST} "
            "[taskSpec.resources.limits.memoryBytes, taskSpec.resources.reservation.memoryBytes]") in diffing.text(memory).splitlines()


def test_the_rolling_update_says_the_order_the_service_declares(memory):
    """Read from the service's updateConfig (Swarm's default when unset is stop-first), not assumed."""
    after = evaluate_stack("prod", overrides={"carecircle:apiMemoryMb": 2048})
    api = after.get(SERVICE, "carecircle-prod-api-blue")
    change = by_name(memory)["carecircle-prod-api-blue"]
    api.inputs["updateConfig"] = {**api.inputs["updateConfig"], "order": "stop-first", "parallelism": 2.0}
    assert effects.effect(change, None, api).startswith("rolling update: Swarm restarts its tasks stop-first "
                                                        "(each old task stopped before its replacement starts), 2 at a time")
    del api.inputs["updateConfig"]
    assert "stop-first" in effects.effect(change, None, api)


def test_a_replica_change_alone_is_a_scale(scale):
    api = by_name(scale)["carecircle-prod-api-blue"]
    assert api.inputs == ("mode.replicated.replicas",)
    assert api.effect == "scale 3 → 4 replicas: tasks are started or stopped, the running ones are left alone"
    markdown = diffing.markdown("prod", scale)
    assert "- **1 Swarm services scaled (running tasks left alone):** carecircle-prod-api-blue" in markdown
    assert "rolled" not in markdown
    assert "scale 3 → 4 replicas" in diffing.text(scale)


def test_a_rotated_secret_is_a_new_secret_created_before_the_old_one_is_deleted(rotation):
    changes = by_name(rotation)
    secret = changes["carecircle-prod-database-url"]
    assert (secret.type, secret.action, secret.effect) == (SECRET, "replace", NEW_SECRET)
    assert changes["carecircle-prod-api-blue"].effect == changes["carecircle-prod-workers"].effect == ROLLING_START_FIRST
    markdown = diffing.markdown("prod", rotation)
    assert "- **1 Swarm secrets replaced:** carecircle-prod-database-url" in markdown
    assert f"| replace | {NEW_SECRET} | {SECRET} | carecircle-prod-database-url | data (secret, changed) |" in markdown
    assert f"replace: {SECRET} carecircle-prod-database-url -- {NEW_SECRET} [data (secret, changed)]" in diffing.text(rotation)
    assert "rotated-0123456789" not in markdown + diffing.text(rotation) + diffing.as_json(rotation)


def test_a_secret_with_a_fixed_name_would_be_replaced_delete_first(rotation):
    after = evaluate_stack("prod", secrets=ROTATED).get(SECRET, "carecircle-prod-database-url")
    after.inputs["name"] = "carecircle-prod-database-url"
    effect = effects.effect(by_name(rotation)["carecircle-prod-database-url"], None, after)
    assert effect.startswith("replaced delete-first (the program fixed its name)") and "refuses to delete a secret" in effect


def test_a_replaced_container_is_delete_first(gateway_image):
    changes = by_name(gateway_image)
    assert {name for name, c in changes.items() if c.type == CONTAINER and c.action == "replace"} == {
        "gateway-1-container", "gateway-2-container"}
    assert changes["gateway-1-container"].effect == DELETE_FIRST
    markdown = diffing.markdown("prod", gateway_image)
    assert ("- **2 container(s) replaced delete-first (down from deletion until the new one runs):** "
            "gateway-1-container, gateway-2-container") in markdown
    assert f"| replace | {DELETE_FIRST} | {CONTAINER} | gateway-1-container | image |" in markdown


@pytest.mark.parametrize("paths, kind", [
    (("mode.replicated.replicas",), effects.SCALE),
    (("taskSpec.placement.maxReplicas",), effects.PLACEMENT),
    (("taskSpec.placement.constraints", "mode.replicated.replicas"), effects.PLACEMENT),
    (("taskSpec.containerSpec.image", "mode.replicated.replicas"), effects.ROLLING),
    (("endpointSpec.ports.publishedPort",), effects.ROLLING),
    (("updateConfig.delay", "rollbackConfig.monitor", "convergeConfig.timeout", "labels"), effects.SETTINGS),
])
def test_what_swarm_does_for_each_kind_of_service_update(paths, kind):
    """swarmkit restarts a task when its task spec or endpoint differs (IsTaskDirty), keeps it when only
    the placement changed and its node still fits, and never for the replica count or update policy."""
    assert effects.service_update_kind(paths) == kind
    change = ResourceChange(SERVICE, "svc", "update", paths, ())
    assert effects.rolls(change) == (kind == effects.ROLLING)


def test_json_is_unchanged_by_the_effects(memory, rotation):
    """Same fields and values as before the effects existed: scripts keep working."""
    for changes in (memory, rotation):
        items = json.loads(diffing.as_json(changes))
        assert items and all(list(item) == ["action", "type", "name", "inputs", "secret_inputs"] for item in items)
        assert items == [{"action": c.action, "type": c.type, "name": c.name, "inputs": list(c.inputs), "secret_inputs": list(c.secret_inputs)}
                         for c in changes if c.action != "no live change" and not c.type.startswith("carecircle:")]
    assert json.loads(diffing.as_json(memory)) == [
        {"action": "replace", "type": "command:local:Command", "name": "carecircle-prod-api-blue-rollout",
         "inputs": ["triggers.resources.limits.memory_bytes", "triggers.resources.reservation.memory_bytes"], "secret_inputs": []},
        {"action": "update", "type": SERVICE, "name": "carecircle-prod-api-blue",
         "inputs": ["taskSpec.resources.limits.memoryBytes", "taskSpec.resources.reservation.memoryBytes"], "secret_inputs": []},
        {"action": "update", "type": "command:local:Command", "name": "monitoring-prometheus-1-config", "inputs": ["stdin"], "secret_inputs": []},
        {"action": "update", "type": "command:local:Command", "name": "monitoring-prometheus-2-config", "inputs": ["stdin"], "secret_inputs": []},
    ]
    rotated = {item["name"]: item for item in json.loads(diffing.as_json(rotation))}
    assert rotated["carecircle-prod-database-url"] == {"action": "replace", "type": SECRET, "name": "carecircle-prod-database-url",
                                                       "inputs": ["data"], "secret_inputs": ["data"]}


def test_changes_without_declarations_still_read(memory):
    """Changes straight from compare() (the blast radius) are described from their paths alone."""
    plain = [ResourceChange(c.type, c.name, c.action, c.inputs, c.secret_inputs) for c in memory]
    assert "rolling update: Swarm replaces its tasks in the service's update order" in diffing.markdown("prod", plain)


def test_prod_against_staging_reads_as_swarm():
    changes = diffing.diff(diffing.snapshot(evaluate_stack("staging")), diffing.snapshot(evaluate_stack("prod")), across_stacks=True)
    api = by_name(changes)["carecircle-<stack>-api-blue"]
    assert api.effect == ROLLING_START_FIRST + "; and scale 2 → 3 replicas"  # prod runs 3 replicas to staging's 2
    assert "Swarm services rolled" in diffing.markdown("staging → prod", changes)


def test_a_service_swarm_cannot_update_in_place_is_replaced_create_first():
    """A network change replaces the service; Pulumi names it, so the new one runs before the old goes."""
    after = evaluate_stack("prod").get(SERVICE, "carecircle-prod-workers")
    change = ResourceChange(SERVICE, "carecircle-prod-workers", "replace", ("taskSpec.networksAdvanceds.id",), ())
    assert effects.effect(change, after, after) == ("new service under a new name, created before the old one is deleted "
                                                    "(its tasks start on the new service first)")
    assert "- **1 Swarm services replaced:** carecircle-prod-workers" in diffing.markdown("prod", [change])
    fixed = copy.deepcopy(after)
    fixed.inputs["name"] = "carecircle-prod-workers"
    assert effects.effect(change, fixed, fixed).startswith("replaced delete-first (the program fixed its name)")


def test_a_change_under_ignore_changes_is_reported_as_kept_never_as_a_replacement():
    """The overlay networks ignore `options` (the engine adds its VXLAN id): a program that changed them would
    see nothing happen on `pulumi up`; the diff says so instead of announcing a replacement."""
    before = evaluate_stack("prod")
    after = copy.deepcopy(before)
    network = next(r for r in after.resources if r.type == "docker:index/network:Network")
    network.inputs["options"] = {"encrypted": "", "com.example.extra": "1"}
    changes = diffing.diff(diffing.snapshot(before), diffing.snapshot(after), across_stacks=False)
    [kept] = [c for c in changes if c.name == network.name]
    assert (kept.action, kept.inputs, kept.ignored) == ("no live change", (), ("options.com.example.extra",))
    assert "keeps the previous value: options.com.example.extra" in diffing.text(changes)
    assert "changed but ignored (ignore_changes)" in diffing.markdown("prod", changes)
    assert json.loads(diffing.as_json(changes)) == []  # nothing for a script to act on
