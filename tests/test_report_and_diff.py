"""The declared-environment report and the diff, as auditors and CI use them."""

import copy
import json
import re
import shutil
import subprocess
import sys

import pytest
import yaml

from carecircle.audit import report
from carecircle.monitoring import render_alert_rules
from carecircle.offline import evaluate_stack, stack_settings
from carecircle.stackfiles import load_stack_config
from conftest import REPO_ROOT
from helpers import decoded_texts, engine_settings, on_engine


def cli(*args, cwd=REPO_ROOT):
    return subprocess.run([sys.executable, "infra/cli.py", *args], cwd=cwd, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def prod_report():
    return report.build(on_engine("prod"), engine_settings("prod"))


def test_report_lists_each_service_with_its_exposure_and_operability(prod_report):
    services = prod_report["services"]
    assert set(services) == {"api-blue", "workers", "gateway", "nginx-exporter", "prometheus", "alertmanager", "blackbox-exporter"}
    api = services["api-blue"]
    assert api["replicas"] == 3 and api["image"].startswith("ghcr.io/carecircle/api:1.0.0@sha256:")
    assert api["ports"] == [] and api["limits"] == {"memory_mb": 1024, "cpus": "1.0"}
    assert api["log_rotation"] == {"driver": "json-file", "max-size": "10m", "max-file": "3"}
    assert api["healthcheck"]["test"][:2] == ["CMD", "node"] and api["restart"] == "unless-stopped"
    secret = {e["name"] for e in api["environment"] if e["secret"]}
    assert secret == {"DATABASE_URL", "REDIS_URL", "RABBITMQ_URL", "JWT_SECRET"}
    assert {"NODE_ENV", "PORT", "OTEL_SERVICE_NAME"} <= {e["name"] for e in api["environment"]}
    assert services["gateway"]["ports"] == [{"bind": "127.0.0.1", "host": 80, "container": 8080},  # a dev stack: loopback
                                            {"bind": "127.0.0.1", "host": 443, "container": 8443},
                                            {"bind": "127.0.0.1", "host": 8081, "container": 8081}]


def test_report_networks_secrets_routes_and_policy(prod_report):
    assert {n["name"]: n["internal"] for n in prod_report["networks"]}["carecircle-dev-prod-rehearsal-backend"] is True
    assert prod_report["secrets"] == [
        {"name": "carecircle:alertDeadMansSwitchUrl", "source": "stack config (secret)"},
        {"name": "carecircle:alertPagerdutyRoutingKey", "source": "stack config (secret)"},
        {"name": "carecircle:alertSlackWebhookUrl", "source": "stack config (secret)"},
        {"name": "carecircle:databaseUrl", "source": "stack config (secret)"},
        {"name": "carecircle:gatewayTlsCertificate", "source": "stack config (secret)"},
        {"name": "carecircle:gatewayTlsKey", "source": "stack config (secret)"},
        {"name": "carecircle:rabbitmqUrl", "source": "stack config (secret)"},
        {"name": "carecircle:redisUrl", "source": "stack config (secret)"},
        {"name": "jwt-secret", "source": "generated (pulumi-random, 64 characters)"},
    ]
    assert prod_report["gateway"]["tls"] == "modern" and prod_report["gateway"]["active_pool"] == "blue"
    assert {"path": "/api/", "service": "api", "strip_prefix": False} in prod_report["gateway"]["routes"]
    assert prod_report["policy"]["violations"] == [] and len(prod_report["policy"]["rules"]) == 17


def test_report_shows_protection_of_data_volumes(stacks):
    staging = report.build(stacks["staging"], stack_settings("staging"))
    node = "ssh://deploy@staging.docker.carecircle.example"
    assert staging["volumes"] == [
        {"name": "carecircle-staging-alertmanager-1-data", "protected": True, "mounted_by": "alertmanager", "node": node},
        {"name": "carecircle-staging-prometheus-1-data", "protected": True, "mounted_by": "prometheus", "node": node}]
    with_postgres = {"carecircle:postgresMode": "container"}
    rehearsal = report.build(on_engine("staging", with_postgres), engine_settings("staging", with_postgres))  # a dev stack
    assert rehearsal["volumes"] == [
        {"name": f"carecircle-dev-staging-rehearsal-{role}-data", "protected": False, "mounted_by": role}
        for role in ("alertmanager", "postgres", "prometheus")]


@pytest.mark.parametrize("stack", ["dev", "staging", "prod"])
def test_report_never_shows_a_secret_value(engine_stacks, stack):
    """No secret, nor any part of one (a URL's password, a PEM body), in any format of any report."""
    evaluation = engine_stacks[stack]
    data = report.build(evaluation, engine_settings(stack))
    texts = report.markdown(data) + report.as_json(data) + decoded_texts(data)
    fragments = report.secret_fragments(evaluation.secret_values)
    assert evaluation.secret_values and all(len(f) >= 8 for f in fragments)
    assert not [f for f in fragments if f in texts]


def test_secret_fragments_of_a_url_and_a_pem():
    fragments = report.secret_fragments({"postgresql://app:p%40ss-0123456789@db:5432/x", "-----BEGIN KEY-----\nQUJD\nREVG\n-----END KEY-----\n"})
    assert {"p%40ss-0123456789", "p@ss-0123456789", "app:p%40ss-0123456789", "QUJDREVG", "QUJD", "REVG"} <= fragments


EDGE = re.compile(r'^\s*(internet|loopback) -->\|"([^"]+)"\| (\w+)$')


def exposure(diagram: str) -> set[tuple[str, int, str]]:
    """(bind address, host port, node) of every exposure edge of a Mermaid diagram, each checked to
    point at a declared service node from a declared source node."""
    lines = diagram.splitlines()
    declared = {m[1] for line in lines if (m := re.match(r'^\s*(\w+)\["[^"]+ ×\d+"\]$', line))}
    edges = set()
    for line in lines:
        if (match := EDGE.match(line)) is None:
            assert "-->" not in line, f"unparsed edge {line!r}"
            continue
        source, label, node = match.groups()
        assert node in declared, f"edge to undeclared node {node}"
        assert any(re.match(rf"^\s*{source}\(\(", other) for other in lines), f"edge from undeclared {source}"
        address, _, port = label.rpartition(":") if source == "internet" else ("127.0.0.1", "", label)
        edges.add((address, int(port), node))
    return edges


@pytest.mark.parametrize("stack, expected", [
    ("dev", {("127.0.0.1", 8080, "gateway"), ("127.0.0.1", 8081, "gateway"), ("127.0.0.1", 5432, "postgres"),
             ("127.0.0.1", 15672, "rabbitmq"), ("127.0.0.1", 6379, "redis")}),
    ("staging", {("127.0.0.1", 80, "gateway"), ("127.0.0.1", 443, "gateway"), ("127.0.0.1", 8081, "gateway")}),  # rehearsals: dev stacks
    ("prod", {("127.0.0.1", 80, "gateway"), ("127.0.0.1", 443, "gateway"), ("127.0.0.1", 8081, "gateway")}),
    ("prod public", {("0.0.0.0", 80, "gateway"), ("0.0.0.0", 443, "gateway"), ("127.0.0.1", 8081, "gateway")}),
])
def test_mermaid_diagram_shows_exactly_what_is_exposed(engine_stacks, stack, expected):
    public = {"carecircle:gatewayBindAddress": "0.0.0.0"} if stack == "prod public" else None
    stack = stack.split()[0]
    evaluation = on_engine(stack, public) if public else engine_stacks[stack]
    data = report.build(evaluation, engine_settings(stack, public))
    diagram = report.mermaid(data)
    assert exposure(diagram) == expected
    assert ("internet((internet))" in diagram) == any(address != "127.0.0.1" for address, _, _ in expected)
    assert f"api_blue --- carecircle_{evaluation.stack.replace('-', '_')}_backend" in diagram


def test_a_mislabelled_container_cannot_hide_what_it_exposes(engine_stacks):
    """A container whose labels say it is one more api replica, but which publishes postgres to the
    world, shows as a service of its own in the report and its diagram."""
    evaluation = copy.deepcopy(engine_stacks["prod"])
    api_2 = evaluation.containers["carecircle-dev-prod-rehearsal-api-blue-2"]
    api_2.inputs["ports"] = [{"internal": 5432.0, "external": 5432.0}]  # no address: Docker's 0.0.0.0
    data = report.build(evaluation, engine_settings("prod"))
    # replicas that are not alike are not one service: each shows on its own
    assert "api-blue" not in data["services"]
    assert {f"carecircle-dev-prod-rehearsal-api-blue-{i}" for i in (1, 2, 3)} <= set(data["services"])
    assert data["services"]["carecircle-dev-prod-rehearsal-api-blue-2"]["ports"] == [{"bind": "0.0.0.0", "host": 5432, "container": 5432}]
    assert ("0.0.0.0", 5432, "carecircle_dev_prod_rehearsal_api_blue_2") in exposure(report.mermaid(data))


def test_report_cli_formats_and_errors():
    result = cli("report", "--stack", "staging", "--format", "json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["stack"] == "staging"
    markdown = cli("report", "--stack", "staging", "--format", "markdown")
    assert markdown.stdout == (REPO_ROOT / "docs" / "environments" / "staging.md").read_text()
    unknown = cli("report", "--stack", "qa")
    assert unknown.returncode == 2 and "unknown stack 'qa'" in unknown.stderr and "Traceback" not in unknown.stderr
    bad = cli("report", "--stack", "prod", "--format", "pdf")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr


def test_the_terminal_points_to_the_diagram_instead_of_printing_its_source():
    terminal = cli("report", "--stack", "prod")
    assert terminal.returncode == 0, terminal.stderr
    assert "flowchart" not in terminal.stdout and "-->" not in terminal.stdout
    text = " ".join(terminal.stdout.split())
    assert "is a Mermaid chart: see it in docs/environments/prod.md" in text
    # A stack with no committed report (or a stale one): the command that renders it.
    assert "--format markdown > prod-eu.md" in report.diagram_pointer("prod-eu", committed=False)


def test_diff_between_stacks():
    result = cli("diff", "--stack", "prod", "--against", "staging", "--format", "json")
    assert result.returncode == 0, result.stderr
    changes = {(c["action"], c["name"]) for c in json.loads(result.stdout)}
    # prod runs 3 api replicas to staging's 2 (scaled in place), a second edge node, its own hosts
    assert ("update", "carecircle-<stack>-api-blue") in changes
    assert ("create", "gateway-2-container") in changes and ("update", "gateway-1-config") in changes
    assert cli("diff", "--stack", "prod").returncode == 2  # neither --against nor --base


@pytest.fixture(scope="module")
def two_revisions(tmp_path_factory):
    """A throwaway repository holding this working tree, then one change to prod on top."""
    repo = tmp_path_factory.mktemp("repo")
    for item in ("Pulumi.yaml", "Pulumi.dev.yaml", "Pulumi.staging.yaml", "Pulumi.prod.yaml", "infra", "policy", "dev"):
        source = REPO_ROOT / item
        (shutil.copytree if source.is_dir() else shutil.copy)(source, repo / item)
    git = lambda *args: subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)  # noqa: E731
    git("init", "-q")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "--allow-empty", "-m", "empty")
    git("add", "-A")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "base")
    prod = (repo / "Pulumi.prod.yaml").read_text()
    prod = prod.replace("carecircle:apiMemoryMb: 1024", "carecircle:apiMemoryMb: 2048")
    prod = prod.replace("carecircle:redisUrl:\n    secure: v1:placeholder:set-with-pulumi-config-set-secret",
                        "carecircle:redisUrl:\n    secure: v1:rotated-ciphertext")
    (repo / "Pulumi.prod.yaml").write_text(prod)
    return repo


