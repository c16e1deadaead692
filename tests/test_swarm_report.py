"""The environment report of a swarm stack (staging and prod as committed): each Swarm service with its
rollout, placement, resources and secrets; where each container runs; the Swarm secrets and the ones
that travel another way; a diagram of what each node exposes. Engine stacks keep their report."""

from __future__ import annotations

import copy
import json
import re

import pytest

from carecircle.audit import report, swarm_report
from carecircle.offline import stack_settings
from conftest import REPO_ROOT
from helpers import decoded_texts, engine_settings

SERVICE = "docker:index/service:Service"
EDGE = {"prod": ["ssh://deploy@edge-1.prod.carecircle.example", "ssh://deploy@edge-2.prod.carecircle.example"],
        "staging": ["ssh://deploy@staging.docker.carecircle.example"]}
MONITORING = {"prod": ["ssh://deploy@monitoring-1.prod.carecircle.example", "ssh://deploy@monitoring-2.prod.carecircle.example"],
              "staging": ["ssh://deploy@staging.docker.carecircle.example"]}


@pytest.fixture(scope="module")
def reports(stacks):
    return {stack: report.build(stacks[stack], stack_settings(stack)) for stack in ("staging", "prod")}


def generated(evaluation, fragment: str) -> str:
    """The name Pulumi generated for the service whose output name holds `fragment`."""
    return next(name for name in evaluation.outputs["services"] if fragment in name)


def network(evaluation, role: str) -> str:
    """The name Pulumi generated for the stack's `role` overlay network."""
    return next(name for name in evaluation.outputs["networks"] if name.startswith(f"carecircle-{evaluation.stack}-{role}-"))


def test_each_swarm_service_is_reported_with_its_generated_name_role_and_spec(stacks, reports):
    prod = reports["prod"]
    assert prod["platform"] == "swarm" and set(prod["swarm_services"]) == {"api-blue", "workers"}
    api = prod["swarm_services"]["api-blue"]
    assert api["name"] == generated(stacks["prod"], "-api-blue-") and api["resource"] == "carecircle-prod-api-blue"
    assert (api["role"], api["pool"], api["mode"], api["replicas"]) == ("api", "blue", "replicated", 3)
    assert api["image"] == "ghcr.io/carecircle/api:1.0.0@sha256:" + "0" * 64
    # ids mapped back to the Network resources, by the names Pulumi generates
    assert api["networks"] == [network(stacks["prod"], "edge"), network(stacks["prod"], "backend")]
    assert api["endpoint_mode"] == "dnsrr" and api["published_ports"] == []
    assert api["update"] == {"order": "start-first", "parallelism": 1, "delay": "10s", "monitor": "15s",
                             "failure_action": "rollback", "max_failure_ratio": "0"}
    assert api["rollback"]["failure_action"] == "pause" and api["rollback"]["order"] == "start-first"
    assert api["placement"] == {"constraints": ["node.labels.carecircle.apps == true"], "preferences": [], "max_per_node": 2,
                                "platforms": ["linux/amd64"]}
    assert api["resources"] == {"limits": {"memory_mb": 1024, "cpus": "1"}, "reservations": {"memory_mb": 1024, "cpus": "1"}}
    assert api["restart"] == {"condition": "any", "delay": "5s", "max_attempts": 0, "window": "30s"}
    assert api["log_rotation"] == {"driver": "json-file", "max-size": "10m", "max-file": "3"}
    assert (api["stop_signal"], api["stop_grace_period"]) == ("SIGTERM", "30s")
    assert api["healthcheck"]["test"][:2] == ["CMD", "node"] and api["healthcheck"]["interval"] == "10s"
    assert api["converge"] is None and api["rollout_wait_seconds"] == 300  # the rollout gate waits, not the provider
    workers = prod["swarm_services"]["workers"]
    assert (workers["role"], workers["pool"], workers["replicas"]) == ("workers", None, 3)
    assert workers["networks"] == [network(stacks["prod"], "backend"), network(stacks["prod"], "egress")]
    assert workers["command"] == ["node", "dist/worker.js"] and workers["stop_grace_period"] == "2m"
    assert reports["staging"]["swarm_services"]["api-blue"]["placement"]["max_per_node"] == 0


