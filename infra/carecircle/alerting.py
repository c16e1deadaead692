"""Pure rendering of the stack's Alertmanager configuration from settings: receivers by severity, the
Watchdog's route to the dead man's switch, grouping, repeats and inhibition."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from .rendering import TEMPLATES, tar_bundle
from .rendering import jinja_templates as templates
from .settings import Settings
from .settings.alerting import PEER_TIMEOUT_SECONDS, duration_seconds, seconds_text

ALERTMANAGER_PORT = 9093
CLUSTER_PORT = 9094
CONFIG_DIR = "/etc/alertmanager/carecircle"
CONFIG_PATH = f"{CONFIG_DIR}/alertmanager.yml"
DATA_DIR = "/alertmanager"
APPLY_SCRIPT = (TEMPLATES / "alertmanager-apply.sh").read_text()
BOOTSTRAP_CONFIG = (TEMPLATES / "alertmanager-bootstrap.yml").read_text()
WATCHDOG = "Watchdog"
# Receivers by what they are, for the report (the receiver's name in alertmanager.yml is its kind).
RECEIVER_KINDS = {
    "webhook": "webhook (Alertmanager's JSON)",
    "slack": "Slack incoming webhook",
    "pagerduty": "PagerDuty Events API v2",
    "email": "e-mail",
}


# Alertmanager's own Go templates for the notification texts (rendered by Alertmanager, per group).
GO_TEMPLATES = {
    "slack_title": '[{{ .Status | toUpper }}{{ if eq .Status "firing" }}:{{ .Alerts.Firing | len }}{{ end }}] '
                   '{{ .CommonLabels.alertname }} ({{ .CommonLabels.stack }})',
    "slack_text": '{{ range .Alerts }}{{ .Annotations.summary }} ({{ .Labels.severity }}): {{ .Annotations.description }} '
                  'Runbook: {{ .Annotations.runbook_url }}\n{{ end }}',
    "pagerduty_severity": "{{ .CommonLabels.severity }}",
    "pagerduty_description": "{{ .CommonLabels.alertname }} ({{ .CommonLabels.stack }}): {{ .CommonAnnotations.summary }}",
    "runbook": "{{ .CommonAnnotations.runbook_url }}",
}


@dataclass(frozen=True)
class Email:
    to: str
    sender: str
    smarthost: str
    username: Optional[str]
    password: Optional[str]


@dataclass(frozen=True)
class Watchdog:
    url: Optional[str]
    interval: str
    # Alertmanager checks a group every group_interval and repeats once repeat_interval has passed; a
    # check a quarter as often keeps the pings within a quarter of the interval late.
    group_interval: str


def alertmanager_names(settings: Settings) -> list[str]:
    """One Alertmanager per monitoring node on Swarm (numbered), one on the engine."""
    if settings.platform == "swarm":
        return [settings.docker_name("alertmanager", str(i)) for i in range(1, len(settings.swarm_monitoring_hosts) + 1)]
    return [settings.docker_name("alertmanager")]


def cluster_flags(settings: Settings, name: str) -> list[str]:
    """Alertmanager's gossip flags: the others as peers, by name (they deduplicate notifications and share
    silences; a peer that is not there yet is looked up again every 15 s), or clustering off when it runs
    alone. The peer timeout is Alertmanager's default, set explicitly: the settings' rule on the group
    interval depends on it."""
    others = [other for other in alertmanager_names(settings) if other != name]
    if not others:
        return ["--cluster.listen-address="]
    return [f"--cluster.listen-address=0.0.0.0:{CLUSTER_PORT}", f"--cluster.peer-timeout={PEER_TIMEOUT_SECONDS}s",
            *(f"--cluster.peer={other}:{CLUSTER_PORT}" for other in others)]


def cluster_entrypoint(settings: Settings) -> Optional[list[str]]:
    """With peers, Alertmanager runs through a shell that adds the address to advertise to them: left to
    guess, it takes the address of its default route, which for a container on a non-internal overlay is
    the node-local docker_gwbridge (the same address on every node, unreachable from the others). Its
    first address on the stack's networks (`hostname -i`: backend or egress, both shared with its peers)
    is what they can reach."""
    if len(alertmanager_names(settings)) < 2:
        return None
    script = f'address=$(hostname -i) && exec /bin/alertmanager "$@" --cluster.advertise-address="${{address%% *}}:{CLUSTER_PORT}"'
    return ["/bin/sh", "-c", script, "alertmanager"]


def _secret(value) -> Optional[str]:
    return value.get_secret_value() if value is not None else None


def watchdog(settings: Settings) -> Watchdog:
    interval = duration_seconds(settings.alert_dead_mans_switch_interval)
    return Watchdog(url=_secret(settings.alert_dead_mans_switch_url), interval=settings.alert_dead_mans_switch_interval,
                    group_interval=seconds_text(max(1, interval // 4)))


def render_alertmanager_config(settings: Settings) -> str:
    """alertmanager.yml, receiver credentials included (so the result is a secret)."""
    email = None
    if settings.alert_email_to is not None:
        email = Email(to=settings.alert_email_to, sender=settings.alert_email_from, smarthost=settings.alert_email_smarthost,  # type: ignore[arg-type]
                      username=settings.alert_email_username, password=_secret(settings.alert_email_password))
    return templates.get_template("alertmanager.yml.j2").render(
        stack=settings.stack, environment=settings.environment,
        receivers=settings.alert_receivers(), group_by=settings.alert_group_by,
        group_wait=settings.alert_group_wait, group_interval=settings.alert_group_interval,
        repeat_interval=settings.alert_repeat_interval, send_resolved=settings.alert_send_resolved,
        watchdog=watchdog(settings), email=email, go=GO_TEMPLATES,
        webhook_url=_secret(settings.alert_webhook_url), slack_url=_secret(settings.alert_slack_webhook_url),
        pagerduty_key=_secret(settings.alert_pagerduty_routing_key), pagerduty_url=settings.alert_pagerduty_url,
    )


def alertmanager_bundle(settings: Settings) -> str:
    """The base64 tar alertmanager-apply.sh takes on stdin (owner-only: it holds credentials)."""
    return tar_bundle({"alertmanager.yml": render_alertmanager_config(settings)}, mode=0o600)
