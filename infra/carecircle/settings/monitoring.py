"""Monitoring and tracing: Prometheus, exporters, alert thresholds, OpenTelemetry and Sentry."""

from __future__ import annotations

import re
from typing import Annotated, Any, Iterator, Optional

from pydantic import BeforeValidator

from .address_types import HttpUrl, ImageRef
from .base import Environment, Section, Violation, cross_rule, key
from .secret_types import SENTRY_DSN, secret
from .types import ConfigBool, HttpPath, Port, config_float, config_int, pattern, rule

Percent = config_float(0, 100, exclusive_minimum=True)
Seconds = config_float(0, 3600, exclusive_minimum=True)
SampleRate = config_float(0, 1)
QueueDepth = config_int(1, 1_000_000_000)
ExpiryDays = config_int(1, 3650)
SentryDsn = secret(SENTRY_DSN)
# prometheus/common model/time.go: y is 365 days, w 7 days.
DURATION_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 7 * 86_400, "y": 365 * 86_400}
# A Prometheus duration is int64 nanoseconds (prometheus/common model.ParseDuration): a retention of more
# than about 292 years (106751d) makes Prometheus exit at start ("duration out of range").
MAX_RETENTION_SECONDS = (2**63 - 1) // 10**9
# The shortest range vector of the alert rules (templates/alerts.yml.j2: rate(...[5m])). rate() needs
# two samples in it; four scrapes per range keep it filled when one scrape fails or lands late (Prometheus
# maintainers' rule of thumb, robustperception.io "What range should I use with rate()?").
SHORTEST_ALERT_RANGE_SECONDS = 300
SCRAPES_PER_ALERT_RANGE = 4


def prometheus_seconds(text: str) -> int:
    number, unit = re.fullmatch(r"([0-9]+)([smhdwy])", text).groups()  # type: ignore[union-attr]
    return int(number) * DURATION_SECONDS[unit]


def bounded_prometheus_duration(units: str, example: str, maximum_seconds: int, why: str, fix: str) -> Any:
    """A Prometheus duration in one of `units`, at most `maximum_seconds` (else `why`)."""
    check_text = pattern(rf"[1-9][0-9]{{0,5}}[{units}]", f"must be a duration such as {example} (units: {', '.join(units)})")

    def check(value: Any) -> str:
        text = check_text(value)
        if prometheus_seconds(text) > maximum_seconds:
            raise rule(why, fix)
        return text
    return Annotated[str, BeforeValidator(check)]


Retention = bounded_prometheus_duration("hdwy", "15d", MAX_RETENTION_SECONDS,
                                "must be at most 106751d (292y): Prometheus holds a duration in int64 nanoseconds and exits on "
                                "a longer one (duration out of range)", "100y")
SCRAPE_INTERVAL_MAX_SECONDS = SHORTEST_ALERT_RANGE_SECONDS // SCRAPES_PER_ALERT_RANGE
ScrapeInterval = bounded_prometheus_duration("sm", "15s", SCRAPE_INTERVAL_MAX_SECONDS,
                                     f"must be at most {SCRAPE_INTERVAL_MAX_SECONDS}s: each {SHORTEST_ALERT_RANGE_SECONDS // 60}m range "
                                     f"of the alert rules must hold {SCRAPES_PER_ALERT_RANGE} scrapes, or one failed scrape leaves "
                                     "rate() without samples and the error-rate and latency alerts never fire",
                                     f"{SCRAPE_INTERVAL_MAX_SECONDS}s")


