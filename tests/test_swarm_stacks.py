"""What the swarm stacks (staging and prod as committed) declare, as a platform engineer and an auditor
would check it: the services and their rollout, spread and limits; secrets as Swarm secrets; overlay
networks referenced by id; a gateway on each edge node and Prometheus on the monitoring node, each
through its node's engine; the preflight before everything."""

from __future__ import annotations

import base64
import json
import re

import pytest
import yaml

from carecircle.offline import Evaluation, evaluate_stack
from carecircle.stackfiles import load_stack_config
from helpers import bundle_files

SERVICE = "docker:index/service:Service"
SECRET = "docker:index/secret:Secret"
CONFIG = "docker:index/serviceConfig:ServiceConfig"
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


def env_file(evaluation: Evaluation, service: str) -> dict[str, str]:
    """The plain settings a service's tasks read (its dotenv file, a Swarm config), by name."""
    text = base64.b64decode(evaluation.get(CONFIG, f"{service}-env").inputs["data"]).decode()
    return dict(re.fullmatch(r"([A-Z0-9_]+)='([^']*)'", line).groups() for line in text.splitlines())  # type: ignore[union-attr]


def network_name(evaluation: Evaluation, role: str) -> str:
    return next(name for name in evaluation.outputs["networks"] if name.startswith(f"carecircle-{evaluation.stack}-{role}-"))


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
        assert "convergeConfig" not in inputs  # the rollout gate waits, and a failed create keeps the service to look at
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
    # 120 s, written as the provider reads it back ("120s" would be a change on every pulumi up)
    assert workers["stopGracePeriod"] == "2m" and workers["commands"] == ["node", "dist/worker.js"]


def test_a_service_is_declared_as_the_provider_reads_it_back(swarm):
    for name, inputs in services(swarm).items():
        container = inputs["taskSpec"]["containerSpec"]
        # One variable: the provider sends a map's entries in a new order each time, and Swarm restarts
        # every task when the order changes; the settings come in a file instead.
        assert container["env"] == {"DOTENV_CONFIG_PATH": "/run/configs/carecircle.env"}
        config = swarm.get(CONFIG, f"{name}-env")
        assert container["configs"] == [{"configId": f"{config.autoname}-id", "configName": config.autoname,
                                         "fileName": "/run/configs/carecircle.env"}]
        assert "name" not in config.inputs  # a new content is a new config, created before the old one goes
        resource = next(r for r in swarm.of_type(SERVICE) if r.name == name)
        assert resource.ignore_changes == ("taskSpec.placement.platforms",)  # the Docker client writes the registry's list
        assert "@sha256:" in container["image"]  # a tag would be pinned at create, then unpinned by the next pulumi up


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
        settings = env_file(swarm, name)
        mounted = {m["fileName"]: m for m in container["secrets"]}
        assert {"database_url", "redis_url", "rabbitmq_url"} <= set(mounted)
        for file_name, mount in mounted.items():
            secret = secrets[f"carecircle-{stack}-{file_name.replace('_', '-')}"]
            assert mount["secretId"] == f"{mount['secretName']}-id" and mount["secretName"].startswith(secret.name)
            assert settings[f"{file_name.upper()}_FILE"] == f"/run/secrets/{file_name}"
        plain = json.dumps([container["env"], settings])
        assert not [value for value in decoded.values() if value in plain], f"{name}: a secret in its environment"
    api = services(swarm)[f"carecircle-{stack}-api-blue"]["taskSpec"]["containerSpec"]
    assert "jwt_secret" in {m["fileName"] for m in api["secrets"]}
    assert not {"DATABASE_URL", "REDIS_URL", "RABBITMQ_URL", "JWT_SECRET"} & set(env_file(swarm, f"carecircle-{stack}-api-blue"))


