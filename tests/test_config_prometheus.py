"""Prometheus durations checked by Prometheus: every retention the settings accept is one the real
prometheus binary starts with (a longer one makes it exit), and every scrape interval they accept
keeps the alert rules able to fire, even when a scrape fails (promtool test rules); the issue's 10m
never lets them fire."""

from __future__ import annotations

import re
import subprocess

import pytest
import yaml
from config_checks import accepted, refused, settings_or_error
from hypothesis import HealthCheck, example, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from test_monitoring import PROMETHEUS, PROMTOOL, RUNBOOKS

from carecircle.monitoring import render_alert_rules, render_prometheus_config
from carecircle.settings.monitoring import (
    DURATION_SECONDS,
    MAX_RETENTION_SECONDS,
    SCRAPE_INTERVAL_MAX_SECONDS,
    SHORTEST_ALERT_RANGE_SECONDS,
)

PROPERTY = hypothesis_settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def prometheus_flags_parse(retention: str) -> bool:
    """Whether prometheus accepts `--storage.tsdb.retention.time=<retention>`: its flags are parsed first;
    with them accepted it goes on to read a config file that does not exist, and exits saying so."""
    result = subprocess.run([PROMETHEUS, "--config.file=/nonexistent/prometheus.yml", f"--storage.tsdb.retention.time={retention}"],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode != 0
    if "Error loading config" in result.stderr:
        return True
    assert "Error parsing commandline arguments" in result.stderr, result.stderr
    return False


UNIT_MAX = {unit: MAX_RETENTION_SECONDS // DURATION_SECONDS[unit] for unit in "hdwy"}


@PROPERTY
@given(unit=st.sampled_from("hdwy"), data=st.data())
@example(unit="d", data=None)
def test_every_retention_the_settings_accept_starts_prometheus(unit, data):
    number = UNIT_MAX[unit] if data is None else data.draw(st.sampled_from([1, UNIT_MAX[unit]]) | st.integers(1, min(UNIT_MAX[unit], 999_999)))
    retention = f"{number}{unit}"
    outcome = settings_or_error("prod", {"carecircle:prometheusRetention": retention})
    if number > 999_999:  # more digits than a retention is written with
        return
    assert not hasattr(outcome, "problems"), str(outcome)
    assert prometheus_flags_parse(retention)


@pytest.mark.parametrize("unit", "dwy")
def test_a_retention_prometheus_cannot_hold_is_refused(unit):
    beyond = f"{UNIT_MAX[unit] + 1}{unit}"
    assert "292y" in refused("prod", {"carecircle:prometheusRetention": beyond}, "carecircle:prometheusRetention")
    assert not prometheus_flags_parse(beyond)  # prometheus itself exits on it


@pytest.mark.parametrize("retention", ["999999d", "999999y", "15250w1d", "0d", "15D", "1.5y", "15d ", "-1d", "1e3d", "15"])
def test_retentions_prometheus_would_not_start_with_are_refused(retention):
    refused("prod", {"carecircle:prometheusRetention": retention}, "carecircle:prometheusRetention")


# ---- scrape interval against the alert rules' ranges ------------------------------------------------

def test_the_shortest_range_of_the_alert_rules_is_the_one_the_settings_count_with():
    ranges = re.findall(r"\[([0-9]+)([smh])\]", render_alert_rules(accepted("prod")))
    assert ranges and min(int(n) * DURATION_SECONDS[u] for n, u in ranges) == SHORTEST_ALERT_RANGE_SECONDS


@PROPERTY
@given(interval=st.integers(1, SCRAPE_INTERVAL_MAX_SECONDS).map(lambda s: f"{s}s") | st.just("1m"))
def test_every_accepted_scrape_interval_passes_promtool(tmp_path_factory, interval):
    settings = accepted("prod", {"carecircle:scrapeInterval": interval})
    directory = tmp_path_factory.mktemp("prom")
    (directory / "prometheus.yml").write_text(render_prometheus_config(settings))
    (directory / "alerts.yml").write_text(render_alert_rules(settings))
    checked = subprocess.run([PROMTOOL, "check", "config", "prometheus.yml"], cwd=directory, capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0, checked.stdout + checked.stderr


@pytest.mark.parametrize("interval", [f"{SCRAPE_INTERVAL_MAX_SECONDS + 1}s", "2m", "5m", "10m", "999999m"])
def test_a_scrape_interval_the_alert_ranges_cannot_hold_is_refused(interval):
    assert "never fire" in refused("prod", {"carecircle:scrapeInterval": interval}, "carecircle:scrapeInterval")


def error_rate_fires(directory, interval_seconds: int, failed_every_seconds: int = 0) -> bool:
    """Whether HighErrorRate (10% of requests failing for an hour) fires within the hour, scraped (and the
    rules evaluated) every `interval_seconds`, with a failed scrape every `failed_every_seconds`."""
    settings = accepted("dev", {"carecircle:monitoringEnabled": True})
    (directory / "alerts.yml").write_text(render_alert_rules(settings))
    samples = 3600 // interval_seconds

    def values(step: int) -> str:
        failed = {i for i in range(samples) if failed_every_seconds and (i + 1) * interval_seconds % failed_every_seconds == 0}
        return " ".join("_" if i in failed else str(i * step) for i in range(samples))

    series = 'http_request_duration_seconds_count{job="api",instance="a",status_code="%s"}'
    test = {"interval": f"{interval_seconds}s",
            "input_series": [{"series": series % "500", "values": values(10)}, {"series": series % "200", "values": values(90)}],
            "alert_rule_test": [{"eval_time": f"{samples * interval_seconds - interval_seconds}s", "alertname": "HighErrorRate",
                                 "exp_alerts": [{"exp_labels": {"severity": "critical"}, "exp_annotations": {
                                     "summary": "More than 5% of api requests fail",
                                     "description": f"10% of api requests answered 5xx over {settings.alert_rate_window}.",
                                     "runbook_url": f"{RUNBOOKS}#higherrorrate"}}]}]}
    (directory / "alerts_test.yml").write_text(yaml.safe_dump(
        {"rule_files": ["alerts.yml"], "evaluation_interval": f"{interval_seconds}s", "tests": [test]}))
    result = subprocess.run([PROMTOOL, "test", "rules", "alerts_test.yml"], cwd=directory, capture_output=True, text=True, timeout=60)
    if result.returncode == 0:
        return True
    assert "HighErrorRate" in result.stdout + result.stderr, result.stdout + result.stderr
    return False


def test_at_the_longest_accepted_interval_the_alerts_fire_despite_a_failed_scrape(tmp_path):
    assert error_rate_fires(tmp_path, SCRAPE_INTERVAL_MAX_SECONDS, failed_every_seconds=600)


def test_at_the_intervals_refused_the_alerts_do_not_fire(tmp_path):
    assert not error_rate_fires(tmp_path, 600)  # the 10m: never two samples in a 5m range
    assert error_rate_fires(tmp_path, 200)  # 200s holds two samples per range while every scrape succeeds...
    assert not error_rate_fires(tmp_path, 200, failed_every_seconds=600)  # ...and one failed scrape in ten minutes silences it
