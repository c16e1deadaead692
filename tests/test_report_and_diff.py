"""The declared-environment report and the diff, as auditors and CI use them."""

import json
import shutil
import subprocess
import sys

import pytest

from carecircle.audit import report
from carecircle.offline import evaluate_stack, stack_settings
from carecircle.stackfiles import load_stack_config
from conftest import REPO_ROOT


def cli(*args, cwd=REPO_ROOT):
    return subprocess.run([sys.executable, "infra/cli.py", *args], cwd=cwd, capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def prod_report():
    return report.build(evaluate_stack("prod"), stack_settings("prod"))


def test_report_lists_each_service_with_its_exposure_and_operability(prod_report):
    services = prod_report["services"]
    assert set(services) == {"api-blue", "workers", "gateway", "nginx-exporter", "prometheus"}
    api = services["api-blue"]
    assert api["replicas"] == 3 and api["image"].startswith("ghcr.io/carecircle/api:1.0.0@sha256:")
    assert api["ports"] == [] and api["limits"] == {"memory_mb": 1024, "cpus": "1.0"}
    assert api["log_rotation"] == {"driver": "json-file", "max-size": "10m", "max-file": "3"}
    assert api["healthcheck"]["test"][:2] == ["CMD", "node"] and api["restart"] == "unless-stopped"
    secret = {e["name"] for e in api["environment"] if e["secret"]}
    assert secret == {"DATABASE_URL", "REDIS_URL", "RABBITMQ_URL", "JWT_SECRET"}
    assert {"NODE_ENV", "PORT", "OTEL_SERVICE_NAME"} <= {e["name"] for e in api["environment"]}
    assert services["gateway"]["ports"] == [{"bind": "0.0.0.0", "host": 80, "container": 8080},
                                            {"bind": "0.0.0.0", "host": 443, "container": 8443},
                                            {"bind": "127.0.0.1", "host": 8081, "container": 8081}]


def test_report_networks_secrets_routes_and_policy(prod_report):
    assert {n["name"]: n["internal"] for n in prod_report["networks"]}["carecircle-prod-backend"] is True
    assert prod_report["secrets"] == [
        {"name": "carecircle:databaseUrl", "source": "stack config (secret)"},
        {"name": "carecircle:gatewayTlsCertificate", "source": "stack config (secret)"},
        {"name": "carecircle:gatewayTlsKey", "source": "stack config (secret)"},
        {"name": "carecircle:rabbitmqUrl", "source": "stack config (secret)"},
        {"name": "carecircle:redisUrl", "source": "stack config (secret)"},
        {"name": "jwt-secret", "source": "generated (pulumi-random, 64 characters)"},
    ]
    assert prod_report["gateway"]["tls"] == "modern" and prod_report["gateway"]["active_pool"] == "blue"
    assert {"path": "/api/", "service": "api", "strip_prefix": False} in prod_report["gateway"]["routes"]
    assert prod_report["policy"]["violations"] == [] and len(prod_report["policy"]["rules"]) == 8


def test_report_shows_protection_of_data_volumes():
    data = report.build(evaluate_stack("staging", overrides={"carecircle:postgresMode": "container"}),
                        stack_settings("staging", overrides={"carecircle:postgresMode": "container"}))
    assert data["volumes"] == [{"name": "carecircle-staging-postgres-data", "protected": True, "mounted_by": "postgres"},
                               {"name": "carecircle-staging-prometheus-data", "protected": True, "mounted_by": "prometheus"}]


def test_report_never_shows_a_secret_value():
    evaluation = evaluate_stack("dev")
    data = report.build(evaluation, stack_settings("dev"))
    texts = report.markdown(data) + report.as_json(data)
    assert evaluation.secret_values
    assert not [value for value in evaluation.secret_values if value in texts]


def test_mermaid_diagram_shows_what_is_exposed(prod_report):
    diagram = report.mermaid(prod_report)
    assert 'internet -->|"0.0.0.0:443"| gateway' in diagram and 'loopback -->|"8081"| gateway' in diagram
    assert "api_blue --- carecircle_prod_backend" in diagram
    assert "internet -->" not in diagram.split("gateway", 1)[0]


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


def test_diff_between_stacks():
    result = cli("diff", "--stack", "prod", "--against", "staging", "--format", "json")
    assert result.returncode == 0, result.stderr
    changes = {(c["action"], c["name"]) for c in json.loads(result.stdout)}
    assert ("create", "api-blue-3") in changes and ("replace", "api-blue-1") in changes
    assert ("update", "gateway-config") in changes
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
    # the memory limit is updated in place, the rotated Redis URL replaces its consumers
    assert "| replace | docker:index/container:Container | api-blue-1 | envs (secret, changed), memory |" in text
    assert "| replace | docker:index/container:Container | workers-1 | envs (secret, changed) |" in text
    _, config, _ = load_stack_config("prod", two_revisions)
    assert config["carecircle:redisUrl"] not in text  # the secret's value never appears
    old = cli("diff", "--stack", "prod", "--base", "HEAD~1", cwd=two_revisions)
    assert old.returncode == 2 and "cannot be evaluated" in old.stderr


def test_report_lists_what_is_monitored_and_alerted(prod_report):
    monitoring = prod_report["monitoring"]
    assert monitoring["enabled"] and monitoring["retention"] == "30d"
    assert {t["job"] for t in monitoring["targets"]} == {"api", "nginx"}
    assert [a["alert"] for a in monitoring["alerts"]] == ["HighErrorRate", "SlowResponses", "QueueBacklog", "HighMemoryUsage",
                                                          "TargetDown", "QueueWithoutConsumers"]
    assert monitoring["tracing"] == {"otlp_endpoint": "https://otel-collector.carecircle.example:4318", "sample_rate": 0.1, "sentry": False}
    dev = report.build(evaluate_stack("dev"), stack_settings("dev"))
    assert dev["monitoring"] == {"enabled": False}
