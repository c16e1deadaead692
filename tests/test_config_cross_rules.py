"""Rules across keys that keep a deploy possible and safe: the api outlives the gateways' DNS cache
after SIGTERM, rollouts fit the time `pulumi up` waits for them, the gateway turns healthy while it is
waited for, every api pool is spread, and an edge node is listed once whatever its spelling. The
numbers the rules count with are the ones the program declares (checked here), and Docker's timing
of the first probe is checked on a real dockerd."""

from __future__ import annotations

import time
from datetime import datetime

import pytest
from config_checks import accepted, refused

from carecircle.offline import evaluate_stack
from carecircle.settings.runtime import GATEWAY_WAIT_SECONDS, HEALTHCHECK_PROBE_TIMEOUT_SECONDS
from carecircle.settings.swarm import HEALTHCHECK_START_PERIOD_SECONDS, HEALTHCHECK_TIMEOUT_SECONDS
from helpers import CONTAINER, engine_settings

SERVICE = "docker:index/service:Service"


# ---- the api outlives the gateways' DNS cache -----------------------------------------------------------

@pytest.mark.parametrize("stack, changes", [
    ("prod", {"carecircle:apiShutdownGraceSeconds": 8}),  # 5s + 3 s margin: killed the moment it would drain
    ("prod", {"carecircle:apiShutdownGraceSeconds": 1}),
    ("staging", {"carecircle:gatewayResolverValid": "60s"}),  # grace 30 s < 63 s
    ("staging", {"carecircle:gatewayResolverValid": "10m", "carecircle:apiShutdownGraceSeconds": 600}),
])
def test_a_stop_grace_period_shorter_than_the_shutdown_delay_is_refused(stack, changes):
    message = refused(stack, changes, "carecircle:apiShutdownGraceSeconds")
    assert "grace period must be longer" in message


def test_the_grace_period_is_checked_against_the_delay_the_api_is_given():
    from carecircle.audit.swarm_report import env_file_variables

    evaluation = evaluate_stack("prod", overrides={"carecircle:apiShutdownGraceSeconds": 9})  # one second past the delay
    api = next(r for r in evaluation.of_type(SERVICE) if "api-blue" in r.name)
    env_file = next(r for r in evaluation.of_type("docker:index/serviceConfig:ServiceConfig") if "api-blue" in r.name)
    assert int(env_file_variables(env_file)["SHUTDOWN_DELAY_SECONDS"]) == 8
    assert api.inputs["taskSpec"]["containerSpec"]["stopGracePeriod"] == "9s"
    assert engine_settings("prod", {"carecircle:apiShutdownGraceSeconds": 1})  # the engine's gateway has fixed addresses


# ---- rollouts fit the converge timeout ---------------------------------------------------------------

@pytest.mark.parametrize("changes", [
    {"carecircle:apiBlueReplicas": 6},  # 6 batches of 30 + 10 + 5 + 15 s and 5 delays of 10 s: 410 s > 5m
    {"carecircle:workersReplicas": 5, "carecircle:swarmUpdateDelay": "30s"},
    {"carecircle:swarmConvergeTimeout": "2m"},  # 3 batches: 200 s
    {"carecircle:swarmUpdateMonitor": "2m", "carecircle:swarmConvergeTimeout": "6m"},
    {"carecircle:healthcheckInterval": "50s", "carecircle:swarmUpdateMonitor": "50s"},
    {"carecircle:swarmConvergeTimeout": "1ms"},
])
def test_a_rollout_longer_than_the_converge_timeout_is_refused(changes):
    message = refused("prod", changes, "carecircle:swarmConvergeTimeout")
    assert "`pulumi up` would fail while Swarm is still rolling out" in message


@pytest.mark.parametrize("changes", [
    {"carecircle:apiBlueReplicas": 6, "carecircle:swarmUpdateParallelism": 2},  # 3 batches again
    {"carecircle:apiBlueReplicas": 6, "carecircle:swarmConvergeTimeout": "7m"},
    {"carecircle:swarmConvergeTimeout": "200s"},  # exactly the prod rollout
])
def test_a_rollout_that_fits_is_accepted(changes):
    accepted("prod", changes)


def test_the_fix_is_a_timeout_the_rollout_fits():
    from carecircle.offline import stack_settings
    from carecircle.settings import ConfigError

    with pytest.raises(ConfigError) as error:
        stack_settings("prod", overrides={"carecircle:apiBlueReplicas": 6})
    fix = next(p.fix for p in error.value.problems if p.key == "carecircle:swarmConvergeTimeout")
    assert fix == "pulumi config set carecircle:swarmConvergeTimeout 7m --stack prod"
    accepted("prod", {"carecircle:apiBlueReplicas": 6, "carecircle:swarmConvergeTimeout": "7m"})


def test_a_monitor_shorter_than_a_healthcheck_interval_is_refused():
    message = refused("prod", {"carecircle:swarmUpdateMonitor": "5s"}, "carecircle:swarmUpdateMonitor")
    assert "less than one healthcheck interval" in message
    accepted("prod", {"carecircle:swarmUpdateMonitor": "10s"})