def test_the_api_keeps_serving_until_every_gateway_stopped_resolving_it_and_workers_report_to_sentry():
    sentry = {"carecircle:sentryDsn": "https://public@o1.ingest.sentry.example/42"}
    evaluation = evaluate_stack("prod", overrides={"carecircle:gatewayResolverValid": "7s"}, secrets=sentry)
    api = env_file(evaluation, "carecircle-prod-api-blue")
    assert api["SHUTDOWN_DELAY_SECONDS"] == "10"  # the resolver's validity (7 s) plus the 3 s margin
    workers = next(r for r in evaluation.of_type(SERVICE) if r.name == "carecircle-prod-workers")
    assert "sentry_dsn" in {m["fileName"] for m in workers.inputs["taskSpec"]["containerSpec"]["secrets"]}
    assert env_file(evaluation, "carecircle-prod-workers")["SENTRY_DSN_FILE"] == "/run/secrets/sentry_dsn"


def test_overlay_networks_attachable_internal_backend_autonamed_and_referenced_by_id(swarm):
    stack = swarm.stack
    networks = {r.name: r for r in swarm.of_type(NETWORK)}
    assert {n: (r.inputs["driver"], r.inputs["attachable"], r.inputs["internal"]) for n, r in networks.items()} == {
        f"carecircle-{stack}-edge-encrypted": ("overlay", True, False), f"carecircle-{stack}-backend-encrypted": ("overlay", True, True),
        f"carecircle-{stack}-egress-encrypted": ("overlay", True, False)}
    for network in networks.values():
        assert network.inputs["options"] == {"encrypted": ""}  # IPsec between nodes (prod must)
        assert network.ignore_changes == ("options",)  # the engine adds its VXLAN id; not a change
        assert "name" not in network.inputs  # named by Pulumi: a replacement is created first
    api = services(swarm)[f"carecircle-{stack}-api-blue"]["taskSpec"]["networksAdvanceds"]
    workers = services(swarm)[f"carecircle-{stack}-workers"]["taskSpec"]["networksAdvanceds"]
    assert api == [{"id": f"{network_name(swarm, 'edge')}-id"}, {"id": f"{network_name(swarm, 'backend')}-id"}]
    assert workers == [{"id": f"{network_name(swarm, 'backend')}-id"}, {"id": f"{network_name(swarm, 'egress')}-id"}]


def test_a_network_named_anew_names_every_service_attached_to_it_anew():
    # Attachments are ForceNew: a service on a replaced network is replaced too, and Pulumi names the
    # replacement anew, whichever of its attachments (first or last) changed.
    before = evaluate_stack("staging")
    edge = next(r for r in before.of_type(NETWORK) if "-edge-" in r.name)
    after = evaluate_stack("staging", renamed={edge.name: 1})
    names = lambda evaluation: {r.name: r.autoname for r in evaluation.of_type(SERVICE)}  # noqa: E731
    changed = {name for name, autoname in names(before).items() if names(after)[name] != autoname}
    on_edge = {r.name for r in before.of_type(SERVICE) if {"id": f"{edge.autoname}-id"} in r.inputs["taskSpec"]["networksAdvanceds"]}
    assert "carecircle-staging-api-blue" in on_edge and "carecircle-staging-workers" not in on_edge
    assert changed == on_edge


def test_switching_encryption_is_new_networks_never_an_ignored_change():
    encrypted = evaluate_stack("staging")
    plain = evaluate_stack("staging", overrides={"carecircle:swarmEncryptOverlays": False})
    names = {r.name for r in plain.of_type(NETWORK)}
    assert names == {f"carecircle-staging-{role}" for role in ("edge", "backend", "egress")}
    assert not names & {r.name for r in encrypted.of_type(NETWORK)}  # other URNs: created first, the old ones deleted last


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
        assert [n["name"] for n in gateway.inputs["networksAdvanced"]] == [network_name(swarm, "edge")]
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
        assert f"edge={edge}" in check.inputs["create"]
    for host in json.loads(config["carecircle:swarmMonitoringHosts"]):
        assert f"monitoring={host}" in check.inputs["create"]
    for network in swarm.of_type(NETWORK):
        assert check.urn in network.dependencies


def test_each_rollout_is_waited_for(swarm):
    for name in services(swarm):
        rollout = swarm.get(COMMAND, f"{name}-rollout")
        assert f" rollout {name}-" in rollout.inputs["create"] and rollout.inputs["create"].endswith(" 300")
        assert rollout.inputs["triggers"][0]["container_spec"]["image"]  # the task spec: any change is a rollout


