"""Every Docker name a stack derives from its stack name and namePrefix, and the grammar of the engine
that takes each kind of name. A name the engine would refuse stops `pulumi up` half way (the networks
exist, the services do not): the settings refuse it first, naming the key.

The grammars, from the engine's own sources (moby/moby, moby/swarmkit; each proven on a real dockerd
by tests/test_config_docker_names.py):

- container, volume: daemon/names/names.go `RestrictedNamePattern` ([a-zA-Z0-9][a-zA-Z0-9_.-]+),
  used by daemon/names.go (containers) and daemon/volume/local/local.go `validateName` (volumes).
  A container is also a host name: the apps reach the data services, Prometheus the exporters and
  api replicas, each exporter its gateway, by container name through Docker's DNS, so each
  dot-separated label holds at most 63 characters (RFC 1035 2.3.4: a longer label cannot be asked for).
- Swarm network and service: swarmkit manager/controlapi/common.go `validateAnnotations`
  (`isValidDNSName` ^[a-zA-Z0-9](?:[-_]*[A-Za-z0-9]+)*$, at most 63 characters), called by
  controlapi/network.go and controlapi/service.go.
- Swarm secret and config (a service's env file): swarmkit manager/controlapi/common.go
  `validateConfigOrSecretAnnotations` (`isValidConfigOrSecretName`, at most 64 characters); a secret's
  data: swarmkit api/validation/secrets.go `MaxSecretSize` (fewer than 500 KiB).
- image (dev builds): distribution/reference regexp.go path components, lower case only; a name is
  made lower case here (Docker DNS and the other kinds take upper case, a repository does not).

Swarm networks, services, secrets and configs are named by Pulumi: the logical name plus "-" and 7 hex
characters (pulumi-docker's SetAutonaming), which the limits must leave room for.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

# Pulumi's auto-name suffix: "-" and 7 random hex characters.
AUTONAME_SUFFIX = "-0000000"
SWARM_SECRET_MAX_BYTES = 500 * 1024 - 1  # swarmkit api/validation/secrets.go: len(data) < MaxSecretSize
HOST_LABEL_MAX = 63


@dataclass(frozen=True)
class NameKind:
    what: str  # how the message calls it
    pattern: re.Pattern
    max_length: int
    rule: str  # what the engine takes, for the message
    autonamed: bool = False  # Pulumi appends AUTONAME_SUFFIX
    host_name: bool = False  # reached through Docker's DNS: labels of at most 63 characters


RESTRICTED = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]+")
CONTAINER = NameKind("container", RESTRICTED, 10_000, "letters, digits, '_', '.', '-', starting with a letter or digit",
                     host_name=True)
VOLUME = NameKind("volume", RESTRICTED, 10_000, "letters, digits, '_', '.', '-', starting with a letter or digit")
BRIDGE_NETWORK = NameKind("network", re.compile(r".+"), 10_000, "any name")
SWARM_DNS_NAME = re.compile(r"[a-zA-Z0-9](?:[-_]*[A-Za-z0-9]+)*")
OVERLAY_NETWORK = NameKind("Swarm network", SWARM_DNS_NAME, 63, "a DNS name component of letters, digits, '-' and '_' "
                                                                "(no '.'), at most 63 characters", autonamed=True)
SERVICE = NameKind("Swarm service", SWARM_DNS_NAME, 63, "a DNS name component of letters, digits, '-' and '_' (no '.'), "
                                                       "at most 63 characters", autonamed=True)
SECRET_OR_CONFIG_NAME = re.compile(r"[a-zA-Z0-9]+(?:[a-zA-Z0-9-_.]*[a-zA-Z0-9])?")
SECRET = NameKind("Swarm secret", SECRET_OR_CONFIG_NAME, 64, "letters, digits, '-', '_' and '.', at most 64 characters", autonamed=True)
CONFIG = NameKind("Swarm config", SECRET_OR_CONFIG_NAME, 64, "letters, digits, '-', '_' and '.', at most 64 characters", autonamed=True)
IMAGE = NameKind("image", re.compile(r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"), 255,
                 "lower-case letters and digits separated by '.', '_', '__' or '-'")


@dataclass(frozen=True)
class DerivedName:
    kind: NameKind
    name: str  # as the program declares it (without Pulumi's suffix)

    @property
    def on_the_engine(self) -> str:
        """The name the engine is given (services and secrets with Pulumi's suffix)."""
        return self.name + (AUTONAME_SUFFIX if self.kind.autonamed else "")

    def problem(self) -> str | None:
        """Why the engine (or Docker's DNS) would refuse it; None when it takes it."""
        name = self.on_the_engine
        if not self.kind.pattern.fullmatch(name) or len(name) > self.kind.max_length:
            return f"the {self.kind.what} name '{name}' is not one the engine takes ({self.kind.rule})"
        if self.kind.host_name and max(len(label) for label in name.split(".")) > HOST_LABEL_MAX:
            return (f"the {self.kind.what} name '{name}' is a host name other containers resolve through Docker's DNS: "
                    f"a DNS label holds at most {HOST_LABEL_MAX} characters")
        return None


def build_image_repository(settings: Any, build_context: str) -> str:
    """The local repository a dev build is tagged with (lower case: a repository takes nothing else)."""
    slug = re.sub(r"[^a-z0-9]+", "-", build_context.lower()).strip("-")
    return settings.docker_name(slug).lower()


def _monitoring_names(s: Any, replicas: list[str]) -> list[DerivedName]:
    """A Prometheus and an Alertmanager with their volumes per replica ("" on the engine, "1", "2", ... on
    Swarm's monitoring nodes), and the blackbox exporter of a TLS stack."""
    names = []
    for role in ("prometheus", "alertmanager"):
        for replica in replicas:
            numbered = [replica] if replica else []
            names += [DerivedName(CONTAINER, s.docker_name(role, *numbered)), DerivedName(VOLUME, s.docker_name(role, *numbered, "data"))]
    return names + ([DerivedName(CONTAINER, s.docker_name("blackbox-exporter"))] if s.gateway_tls else [])


def derived_names(settings: Any) -> list[DerivedName]:
    """Every name the program gives the engine for this stack (tests/test_config_docker_names.py checks
    that the program declares no other)."""
    s = settings
    names: list[DerivedName] = []
    monitoring = s.monitoring_enabled
    if s.platform == "swarm":
        networks = ["edge", "backend", *(["egress"] if s.needs_egress else [])]
        # Encryption is part of an overlay's logical name (components/overlay_network.py).
        names += [DerivedName(OVERLAY_NETWORK, s.docker_name(network) + ("-encrypted" if s.swarm_encrypt_overlays else ""))
                  for network in networks]
        services = [s.docker_name("api", color) for color in ("blue", "green") if s.api_replicas(color)]
        services += [s.docker_name("workers")] if s.workers_replicas else []
        names += [DerivedName(SERVICE, service) for service in services]
        names += [DerivedName(CONFIG, f"{service}-env") for service in services]  # each service's env file
        secrets = ["database-url", "redis-url", "rabbitmq-url", "jwt-secret", *(["sentry-dsn"] if s.sentry_dsn is not None else [])]
        names += [DerivedName(SECRET, s.docker_name(secret)) for secret in secrets]
        edges = range(1, len(s.swarm_edge_hosts) + 1)
        names += [DerivedName(CONTAINER, s.docker_name("gateway", str(i))) for i in edges]
        if monitoring:
            names += [DerivedName(CONTAINER, s.docker_name("nginx-exporter", str(i))) for i in edges]
            names += _monitoring_names(s, [str(i) for i in range(1, len(s.swarm_monitoring_hosts) + 1)])
        return names
    networks = ["edge", "backend", *(["egress"] if s.needs_egress else [])]
    names += [DerivedName(BRIDGE_NETWORK, s.docker_name(network)) for network in networks]
    for service in ("postgres", "redis", "rabbitmq"):
        if getattr(s, f"{service}_mode") == "container":
            names += [DerivedName(CONTAINER, s.docker_name(service)), DerivedName(VOLUME, s.docker_name(service, "data"))]
    names += [DerivedName(CONTAINER, name) for color in ("blue", "green") for name in s.api_container_names(color)]
    names += [DerivedName(CONTAINER, s.docker_name("workers", str(i))) for i in range(1, s.workers_replicas + 1)]
    names += [DerivedName(CONTAINER, s.docker_name("gateway"))]
    if monitoring:
        exporters = ["nginx-exporter", *(f"{service}-exporter" for service in ("postgres", "redis") if getattr(s, f"{service}_mode") == "container")]
        names += [DerivedName(CONTAINER, s.docker_name(exporter)) for exporter in exporters]
        names += _monitoring_names(s, [""])
    contexts = sorted({c for c in (s.api_build_context, s.workers_build_context) if c is not None})
    names += [DerivedName(IMAGE, f"{build_image_repository(s, context)}:local") for context in contexts]
    return names