def test_secrets_mounted_and_file_pointers(reports):
    api = reports["prod"]["swarm_services"]["api-blue"]
    assert [(m["secret"], m["file"]) for m in api["secrets"]] == [
        (f"carecircle-prod-{s.replace('_', '-')}", f"/run/secrets/{s}") for s in ("database_url", "jwt_secret", "rabbitmq_url", "redis_url")]
    assert all(re.fullmatch(re.escape(m["secret"]) + "-[0-9a-f]{7}", m["secret_name"]) for m in api["secrets"])  # Swarm's name
    env = {e["name"]: e for e in api["environment"]}
    assert env["DATABASE_URL_FILE"] == {"name": "DATABASE_URL_FILE", "secret": False, "file": "/run/secrets/database_url",
                                        "secret_file": "carecircle-prod-database-url"}
    assert {n for n, e in env.items() if e.get("secret_file")} == {"DATABASE_URL_FILE", "REDIS_URL_FILE", "RABBITMQ_URL_FILE", "JWT_SECRET_FILE"}
    assert not any(e["secret"] for e in env.values())
    assert {"NODE_ENV", "PORT", "SHUTDOWN_DELAY_SECONDS"} <= set(env) and "file" not in env["PORT"]
    workers = {e["name"]: e for e in reports["prod"]["swarm_services"]["workers"]["environment"]}
    assert workers["WORKER_HEARTBEAT_FILE"]["secret_file"] is None  # a _FILE variable that is not a secret


def test_every_reference_a_service_holds_resolves_to_a_declared_resource(stacks):
    """The report maps network and secret ids back by the offline ids; if that scheme changed, this fails."""
    for stack in ("staging", "prod"):
        evaluation = stacks[stack]
        networks = swarm_report.networks_by_reference(evaluation)
        for service in evaluation.of_type(SERVICE):
            for attachment in service.inputs["taskSpec"]["networksAdvanceds"]:
                assert attachment["id"] in networks, (stack, service.name, attachment)
        data = report.build(evaluation, stack_settings(stack))
        assert all(m["secret"] for s in data["swarm_services"].values() for m in s["secrets"])
        assert not [n for s in data["swarm_services"].values() for n in s["networks"] if "no such network" in n]


def test_each_container_shows_the_node_it_runs_on(reports):
    for stack, data in reports.items():
        placed = {c["name"]: c["node"] for s in data["services"].values() for c in s["placed"]}
        expected = {f"carecircle-{stack}-gateway-{i}": host for i, host in enumerate(EDGE[stack], 1)}
        expected |= {f"carecircle-{stack}-nginx-exporter-{i}": host for i, host in enumerate(EDGE[stack], 1)}
        volumes = []
        for i, host in enumerate(MONITORING[stack], 1):
            for role in ("prometheus", "alertmanager"):
                expected[f"carecircle-{stack}-{role}-{i}"] = host
                # Replicas that differ (each mounts its own volume) are reported apart, under their Docker names.
                mounted_by = role if len(MONITORING[stack]) == 1 else f"carecircle-{stack}-{role}-{i}"
                volumes.append({"name": f"carecircle-{stack}-{role}-{i}-data", "protected": True, "mounted_by": mounted_by, "node": host})
        expected[f"carecircle-{stack}-blackbox-exporter"] = MONITORING[stack][0]  # reads each edge's certificate from another node
        assert placed == expected
        assert data["volumes"] == sorted(volumes, key=lambda v: v["name"])
        assert data["edge_nodes"] == EDGE[stack] and data["monitoring_nodes"] == MONITORING[stack]


def test_networks_show_overlay_encryption(stacks, reports):
    prod = stacks["prod"]
    assert {n["name"]: (n["driver"], n["internal"], n["encrypted"], n["attachable"]) for n in reports["prod"]["networks"]} == {
        network(prod, "backend"): ("overlay", True, True, True), network(prod, "edge"): ("overlay", False, True, True),
        network(prod, "egress"): ("overlay", False, True, True)}