def test_a_prometheus_and_an_alertmanager_with_their_volumes_live_on_each_monitoring_node(swarm):
    stack = swarm.stack
    _, config, _ = load_stack_config(stack)
    hosts = json.loads(config["carecircle:swarmMonitoringHosts"])
    assert len(hosts) == (2 if stack == "prod" else 1)
    alertmanagers = [f"carecircle-{stack}-alertmanager-{index}" for index in range(1, len(hosts) + 1)]
    api_service = next(name for name in swarm.outputs["services"] if "-api-blue-" in name)
    for index, host in enumerate(hosts, 1):
        prometheus = swarm.get(CONTAINER, f"monitoring-prometheus-{index}")
        alertmanager = swarm.get(CONTAINER, f"monitoring-alertmanager-{index}")
        volumes = [swarm.get("docker:index/volume:Volume", f"monitoring-{kind}-{index}-data") for kind in ("prometheus", "alertmanager")]
        assert {provider_host(swarm, r.provider) for r in [prometheus, alertmanager, *volumes]} == {host}
        assert all(v.protect and v.retain_on_delete for v in volumes)
        assert [n["name"] for n in prometheus.inputs["networksAdvanced"]] == [network_name(swarm, "backend")]
        assert [n["name"] for n in alertmanager.inputs["networksAdvanced"]] == [network_name(swarm, "backend"), network_name(swarm, "egress")]
        # Each Alertmanager gossips with the others by name (none when it is alone), advertising its own address
        # on the stack's networks: left to guess, it would advertise the node-local docker_gwbridge address.
        peers = [f"--cluster.peer={other}:9094" for other in alertmanagers if other != alertmanagers[index - 1]]
        assert [flag for flag in alertmanager.inputs["command"] if flag.startswith("--cluster.")] == (
            ["--cluster.listen-address=0.0.0.0:9094", "--cluster.peer-timeout=15s", *peers] if peers else ["--cluster.listen-address="])
        assert alertmanager.inputs.get("entrypoints") == (
            ["/bin/sh", "-c", 'address=$(hostname -i) && exec /bin/alertmanager "$@" --cluster.advertise-address="${address%% *}:9094"',
             "alertmanager"] if peers else None)
        # The same configuration everywhere: every Prometheus scrapes every target and alerts every Alertmanager.
        bundle = yaml.safe_load(bundle_files(swarm.get(COMMAND, f"monitoring-prometheus-{index}-config").inputs["stdin"])["prometheus.yml"])
        assert bundle["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"] == [f"{name}:9093" for name in alertmanagers]
        jobs = {job["job_name"]: job for job in bundle["scrape_configs"]}
        assert jobs["prometheus"]["static_configs"][0]["targets"] == [f"carecircle-{stack}-prometheus-{i}:9090" for i in range(1, len(hosts) + 1)]
        assert jobs["api"]["dns_sd_configs"][0]["names"] == [f"tasks.{api_service}"]
        assert "stdin" in swarm.get(COMMAND, f"monitoring-alertmanager-{index}-config").secret_inputs
    edges = json.loads(config["carecircle:swarmEdgeHosts"])
    for index, edge in enumerate(edges, 1):
        exporter = swarm.get(CONTAINER, f"monitoring-nginx-exporter-{index}")
        assert provider_host(swarm, exporter.provider) == edge  # beside its gateway
        assert f"carecircle-{stack}-gateway-{index}:8082" in exporter.inputs["command"][0]


def test_stub_status_is_allowed_from_the_gateways_own_networks(swarm):
    """The exporter reaches its gateway over the edge overlay, whose subnet comes from Swarm's address pool
    (and changes when the network is replaced): the status listener allows what gateway-apply.sh finds on
    the container's interfaces (tests/test_blue_green_switch.py), never a subnet fixed in config."""
    conf = bundle_files(swarm.get(COMMAND, "gateway-1-config").inputs["stdin"])["next.conf"]
    status = conf[conf.index("location = /_gateway/nginx_status"):]
    assert [line.strip() for line in status[:status.index("}")].splitlines()[1:]] == [
        "stub_status;", "allow 127.0.0.1;", "include /etc/nginx/carecircle/status-allow/*.conf;", "deny all;", ""]
    exporter = swarm.get(CONTAINER, "monitoring-nginx-exporter-1")
    assert network_name(swarm, "edge") in [n["name"] for n in exporter.inputs["networksAdvanced"]]


