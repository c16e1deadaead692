"""Monitoring as each stack declares it, the rendered Prometheus files checked and unit-tested with the
real promtool, and the in-place apply proven on a real Prometheus."""

import contextlib
import json
import shutil
import subprocess
import time
import urllib.request

import pytest
import yaml

from carecircle.monitoring import APPLY_SCRIPT, BOOTSTRAP_CONFIG, prometheus_bundle, render_alert_rules, render_prometheus_config
from carecircle.offline import evaluate_stack, stack_settings
from helpers import COMMAND, bundle_files, container, env_names, networks_of, published
from nginx_harness import free_port
from switch_harness import ENV

PROMTOOL = shutil.which("promtool", path=ENV["PATH"]) or "promtool"
PROMETHEUS = shutil.which("prometheus", path=ENV["PATH"]) or "prometheus"


def test_dev_runs_no_monitoring_by_default(stacks):
    assert not [name for name in stacks["dev"].containers if "prometheus" in name or "exporter" in name or "alertmanager" in name]


@pytest.mark.parametrize("stack", ["staging", "prod"])
def test_staging_and_prod_config_on_one_engine_monitors_api_and_nginx(engine_stacks, stack):
    """Their config rehearsed on one engine (a dev stack); the swarm stacks' monitoring is in test_swarm_stacks.py."""
    evaluation = engine_stacks[stack]
    name = evaluation.stack
    prometheus = container(evaluation, f"carecircle-{name}-prometheus")
    assert networks_of(prometheus) == [f"carecircle-{name}-backend"]  # internal only
    assert published(prometheus) == []
    assert f"--storage.tsdb.retention.time={'30d' if stack == 'prod' else '15d'}" in prometheus.inputs["command"]
    exporter = container(evaluation, f"carecircle-{name}-nginx-exporter")
    assert networks_of(exporter) == [f"carecircle-{name}-backend", f"carecircle-{name}-edge"]
    assert exporter.inputs["command"] == [f"--nginx.scrape-uri=http://carecircle-{name}-gateway:8082/_gateway/nginx_status"]
    for data in ("prometheus", "alertmanager"):
        volume = evaluation.get("docker:index/volume:Volume", f"monitoring-{data}-data")
        assert not volume.protect and volume.inputs["name"] == f"carecircle-{name}-{data}-data"  # dev: staging/prod protect theirs
    # Alertmanager: on the backend network for Prometheus, on egress for its receivers; nothing published;
    # alone on one engine (no gossip); its configuration (receiver credentials) only in a secret input.
    alertmanager = container(evaluation, f"carecircle-{name}-alertmanager")
    assert networks_of(alertmanager) == [f"carecircle-{name}-backend", f"carecircle-{name}-egress"] and published(alertmanager) == []
    assert "--cluster.listen-address=" in alertmanager.inputs["command"]
    assert alertmanager.inputs["volumes"] == [{"volumeName": f"carecircle-{name}-alertmanager-data", "containerPath": "/alertmanager"}]
    assert "stdin" in evaluation.get(COMMAND, "monitoring-alertmanager-config").secret_inputs
    files = bundle_files(evaluation.get(COMMAND, "monitoring-prometheus-config").inputs["stdin"])
    config = yaml.safe_load(files["prometheus.yml"])
    assert config["alerting"]["alertmanagers"] == [{"static_configs": [{"targets": [f"carecircle-{name}-alertmanager:9093"]}]}]
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    # Managed data services are not scraped here; the certificate each gateway serves is probed.
    assert set(jobs) == {"prometheus", "alertmanager", "api", "nginx", "gateway-certificate"}
    assert jobs["alertmanager"]["static_configs"][0]["targets"] == [f"carecircle-{name}-alertmanager:9093"]
    api_targets = jobs["api"]["static_configs"][0]["targets"]
    assert api_targets == [f"carecircle-{name}-api-blue-{i}:3000" for i in range(1, 4 if stack == "prod" else 3)]
    gateway_ports = [p["internal"] for p in container(evaluation, f"carecircle-{name}-gateway").inputs["ports"]]
    assert 8082 not in gateway_ports  # the status listener is never published