def test_diff_against_a_git_revision(two_revisions):
    result = cli("diff", "--stack", "prod", "--base", "HEAD", "--format", "markdown", cwd=two_revisions)
    assert result.returncode == 0, result.stderr
    text = result.stdout
    assert "### prod: HEAD → this checkout" in text
    # The rotated Redis URL is a new Swarm secret; the services move to it and to the new memory limit
    # in place (a rolling update), and each rollout is waited for again.
    new_secret = "new secret under a new name, created before the old one is deleted; the services move to it by a rolling update"
    rolling = ("rolling update: Swarm restarts its tasks start-first (each new task healthy before an old one stops), "
               "1 at a time, on failure rollback")
    assert f"| replace | {new_secret} | docker:index/secret:Secret | carecircle-prod-redis-url | data (secret, changed) |" in text
    assert (f"| update | {rolling} | docker:index/service:Service | carecircle-prod-api-blue | taskSpec.containerSpec.secrets.secretId, "
            "taskSpec.containerSpec.secrets.secretName, taskSpec.resources.limits.memoryBytes, taskSpec.resources.reservation.memoryBytes |") in text
    assert (f"| update | {rolling} | docker:index/service:Service | carecircle-prod-workers | taskSpec.containerSpec.secrets.secretId, "
            "taskSpec.containerSpec.secrets.secretName |") in text
    assert "| replace | runs again | command:local:Command | carecircle-prod-api-blue-rollout |" in text
    assert "- **2 Swarm services rolled" in text and "- **1 Swarm secrets replaced:** carecircle-prod-redis-url" in text
    terminal = cli("diff", "--stack", "prod", "--base", "HEAD", cwd=two_revisions)
    assert terminal.returncode == 0, terminal.stderr
    assert f"replace: docker:index/secret:Secret carecircle-prod-redis-url -- {new_secret} [data (secret, changed)]" in terminal.stdout
    as_json = cli("diff", "--stack", "prod", "--base", "HEAD", "--format", "json", cwd=two_revisions)
    assert {"action": "replace", "type": "docker:index/secret:Secret", "name": "carecircle-prod-redis-url", "inputs": ["data"],
            "secret_inputs": ["data"]} in json.loads(as_json.stdout)
    _, config, _ = load_stack_config("prod", two_revisions)
    _, old_config, _ = load_stack_config("prod", REPO_ROOT)
    rotated = {config["carecircle:redisUrl"], old_config["carecircle:redisUrl"]}
    assert len(rotated) == 2  # the old and the new value...
    assert not [f for f in report.secret_fragments(rotated) if f in text]  # ...never appear, nor their passwords
    old = cli("diff", "--stack", "prod", "--base", "HEAD~1", cwd=two_revisions)
    assert old.returncode == 2 and "cannot be evaluated" in old.stderr


