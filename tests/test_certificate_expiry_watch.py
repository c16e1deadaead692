"""The certificate each gateway serves, watched from outside it: Debian's prometheus-blackbox-exporter
with the module the stack renders, against a real gateway on nginx 1.30 taking the PROXY protocol; the
alerts at the threshold from config, unit-tested with the real promtool."""

from __future__ import annotations

import contextlib
import subprocess
import urllib.request

import pytest
import yaml
from cryptography import x509
from test_monitoring import PROMTOOL, RUNBOOKS

from acme_harness import SERVER_NAME, acme_settings, edge_gateways
from carecircle.monitoring import CERTIFICATE_MODULE, render_alert_rules, render_blackbox_config, render_prometheus_config
from carecircle.offline import evaluate_stack, stack_settings
from helpers import container
from nginx_harness import free_port, stop, stub_upstreams, wait_for_port
from switch_harness import ENV


def self_signed(directory, days: int) -> tuple[str, str]:
    cert, key = directory / f"cert-{days}.pem", directory / f"key-{days}.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", str(days),
                    "-subj", f"/CN={SERVER_NAME}", "-addext", f"subjectAltName=DNS:{SERVER_NAME}", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)
    return cert.read_text(), key.read_text()


@contextlib.contextmanager
def blackbox(directory, config: str):
    (directory / "blackbox.yml").write_text(config)
    port = free_port()
    process = subprocess.Popen(["prometheus-blackbox-exporter", f"--config.file={directory / 'blackbox.yml'}",
                                f"--web.listen-address=127.0.0.1:{port}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=ENV)
    try:
        wait_for_port(port, process)
        yield port
    finally:
        stop(process)


def probe(port: int, target: str) -> dict[str, float]:
    url = f"http://127.0.0.1:{port}/probe?module={CERTIFICATE_MODULE}&target={target}"
    with urllib.request.urlopen(url, timeout=15) as response:
        lines = response.read().decode().splitlines()
    return {line.split()[0]: float(line.split()[1]) for line in lines if line and not line.startswith("#") and "{" not in line}


def test_the_blackbox_exporter_reads_the_expiry_of_the_certificate_each_gateway_serves_and_follows_a_renewal(tmp_path):
    with edge_gateways(count=1) as (gateway,), stub_upstreams(1) as upstreams:
        first = self_signed(tmp_path, days=10)
        assert gateway.apply(list(upstreams), *first).returncode == 0
        settings = gateway.settings
        with blackbox(tmp_path, render_blackbox_config(settings)) as port:
            target = f"127.0.0.1:{gateway.ports.https}"
            metrics = probe(port, target)
            expected = x509.load_pem_x509_certificate(first[0].encode()).not_valid_after_utc.timestamp()
            assert metrics["probe_success"] == 1 and metrics["probe_ssl_earliest_cert_expiry"] == expected
            renewed = self_signed(tmp_path, days=90)
            assert gateway.apply(list(upstreams), *renewed).returncode == 0
            after = probe(port, target)["probe_ssl_earliest_cert_expiry"]
            assert after == x509.load_pem_x509_certificate(renewed[0].encode()).not_valid_after_utc.timestamp()
            # Without the PROXY header the gateway would refuse the handshake: the module sends it.
            no_proxy = render_blackbox_config(settings.model_copy(update={"gateway_load_balancers": []}))
        with blackbox(tmp_path, no_proxy) as port:
            assert probe(port, target)["probe_success"] == 0


def fired(instance: str, days: int, value: str) -> dict:
    return {"exp_labels": {"severity": "critical", "job": "gateway-certificate", "instance": instance},
            "exp_annotations": {
                "summary": f"The certificate {instance} serves expires in less than {days} days",
                "description": f"{value} days left: renewal (gatewayTls acme) has not happened, see docs/certificates.md.",
                "runbook_url": f"{RUNBOOKS}#gatewaycertificateexpiressoon"}}


def test_the_expiry_alert_fires_below_the_configured_days_and_not_before(tmp_path):
    settings = acme_settings("staging", {"carecircle:alertCertificateExpiryDays": 10})
    (tmp_path / "alerts.yml").write_text(render_alert_rules(settings))
    instance = "carecircle-staging-gateway-1:8443"
    series = f'probe_ssl_earliest_cert_expiry{{job="gateway-certificate",instance="{instance}"}}'
    expires = 20 * 86400  # 20 days after the test's time 0
    tests = [{
        "interval": "1m",
        "input_series": [{"series": series, "values": f"{expires}x16000"},
                         # The handshake fails from 8d12h on.
                         {"series": f'probe_success{{job="gateway-certificate",instance="{instance}"}}', "values": "1x12240 0x4000"}],
        "alert_rule_test": [
            {"eval_time": "9d", "alertname": "GatewayCertificateExpiresSoon", "exp_alerts": []},  # 11 days left
            {"eval_time": "11d", "alertname": "GatewayCertificateExpiresSoon", "exp_alerts": [fired(instance, 10, "9")]},
            {"eval_time": "8d", "alertname": "GatewayCertificateUnreadable", "exp_alerts": []},
            {"eval_time": "9d", "alertname": "GatewayCertificateUnreadable", "exp_alerts": [{
                "exp_labels": {"severity": "critical", "job": "gateway-certificate", "instance": instance},
                "exp_annotations": {"summary": f"No TLS handshake with {instance} for the stack's name",
                                    "description": "The blackbox exporter cannot read the certificate it serves, so its expiry is not watched.",
                                    "runbook_url": f"{RUNBOOKS}#gatewaycertificateunreadable"}}]},
        ],
    }]
    (tmp_path / "test.yml").write_text(yaml.safe_dump({"rule_files": ["alerts.yml"], "evaluation_interval": "1m", "tests": tests}))
    result = subprocess.run([PROMTOOL, "test", "rules", str(tmp_path / "test.yml")], capture_output=True, text=True, timeout=120, env=ENV)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("stack", ["staging", "prod"])
def test_tls_stacks_probe_every_gateway_from_the_blackbox_exporter(stack):
    evaluation = evaluate_stack(stack)
    exporter = container(evaluation, f"carecircle-{stack}-blackbox-exporter")
    config = yaml.safe_load(render_prometheus_config(stack_settings(stack)))
    job = next(j for j in config["scrape_configs"] if j["job_name"] == "gateway-certificate")
    gateways = sorted(name for name in evaluation.containers if "-gateway" in name)
    assert job["static_configs"][0]["targets"] == [f"{name}:8443" for name in gateways] and gateways
    assert job["relabel_configs"][-1]["replacement"] == f"carecircle-{stack}-blackbox-exporter:9115"
    assert exporter.inputs["uploads"][0]["content"] == render_blackbox_config(stack_settings(stack))
    assert not exporter.inputs.get("ports")  # nothing published


def test_the_threshold_must_sit_below_the_renewal_margin():
    from carecircle.settings import ConfigError

    with pytest.raises(ConfigError, match="alertCertificateExpiryDays: must be below gatewayAcmeRenewalMarginDays"):
        acme_settings("staging", {"carecircle:alertCertificateExpiryDays": 30})


def test_promtool_accepts_the_probe_job_and_rules(tmp_path):
    settings = stack_settings("prod")
    (tmp_path / "prometheus.yml").write_text(render_prometheus_config(settings))
    (tmp_path / "alerts.yml").write_text(render_alert_rules(settings))
    result = subprocess.run([PROMTOOL, "check", "config", str(tmp_path / "prometheus.yml")], capture_output=True, text=True, timeout=60, env=ENV)
    assert result.returncode == 0, result.stdout + result.stderr