class MonitoringSettings(Section):
    monitoring_enabled: ConfigBool = key("Run Prometheus, the exporters and the alert rules in this stack (always on in staging and prod).", True)
    prometheus_image: ImageRef = key("Prometheus image.", "prom/prometheus:v2.53.0")
    prometheus_retention: Retention = key("How long Prometheus keeps samples (its data volume).", "15d")
    prometheus_host_port: Optional[Port] = key("dev only: publish the Prometheus UI on 127.0.0.1:<port>.", 9090, default=None)
    scrape_interval: ScrapeInterval = key("How often Prometheus scrapes every target.", "15s")
    nginx_exporter_image: ImageRef = key("nginx-prometheus-exporter image (reads the gateway's stub_status).", "nginx/nginx-prometheus-exporter:1.3.0")
    postgres_exporter_image: ImageRef = key("postgres_exporter image, when postgres runs as a container.", "prometheuscommunity/postgres-exporter:v0.15.0")
    redis_exporter_image: ImageRef = key("redis_exporter image, when redis runs as a container.", "oliver006/redis_exporter:v1.62.0")
    api_metrics_path: HttpPath = key("Path of the api's Prometheus metrics on its port.", "/metrics")
    alert_error_rate_percent: Percent = key("Alert when more than this % of api requests fail with 5xx (5 min).", 5)
    alert_latency_p95_seconds: Seconds = key("Alert when the api's p95 response time exceeds this (5 min).", 2)
    alert_queue_depth: QueueDepth = key("Alert when a queue holds more waiting jobs/messages than this (10 min).", 1000)
    alert_memory_percent: Percent = key("Alert when an api replica uses more than this % of its memory limit (5 min).", 80)
    alert_certificate_expiry_days: ExpiryDays = key(
        "Alert when the certificate a gateway serves (probed from outside it) expires in fewer days than this; "
        "with gatewayTls acme it must be below gatewayAcmeRenewalMarginDays.", 14)
    blackbox_exporter_image: ImageRef = key(
        "blackbox_exporter image: probes the certificate each gateway serves (TLS stacks).", "prom/blackbox-exporter:v0.25.0")

    otel_exporter_endpoint: Optional[HttpUrl] = key(
        "OpenTelemetry OTLP endpoint for traces (OTEL_EXPORTER_OTLP_ENDPOINT); unset: no trace export.", "https://otel-collector.example:4318", default=None)
    trace_sample_rate: SampleRate = key("Share of requests traced (OpenTelemetry and Sentry), 0 to 1.", 0.1)
    sentry_dsn: Optional[SentryDsn] = key("Sentry DSN of the api and workers (SENTRY_DSN).", "https://<key>@o0.ingest.sentry.io/0", default=None)

    @cross_rule
    def _expiry_alert_after_renewal(self, environment: Environment) -> Iterator[Violation]:
        # An alert at or above the renewal margin would fire for every certificate still waiting to be renewed.
        margin = self.gateway_acme_renewal_margin_days  # type: ignore[attr-defined]
        if self.monitoring_enabled and self.gateway_tls == "acme" and self.alert_certificate_expiry_days >= margin:  # type: ignore[attr-defined]
            yield Violation("alert_certificate_expiry_days",
                            f"must be below gatewayAcmeRenewalMarginDays ({margin}): the alert is for a renewal that did not happen",
                            max(1, margin // 2))

    @cross_rule
    def _monitored_in_staging_and_prod(self, environment: Environment) -> Iterator[Violation]:
        if environment.strict and not self.monitoring_enabled:
            yield Violation("monitoring_enabled", f"{environment.strict} runs Prometheus and Alertmanager: without them no alert "
                                                  "fires (api down, errors, a full queue, an expiring certificate) and nobody "
                                                  "is told", True)

    @cross_rule
    def _traces_over_tls(self, environment: Environment) -> Iterator[Violation]:
        if environment.strict and self.otel_exporter_endpoint is not None and not self.otel_exporter_endpoint.startswith("https://"):
            yield Violation("otel_exporter_endpoint", f"{environment.strict} sends traces (request paths, user ids, timings) "
                                                      "over HTTPS only", "https://" + self.otel_exporter_endpoint.split("://", 1)[1])

    @cross_rule
    def _prometheus_port_dev_only(self, environment: Environment) -> Iterator[Violation]:
        if environment.strict and self.prometheus_host_port is not None:
            yield Violation("prometheus_host_port", f"{environment.strict} publishes no monitoring port: remove this key", "")
