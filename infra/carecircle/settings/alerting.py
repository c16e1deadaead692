"""Alerting: Alertmanager, who is notified of what (one receiver of each kind, by severity), how alerts
are grouped and repeated, the dead man's switch, and the timing of the alert rules."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated, Any, Iterator, Literal, Optional

from pydantic import BeforeValidator, SecretStr

from .address_types import HttpUrl, ImageRef, parsed_url
from .base import Environment, Section, Violation, cross_rule, key
from .secret_types import SecretKind, secret
from .types import ConfigBool, prometheus_duration, rule, text_type

SEVERITIES = ("critical", "warning")
Severity = Literal["critical", "warning"]
PAGERDUTY_EVENTS_URL = "https://events.pagerduty.com/v2/enqueue"
# Prometheus evaluates rate() over a window that must hold several scrapes (two at the very least).
SCRAPES_PER_WINDOW = 4
# Alertmanager's --cluster.peer-timeout (alerting.PEER_TIMEOUT_SECONDS): the one at position p in the
# cluster waits p times this before deciding, from the gossiped notification log, whether to notify.
PEER_TIMEOUT_SECONDS = 15


def _severities(value: Any) -> Any:
    if isinstance(value, list):
        if not value:
            raise rule("must name at least one severity (critical, warning): to send nothing, unset the receiver", ["critical"])
        if len(set(map(str, value))) != len(value):
            raise rule("names a severity twice", sorted(set(map(str, value))))
    return value


Severities = Annotated[list[Severity], BeforeValidator(_severities)]
AlertmanagerDuration = prometheus_duration("smhd", "5m")
RuleDuration = prometheus_duration("smh", "5m")
LabelName = text_type(r"[a-zA-Z_][a-zA-Z0-9_]{0,63}", "must be a Prometheus label name such as alertname (letters, digits, '_')")
EmailAddress = text_type(r"[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)+",
                         "must be one e-mail address such as oncall@carecircle.example")
SmartHost = text_type(r"[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?:[1-9][0-9]{0,4}", "must be host:port of an SMTP server such as smtp.example.com:587",
                      also=lambda v: "port must be at most 65535" if int(v.rsplit(":", 1)[1]) > 65535 else None)
SmtpUsername = text_type(r"[\x21-\x7e]{1,256}", "must be a user name without spaces")


def _secret_url(schemes: tuple[str, ...], what: str) -> Any:
    def check(text: str) -> Optional[str]:
        parts = parsed_url(text, schemes)
        if parts is None or parts.fragment:
            return f"must be the {what}: a URL starting with {' or '.join(s + '://' for s in schemes)}, with a host, in ASCII without spaces"
        return None
    return check


def _routing_key(text: str) -> Optional[str]:
    return None if re.fullmatch(r"[A-Za-z0-9]{32}", text) else "must be a PagerDuty Events API v2 integration key (32 letters and digits)"


def _password(text: str) -> Optional[str]:
    return None if re.fullmatch(r"[\x21-\x7e]{1,512}", text) else "must be visible ASCII without spaces (at most 512 characters)"


WEBHOOK_URL = SecretKind(_secret_url(("https", "http"), "webhook's URL"), "https://alerts.fake.invalid/hook/{tag}")
SLACK_WEBHOOK_URL = SecretKind(_secret_url(("https",), "Slack incoming webhook"), "https://hooks.slack.invalid/services/{tag}")
PAGERDUTY_ROUTING_KEY = SecretKind(_routing_key, "fakefake{tag}")
SMTP_PASSWORD = SecretKind(_password, "fake-{tag}")
DEAD_MANS_SWITCH_URL = SecretKind(_secret_url(("https", "http"), "dead man's switch ping URL"), "https://deadman.fake.invalid/ping/{tag}")
WebhookUrl = secret(WEBHOOK_URL)
SlackWebhookUrl = secret(SLACK_WEBHOOK_URL)
PagerdutyRoutingKey = secret(PAGERDUTY_ROUTING_KEY)
SmtpPassword = secret(SMTP_PASSWORD)
DeadMansSwitchUrl = secret(DEAD_MANS_SWITCH_URL)


@dataclass(frozen=True)
class Receiver:
    """One configured receiver: its name in alertmanager.yml, its kind, what it gets."""

    name: str
    kind: Literal["webhook", "slack", "pagerduty", "email"]
    severities: tuple[str, ...]


# (receiver kind, the key that turns it on, its severities key)
RECEIVER_KEYS = (
    ("webhook", "alert_webhook_url", "alert_webhook_severities"),
    ("slack", "alert_slack_webhook_url", "alert_slack_severities"),
    ("pagerduty", "alert_pagerduty_routing_key", "alert_pagerduty_severities"),
    ("email", "alert_email_to", "alert_email_severities"),
)
EMAIL_KEYS = ("alert_email_to", "alert_email_from", "alert_email_smarthost")


class AlertingSettings(Section):
    alertmanager_image: ImageRef = key("Alertmanager image.", "prom/alertmanager:v0.27.0")
    alert_group_by: list[LabelName] = key(
        "Labels that make alerts one group, notified together (one notification per group).", ["alertname"])
    alert_group_wait: AlertmanagerDuration = key("How long a new group waits for more alerts before its first notification.", "30s")
    alert_group_interval: AlertmanagerDuration = key("How long before a group whose alerts changed (new, resolved) is notified again.", "5m")
    alert_repeat_interval: AlertmanagerDuration = key("How long before a group still firing unchanged is notified again.", "4h")
    alert_send_resolved: ConfigBool = key("Tell every receiver when an alert resolves.", True)
    alert_runbook_url: HttpUrl = key(
        "Runbooks page: every alert links to <url>#<alert name in lower case>.",
        "https://github.com/carecircle/carecircle-infra/blob/main/docs/runbooks.md")
    alert_rate_window: RuleDuration = key(
        "Window over which the api's error rate and p95 latency are computed (at least 4 scrape intervals).", "5m")
    alert_for: RuleDuration = key(
        "How long an error-rate, latency, memory or consumer condition must last before its alert fires.", "5m")
    alert_target_down_for: RuleDuration = key(
        "How long a target (or the gateway's status, or every replica of the active pool) must be down before its alert fires.", "2m")

    alert_webhook_url: Optional[WebhookUrl] = key(
        "Generic webhook receiver (Alertmanager's JSON); staging/prod: https.", "https://oncall.carecircle.example/alertmanager", default=None)
    alert_webhook_severities: Severities = key("Severities the webhook receiver gets.", ["critical", "warning"])
    alert_slack_webhook_url: Optional[SlackWebhookUrl] = key(
        "Slack incoming webhook URL (the channel is the webhook's).", "https://hooks.slack.com/services/T000/B000/XXXX", default=None)
    alert_slack_severities: Severities = key("Severities Slack gets.", ["critical", "warning"])
    alert_pagerduty_routing_key: Optional[PagerdutyRoutingKey] = key(
        "PagerDuty Events API v2 integration key of the service to page.", "<32-character integration key>", default=None)
    alert_pagerduty_url: HttpUrl = key("PagerDuty Events API v2 endpoint (the EU service region: https://events.eu.pagerduty.com/v2/enqueue).",
                                       PAGERDUTY_EVENTS_URL)
    alert_pagerduty_severities: Severities = key("Severities that page through PagerDuty.", ["critical"])
    alert_email_to: Optional[EmailAddress] = key("Address that gets alerts by e-mail.", "oncall@carecircle.example", default=None)
    alert_email_from: Optional[EmailAddress] = key("Sender address of alert e-mails.", "alerts@carecircle.example", default=None)
    alert_email_smarthost: Optional[SmartHost] = key("SMTP server (host:port); Alertmanager requires STARTTLS.", "smtp.example.com:587", default=None)
    alert_email_username: Optional[SmtpUsername] = key("SMTP user name (with alertEmailPassword).", "alerts@carecircle.example", default=None)
    alert_email_password: Optional[SmtpPassword] = key("SMTP password.", "<password>", default=None)
    alert_email_severities: Severities = key("Severities sent by e-mail.", ["critical"])
    alert_dead_mans_switch_url: Optional[DeadMansSwitchUrl] = key(
        "URL the always-firing Watchdog alert is posted to (a dead man's switch such as healthchecks.io): when it stops, "
        "alerting itself is down (prod: required).", "https://hc-ping.com/<uuid>", default=None)
    alert_dead_mans_switch_interval: AlertmanagerDuration = key("How often the Watchdog reaches the dead man's switch.", "1m")

    def alert_receivers(self) -> list[Receiver]:
        """The receivers this stack configures, in a fixed order."""
        return [Receiver(kind, kind, tuple(getattr(self, severities))) for kind, field, severities in RECEIVER_KEYS
                if getattr(self, field) is not None]

    @cross_rule
    def _email_complete(self, environment: Environment) -> Iterator[Violation]:
        if any(getattr(self, field) is not None for field in (*EMAIL_KEYS, "alert_email_username", "alert_email_password")):
            for field in EMAIL_KEYS:
                if getattr(self, field) is None:
                    yield Violation(field, "is required to send alerts by e-mail (alertEmailTo, alertEmailFrom, alertEmailSmarthost)")
        if (self.alert_email_username is None) != (self.alert_email_password is None):
            missing = "alert_email_password" if self.alert_email_password is None else "alert_email_username"
            yield Violation(missing, "SMTP authentication needs both alertEmailUsername and alertEmailPassword")

    @cross_rule
    def _tls_to_receivers(self, environment: Environment) -> Iterator[Violation]:
        if not environment.strict:
            return
        for field, example in (("alert_webhook_url", "https://oncall.carecircle.example/alertmanager"),
                               ("alert_dead_mans_switch_url", "https://hc-ping.com/<uuid>")):
            value: Optional[SecretStr] = getattr(self, field)
            if value is not None and not value.get_secret_value().startswith("https://"):
                yield Violation(field, f"{environment.strict} sends alerts over https only (the URL is a credential)", example)
        if not self.alert_pagerduty_url.startswith("https://"):
            yield Violation("alert_pagerduty_url", f"{environment.strict} sends alerts over https only", PAGERDUTY_EVENTS_URL)

    @cross_rule
    def _prod_alerts_reach_a_person(self, environment: Environment) -> Iterator[Violation]:
        if environment.name != "prod" or not self.monitoring_enabled:  # type: ignore[attr-defined]
            return
        if not any("critical" in receiver.severities for receiver in self.alert_receivers()):
            yield Violation("alert_pagerduty_routing_key", "prod sends critical alerts to a person: set a receiver that gets "
                                                           "them (alertPagerdutyRoutingKey, alertSlackWebhookUrl, alertWebhookUrl "
                                                           "or alertEmailTo)")
        if self.alert_dead_mans_switch_url is None:
            yield Violation("alert_dead_mans_switch_url", "prod notices the loss of all alerting: set the dead man's switch "
                                                          "the Watchdog alert pings")

    @cross_rule
    def _peers_decide_before_the_next_check(self, environment: Environment) -> Iterator[Violation]:
        # Each Alertmanager checks a group every group interval and the last of n decides (n-1) peer timeouts
        # later. A decision taken after the next check has seen the group resolved by another Alertmanager
        # notifies the stale firing state again (notify.DedupStage.needsUpdate: the resolution entry's
        # resolved alerts are not among the stale check's).
        if self.platform != "swarm" or not self.monitoring_enabled:  # type: ignore[attr-defined]
            return
        wait = PEER_TIMEOUT_SECONDS * (len(self.swarm_monitoring_hosts) - 1)  # type: ignore[attr-defined]
        if wait and duration_seconds(self.alert_group_interval) <= wait:
            yield Violation("alert_group_interval", f"must be longer than {wait}s with {len(self.swarm_monitoring_hosts)} "  # type: ignore[attr-defined]
                                                    "Alertmanagers (each waits 15s per position before it notifies), or a resolved "
                                                    "alert can be notified firing again", seconds_text(wait + 5))

    @cross_rule
    def _rate_window_holds_scrapes(self, environment: Environment) -> Iterator[Violation]:
        scrape = duration_seconds(self.scrape_interval)  # type: ignore[attr-defined]
        if duration_seconds(self.alert_rate_window) < SCRAPES_PER_WINDOW * scrape:
            yield Violation("alert_rate_window", f"must hold at least {SCRAPES_PER_WINDOW} scrapes (carecircle:scrapeInterval is "
                                                 f"{self.scrape_interval}), or rate() has too few samples to fire",  # type: ignore[attr-defined]
                            seconds_text(SCRAPES_PER_WINDOW * scrape))


_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}


def duration_seconds(text: str) -> int:
    """Seconds of a one-unit Prometheus duration (30s, 5m, 4h, 1d)."""
    return int(text[:-1]) * _UNIT_SECONDS[text[-1]]


def seconds_text(seconds: int) -> str:
    """The shortest one-unit duration for a whole number of seconds: 120 -> 2m, 90 -> 90s."""
    for unit in ("d", "h", "m"):
        if seconds % _UNIT_SECONDS[unit] == 0:
            return f"{seconds // _UNIT_SECONDS[unit]}{unit}"
    return f"{seconds}s"
