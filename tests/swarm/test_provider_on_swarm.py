"""The swarm stack against what the real provider does (issue 15), on the real 3-manager swarm, under load:
the applier plans each `pulumi up` from what the provider read back (tests/engine_apply/), as the real
one does. Scenarios: an unchanged stack applied again; a replicas-only and a placement-only change;
nodes pulling private images with the stack's credentials, and a deploy without them; a gateway image
upgrade and an overlay network replacement with retrying clients.

Figures (-s) go to docs/scaling.md:
    .venv/bin/python -m pytest tests/swarm/test_provider_on_swarm.py -s
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest

from carecircle.audit import diffing
from engine_apply import CommandFailedError

from .cluster import SwarmCluster
from .load import Load
from .scenario import deployed_stack, edges, report, running
from .stack import SERVER_NAME, DeployedStack

SERVICE_WRITES = r"/services/(create|.*/update)"


@pytest.fixture(scope="module")
def stack(swarm: SwarmCluster, nginx_image: str, registry, tmp_path_factory) -> Iterator[DeployedStack]:
    for stack in deployed_stack(swarm, nginx_image, registry, tmp_path_factory.mktemp("tls")):
        stack.apply()
        yield stack


def task_ids(cluster: SwarmCluster, service: str) -> set[str]:
    return {t.id for t in running(cluster, service)}


def effect(stack: DeployedStack, resource: str, **changes) -> str:
    """What the diff (and the README's tables) says the change does to `resource`."""
    before, after = stack.evaluations[-1], stack.evaluate(**changes)
    changes_ = diffing.diff(diffing.snapshot(before), diffing.snapshot(after), across_stacks=False)
    return next(diffing.effect_of(c) for c in changes_ if c.name == resource)


def test_1_an_unchanged_stack_applied_again_changes_nothing_and_restarts_no_task(swarm, stack):
    api, workers = stack.service_name("blue"), stack.workers_service
    before = {service: task_ids(swarm, service) for service in (api, workers)}
    gateways = {c.id for node in stack.edges for c in swarm[node].client.containers.list() if "-gateway-" in c.name}
    with Load(edges(swarm, stack), SERVER_NAME) as load:
        started = time.monotonic()
        result = stack.apply()
        seconds = time.monotonic() - started
        time.sleep(1)
    assert (result.created, result.updated, result.replaced, result.deleted, result.no_live_change) == ([], [], [], [], [])
    assert result.changed == {} and result.refreshed == {}  # nothing the provider read back differs from its state
    assert not result.requests_to("POST", SERVICE_WRITES) and not result.requests_to("POST", "/containers/create")
    assert {service: task_ids(swarm, service) for service in (api, workers)} == before
    assert {c.id for node in stack.edges for c in swarm[node].client.containers.list() if "-gateway-" in c.name} == gateways
    assert not load.failed(True) and not load.failed(False)
    report("unchanged pulumi up", apply_seconds=round(seconds, 1), **load.summary())


def test_2_a_replicas_only_change_is_a_scale_and_a_placement_only_change_restarts_nothing(swarm, stack):
    api = stack.service_name("blue")
    logical = api.rsplit("-", 1)[0]
    assert "scale 3 → 4 replicas: tasks are started or stopped, the running ones are left alone" in effect(
        stack, logical, apiBlueReplicas=4)
    before = task_ids(swarm, api)
    with Load(edges(swarm, stack), SERVER_NAME) as load:
        started = time.monotonic()
        result = stack.apply(apiBlueReplicas=4)
        scale_seconds = time.monotonic() - started
        assert result.changed[logical] == ["mode.replicated.replicas"]
        scaled = task_ids(swarm, api)
        assert before < scaled and len(scaled) == 4  # the three kept, one started
        assert "placement change" in effect(stack, logical, apiMaxReplicasPerNode=3)
        result = stack.apply(apiMaxReplicasPerNode=3)
        assert result.changed[logical] == ["taskSpec.placement.maxReplicas"]
        time.sleep(3)
        assert task_ids(swarm, api) == scaled  # every node still satisfies the placement: nothing moved
        stack.apply(apiBlueReplicas=3, apiMaxReplicasPerNode=2)
        assert task_ids(swarm, api) < scaled  # scaled down: one stopped, the others kept
        time.sleep(1)
    assert not load.failed(True), load.failed(True)[:5]
    report("scale and placement", scale_apply_seconds=round(scale_seconds, 1), tasks_kept_by_the_scale=len(before & scaled),
           tasks_kept_by_the_placement_change=len(scaled), **load.summary())


def test_3_nodes_pull_private_images_with_the_stacks_credentials_and_a_deploy_without_them_fails_clearly(swarm, stack, registry):
    api = stack.service_name("blue")
    image = stack.images["carecircle-standin/api:1"]
    repository, digest = image.split("@")[0].rsplit(":", 1)[0], image.split("@")[1]
    # node1 pushed the images; every other node running a replica pulled it from the registry, with credentials.
    for task in running(swarm, api):
        digests = [d for i in swarm[task.node].client.images.list() for d in i.attrs.get("RepoDigests") or []]
        assert f"{repository}@{digest}" in digests, (task.node, digests)
    # A release from a repository nobody pulled yet, deployed without the credentials.
    unpulled = registry.server.push(swarm["node1"].client, "carecircle-standin/api:2", "carecircle-private/api:2")
    swarm["node1"].client.images.remove(unpulled.split("@")[0])  # the pushing node forgets it too
    credentials = stack.stack_secrets.pop("docker:registryAuth")
    stack.applier.ctx.default_registry_auth = []
    try:
        started = time.monotonic()
        with pytest.raises(CommandFailedError) as failed:
            stack.apply(apiGreenImage=unpulled, apiGreenReplicas=1)
        failed_after = time.monotonic() - started
        assert "the nodes cannot pull" in failed.value.stderr and "docker:registryAuth" in failed.value.stderr
    finally:
        stack.stack_secrets["docker:registryAuth"] = credentials
        stack.applier.ctx.default_registry_auth = json.loads(credentials)
    # With them, the same release comes up (Swarm got the credentials with the service update), then goes.
    stack.apply()
    assert len(running(swarm, stack.service_name("green"))) == 1
    stack.apply(apiGreenReplicas=0)
    report("private registry", refused_without_credentials_after_seconds=round(failed_after, 1),
           error=failed.value.stderr.strip().splitlines()[0][:240])


def test_4_a_gateway_image_upgrade_replaces_one_edge_at_a_time_without_a_failed_request(swarm, stack, nginx_image):
    upgraded = nginx_image + "-current"  # the same nginx under another name: a new image to the provider
    with Load(edges(swarm, stack), SERVER_NAME) as load:
        time.sleep(1)
        started = time.monotonic()
        result = stack.apply(gatewayImage=upgraded)
        seconds = time.monotonic() - started
        time.sleep(2)
    assert {"gateway-1-container", "gateway-2-container"} <= set(result.replaced)
    assert (result.step_index("create-replacement", "gateway-1-readmitted")
            < result.step_index("delete-replaced", "gateway-2-container"))  # gateway 2 went once gateway 1 served again
    assert not load.failed(True), load.failed(True)[:5]
    report("gateway image upgrade", apply_seconds=round(seconds, 1), balancer=load.balancer_changes(), **load.summary())


def test_5_an_overlay_network_replaced_moves_services_and_gateways_without_a_failed_request(swarm, stack):
    api = stack.service_name("blue")
    edge = next(r for r in stack.evaluations[-1].resources if r.type == "docker:index/network:Network"
                and r.name.startswith(f"carecircle-{stack.stack}-edge"))
    old_network = stack.network("edge")
    with Load(edges(swarm, stack), SERVER_NAME) as load:
        time.sleep(1)
        started = time.monotonic()
        result = stack.apply(replace=(edge.name,))  # pulumi up --replace <the edge network>
        seconds = time.monotonic() - started
        time.sleep(2)
    assert result.step_index("create-replacement", edge.name) < result.step_index("delete-replaced", edge.name)
    assert api.rsplit("-", 1)[0] in result.replaced  # its network attachment is ForceNew: a new service, created first
    assert not [n for n in swarm["node1"].client.networks.list() if n.name == old_network]
    new_api = [s for s in swarm["node1"].client.services.list() if s.name.startswith(api.rsplit("-", 1)[0]) and s.name != api]
    assert len(new_api) == 1 and len(running(swarm, new_api[0].name)) == 3
    assert not load.failed(True), load.failed(True)[:5]
    report("network replaced", apply_seconds=round(seconds, 1), balancer=load.balancer_changes(), **load.summary())
