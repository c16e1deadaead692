"""The swarm settings refuse what would not survive, or not run, on a real cluster: one clear error
naming the key, nothing declared."""

import pytest

from carecircle.audit.blast_radius import rehearsal_stack
from carecircle.offline import evaluate_stack
from carecircle.settings import ConfigError
from helpers import ENGINE, on_engine


def problem(stack, **kwargs):
    with pytest.raises(ConfigError) as raised:
        evaluate_stack(stack, **kwargs)
    assert raised.value.declared == []
    return {p.key: p for p in raised.value.problems}


@pytest.mark.parametrize("edges, words", [
    (["ssh://deploy@edge-1.prod.carecircle.example"], "at least 2 edge node(s)"),
    (["ssh://deploy@edge-1.prod.carecircle.example", "ssh://deploy@edge-1.prod.carecircle.example"], "lists one node twice"),
    ([], "at least 2 edge node(s)"),
])
def test_prod_gateways_survive_the_loss_of_an_edge_node(edges, words):
    found = problem("prod", overrides={"carecircle:swarmEdgeHosts": edges})["carecircle:swarmEdgeHosts"]
    assert words in found.message and found.fix.startswith("set carecircle:swarmEdgeHosts in Pulumi.prod.yaml")


def test_staging_may_run_on_one_edge_node_but_not_none():
    evaluate_stack("staging")
    assert "needs an edge node" in problem("staging", overrides={"carecircle:swarmEdgeHosts": []})["carecircle:swarmEdgeHosts"].message


MONITORING = "carecircle:swarmMonitoringHosts"


@pytest.mark.parametrize("stack, hosts, words", [
    ("prod", ["ssh://deploy@monitoring-1.prod.carecircle.example"], "at least 2 nodes labelled carecircle.monitoring=true, so alerting survives"),
    ("prod", ["ssh://deploy@m.prod.carecircle.example", "ssh://deploy@m.prod.carecircle.example"], "lists a host twice"),
    ("staging", [], "runs Prometheus and Alertmanager on the nodes labelled carecircle.monitoring=true"),
])
def test_alerting_survives_the_loss_of_a_monitoring_node_in_prod(stack, hosts, words):
    found = problem(stack, overrides={MONITORING: hosts})[MONITORING]
    assert words in found.message and found.fix.startswith(f"set {MONITORING} in Pulumi.{stack}.yaml")
    # no monitoring, no node: in a rehearsal of the stack's config (staging and prod run monitoring)
    evaluate_stack(stack, overrides={MONITORING: None, "carecircle:monitoringEnabled": False, "carecircle:environment": None},
                   as_stack=rehearsal_stack(stack))


def test_prod_encrypts_traffic_between_nodes():
    found = problem("prod", overrides={"carecircle:swarmEncryptOverlays": False})["carecircle:swarmEncryptOverlays"]
    assert found.fix == "pulumi config set carecircle:swarmEncryptOverlays true --stack prod"
    evaluate_stack("staging", overrides={"carecircle:swarmEncryptOverlays": False})


@pytest.mark.parametrize("key", ["carecircle:postgresMode", "carecircle:redisMode", "carecircle:rabbitmqMode"])
def test_a_swarm_stack_runs_no_data_service_of_its_own(key):
    assert "managed service" in problem("staging", overrides={key: "container"})[key].message


@pytest.mark.parametrize("key", ["carecircle:swarmEdgeHosts", "carecircle:swarmMonitoringHosts"])
def test_swarm_only_keys_on_an_engine_stack_are_refused(key):
    overrides = {**ENGINE, key: ["ssh://deploy@node.example"]}
    assert "swarm stacks only" in problem("prod", overrides=overrides, as_stack=rehearsal_stack("prod"))[key].message


@pytest.mark.parametrize("key, value", [("carecircle:apiMaxReplicasPerNode", 0), ("carecircle:apiMaxReplicasPerNode", 3),
                                        ("carecircle:workersMaxReplicasPerNode", 5)])
def test_prod_never_lets_one_node_hold_a_whole_pool(key, value):
    found = problem("prod", overrides={key: value})[key]
    assert "at most 2 per node" in found.message and found.fix.endswith(" 2 --stack prod")


@pytest.mark.parametrize("key, value, words", [
    ("carecircle:apiCpusReserved", "2", "at most apiCpus"), ("carecircle:apiMemoryReservedMb", 4096, "at most apiMemoryMb"),
    ("carecircle:workersCpusReserved", "0", "more than 0"), ("carecircle:swarmUpdateDelay", "1m30s", "one unit"),
    ("carecircle:swarmUpdateParallelism", 0, "between 1 and 100"), ("carecircle:swarmNodePlatform", "windows/amd64", "linux/"),
])
def test_rollout_and_reservation_values_are_checked(key, value, words):
    assert words in problem("prod", overrides={key: value})[key].message


def test_prod_runs_images_pinned_by_digest():
    found = problem("prod", overrides={"carecircle:workersImage": "ghcr.io/carecircle/api:1.0.0"})["carecircle:workersImage"]
    assert "pinned by digest" in found.message
    assert found.fix == "pulumi config set carecircle:workersImage 'ghcr.io/carecircle/api:1.0.0@sha256:<digest>' --stack prod"


def test_a_swarm_services_image_is_pinned_by_digest_in_staging_too():
    """Docker pins a tag to tag@digest when it creates a service; the provider reads that back, and the next
    pulumi up would send the bare tag again: every task rolled onto whatever the tag means by then."""
    found = problem("staging", overrides={"carecircle:workersImage": "ghcr.io/carecircle/api:1.0.0"})["carecircle:workersImage"]
    assert "Docker pins a tag to its digest when it creates the service" in found.message
    assert found.fix == "pulumi config set carecircle:workersImage 'ghcr.io/carecircle/api:1.0.0@sha256:<digest>' --stack staging"
    on_engine("staging", {"carecircle:workersImage": "ghcr.io/carecircle/api:1.0.0"})  # containers: a tag is kept


def test_service_names_stay_dns_labels():
    found = problem("prod", overrides={"carecircle:namePrefix": "c" * 45})["carecircle:namePrefix"]
    assert "at most 63 characters" in found.message


def test_a_swarm_stack_needs_a_manager():
    assert "docker:host" in problem("prod", overrides={"docker:host": None})


def test_a_request_can_reach_a_live_replica_when_a_node_is_lost():
    """Each try at a lost node's replica costs the whole connect timeout; all tries must fit the retry window."""
    found = problem("prod", overrides={"carecircle:gatewayProxyConnectTimeout": "3s"})["carecircle:gatewayProxyConnectTimeout"]
    assert "3 tries of 3s do not fit in gatewayProxyNextUpstreamTimeout (5s)" in found.message
    assert found.fix == "pulumi config set carecircle:gatewayProxyConnectTimeout 1666ms --stack prod"
    evaluate_stack("prod", overrides={"carecircle:gatewayProxyConnectTimeout": "3s", "carecircle:gatewayProxyNextUpstreamTimeout": "10s"})