def test_swarm_secrets_by_name_and_source_and_the_ones_that_travel_another_way(reports):
    prod = reports["prod"]
    assert [(s["name"], s["source"]) for s in prod["swarm_secrets"]] == [
        ("carecircle-prod-database-url", "stack config carecircle:databaseUrl (secret)"),
        ("carecircle-prod-jwt-secret", "generated (pulumi-random jwt-secret, 64 characters)"),
        ("carecircle-prod-rabbitmq-url", "stack config carecircle:rabbitmqUrl (secret)"),
        ("carecircle-prod-redis-url", "stack config carecircle:redisUrl (secret)"),
    ]
    database = prod["swarm_secrets"][0]
    assert database["generated_name"].startswith("carecircle-prod-database-url-")
    assert database["mounted_by"] == [{"service": "api-blue", "file": "/run/secrets/database_url"},
                                      {"service": "workers", "file": "/run/secrets/database_url"}]
    assert prod["swarm_secrets"][1]["mounted_by"] == [{"service": "api-blue", "file": "/run/secrets/jwt_secret"}]
    # The TLS certificate and key are not Swarm secrets: they travel in each gateway's configuration bundle;
    # the receivers' URLs and keys in each Alertmanager's.
    alertmanagers = ["monitoring-alertmanager-1-config.stdin", "monitoring-alertmanager-2-config.stdin"]
    assert prod["secrets_outside_swarm"] == [
        {"name": key, "source": "stack config (secret)", "travels_in": alertmanagers}
        for key in ("carecircle:alertDeadMansSwitchUrl", "carecircle:alertPagerdutyRoutingKey", "carecircle:alertSlackWebhookUrl")] + [
        {"name": key, "source": "stack config (secret)", "travels_in": ["gateway-1-config.stdin", "gateway-2-config.stdin"]}
        for key in ("carecircle:gatewayTlsCertificate", "carecircle:gatewayTlsKey")]
    # staging reads its certificate from host paths
    assert [(s["name"], s["travels_in"]) for s in reports["staging"]["secrets_outside_swarm"]] == [
        (key, ["monitoring-alertmanager-1-config.stdin"]) for key in ("carecircle:alertDeadMansSwitchUrl", "carecircle:alertSlackWebhookUrl")]
    markdown = report.markdown(prod)
    assert "| carecircle:gatewayTlsKey | stack config (secret) | `gateway-1-config.stdin`, `gateway-2-config.stdin` |" in markdown
    assert "| carecircle-prod-jwt-secret | `" in markdown


@pytest.mark.parametrize("stack", ["staging", "prod"])
def test_a_swarm_report_never_shows_a_secret_value(stacks, stack):
    evaluation = stacks[stack]
    data = report.build(evaluation, stack_settings(stack))
    texts = report.markdown(data) + report.as_json(data) + decoded_texts(data)
    fragments = report.secret_fragments(evaluation.secret_values)
    assert evaluation.secret_values and all(len(f) >= 8 for f in fragments)
    assert not [f for f in fragments if f in texts]


def test_a_secret_copied_into_a_service_environment_is_marked_never_shown(stacks):
    evaluation = copy.deepcopy(stacks["prod"])
    service = evaluation.get(SERVICE, "carecircle-prod-workers")
    leaked = next(v for v in evaluation.secret_values if v.startswith("postgresql://"))
    service.inputs["taskSpec"]["containerSpec"]["env"]["LEGACY_DB"] = leaked
    data = report.build(evaluation, stack_settings("prod"))
    env = {e["name"]: e for e in data["swarm_services"]["workers"]["environment"]}
    assert env["LEGACY_DB"]["secret"] is True
    text = report.markdown(data) + report.as_json(data)
    assert "`LEGACY_DB` (secret value!)" in text
    assert not [f for f in report.secret_fragments({leaked}) if f in text]
    assert {v["policy"] for v in data["policy"]["violations"]} == {"swarm-no-env-secrets"}


def test_a_secret_inside_a_longer_value_is_marked_too(stacks):
    evaluation = copy.deepcopy(stacks["prod"])
    leaked = next(v for v in evaluation.secret_values if v.startswith("postgresql://"))
    password = leaked.split("://", 1)[1].split("@", 1)[0].split(":", 1)[1]
    spec = evaluation.get(SERVICE, "carecircle-prod-workers").inputs["taskSpec"]["containerSpec"]
    spec["env"]["CACHE_KEY"] = f"prefix-{password}-suffix"
    data = report.build(evaluation, stack_settings("prod"))
    assert {e["name"]: e["secret"] for e in data["swarm_services"]["workers"]["environment"]}["CACHE_KEY"] is True
    assert "`CACHE_KEY` (secret value!)" in report.markdown(data) and password not in report.markdown(data)


def test_a_mounted_secret_the_stack_does_not_declare_stays_in_the_report(stacks):
    evaluation = copy.deepcopy(stacks["prod"])
    spec = evaluation.get(SERVICE, "carecircle-prod-workers").inputs["taskSpec"]["containerSpec"]
    spec["secrets"].append({"secretId": "hand-made-id", "secretName": "hand-made-token", "fileName": "token"})
    spec["env"]["TOKEN_FILE"] = "/run/secrets/token"
    data = report.build(evaluation, stack_settings("prod"))
    mounts = {m["file"]: m for m in data["swarm_services"]["workers"]["secrets"]}
    assert mounts["/run/secrets/token"] == {"secret": None, "secret_name": "hand-made-token", "file": "/run/secrets/token"}
    workers = report.markdown(data).split("### workers\n", 1)[1].split("\n### ", 1)[0]
    assert "hand-made-token (not declared by this stack) → `/run/secrets/token`" in workers
    assert "`TOKEN_FILE` (file of secret hand-made-token (not declared by this stack))" in workers


