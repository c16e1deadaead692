"""What the swarm stacks (staging and prod as committed) declare, as a platform engineer and an auditor
would check it: the services and their rollout, spread and limits; secrets as Swarm secrets; overlay
networks referenced by id; a gateway on each edge node and Prometheus on the monitoring node, each
through its node's engine; the preflight before everything."""

from __future__ import annotations

import base64
import json

import pytest

from carecircle.offline import Evaluation, evaluate_stack
from carecircle.stackfiles import load_stack_config
from helpers import bundle_files

SERVICE = "docker:index/service:Service"
SECRET = "docker:index/secret:Secret"
NETWORK = "docker:index/network:Network"
CONTAINER = "docker:index/container:Container"
COMMAND = "command:local:Command"
PROVIDER = "pulumi:providers:docker"
EXPECTED = {"staging": {"api": 2, "workers": 2, "per_node": 0, "edges": 1},
            "prod": {"api": 3, "workers": 3, "per_node": 2, "edges": 2}}


@pytest.fixture(scope="module", params=["staging", "prod"])
def swarm(request) -> Evaluation:
    return evaluate_stack(request.param)


def services(evaluation: Evaluation) -> dict[str, dict]:
    """Service inputs by logical name."""
    return {r.name: r.inputs for r in evaluation.of_type(SERVICE)}


def provider_host(evaluation: Evaluation, reference: str) -> str:
    """The docker host of the provider a resource uses ("" reference: the default, docker:host)."""
    if not reference:
        return "docker:host"
    urn = reference.rsplit("::", 1)[0]
    return evaluation.by_urn(urn).inputs["host"]


def test_exactly_the_api_pool_and_workers_run_as_services(swarm):
    stack = swarm.stack
    found = {name: inputs["mode"]["replicated"]["replicas"] for name, inputs in services(swarm).items()}
    assert found == {f"carecircle-{stack}-api-blue": EXPECTED[stack]["api"], f"carecircle-{stack}-workers": EXPECTED[stack]["workers"]}
    # named by Pulumi (prefix + suffix), so a replacement is created before the old one goes
    assert all("name" not in inputs for inputs in services(swarm).values())
    assert all(name.startswith(f"carecircle-{stack}-") and len(name.rsplit("-", 1)[1]) == 7 for name in swarm.outputs["services"])
    assert not swarm.of_type("docker:index/container:Container") or all(
        "api" not in c.inputs["name"] and "workers" not in c.inputs["name"] for c in swarm.of_type(CONTAINER))


def test_every_change_inside_a_pool_is_a_start_first_rolling_update_that_rolls_back(swarm):
    for name, inputs in services(swarm).items():
        update, rollback = inputs["updateConfig"], inputs["rollbackConfig"]
        assert update == {"parallelism": 1, "order": "start-first", "failureAction": "rollback", "delay": "10s", "monitor": "15s",
                          "maxFailureRatio": "0"}, name
        assert rollback["order"] == "start-first" and rollback["failureAction"] == "pause"
        assert inputs["convergeConfig"] == {"delay": "5s", "timeout": "300s"}
        assert inputs["endpointSpec"] == {"mode": "dnsrr"}  # tasks.<service>, no virtual IP


def test_replicas_spread_and_are_limited(swarm):
    stack = swarm.stack
    for inputs in services(swarm).values():
        task = inputs["taskSpec"]
        placement = task["placement"]
        assert placement["constraints"] == ["node.labels.carecircle.apps == true"]
        assert placement["maxReplicas"] == EXPECTED[stack]["per_node"]
        assert placement["platforms"] == [{"os": "linux", "architecture": "amd64"}]
        assert task["restartPolicy"] == {"condition": "any", "delay": "5s", "maxAttempts": 0, "window": "30s"}
        assert task["logDriver"] == {"name": "json-file", "options": {"max-size": "10m", "max-file": "3"}}
        limits, reservation = task["resources"]["limits"], task["resources"]["reservation"]
        assert limits["nanoCpus"] == 1_000_000_000 and reservation == limits  # reserved = limit by default
    api = services(swarm)[f"carecircle-{stack}-api-blue"]["taskSpec"]
    assert api["resources"]["limits"]["memoryBytes"] == (1024 if stack == "prod" else 512) * 1024 * 1024
    container = api["containerSpec"]
    assert container["stopSignal"] == "SIGTERM" and container["stopGracePeriod"] == "30s"
    assert container["healthcheck"]["tests"][:2] == ["CMD", "node"] and container["healthcheck"]["interval"] == "10s"
    workers = services(swarm)[f"carecircle-{stack}-workers"]["taskSpec"]["containerSpec"]
    assert workers["stopGracePeriod"] == "120s" and workers["commands"] == ["node", "dist/worker.js"]