def test_report_lists_what_is_monitored_and_alerted(prod_report):
    monitoring = prod_report["monitoring"]
    assert monitoring["enabled"] and monitoring["retention"] == "30d"
    assert {t["job"] for t in monitoring["targets"]} == {"prometheus", "alertmanager", "api", "nginx", "gateway-certificate"}
    # What prod ships today (a change to alerts.yml.j2 must show here, and in docs/environments/)
    assert [(a["alert"], a["for"], a["severity"]) for a in monitoring["alerts"]] == [
        ("HighErrorRate", "5m", "critical"), ("SlowResponses", "5m", "warning"), ("QueueBacklog", "10m", "warning"),
        ("HighMemoryUsage", "5m", "warning"), ("TargetDown", "2m", "critical"), ("ApiDown", "2m", "critical"),
        ("GatewayStatusUnreadable", "2m", "critical"), ("QueueWithoutConsumers", "5m", "critical"),
        ("GatewayCertificateExpiresSoon", "1h", "critical"), ("GatewayCertificateUnreadable", "5m", "critical"), ("Watchdog", "0s", "none")]
    alerts = {a["alert"]: a for a in monitoring["alerts"]}
    assert alerts["HighErrorRate"]["summary"] == "More than 5% of api requests fail"
    assert alerts["HighMemoryUsage"]["summary"] == "{{ $labels.instance }} uses more than 80% of its 1024 MB limit"
    assert monitoring["tracing"] == {"otlp_endpoint": "https://otel-collector.carecircle.example:4318", "sample_rate": 0.1, "sentry": False}
    dev = report.build(evaluate_stack("dev"), stack_settings("dev"))
    assert dev["monitoring"] == {"enabled": False}


