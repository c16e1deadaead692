"""Alerting as the stacks declare it, on the real Alertmanager (Debian's 0.25, with its amtool): every
stack's file passes `amtool check-config`; one Alertmanager on 127.0.0.1, configured by exactly what a
stack renders, delivers to local stand-ins of each receiver kind (a webhook, Slack's incoming webhook and
PagerDuty's Events API v2 over HTTPS, e-mail over SMTP with STARTTLS and authentication), by severity,
with resolved notifications, grouping, inhibition and the Watchdog's pings; and alertmanager-apply.sh
changes receivers in place and refuses a broken file."""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import time
import urllib.request
from datetime import datetime, timedelta, timezone

import pytest
import yaml
from alert_receivers import HttpReceiver, SmtpReceiver, make_tls

from carecircle.alerting import APPLY_SCRIPT, BOOTSTRAP_CONFIG, alertmanager_bundle, render_alertmanager_config
from carecircle.offline import stack_settings
from nginx_harness import free_port
from switch_harness import ENV

AMTOOL = shutil.which("amtool", path=ENV["PATH"]) or "amtool"
ALERTMANAGER = shutil.which("prometheus-alertmanager", path=ENV["PATH"]) or "prometheus-alertmanager"
SMTP_USER, SMTP_PASSWORD = "alerts@carecircle.test", "smtp-password-for-tests"
PAGERDUTY_KEY = "abcdefghijklmnopqrstuvwxyz012345"