def test_the_rollout_rule_counts_with_what_each_service_declares(stacks):
    for service in stacks["prod"].of_type(SERVICE):
        health = service.inputs["taskSpec"]["containerSpec"]["healthcheck"]
        assert health["startPeriod"] == f"{HEALTHCHECK_START_PERIOD_SECONDS}s" and health["timeout"] == f"{HEALTHCHECK_TIMEOUT_SECONDS}s"
    gates = [r for r in stacks["prod"].of_type("command:local:Command") if r.name.endswith("-rollout")]
    assert gates and all(gate.inputs["create"].endswith(" 300") for gate in gates)  # swarmConvergeTimeout 5m, in seconds


# ---- the gateway turns healthy while `pulumi up` waits for it -------------------------------------------

@pytest.mark.parametrize("stack, interval", [("dev", "56s"), ("dev", "300s"), ("prod", "60s"), ("staging", "120s")])
def test_a_healthcheck_interval_longer_than_the_gateways_wait_is_refused(stack, interval):
    message = refused(stack, {"carecircle:healthcheckInterval": interval}, "carecircle:healthcheckInterval")
    assert "waits 60 s" in message


def test_the_wait_rule_counts_with_what_the_gateway_declares(stacks):
    for stack in ("dev", "prod"):
        gateways = [r for r in stacks[stack].of_type(CONTAINER) if "-gateway" in r.inputs["name"]]
        assert gateways and all(g.inputs["wait"] and g.inputs["waitTimeout"] == GATEWAY_WAIT_SECONDS for g in gateways)
        assert all(g.inputs["healthcheck"]["timeout"] == f"{HEALTHCHECK_PROBE_TIMEOUT_SECONDS}s" for g in gateways)
    accepted("dev", {"carecircle:healthcheckInterval": "55s"})


def test_docker_runs_the_first_probe_one_interval_after_the_start(engine):
    """What the wait rule rests on, on the session's private dockerd (timestamps the engine records)."""
    from real_engine import IMAGE

    container = engine.client.containers.run(IMAGE, ["sleep", "60"], detach=True, healthcheck={
        "test": ["CMD", "true"], "interval": 3_000_000_000, "timeout": 1_000_000_000, "retries": 1})
    try:
        deadline = time.monotonic() + 30
        while not (container.attrs["State"].get("Health") or {}).get("Log") and time.monotonic() < deadline:
            time.sleep(0.2)
            container.reload()
        state = container.attrs["State"]
        started = datetime.fromisoformat(state["StartedAt"][:26])
        first_probe = datetime.fromisoformat(state["Health"]["Log"][0]["Start"][:26])
        assert (first_probe - started).total_seconds() >= 3, (state["StartedAt"], state["Health"]["Log"][0]["Start"])
    finally:
        container.remove(force=True)


# ---- every pool spread; an edge node listed once ----------------------------------------------------------

@pytest.mark.parametrize("changes, key", [
    ({"carecircle:apiBlueReplicas": 2, "carecircle:apiMaxReplicasPerNode": 0}, "carecircle:apiMaxReplicasPerNode"),
    ({"carecircle:apiBlueReplicas": 2}, "carecircle:apiMaxReplicasPerNode"),  # limit 2 holds the whole pool
    ({"carecircle:apiGreenReplicas": 2, "carecircle:apiGreenImage": "ghcr.io/carecircle/api:1.0.1@sha256:" + "1" * 64},
     "carecircle:apiMaxReplicasPerNode"),  # the smaller, idle pool
    ({"carecircle:workersReplicas": 2}, "carecircle:workersMaxReplicasPerNode"),
    ({"carecircle:workersReplicas": 2, "carecircle:workersMaxReplicasPerNode": 0}, "carecircle:workersMaxReplicasPerNode"),
])
def test_prod_spreads_every_pool_that_runs(changes, key):
    assert "at most 1 per node" in refused("prod", changes, key)


def test_a_single_replica_idle_pool_needs_no_spread():
    accepted("prod", {"carecircle:apiGreenReplicas": 1, "carecircle:apiGreenImage": "ghcr.io/carecircle/api:1.0.1@sha256:" + "1" * 64})


@pytest.mark.parametrize("second", [
    "ssh://deploy@EDGE-1.prod.carecircle.example", "ssh://deploy@edge-1.prod.carecircle.example:22",
    "ssh://ops@edge-1.prod.carecircle.example", "ssh://root@Edge-1.Prod.Carecircle.Example:22",
])
def test_an_edge_node_listed_twice_in_another_spelling_is_refused(second):
    edges = ["ssh://deploy@edge-1.prod.carecircle.example", second]
    assert "lists one node twice" in refused("prod", {"carecircle:swarmEdgeHosts": edges}, "carecircle:swarmEdgeHosts")


@pytest.mark.parametrize("edges", [
    ["ssh://deploy@[2001:db8::1]", "ssh://deploy@[2001:DB8:0::1]:22"], ["ssh://deploy@10.0.0.5", "ssh://ops@10.0.0.5:22"],
])
def test_addresses_are_compared_as_addresses(edges):
    assert "lists one node twice" in refused("prod", {"carecircle:swarmEdgeHosts": edges}, "carecircle:swarmEdgeHosts")


def test_two_nodes_behind_one_bastion_on_their_own_ports_are_two_nodes():
    accepted("prod", {"carecircle:swarmEdgeHosts": ["ssh://deploy@bastion.example:2201", "ssh://deploy@bastion.example:2202"]})
