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
    assert not [name for name in stacks["dev"].containers if "prometheus" in name or "exporter" in name]


@pytest.mark.parametrize("stack", ["staging", "prod"])
def test_staging_and_prod_monitor_api_and_nginx(engine_stacks, stack):
    """On one engine; the swarm stacks' monitoring is in test_swarm_stacks.py."""
    evaluation = engine_stacks[stack]
    prometheus = container(evaluation, f"carecircle-{stack}-prometheus")
    assert networks_of(prometheus) == [f"carecircle-{stack}-backend"]  # internal only
    assert published(prometheus) == []
    assert f"--storage.tsdb.retention.time={'30d' if stack == 'prod' else '15d'}" in prometheus.inputs["command"]
    exporter = container(evaluation, f"carecircle-{stack}-nginx-exporter")
    assert networks_of(exporter) == [f"carecircle-{stack}-backend", f"carecircle-{stack}-edge"]
    assert exporter.inputs["command"] == [f"--nginx.scrape-uri=http://carecircle-{stack}-gateway:8082/_gateway/nginx_status"]
    volume = evaluation.get("docker:index/volume:Volume", "monitoring-prometheus-data")
    assert volume.protect and volume.inputs["name"] == f"carecircle-{stack}-prometheus-data"
    files = bundle_files(evaluation.get(COMMAND, "monitoring-config").inputs["stdin"])
    config = yaml.safe_load(files["prometheus.yml"])
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    # Managed data services are not scraped here; the certificate each gateway serves is probed.
    assert set(jobs) == {"prometheus", "api", "nginx", "gateway-certificate"}
    api_targets = jobs["api"]["static_configs"][0]["targets"]
    assert api_targets == [f"carecircle-{stack}-api-blue-{i}:3000" for i in range(1, 4 if stack == "prod" else 3)]
    gateway_ports = [p["internal"] for p in container(evaluation, f"carecircle-{stack}-gateway").inputs["ports"]]
    assert 8082 not in gateway_ports  # the status listener is never published


def test_dev_with_monitoring_scrapes_the_data_services():
    evaluation = evaluate_stack("dev", overrides={"carecircle:monitoringEnabled": True, "carecircle:prometheusHostPort": 9090})
    assert published(container(evaluation, "carecircle-dev-prometheus")) == [("127.0.0.1", 9090, 9090)]
    postgres_exporter = container(evaluation, "carecircle-dev-postgres-exporter")
    assert env_names(postgres_exporter) == {"DATA_SOURCE_NAME"} and "envs" in postgres_exporter.secret_inputs
    redis_exporter = container(evaluation, "carecircle-dev-redis-exporter")
    assert env_names(redis_exporter) == {"REDIS_ADDR", "REDIS_PASSWORD"} and "envs" in redis_exporter.secret_inputs
    config = yaml.safe_load(bundle_files(evaluation.get(COMMAND, "monitoring-config").inputs["stdin"])["prometheus.yml"])
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(jobs) == {"prometheus", "api", "nginx", "postgres", "redis", "rabbitmq"}
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
    count = 6 if stack == "dev" else 8  # TLS stacks: the two certificate alerts
    assert rules.returncode == 0 and f"SUCCESS: {count} rules found" in rules.stdout, rules.stdout + rules.stderr


def fired(labels, summary, description):
    return {"exp_labels": labels, "exp_annotations": {"summary": summary, "description": description}}


def case(series, alert, at, expected):
    return {"interval": "1m", "input_series": [{"series": s, "values": v} for s, v in series],
            "alert_rule_test": [{"eval_time": at, "alertname": alert, "exp_alerts": expected}]}