@pytest.mark.parametrize("stack", ["dev", "staging", "prod"])
def test_every_stack_passes_amtool_check_config(tmp_path, stack):
    settings = stack_settings(stack, overrides={"carecircle:monitoringEnabled": True})
    (tmp_path / "alertmanager.yml").write_text(render_alertmanager_config(settings))
    result = subprocess.run([AMTOOL, "check-config", "alertmanager.yml"], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    receivers = {"dev": 2, "staging": 3, "prod": 4}[stack]  # unrouted, dead-mans-switch, and each configured one
    assert f" - {receivers} receivers" in result.stdout and " - 1 inhibit rules" in result.stdout, result.stdout


# ---- one real Alertmanager, every receiver kind --------------------------------------------------

def stack_with_every_receiver(https: HttpReceiver, smtp_port: int, **overrides):
    """The dev stack with monitoring on and a receiver of each kind pointing at the local stand-ins,
    timed for a test (seconds instead of minutes)."""
    return stack_settings("dev", overrides={
        "carecircle:monitoringEnabled": True,
        "carecircle:alertGroupWait": "1s", "carecircle:alertGroupInterval": "1s", "carecircle:alertRepeatInterval": "1h",
        "carecircle:alertDeadMansSwitchInterval": "2s",
        "carecircle:alertPagerdutyUrl": https.url("/v2/enqueue"),
        "carecircle:alertEmailTo": "oncall@carecircle.test", "carecircle:alertEmailFrom": "alerts@carecircle.test",
        "carecircle:alertEmailSmarthost": f"localhost:{smtp_port}", "carecircle:alertEmailUsername": SMTP_USER,
        **overrides,
    }, secrets={
        "carecircle:alertWebhookUrl": https.url("/webhook"),
        "carecircle:alertSlackWebhookUrl": https.url("/slack"),
        "carecircle:alertPagerdutyRoutingKey": PAGERDUTY_KEY,
        "carecircle:alertEmailPassword": SMTP_PASSWORD,
        "carecircle:alertDeadMansSwitchUrl": https.url("/deadman"),
    })


@contextlib.contextmanager
def running_alertmanager(directory, ca):
    """Debian's Alertmanager on 127.0.0.1, started from the bootstrap file (as the container is),
    trusting the test CA (as the image trusts the public ones). Stopped by pid, even on failure."""
    port = free_port()
    conf = directory / "conf"
    conf.mkdir()
    (conf / "alertmanager.yml").write_text(BOOTSTRAP_CONFIG)
    process = subprocess.Popen([ALERTMANAGER, f"--config.file={conf / 'alertmanager.yml'}", f"--storage.path={directory / 'data'}",
                                f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address="],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**ENV, "SSL_CERT_FILE": str(ca)})
    try:
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(OSError), urllib.request.urlopen(f"http://127.0.0.1:{port}/-/ready", timeout=1):
                break
            assert process.poll() is None and time.monotonic() < deadline, "alertmanager did not start"
            time.sleep(0.2)
        yield port, conf
    finally:
        process.terminate()
        process.wait(timeout=30)


def apply_bundle(conf, port, bundle):
    return subprocess.run(["sh", "-c", APPLY_SCRIPT], input=bundle, capture_output=True, text=True, timeout=90,
                          env={**ENV, "CARECIRCLE_ALERTMANAGER_DIR": str(conf), "CARECIRCLE_ALERTMANAGER_PORT": str(port)})


def post_alerts(port, alerts):
    """What Prometheus sends: the alerts that fire (endsAt ahead) or resolved (endsAt now)."""
    body = json.dumps(alerts).encode()
    request = urllib.request.Request(f"http://127.0.0.1:{port}/api/v2/alerts", data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=5) as response:
        assert response.status == 200


def alert(name, severity, resolved=False, **labels):
    now = datetime.now(timezone.utc)
    return {"labels": {"alertname": name, "severity": severity, "stack": "dev", **labels},
            "annotations": {"summary": f"{name} summary", "runbook_url": f"https://runbooks.test/#{name.lower()}"},
            "startsAt": (now - timedelta(minutes=1)).isoformat(), "endsAt": (now if resolved else now + timedelta(minutes=5)).isoformat()}


def wait_until(what, check, timeout=30):
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


@pytest.fixture
def alerting(tmp_path):
    tls = make_tls(tmp_path / "tls", ["localhost", "127.0.0.1"])
    smtp_port = free_port()
    with HttpReceiver(tls=tls) as https, SmtpReceiver(tls, SMTP_USER, SMTP_PASSWORD, port=smtp_port) as smtp, \
            running_alertmanager(tmp_path, tls.ca) as (port, conf):
        settings = stack_with_every_receiver(https, smtp_port)
        applied = apply_bundle(conf, port, alertmanager_bundle(settings))
        assert applied.returncode == 0, applied.stderr
        yield https, smtp, port, conf, settings


def test_each_receiver_kind_gets_its_severities_then_the_resolved_notification(alerting):
    https, smtp, port, _, _ = alerting
    post_alerts(port, [alert("HighErrorRate", "critical"), alert("SlowResponses", "warning")])
    wait_until("the critical alert on every receiver", lambda: https.at("/webhook") and https.at("/slack") and https.at("/v2/enqueue")
               and smtp.messages and len(https.at("/webhook")) >= 2)
    time.sleep(2)  # anything more would arrive within two group intervals
    webhook = sorted((r.body["groupLabels"]["alertname"], r.body["status"]) for r in https.at("/webhook"))
    assert webhook == [("HighErrorRate", "firing"), ("SlowResponses", "firing")]  # one notification per group
    slack = https.at("/slack")
    assert sorted(a["title"] for r in slack for a in r.body["attachments"]) == [
        "[FIRING:1] HighErrorRate (dev)", "[FIRING:1] SlowResponses (dev)"]
    assert "Runbook: https://runbooks.test/#higherrorrate" in next(
        a["text"] for r in slack for a in r.body["attachments"] if "HighErrorRate" in a["title"])
    # PagerDuty pages for critical only: Events API v2, with the routing key and the runbook link.
    (page,) = https.at("/v2/enqueue")
    assert page.body["routing_key"] == PAGERDUTY_KEY and page.body["event_action"] == "trigger"
    assert page.body["payload"]["severity"] == "critical"
    assert page.body["payload"]["summary"] == "HighErrorRate (dev): HighErrorRate summary"
    assert page.body["links"] == [{"href": "https://runbooks.test/#higherrorrate", "text": "runbook"}]
    # E-mail for critical only, over STARTTLS, as the configured user.
    (mail,) = smtp.messages
    assert mail["to"] == ["oncall@carecircle.test"] and mail["tls"] and mail["user"] == SMTP_USER
    assert "HighErrorRate" in mail["subject"]

    post_alerts(port, [alert("HighErrorRate", "critical", resolved=True)])
    wait_until("the resolved notifications", lambda: any(r.body["status"] == "resolved" for r in https.at("/webhook"))
               and any(r.body["event_action"] == "resolve" for r in https.at("/v2/enqueue")) and len(smtp.messages) == 2)
    resolve = next(r.body for r in https.at("/v2/enqueue") if r.body["event_action"] == "resolve")
    assert resolve["dedup_key"] == page.body["dedup_key"]  # PagerDuty closes the incident it opened
    assert "RESOLVED" in smtp.messages[1]["subject"].upper()


def test_target_down_silences_the_other_alerts_of_that_target_only(alerting):
    https, _, port, _, _ = alerting
    post_alerts(port, [alert("TargetDown", "critical", job="api", instance="10.0.0.5:3000"),
                       alert("HighMemoryUsage", "warning", job="api", instance="10.0.0.5:3000"),
                       alert("HighMemoryUsage", "warning", job="api", instance="10.0.0.6:3000"),
                       alert("HighErrorRate", "critical")])
    wait_until("three groups", lambda: len(https.at("/webhook")) >= 3)
    time.sleep(2)
    by_group = {r.body["groupLabels"]["alertname"]: r.body for r in https.at("/webhook")}
    assert set(by_group) == {"TargetDown", "HighMemoryUsage", "HighErrorRate"}
    # The replica that cannot be scraped is not also reported for its memory; the other one is.
    assert [a["labels"]["instance"] for a in by_group["HighMemoryUsage"]["alerts"]] == ["10.0.0.6:3000"]


def test_the_watchdog_reaches_only_the_dead_mans_switch_at_its_interval(alerting):
    https, smtp, port, _, _ = alerting
    started = time.time()
    deadline = time.monotonic() + 12
    while time.monotonic() < deadline:  # Prometheus re-sends firing alerts; so does this test
        post_alerts(port, [alert("Watchdog", "none")])
        time.sleep(1)
    pings = [r.at - started for r in https.at("/deadman")]
    assert pings and all(r.body["commonLabels"]["alertname"] == "Watchdog" for r in https.at("/deadman"))
    gaps = [b - a for a, b in zip(pings, pings[1:], strict=False)]
    # Every 2 s: checked every second (a quarter of the interval, at least 1 s), sent once 2 s have passed.
    assert len(pings) >= 3 and all(1.5 <= gap <= 4 for gap in gaps), pings
    assert not https.at("/webhook") and not https.at("/slack") and not https.at("/v2/enqueue") and not smtp.messages


def test_receivers_change_in_place_and_a_broken_file_is_refused_without_printing_it(alerting, tmp_path):
    https, _, port, conf, settings = alerting
    moved = stack_with_every_receiver(https, 25, **{"carecircle:alertWebhookSeverities": ["warning"]})
    applied = apply_bundle(conf, port, alertmanager_bundle(moved))
    assert applied.returncode == 0, applied.stderr
    post_alerts(port, [alert("HighErrorRate", "critical"), alert("SlowResponses", "warning")])
    wait_until("the warning on the webhook", lambda: https.at("/webhook"))
    time.sleep(2)
    assert [r.body["groupLabels"]["alertname"] for r in https.at("/webhook")] == ["SlowResponses"]  # critical no longer goes there
    assert oct((conf / "alertmanager.yml").stat().st_mode & 0o777) == "0o600"

    from carecircle.rendering import tar_bundle
    broken = render_alertmanager_config(moved).replace("receiver: unrouted", "receiver: nobody-by-that-name")
    refused = apply_bundle(conf, port, tar_bundle({"alertmanager.yml": broken}, mode=0o600))
    assert refused.returncode == 1 and "still using the previous one" in refused.stderr
    assert PAGERDUTY_KEY not in refused.stdout + refused.stderr and "enqueue" not in refused.stdout + refused.stderr
    assert yaml.safe_load((conf / "alertmanager.yml").read_text())["route"]["receiver"] == "unrouted"
    assert not (conf / "next").exists()


def test_receiver_secrets_travel_only_in_the_alertmanager_bundle():
    """The bundle is a secret input of the apply command in every stack that sets a receiver."""
    from carecircle.offline import evaluate_stack

    evaluation = evaluate_stack("prod")
    commands = [r for r in evaluation.of_type("command:local:Command") if "alertmanager" in r.name]
    assert len(commands) == 2 and all("stdin" in r.secret_inputs for r in commands)
    secret_values = [v for v in evaluation.secret_values if v.startswith(("fakefake", "https://hooks.slack", "https://deadman"))]
    assert len(secret_values) == 3
    for resource in evaluation.resources:
        plain = json.dumps({k: v for k, v in resource.inputs.items() if k not in resource.secret_inputs}, default=str)
        assert not [v for v in secret_values if v in plain], resource.name