def test_dev_with_monitoring_scrapes_the_data_services():
    evaluation = evaluate_stack("dev", overrides={"carecircle:monitoringEnabled": True, "carecircle:prometheusHostPort": 9090})
    assert published(container(evaluation, "carecircle-dev-prometheus")) == [("127.0.0.1", 9090, 9090)]
    postgres_exporter = container(evaluation, "carecircle-dev-postgres-exporter")
    assert env_names(postgres_exporter) == {"DATA_SOURCE_NAME"} and "envs" in postgres_exporter.secret_inputs
    redis_exporter = container(evaluation, "carecircle-dev-redis-exporter")
    assert env_names(redis_exporter) == {"REDIS_ADDR", "REDIS_PASSWORD"} and "envs" in redis_exporter.secret_inputs
    config = yaml.safe_load(bundle_files(evaluation.get(COMMAND, "monitoring-prometheus-config").inputs["stdin"])["prometheus.yml"])
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(jobs) == {"prometheus", "alertmanager", "api", "nginx", "postgres", "redis", "rabbitmq"}
    # Alertmanager reaches its receivers through the egress network, which dev then has.
    assert networks_of(container(evaluation, "carecircle-dev-alertmanager")) == ["carecircle-dev-backend", "carecircle-dev-egress"]
    assert networks_of(container(evaluation, "carecircle-dev-workers-1")) == ["carecircle-dev-backend"]  # no data service to reach outside
    assert jobs["rabbitmq"]["metrics_path"] == "/metrics/detailed"
    assert jobs["rabbitmq"]["static_configs"][0]["targets"] == ["carecircle-dev-rabbitmq:15692"]


def test_prometheus_port_is_dev_only():
    from carecircle.settings import ConfigError
    with pytest.raises(ConfigError, match="prometheusHostPort"):
        evaluate_stack("staging", overrides={"carecircle:prometheusHostPort": 9090})


# ---- promtool ------------------------------------------------------------------------------

def write_rendered(directory, stack, **overrides):
    settings = stack_settings(stack, overrides={"carecircle:monitoringEnabled": True, **overrides})
    (directory / "prometheus.yml").write_text(render_prometheus_config(settings))
    (directory / "alerts.yml").write_text(render_alert_rules(settings))
    return settings


@pytest.mark.parametrize("stack", ["dev", "staging", "prod"])
def test_every_stack_passes_promtool_check(tmp_path, stack):
    write_rendered(tmp_path, stack)
    config = subprocess.run([PROMTOOL, "check", "config", "prometheus.yml"], cwd=tmp_path, capture_output=True, text=True)
    assert config.returncode == 0, config.stdout + config.stderr
    rules = subprocess.run([PROMTOOL, "check", "rules", "alerts.yml"], cwd=tmp_path, capture_output=True, text=True)
    count = len(ALERTS) if stack == "dev" else len(ALERTS) + len(CERTIFICATE_ALERTS)  # TLS stacks: the certificate alerts
    assert rules.returncode == 0 and f"SUCCESS: {count} rules found" in rules.stdout, rules.stdout + rules.stderr


ALERTS = ("HighErrorRate", "SlowResponses", "QueueBacklog", "HighMemoryUsage", "TargetDown", "ApiDown", "GatewayStatusUnreadable",
          "QueueWithoutConsumers", "Watchdog")
CERTIFICATE_ALERTS = ("GatewayCertificateExpiresSoon", "GatewayCertificateUnreadable")  # stacks with gatewayTls
RUNBOOKS = "https://github.com/carecircle/carecircle-infra/blob/main/docs/runbooks.md"


def fired(alert, labels, summary, description):
    return {"exp_labels": labels, "exp_annotations": {"summary": summary, "description": description,
                                                      "runbook_url": f"{RUNBOOKS}#{alert.lower()}"}}


def case(series, alert, at, expected, interval="1m"):
    return {"interval": interval, "input_series": [{"series": s, "values": v} for s, v in series],
            "alert_rule_test": [{"eval_time": at, "alertname": alert, "exp_alerts": expected}]}