def test_secrets_are_swarm_secret_files_never_environment_values(swarm):
    stack = swarm.stack
    _, config, secret_keys = load_stack_config(stack)
    secrets = {r.name: r for r in swarm.of_type(SECRET)}
    assert sorted(secrets) == [f"carecircle-{stack}-{s}" for s in ("database-url", "jwt-secret", "rabbitmq-url", "redis-url")]
    decoded = {name: base64.b64decode(r.inputs["data"]).decode() for name, r in secrets.items()}
    assert decoded[f"carecircle-{stack}-database-url"] == config["carecircle:databaseUrl"]
    assert all(r.secret_inputs == {"data"} and "name" not in r.inputs for r in secrets.values())
    for name, inputs in services(swarm).items():
        container = inputs["taskSpec"]["containerSpec"]
        mounted = {m["fileName"]: m for m in container["secrets"]}
        assert {"database_url", "redis_url", "rabbitmq_url"} <= set(mounted)
        for file_name, mount in mounted.items():
            secret = secrets[f"carecircle-{stack}-{file_name.replace('_', '-')}"]
            assert mount["secretId"] == f"{mount['secretName']}-id" and mount["secretName"].startswith(secret.name)
            assert container["env"][f"{file_name.upper()}_FILE"] == f"/run/secrets/{file_name}"
        plain = json.dumps(container["env"])
        assert not [value for value in decoded.values() if value in plain], f"{name}: a secret in its environment"
    api = services(swarm)[f"carecircle-{stack}-api-blue"]["taskSpec"]["containerSpec"]
    assert "jwt_secret" in {m["fileName"] for m in api["secrets"]}
    assert not {"DATABASE_URL", "REDIS_URL", "RABBITMQ_URL", "JWT_SECRET"} & set(api["env"])


def test_overlay_networks_attachable_internal_backend_and_referenced_by_id(swarm):
    stack = swarm.stack
    networks = {r.name: r for r in swarm.of_type(NETWORK)}
    assert {n: (r.inputs["driver"], r.inputs["attachable"], r.inputs["internal"]) for n, r in networks.items()} == {
        "networks-edge": ("overlay", True, False), "networks-backend": ("overlay", True, True), "networks-egress": ("overlay", True, False)}
    for network in networks.values():
        assert network.inputs["options"] == {"encrypted": ""}  # IPsec between nodes (prod must)
        assert network.ignore_changes == ("options",)  # the engine adds its VXLAN id; not a change
    api = services(swarm)[f"carecircle-{stack}-api-blue"]["taskSpec"]["networksAdvanceds"]
    workers = services(swarm)[f"carecircle-{stack}-workers"]["taskSpec"]["networksAdvanceds"]
    assert api == [{"id": "networks-edge-id"}, {"id": "networks-backend-id"}]
    assert workers == [{"id": "networks-backend-id"}, {"id": "networks-egress-id"}]


def test_a_gateway_on_each_edge_node_routes_to_the_active_pools_tasks(swarm):
    stack = swarm.stack
    _, config, _ = load_stack_config(stack)
    edges = json.loads(config["carecircle:swarmEdgeHosts"])
    assert len(edges) == EXPECTED[stack]["edges"]
    api_service = next(name for name in swarm.outputs["services"] if "-api-blue-" in name)
    for index, edge in enumerate(edges, 1):
        gateway = swarm.get(CONTAINER, f"gateway-{index}-container")
        assert gateway.inputs["name"] == f"carecircle-{stack}-gateway-{index}"
        assert provider_host(swarm, gateway.provider) == edge  # created by the edge node's own engine
        assert [n["name"] for n in gateway.inputs["networksAdvanced"]] == [f"carecircle-{stack}-edge"]
        assert {int(p["external"]) for p in gateway.inputs["ports"]} == {80, 443, 8081}
        apply = swarm.get(COMMAND, f"gateway-{index}-config")
        assert apply.inputs["environment"]["DOCKER_HOST"] == edge
        # switched only after the pool's rollout finished
        assert any(dep.endswith(f"::carecircle-{stack}-api-blue-rollout") for dep in apply.dependencies)
        conf = bundle_files(apply.inputs["stdin"])["next.conf"]
        assert f"server tasks.{api_service}:3000 resolve" in conf and "resolver 127.0.0.11 valid=5s" in conf