def test_no_output_and_no_plain_input_holds_a_secret(swarm):
    assert not swarm.secret_outputs
    plain = json.dumps([{k: v for k, v in r.inputs.items() if k not in r.secret_inputs} for r in swarm.resources], default=str)
    leaked = [value for value in swarm.secret_values if len(value) > 12 and value in plain]
    assert not leaked


def test_idle_pool_is_a_second_service_and_the_switch_touches_only_the_gateways():
    release = {"carecircle:apiGreenImage": "ghcr.io/carecircle/api:1.1.0@sha256:" + "1" * 64, "carecircle:apiGreenReplicas": 3}
    both = evaluate_stack("prod", overrides=release)
    assert sorted(services(both)) == ["carecircle-prod-api-blue", "carecircle-prod-api-green", "carecircle-prod-workers"]
    assert "carecircle.pool=green" in env_file(both, "carecircle-prod-api-green")["OTEL_RESOURCE_ATTRIBUTES"]
    switched = evaluate_stack("prod", overrides={**release, "carecircle:apiActiveColor": "green"})
    green_service = next(name for name in switched.outputs["services"] if "-api-green-" in name)
    conf = bundle_files(switched.get(COMMAND, "gateway-1-config").inputs["stdin"])["next.conf"]
    assert f"server tasks.{green_service}:3000 resolve" in conf


def test_gateways_are_replaced_one_edge_at_a_time():
    prod = evaluate_stack("prod")
    second = prod.get(CONTAINER, "gateway-2-container")
    readmitted = prod.get(COMMAND, "gateway-1-readmitted")
    assert readmitted.urn in second.dependencies  # gateway 2 goes only once gateway 1 serves again...
    assert readmitted.inputs["create"] == "sleep 10" and readmitted.inputs["triggers"] == ["gateway-1-container-id"]
    assert prod.get(COMMAND, "gateway-1-config").urn in readmitted.dependencies  # ...configured, and re-admitted
    staging = evaluate_stack("staging")  # one edge: nothing to wait for
    assert not [r for r in staging.of_type(COMMAND) if r.name.endswith("-readmitted")]


def test_every_node_pulls_with_the_stacks_registry_credentials():
    credentials = json.dumps([{"address": "ghcr.io", "username": "carecircle-deploy", "password": "token-3f9a1c"}])
    prod = evaluate_stack("prod", secrets={"docker:registryAuth": credentials})
    providers = prod.of_type(PROVIDER)
    assert {p.name for p in providers} == {"edge-node-1", "edge-node-2", "monitoring-node-1", "monitoring-node-2"}
    for provider in providers:
        # (a provider's inputs reach the engine as JSON text)
        assert json.loads(provider.inputs["registryAuth"]) == [{"address": "ghcr.io", "username": "carecircle-deploy",
                                                                "password": "token-3f9a1c"}]
        assert "registryAuth" in provider.secret_inputs
    assert "token-3f9a1c" not in json.dumps([{k: v for k, v in r.inputs.items() if k not in r.secret_inputs} for r in prod.resources])


def test_new_registry_credentials_reach_every_service_by_an_update_that_restarts_nothing():
    """Swarm keeps the credentials a service was created or last updated with; a service label that changes with
    docker:registryAuth (a service's own labels are not its task spec) makes the provider send the new ones."""
    def versions(token: str) -> set[str]:
        credentials = json.dumps([{"address": "ghcr.io", "username": "carecircle-deploy", "password": token}])
        evaluation = evaluate_stack("prod", secrets={"docker:registryAuth": credentials})
        labels = [{label["label"]: label["value"] for label in r.inputs["labels"]} for r in evaluation.of_type(SERVICE)]
        assert all(token not in json.dumps(label) for label in labels)  # the token itself is never in a label
        return {label["com.carecircle.registry-credentials"] for label in labels}

    first, same, rotated = versions("token-1"), versions("token-1"), versions("token-2")
    assert len(first) == 1 and first == same and rotated != first