def test_report_alerts_are_the_rules_shipped(prod_report):
    """Exactly the rendered rules Prometheus gets, in order, with their `for:` and annotations."""
    rules = [rule for group in yaml.safe_load(render_alert_rules(engine_settings("prod")))["groups"] for rule in group["rules"]]
    assert [(a["alert"], a["for"], a["summary"], a["description"]) for a in prod_report["monitoring"]["alerts"]] == [
        (r["alert"], r.get("for", "0s"), r["annotations"]["summary"], r["annotations"]["description"]) for r in rules]
    markdown = report.markdown(prod_report)
    for rule in rules:
        row = next(line for line in markdown.splitlines() if line.startswith(f"| {rule['alert']} |"))
        assert row.startswith(f"| {rule['alert']} | {rule.get('for', '0s')} | {rule['labels']['severity']} | ")


CERTIFICATE = ["GatewayCertificateExpiresSoon", "GatewayCertificateUnreadable"]  # prod serves TLS
CRITICAL = ["HighErrorRate", "TargetDown", "ApiDown", "GatewayStatusUnreadable", "QueueWithoutConsumers", *CERTIFICATE]
WARNING = ["SlowResponses", "QueueBacklog", "HighMemoryUsage"]


def test_report_says_who_gets_which_alert_by_receiver_name_never_its_secret(prod_report):
    """Read from the alertmanager.yml prod ships, routed as Alertmanager routes: PagerDuty pages the critical
    alerts, Slack gets every alert, the dead man's switch the Watchdog only."""
    alerting = prod_report["monitoring"]["alerting"]
    assert alerting["alertmanagers"] == ["carecircle-dev-prod-rehearsal-alertmanager"]  # prod's config on one engine (the swarm report has two)
    gets = {r["name"]: (r["through"], r["alerts"]) for r in alerting["receivers"]}
    order = ["HighErrorRate", "SlowResponses", "QueueBacklog", "HighMemoryUsage", "TargetDown", "ApiDown", "GatewayStatusUnreadable",
             "QueueWithoutConsumers", *CERTIFICATE]
    assert gets == {"unrouted": ([], []), "dead-mans-switch": (["webhook"], ["Watchdog"]),
                    "slack": (["Slack incoming webhook"], order), "pagerduty": (["PagerDuty Events API v2"], CRITICAL)}
    assert alerting["group_by"] == ["alertname"] and alerting["repeat_interval"] == "4h" and alerting["send_resolved"] is True
    assert alerting["inhibitions"] == ['alertname="TargetDown" silences alertname!="TargetDown" and instance=~".+" with the same job, instance']
    markdown = report.markdown(prod_report)
    assert f"| pagerduty | PagerDuty Events API v2 | {', '.join(CRITICAL)} |" in markdown
    assert "| dead-mans-switch | webhook, every 1m | Watchdog |" in markdown


def test_a_receiver_that_also_takes_warnings_shows_them():
    data = report.build(evaluate_stack("prod", overrides={"carecircle:alertPagerdutySeverities": ["critical", "warning"]}),
                        stack_settings("prod", overrides={"carecircle:alertPagerdutySeverities": ["critical", "warning"]}))
    pagerduty = next(r for r in data["monitoring"]["alerting"]["receivers"] if r["name"] == "pagerduty")
    assert sorted(pagerduty["alerts"]) == sorted(CRITICAL + WARNING)


def test_changing_a_rules_for_changes_the_report(monkeypatch):
    settings = engine_settings("prod")
    shipped = render_alert_rules(settings)
    assert shipped.count("for: 10m") == 1
    monkeypatch.setattr(report, "render_alert_rules", lambda s: shipped.replace("for: 10m", "for: 45m"))
    data = report.build(on_engine("prod"), settings)
    assert {a["alert"]: a["for"] for a in data["monitoring"]["alerts"]}["QueueBacklog"] == "45m"
    assert "| QueueBacklog | 45m | warning |" in report.markdown(data)