def test_the_preflight_checks_the_cluster_before_anything_is_declared_on_it(swarm):
    stack = swarm.stack
    _, config, _ = load_stack_config(stack)
    check = swarm.get(COMMAND, "swarm-check")
    assert check.inputs["environment"]["DOCKER_HOST"] == config["docker:host"]
    for edge in json.loads(config["carecircle:swarmEdgeHosts"]):
        assert edge in check.inputs["create"]
    assert config["carecircle:swarmMonitoringHost"] in check.inputs["create"]
    for network in swarm.of_type(NETWORK):
        assert check.urn in network.dependencies


def test_each_rollout_is_waited_for(swarm):
    for name in services(swarm):
        rollout = swarm.get(COMMAND, f"{name}-rollout")
        assert f" rollout {name}-" in rollout.inputs["create"] and rollout.inputs["create"].endswith(" 300")
        assert rollout.inputs["triggers"][0]["container_spec"]["image"]  # the task spec: any change is a rollout


def test_prometheus_and_its_volume_live_on_the_monitoring_node(swarm):
    stack = swarm.stack
    _, config, _ = load_stack_config(stack)
    prometheus = swarm.get(CONTAINER, "monitoring-prometheus")
    volume = swarm.get("docker:index/volume:Volume", "monitoring-prometheus-data")
    assert provider_host(swarm, prometheus.provider) == provider_host(swarm, volume.provider) == config["carecircle:swarmMonitoringHost"]
    assert volume.protect and volume.retain_on_delete
    assert [n["name"] for n in prometheus.inputs["networksAdvanced"]] == [f"carecircle-{stack}-backend"]
    bundle = bundle_files(swarm.get(COMMAND, "monitoring-config").inputs["stdin"])["prometheus.yml"]
    api_service = next(name for name in swarm.outputs["services"] if "-api-blue-" in name)
    assert f'names: ["tasks.{api_service}"]' in bundle
    edges = json.loads(config["carecircle:swarmEdgeHosts"])
    for index, edge in enumerate(edges, 1):
        exporter = swarm.get(CONTAINER, f"monitoring-nginx-exporter-{index}")
        assert provider_host(swarm, exporter.provider) == edge  # beside its gateway
        assert f"carecircle-{stack}-gateway-{index}:8082" in exporter.inputs["command"][0]


def test_no_output_and_no_plain_input_holds_a_secret(swarm):
    assert not swarm.secret_outputs
    plain = json.dumps([{k: v for k, v in r.inputs.items() if k not in r.secret_inputs} for r in swarm.resources], default=str)
    leaked = [value for value in swarm.secret_values if len(value) > 12 and value in plain]
    assert not leaked


def test_idle_pool_is_a_second_service_and_the_switch_touches_only_the_gateways():
    release = {"carecircle:apiGreenImage": "ghcr.io/carecircle/api:1.1.0@sha256:" + "1" * 64, "carecircle:apiGreenReplicas": 3}
    both = evaluate_stack("prod", overrides=release)
    assert sorted(services(both)) == ["carecircle-prod-api-blue", "carecircle-prod-api-green", "carecircle-prod-workers"]
    green = services(both)["carecircle-prod-api-green"]["taskSpec"]["containerSpec"]
    assert "carecircle.pool=green" in green["env"]["OTEL_RESOURCE_ATTRIBUTES"]
    switched = evaluate_stack("prod", overrides={**release, "carecircle:apiActiveColor": "green"})
    green_service = next(name for name in switched.outputs["services"] if "-api-green-" in name)
    conf = bundle_files(switched.get(COMMAND, "gateway-1-config").inputs["stdin"])["next.conf"]
    assert f"server tasks.{green_service}:3000 resolve" in conf