def alert_cases(memory_limit):
    crit, warn = {"severity": "critical"}, {"severity": "warning"}
    requests = 'http_request_duration_seconds_count{job="api",instance="a",status_code="%s"}'
    bucket = 'http_request_duration_seconds_bucket{job="api",instance="a",le="%s"}'
    memory = 'process_resident_memory_bytes{job="api",instance="a"}'
    down = "Every replica is down, unhealthy or gone: the gateway has nothing to send requests to."
    return [
        case([(requests % "500", "0+10x30"), (requests % "200", "0+90x30")], "HighErrorRate", "15m",
             [fired("HighErrorRate", crit, "More than 5% of api requests fail", "10% of api requests answered 5xx over 5m.")]),
        case([(requests % "500", "0+1x30"), (requests % "200", "0+99x30")], "HighErrorRate", "15m", []),
        case([(bucket % "0.5", "0+5x30"), (bucket % "2", "0+10x30"), (bucket % "5", "0+100x30"), (bucket % "+Inf", "0+100x30")],
             "SlowResponses", "15m", [fired("SlowResponses", warn, "api p95 response time above 2 s", "p95 is 4.833s.")]),
        case([(bucket % "0.5", "0+100x30"), (bucket % "2", "0+100x30"), (bucket % "5", "0+100x30"), (bucket % "+Inf", "0+100x30")],
             "SlowResponses", "15m", []),
        case([('bull_queue_waiting{queue="notifications"}', "1500x30")], "QueueBacklog", "15m",
             [fired("QueueBacklog", {**warn, "queue": "notifications"}, "Queue notifications holds more than 1000 waiting jobs",
                    "1500 jobs are waiting.")]),
        case([('rabbitmq_detailed_queue_messages_ready{queue="emails",vhost="/"}', "2000x30")], "QueueBacklog", "15m",
             [fired("QueueBacklog", {**warn, "queue": "emails"}, "Queue emails holds more than 1000 waiting jobs", "2000 jobs are waiting.")]),
        case([('bull_queue_waiting{queue="notifications"}', "1500x5 10x25")], "QueueBacklog", "20m", []),  # drained
        case([(memory, f"{int(memory_limit * 0.9)}x30")], "HighMemoryUsage", "10m",
             [fired("HighMemoryUsage", {**warn, "job": "api", "instance": "a"}, "a uses more than 80% of its 1024 MB limit", "90% of the limit.")]),
        case([(memory, f"{int(memory_limit * 0.5)}x30")], "HighMemoryUsage", "10m", []),
        case([('up{job="api",instance="a"}', "0x10")], "TargetDown", "5m",
             [fired("TargetDown", {**crit, "job": "api", "instance": "a"}, "api target a is down", "Prometheus cannot scrape it.")]),
        case([('up{job="api",instance="a"}', "0x1 1x10")], "TargetDown", "5m", []),  # a blip is not an outage
        # The active pool (blue in prod) with no replica answering: down, gone from DNS, or only green answering.
        case([('up{job="api",instance="a",pool="blue"}', "0x10")], "ApiDown", "5m",
             [fired("ApiDown", crit, "No replica of the active api pool (blue) answers Prometheus", down)]),
        case([('up{job="api",instance="g",pool="green"}', "1x10")], "ApiDown", "5m",
             [fired("ApiDown", crit, "No replica of the active api pool (blue) answers Prometheus", down)]),
        case([('up{job="api",instance="a",pool="blue"}', "0x10"), ('up{job="api",instance="b",pool="blue"}', "1x10")], "ApiDown", "5m", []),
        case([('nginx_up{job="nginx",instance="x:9113"}', "0x10")], "GatewayStatusUnreadable", "5m",
             [fired("GatewayStatusUnreadable", {**crit, "job": "nginx", "instance": "x:9113"},
                    "The nginx exporter x:9113 cannot read its gateway's status",
                    "The gateway beside it is down, or its status listener refuses the exporter.")]),
        case([('nginx_up{job="nginx",instance="x:9113"}', "1x10")], "GatewayStatusUnreadable", "5m", []),
        case([('rabbitmq_detailed_queue_consumers{queue="emails",vhost="/"}', "0x10")], "QueueWithoutConsumers", "10m",
             [fired("QueueWithoutConsumers", {**crit, "queue": "emails"}, "Queue emails has no consumer", "No worker consumes it: messages pile up.")]),
        case([('rabbitmq_detailed_queue_consumers{queue="emails",vhost="/"}', "2x10")], "QueueWithoutConsumers", "10m", []),
        # Always, with nothing else known: what the dead man's switch hears.
        case([], "Watchdog", "1m", [fired("Watchdog", {"severity": "none"}, "Alerting works: this alert always fires",
                                          "Prometheus evaluates rules and Alertmanager delivers them; routed to the dead man's switch only.")]),
    ]