@pytest.mark.parametrize("unset, shown", [("failureAction", "on failure **pause**"), ("order", "stop-first, 1 at a time")])
def test_an_unset_update_policy_field_is_reported_as_swarm_applies_it(stacks, unset, shown):
    evaluation = copy.deepcopy(stacks["prod"])
    del evaluation.get(SERVICE, "carecircle-prod-workers").inputs["updateConfig"][unset]
    data = report.build(evaluation, stack_settings("prod"))
    workers = report.markdown(data).split("### workers\n", 1)[1].split("\n### ", 1)[0]
    assert shown in workers.split("- Update: ", 1)[1].split("\n", 1)[0]


def test_markdown_shows_each_services_update_policy_and_placement(reports):
    markdown = report.markdown(reports["prod"])
    assert "## Swarm services" in markdown and "## Containers (outside Swarm" in markdown
    for key in ("api-blue", "workers"):
        section = markdown.split(f"### {key}\n", 1)[1].split("\n### ", 1)[0]
        assert ("- Update: start-first, 1 at a time, 10s between batches, each watched 15s, on failure **rollback** "
                "(max failure ratio 0)") in section
        assert "- Placement: `node.labels.carecircle.apps == true`; at most 2 per node; platforms linux/amd64" in section
        assert "- Restart: on any, after 5s, unlimited attempts, window 30s" in section
    api = markdown.split("### api-blue\n", 1)[1].split("\n### ", 1)[0]
    assert "- Resources: limits 1024 MB, 1 CPUs; reservations 1024 MB, 1 CPUs" in api
    assert "`DATABASE_URL_FILE` (file of secret carecircle-prod-database-url)" in api
    assert "carecircle-prod-jwt-secret → `/run/secrets/jwt_secret`" in api
    assert "- Stop: SIGTERM, grace period 30s" in api
    assert "| carecircle-prod-gateway-2 | `ssh://deploy@edge-2.prod.carecircle.example` |" in markdown
    assert "**no limit per node**" in report.markdown(reports["staging"])


def test_monitoring_targets_are_the_pools_tasks_by_dns(stacks, reports):
    targets = {t["job"]: t["targets"] for t in reports["prod"]["monitoring"]["targets"]}
    assert targets["api"] == [f"tasks.{generated(stacks['prod'], '-api-blue-')}:3000 (every task, by DNS)"]
    assert targets["nginx"] == ["carecircle-prod-nginx-exporter-1:9113", "carecircle-prod-nginx-exporter-2:9113"]


# --- The diagram: exactly what is exposed, where ---------------------------------------------------------

EXPOSURE = re.compile(r'^\s*(\w+) -->\|"([^"]+)"\| (\w+)$')
MEMBER = re.compile(r"^\s*(\w+) --- (\w+)$")


def diagram_edges(diagram: str) -> tuple[set[tuple[str, str, str]], set[tuple[str, str]], dict[str, str]]:
    """(exposure edges, network memberships, node id -> subgraph id) of a swarm diagram; every edge must
    join declared nodes."""
    declared: dict[str, str] = {}
    subgraph = ""
    for line in diagram.splitlines():
        if match := re.match(r"^\s*subgraph (\w+) ", line):
            subgraph = match[1]
        elif line.strip() == "end":
            subgraph = ""
        elif match := re.match(r"^\s*(\w+)(\(\(|\[\[|\[|\{\{)", line):
            declared[match[1]] = subgraph
    exposures, members = set(), set()
    for line in diagram.splitlines():
        if match := EXPOSURE.match(line):
            source, label, target = match.groups()
            assert source in declared and target in declared, line
            exposures.add((source, label, target))
        elif match := MEMBER.match(line):
            assert match[1] in declared and match[2] in declared, line
            members.add((match[1], match[2]))
        else:
            assert "--" not in line, f"unparsed edge {line!r}"
    return exposures, members, declared