def alert_cases(memory_limit):
    crit, warn = {"severity": "critical"}, {"severity": "warning"}
    requests = 'http_request_duration_seconds_count{job="api",instance="a",status_code="%s"}'
    bucket = 'http_request_duration_seconds_bucket{job="api",instance="a",le="%s"}'
    memory = 'process_resident_memory_bytes{job="api",instance="a"}'
    return [
        case([(requests % "500", "0+10x30"), (requests % "200", "0+90x30")], "HighErrorRate", "15m",
             [fired(crit, "More than 5% of api requests fail", "10% of api requests answered 5xx over 5 minutes.")]),
        case([(requests % "500", "0+1x30"), (requests % "200", "0+99x30")], "HighErrorRate", "15m", []),
        case([(bucket % "0.5", "0+5x30"), (bucket % "2", "0+10x30"), (bucket % "5", "0+100x30"), (bucket % "+Inf", "0+100x30")],
             "SlowResponses", "15m", [fired(warn, "api p95 response time above 2 s", "p95 is 4.833s.")]),
        case([(bucket % "0.5", "0+100x30"), (bucket % "2", "0+100x30"), (bucket % "5", "0+100x30"), (bucket % "+Inf", "0+100x30")],
             "SlowResponses", "15m", []),
        case([('bull_queue_waiting{queue="notifications"}', "1500x30")], "QueueBacklog", "15m",
             [fired({**warn, "queue": "notifications"}, "Queue notifications holds more than 1000 waiting jobs", "1500 jobs are waiting.")]),
        case([('rabbitmq_detailed_queue_messages_ready{queue="emails",vhost="/"}', "2000x30")], "QueueBacklog", "15m",
             [fired({**warn, "queue": "emails"}, "Queue emails holds more than 1000 waiting jobs", "2000 jobs are waiting.")]),
        case([('bull_queue_waiting{queue="notifications"}', "1500x5 10x25")], "QueueBacklog", "20m", []),  # drained
        case([(memory, f"{int(memory_limit * 0.9)}x30")], "HighMemoryUsage", "10m",
             [fired({**warn, "job": "api", "instance": "a"}, "a uses more than 80% of its 1024 MB limit", "90% of the limit.")]),
        case([(memory, f"{int(memory_limit * 0.5)}x30")], "HighMemoryUsage", "10m", []),
        case([('up{job="api",instance="a"}', "0x10")], "TargetDown", "5m",
             [fired({**crit, "job": "api", "instance": "a"}, "api target a is down", "Prometheus cannot scrape it.")]),
        case([('up{job="api",instance="a"}', "0x1 1x10")], "TargetDown", "5m", []),  # a blip is not an outage
        case([('rabbitmq_detailed_queue_consumers{queue="emails",vhost="/"}', "0x10")], "QueueWithoutConsumers", "10m",
             [fired({**crit, "queue": "emails"}, "Queue emails has no consumer", "No worker consumes it: messages pile up.")]),
        case([('rabbitmq_detailed_queue_consumers{queue="emails",vhost="/"}', "2x10")], "QueueWithoutConsumers", "10m", []),
    ]


def test_alert_rules_fire_when_they_should_and_only_then(tmp_path):
    settings = write_rendered(tmp_path, "prod")
    limit = settings.api_memory_mb * 1024 * 1024
    (tmp_path / "alerts_test.yml").write_text(yaml.safe_dump(
        {"rule_files": ["alerts.yml"], "evaluation_interval": "1m", "tests": alert_cases(limit)}))
    result = subprocess.run([PROMTOOL, "test", "rules", "alerts_test.yml"], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_thresholds_come_from_config(tmp_path):
    write_rendered(tmp_path, "staging", **{"carecircle:alertQueueDepth": 5000})
    test = case([('bull_queue_waiting{queue="notifications"}', "1500x30")], "QueueBacklog", "15m", [])
    (tmp_path / "alerts_test.yml").write_text(yaml.safe_dump({"rule_files": ["alerts.yml"], "tests": [test]}))
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
        assert rules_loaded(port) == sorted(["HighErrorRate", "SlowResponses", "QueueBacklog", "HighMemoryUsage",
                                             "TargetDown", "QueueWithoutConsumers", "GatewayCertificateExpiresSoon",
                                             "GatewayCertificateUnreadable"])
        from carecircle.rendering import tar_bundle
        broken = tar_bundle({"prometheus.yml": render_prometheus_config(stack_settings("prod")),
                             "alerts.yml": "groups:\n  - name: x\n    rules:\n      - alert: Broken\n        expr: rate(\n"}, mode=0o644)
        refused = apply_prometheus_bundle(conf, port, broken)
        assert refused.returncode == 1 and "still using the previous one" in refused.stderr
        assert len(rules_loaded(port)) == 8  # the running rules are untouched