def test_alert_rules_fire_when_they_should_and_only_then(tmp_path):
    settings = write_rendered(tmp_path, "prod")
    limit = settings.api_memory_mb * 1024 * 1024
    cases = alert_cases(limit)
    assert {c["alert_rule_test"][0]["alertname"] for c in cases} == set(ALERTS)  # every alert, firing
    (tmp_path / "alerts_test.yml").write_text(yaml.safe_dump(
        {"rule_files": ["alerts.yml"], "evaluation_interval": "1m", "tests": cases}))
    result = subprocess.run([PROMTOOL, "test", "rules", "alerts_test.yml"], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_has_a_severity_and_a_runbook_that_exists(tmp_path):
    import re

    from conftest import REPO_ROOT

    write_rendered(tmp_path, "prod")
    rules = [rule for group in yaml.safe_load((tmp_path / "alerts.yml").read_text())["groups"] for rule in group["rules"]]
    assert [rule["alert"] for rule in rules] == [*ALERTS[:-1], *CERTIFICATE_ALERTS, "Watchdog"]  # prod serves TLS
    # GitHub's anchor of a `## Name` heading is the name in lower case.
    anchors = {heading.lower() for heading in re.findall(r"^## (\w+)$", (REPO_ROOT / "docs" / "runbooks.md").read_text(), re.M)}
    for rule in rules:
        expected = "none" if rule["alert"] == "Watchdog" else ("critical", "warning")
        assert rule["labels"]["severity"] in expected, rule["alert"]
        assert rule["annotations"]["runbook_url"] == f"{RUNBOOKS}#{rule['alert'].lower()}"
        assert rule["alert"].lower() in anchors, f"docs/runbooks.md has no section for {rule['alert']}"


def test_thresholds_and_timing_come_from_config(tmp_path):
    write_rendered(tmp_path, "staging", **{"carecircle:alertQueueDepth": 5000, "carecircle:alertFor": "30s",
                                           "carecircle:alertRateWindow": "1m", "carecircle:alertTargetDownFor": "10s",
                                           "carecircle:alertRunbookUrl": "https://wiki.carecircle.example/runbooks"})
    requests = 'http_request_duration_seconds_count{job="api",instance="a",status_code="%s"}'
    tests = [
        case([('bull_queue_waiting{queue="notifications"}', "1500x30")], "QueueBacklog", "15m", []),
        # 30 s of errors over a 1 m window fire; the default (5 m for 5 m) would still be pending.
        case([(requests % "500", "0+1x200"), (requests % "200", "0+9x200")], "HighErrorRate", "45s",
             [{"exp_labels": {"severity": "critical"}, "exp_annotations": {
                 "summary": "More than 5% of api requests fail", "description": "10% of api requests answered 5xx over 1m.",
                 "runbook_url": "https://wiki.carecircle.example/runbooks#higherrorrate"}}], interval="5s"),
        case([('up{job="api",instance="a"}', "0x10")], "TargetDown", "15s",
             [{"exp_labels": {"severity": "critical", "job": "api", "instance": "a"}, "exp_annotations": {
                 "summary": "api target a is down", "description": "Prometheus cannot scrape it.",
                 "runbook_url": "https://wiki.carecircle.example/runbooks#targetdown"}}], interval="5s"),
    ]
    (tmp_path / "alerts_test.yml").write_text(yaml.safe_dump({"rule_files": ["alerts.yml"], "evaluation_interval": "5s", "tests": tests}))
    result = subprocess.run([PROMTOOL, "test", "rules", "alerts_test.yml"], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


# ---- the in-place apply on a real Prometheus ------------------------------------------------

@contextlib.contextmanager
def running_prometheus(directory):
    port = free_port()
    conf = directory / "conf"
    conf.mkdir()
    (conf / "prometheus.yml").write_text(BOOTSTRAP_CONFIG)
    process = subprocess.Popen([PROMETHEUS, f"--config.file={conf / 'prometheus.yml'}", f"--web.listen-address=127.0.0.1:{port}",
                                f"--storage.tsdb.path={directory / 'data'}", "--web.enable-lifecycle"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV)
    try:
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(OSError), urllib.request.urlopen(f"http://127.0.0.1:{port}/-/ready", timeout=1):
                break
            assert process.poll() is None and time.monotonic() < deadline, "prometheus did not start"
            time.sleep(0.2)
        yield port, conf
    finally:
        process.terminate()
        process.wait(timeout=30)


def rules_loaded(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v1/rules", timeout=5) as response:
        groups = json.load(response)["data"]["groups"]
    return sorted(rule["name"] for group in groups for rule in group["rules"])


def apply_prometheus_bundle(conf, port, bundle):
    return subprocess.run(["sh", "-c", APPLY_SCRIPT], input=bundle, capture_output=True, text=True, timeout=60,
                          env={**ENV, "CARECIRCLE_PROMETHEUS_DIR": str(conf), "CARECIRCLE_PROMETHEUS_PORT": str(port)})


def test_config_and_rules_are_applied_in_place_and_a_bad_one_is_refused(tmp_path):
    with running_prometheus(tmp_path) as (port, conf):
        assert rules_loaded(port) == []
        applied = apply_prometheus_bundle(conf, port, prometheus_bundle(stack_settings("prod")))
        assert applied.returncode == 0, applied.stderr
        assert rules_loaded(port) == sorted([*ALERTS, *CERTIFICATE_ALERTS])
        from carecircle.rendering import tar_bundle
        broken = tar_bundle({"prometheus.yml": render_prometheus_config(stack_settings("prod")),
                             "alerts.yml": "groups:\n  - name: x\n    rules:\n      - alert: Broken\n        expr: rate(\n"}, mode=0o644)
        refused = apply_prometheus_bundle(conf, port, broken)
        assert refused.returncode == 1 and "still using the previous one" in refused.stderr
        assert len(rules_loaded(port)) == len(ALERTS) + len(CERTIFICATE_ALERTS)  # the running rules are untouched