def test_prod_diagram_shows_each_edge_nodes_ports_and_preview_exactly(stacks, reports):
    exposures, members, declared = diagram_edges(report.mermaid(reports["prod"]))
    edge_net, backend, egress = (network(stacks["prod"], role).replace("-", "_") for role in ("edge", "backend", "egress"))
    edge = {i: f"node_edge_{i}_prod_carecircle_example" for i in (1, 2)}
    assert exposures == {
        ("internet", "0.0.0.0:80", "carecircle_prod_gateway_1"), ("internet", "0.0.0.0:443", "carecircle_prod_gateway_1"),
        ("internet", "0.0.0.0:80", "carecircle_prod_gateway_2"), ("internet", "0.0.0.0:443", "carecircle_prod_gateway_2"),
        (f"{edge[1]}_loopback", "8081", "carecircle_prod_gateway_1"), (f"{edge[2]}_loopback", "8081", "carecircle_prod_gateway_2"),
    }
    # each gateway and each node's 127.0.0.1 inside its own node
    assert declared["carecircle_prod_gateway_1"] == declared[f"{edge[1]}_loopback"] == edge[1]
    assert declared["carecircle_prod_gateway_2"] == declared[f"{edge[2]}_loopback"] == edge[2]
    for i in (1, 2):
        assert declared[f"carecircle_prod_prometheus_{i}"] == declared[f"carecircle_prod_alertmanager_{i}"] == f"node_monitoring_{i}_prod_carecircle_example"
    assert declared["svc_api_blue"] == declared["svc_workers"] == "swarm_services"
    assert members == {
        ("carecircle_prod_gateway_1", edge_net), ("carecircle_prod_gateway_2", edge_net),
        ("carecircle_prod_nginx_exporter_1", edge_net), ("carecircle_prod_nginx_exporter_1", backend),
        ("carecircle_prod_nginx_exporter_2", edge_net), ("carecircle_prod_nginx_exporter_2", backend),
        ("carecircle_prod_prometheus_1", backend), ("carecircle_prod_prometheus_2", backend),
        ("carecircle_prod_alertmanager_1", backend), ("carecircle_prod_alertmanager_1", egress),
        ("carecircle_prod_alertmanager_2", backend), ("carecircle_prod_alertmanager_2", egress),
        ("carecircle_prod_blackbox_exporter", edge_net), ("carecircle_prod_blackbox_exporter", backend),
        ("svc_api_blue", edge_net), ("svc_api_blue", backend),
        ("svc_workers", backend), ("svc_workers", egress),
    }


def test_staging_diagram_one_node_holds_everything(reports):
    exposures, _, declared = diagram_edges(report.mermaid(reports["staging"]))
    node = "node_staging_docker_carecircle_example"
    assert exposures == {("internet", "0.0.0.0:80", "carecircle_staging_gateway_1"), ("internet", "0.0.0.0:443", "carecircle_staging_gateway_1"),
                         (f"{node}_loopback", "8081", "carecircle_staging_gateway_1")}
    assert {declared[n] for n in ("carecircle_staging_gateway_1", "carecircle_staging_prometheus_1", "carecircle_staging_alertmanager_1",
                                  f"{node}_loopback")} == {node}


def test_a_service_publishing_a_port_shows_on_every_node(stacks):
    evaluation = copy.deepcopy(stacks["prod"])
    evaluation.get(SERVICE, "carecircle-prod-api-blue").inputs["endpointSpec"] = {
        "mode": "vip", "ports": [{"targetPort": 3000.0, "publishedPort": 3000.0, "protocol": "tcp", "publishMode": "ingress"}]}
    data = report.build(evaluation, stack_settings("prod"))
    assert data["swarm_services"]["api-blue"]["published_ports"] == [{"published": 3000, "target": 3000, "protocol": "tcp", "mode": "ingress"}]
    exposures, _, _ = diagram_edges(report.mermaid(data))
    assert ("internet", "every node:3000", "svc_api_blue") in exposures
    assert "tls-on" in {v["policy"] for v in data["policy"]["violations"]}  # the pack sees it too


# --- Engine stacks keep their report; the CLI ----------------------------------------------------------

def test_an_engine_report_has_no_swarm_part(engine_stacks):
    for stack in ("dev", "prod"):
        data = report.build(engine_stacks[stack], engine_settings(stack))
        assert not {"platform", "swarm_services", "swarm_secrets", "secrets_outside_swarm", "edge_nodes"} & set(data)
        assert not any("placed" in s for s in data["services"].values())
        assert "## Swarm services" not in report.markdown(data) and "subgraph" not in report.mermaid(data)


def test_report_cli_for_prod_matches_the_committed_environment(stacks):
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "infra/cli.py", "report", "--stack", "prod", "--format", "json"], cwd=REPO_ROOT,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["swarm_services"]["api-blue"]["name"] == generated(stacks["prod"], "-api-blue-")
    terminal = subprocess.run([sys.executable, "infra/cli.py", "report", "--stack", "prod"], cwd=REPO_ROOT,
                              capture_output=True, text=True, timeout=300)
    assert terminal.returncode == 0 and "Swarm services" in terminal.stdout and "start-first" in terminal.stdout
