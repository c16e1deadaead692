"""Issue 17's hostile and careless config, one value (or one contradiction) per row: what an operator
could write for the swarm keys, the gateway's round-2 keys, the names derived from the stack, secrets,
numbers at their edges and keys that contradict each other. Each row says what the settings must do
with it: refuse it on its key (with the stack and a fix), or accept it (a value that is right, refused
before). Shared by tests/test_config_hostile_values.py and bench/hostile_config.py (the tally)."""

from __future__ import annotations

import shutil
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

SECRET = "s3cr3t-Pa55word-0123456789"
PINNED = "@sha256:" + "a" * 64
LONG_LABEL = "a" * 63
CERTIFICATE = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
KEY = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"


@dataclass(frozen=True)
class Hostile:
    family: str  # the class
    what: str
    stack: str
    overrides: dict[str, Any] = field(default_factory=dict)
    secrets: dict[str, str] = field(default_factory=dict)
    refused_on: Optional[str] = None  # the key the refusal names; None: the value must be accepted
    stack_file: Optional[str] = None  # a stack of this name, a copy of `stack`'s file

    @property
    def name(self) -> str:
        return f"{self.family}: {self.what}"


def _r(family: str, what: str, stack: str, key: str, value: Any, refused_on: Optional[str] = "same", **extra: Any) -> Hostile:
    return Hostile(family, what, stack, overrides={key: value, **extra}, refused_on=key if refused_on == "same" else refused_on)


def _s(family: str, what: str, stack: str, key: str, value: str, refused_on: Optional[str] = "same") -> Hostile:
    return Hostile(family, what, stack, secrets={key: value}, refused_on=key if refused_on == "same" else refused_on)


GRAMMAR, PROMETHEUS, NAMES, SWARM, ACROSS, ENVIRONMENT = ("nginx grammar", "prometheus", "derived names", "swarm", "across keys",
                                                          "environment")
PATHS, PROVIDER, BOUNDS, STACK_NAMES, RIGHT = "host paths and PEM", "provider keys", "bounds", "stack names", "no over-refusal"
ROUTES = "carecircle:gatewayRoutes"

HOSTILE: list[Hostile] = [
    # ---- 1. the consumer's grammar: nginx ----
    _r(GRAMMAR, "a CIDR with a netmask (Python reads it, nginx does not)", "prod", "carecircle:gatewayTrustedProxies", ["10.0.0.0/255.0.0.0"]),
    _r(GRAMMAR, "a netmask CIDR in the allow-list", "prod", "carecircle:gatewayRateLimitAllowlist", ["192.168.0.0/255.255.0.0"]),
    _r(GRAMMAR, "a netmask CIDR for the load balancers", "prod", "carecircle:gatewayLoadBalancers", ["10.1.0.0/255.255.0.0"]),
    _r(GRAMMAR, "an IPv6 CIDR with a zone", "prod", "carecircle:gatewayTrustedProxies", ["fe80::/64%eth0"]),
    _r(GRAMMAR, "a CIDR with host bits set", "prod", "carecircle:gatewayRateLimitAllowlist", ["10.0.0.1/8"]),
    _r(GRAMMAR, "one network listed twice", "prod", "carecircle:gatewayTrustedProxies", ["10.0.0.0/8", "10.0.0.0/8"]),
    _r(GRAMMAR, "one network listed twice in two spellings", "prod", "carecircle:gatewayRateLimitAllowlist", ["10.0.0.0/8", "10.0.0.0/08"]),
    _r(GRAMMAR, "an origin listed twice (map keys)", "prod", "carecircle:gatewayCorsOrigins",
       ["https://app.carecircle.example", "https://app.carecircle.example"]),
    _r(GRAMMAR, "an origin naming its default port (never sent by a browser)", "prod", "carecircle:gatewayCorsOrigins",
       ["https://app.carecircle.example:443"]),
    _r(GRAMMAR, "an origin with a path", "prod", "carecircle:gatewayCorsOrigins", ["https://app.carecircle.example/"]),
    _r(GRAMMAR, "an origin in upper case", "prod", "carecircle:gatewayCorsOrigins", ["https://APP.carecircle.example"]),
    _r(GRAMMAR, "the origin 'null'", "prod", "carecircle:gatewayCorsOrigins", ["null"]),
    _r(GRAMMAR, "a CORS pattern that backtracks for ever", "prod", "carecircle:gatewayCorsOrigins", ["~^https://(a+)+\\.carecircle\\.example$"]),
    _r(GRAMMAR, "a CORS pattern PCRE reads otherwise than Python", "dev", "carecircle:gatewayCorsOrigins", ["~^https://app\\Z"]),
    _r(GRAMMAR, "a server name that is a wildcard", "prod", "carecircle:gatewayServerName", "*.carecircle.example"),
    _r(GRAMMAR, "a server name that is a regex", "prod", "carecircle:gatewayServerName", "~^api"),
    _r(GRAMMAR, "a server name with a label over 63 characters", "prod", "carecircle:gatewayServerName", "a" * 64 + ".example"),
    _r(GRAMMAR, "a gateway image of nginx 1.22 on swarm (no `server ... resolve`)", "prod", "carecircle:gatewayImage",
       "nginx:1.22-alpine" + PINNED),
    _r(GRAMMAR, "a gateway image of nginx 1.24 (no `http2 on`)", "dev", "carecircle:gatewayImage", "nginx:1.24-alpine"),
    _r(GRAMMAR, "a gateway image without its nginx line", "dev", "carecircle:gatewayImage", "nginx:mainline"),
    _r(GRAMMAR, "a gateway image pinned by digest alone", "prod", "carecircle:gatewayImage", "nginx" + PINNED),
    # ---- 1. the consumer's grammar: Prometheus ----
    _r(PROMETHEUS, "a retention Prometheus exits on (999999d)", "prod", "carecircle:prometheusRetention", "999999d"),
    _r(PROMETHEUS, "a retention of 300y", "prod", "carecircle:prometheusRetention", "300y"),
    _r(PROMETHEUS, "a retention of 0d", "prod", "carecircle:prometheusRetention", "0d"),
    _r(PROMETHEUS, "a scrape interval of 10m (the alerts never fire)", "prod", "carecircle:scrapeInterval", "10m"),
    _r(PROMETHEUS, "a scrape interval of 2m", "prod", "carecircle:scrapeInterval", "2m"),
    _r(PROMETHEUS, "a scrape interval in milliseconds", "prod", "carecircle:scrapeInterval", "1ms"),
    # ---- 1. the consumer's grammar: Docker and Swarm names derived from the stack ----
    _r(NAMES, "a prefix with a dot", "prod", "carecircle:namePrefix", "care.circle"),
    _r(NAMES, "a prefix in upper case", "prod", "carecircle:namePrefix", "CareCircle"),
    _r(NAMES, "a prefix that makes secret names longer than 64", "prod", "carecircle:namePrefix", "c" * 50),
    _r(NAMES, "a prefix that makes service names longer than 63", "staging", "carecircle:namePrefix", "c" * 40),
    _r(NAMES, "a prefix that makes container names longer than a host label", "dev", "carecircle:namePrefix", "c" * 60),
    # ---- 1. the consumer's grammar: Swarm keys ----
    _r(SWARM, "an update parallelism of 0", "prod", "carecircle:swarmUpdateParallelism", "0"),
    _r(SWARM, "an update delay of 0s", "prod", "carecircle:swarmUpdateDelay", "0s"),
    _r(SWARM, "an update monitor in two units", "prod", "carecircle:swarmUpdateMonitor", "1m30s"),
    _r(SWARM, "a node platform in upper case", "prod", "carecircle:swarmNodePlatform", "linux/AMD64"),
    _r(SWARM, "a Windows node platform", "prod", "carecircle:swarmNodePlatform", "windows/amd64"),
    _r(SWARM, "prod with one edge node", "prod", "carecircle:swarmEdgeHosts", ["ssh://deploy@edge-1.prod.carecircle.example"]),
    _r(SWARM, "prod without encrypted overlays", "prod", "carecircle:swarmEncryptOverlays", "false"),
    _r(SWARM, "a swarm stack running its own postgres", "prod", "carecircle:postgresMode", "container"),
    # ---- 2. across keys ----
    _r(ACROSS, "an api grace period shorter than its shutdown delay", "prod", "carecircle:apiShutdownGraceSeconds", "5"),
    _r(ACROSS, "a resolver validity longer than the api's grace period", "prod", "carecircle:gatewayResolverValid", "600s",
       refused_on="carecircle:apiShutdownGraceSeconds"),
    _r(ACROSS, "a rollout longer than the converge timeout", "prod", "carecircle:swarmConvergeTimeout", "30s"),
    _r(ACROSS, "a monitor shorter than a healthcheck interval", "prod", "carecircle:swarmUpdateMonitor", "5s",
       **{"carecircle:healthcheckInterval": "30s", "carecircle:swarmConvergeTimeout": "1h"}),
    _r(ACROSS, "a healthcheck interval longer than the gateway's wait", "prod", "carecircle:healthcheckInterval", "60s"),
    _r(ACROSS, "prod with 2 replicas and at most 2 per node", "prod", "carecircle:apiMaxReplicasPerNode", "2",
       **{"carecircle:apiBlueReplicas": "2"}),
    _r(ACROSS, "prod's green pool all on one node", "prod", "carecircle:apiMaxReplicasPerNode", "3",
       **{"carecircle:apiGreenReplicas": "3", "carecircle:apiGreenImage": "ghcr.io/carecircle/api:1.4.3" + PINNED}),
    _r(ACROSS, "prod's workers all on one node", "prod", "carecircle:workersMaxReplicasPerNode", "3"),
    _r(ACROSS, "an edge node twice (case, default port)", "prod", "carecircle:swarmEdgeHosts",
       ["ssh://deploy@edge-1.prod.carecircle.example", "ssh://deploy@EDGE-1.prod.carecircle.example:22"]),
    _r(ACROSS, "an edge node twice (another user)", "prod", "carecircle:swarmEdgeHosts",
       ["ssh://deploy@edge-1.prod.carecircle.example", "ssh://root@edge-1.prod.carecircle.example"]),
    _r(ACROSS, "the metrics path under a public route", "prod", "carecircle:apiMetricsPath", "/api/metrics"),
    _r(ACROSS, "the metrics path as a public health path", "prod", "carecircle:apiMetricsPath", "/health"),
    _r(ACROSS, "the metrics path in another case under a route", "prod", "carecircle:apiMetricsPath", "/API/Metrics"),
    _r(ACROSS, "a memory reservation above its limit", "prod", "carecircle:apiMemoryReservedMb", "2048"),
    # ---- 3. bound to the environment ----
    _s(ENVIRONMENT, "postgres with sslmode=disable", "prod", "carecircle:databaseUrl", f"postgresql://carecircle:{SECRET}@db.example/carecircle?sslmode=disable"),
    _s(ENVIRONMENT, "postgres without sslmode", "staging", "carecircle:databaseUrl", f"postgresql://carecircle:{SECRET}@db.example/carecircle"),
    _s(ENVIRONMENT, "postgres with sslmode=prefer", "prod", "carecircle:databaseUrl", f"postgresql://carecircle:{SECRET}@db.example/carecircle?sslmode=prefer"),
    _s(ENVIRONMENT, "redis:// in clear", "prod", "carecircle:redisUrl", f"redis://default:{SECRET}@eu1.upstash.io:6379"),
    _s(ENVIRONMENT, "rediss:// without a password", "staging", "carecircle:redisUrl", "rediss://eu1.upstash.io:6379"),
    _s(ENVIRONMENT, "amqp:// in clear", "prod", "carecircle:rabbitmqUrl", f"amqp://carecircle:{SECRET}@goose.rmq.cloudamqp.com/vhost"),
    _r(ENVIRONMENT, "NODE_ENV development in prod", "prod", "carecircle:nodeEnv", "development"),
    _r(ENVIRONMENT, "NODE_ENV test in staging", "staging", "carecircle:nodeEnv", "test"),
    _r(ENVIRONMENT, "restart policy on-failure in prod", "prod", "carecircle:restartPolicy", "on-failure"),
    _r(ENVIRONMENT, "restart policy no in staging", "staging", "carecircle:restartPolicy", "no"),
    _r(ENVIRONMENT, "credentials to every https origin", "prod", "carecircle:gatewayCorsOrigins", ["~^https://.*$"]),
    _r(ENVIRONMENT, "credentials to any subdomain of a public suffix", "prod", "carecircle:gatewayCorsOrigins", ["~^https://[a-z]+\\.co\\.uk$"]),
    _r(ENVIRONMENT, "credentials to an http origin", "prod", "carecircle:gatewayCorsOrigins", ["http://app.carecircle.example"]),
    _r(ENVIRONMENT, "traces over http in prod", "prod", "carecircle:otelExporterEndpoint", "http://otel-collector.carecircle.example:4318"),
    _r(ENVIRONMENT, "a trace endpoint with credentials in it", "prod", "carecircle:otelExporterEndpoint", "https://user:pass@otel.example:4318"),
    _s(ENVIRONMENT, "a Sentry DSN over http", "prod", "carecircle:sentryDsn", "http://0123456789abcdef@o0.ingest.sentry.io/42"),
    _r(ENVIRONMENT, "a data port published in prod", "prod", "carecircle:prometheusHostPort", "9090"),
    _r(ENVIRONMENT, "prod on one Docker engine", "prod", "carecircle:platform", "engine"),
    _r(ENVIRONMENT, "staging on one Docker engine", "staging", "carecircle:platform", "engine", **{"carecircle:swarmEdgeHosts": None}),
    _r(ENVIRONMENT, "prod without monitoring", "prod", "carecircle:monitoringEnabled", "false"),
    _r(ENVIRONMENT, "staging without monitoring", "staging", "carecircle:monitoringEnabled", "false",
       **{"carecircle:swarmMonitoringHosts": None}),
    # ---- 4. host paths and PEM ----
    _r(PATHS, "the Docker socket as the certificate", "staging", "carecircle:gatewayTlsCertificatePath", "/var/run/docker.sock"),
    _r(PATHS, "an ssh key as the TLS key", "staging", "carecircle:gatewayTlsKeyPath", "/home/deploy/.ssh/id_ed25519"),
    _r(PATHS, "root's ssh key as the TLS key", "staging", "carecircle:gatewayTlsKeyPath", "/root/.ssh/id_rsa"),
    _r(PATHS, "a system directory as the certificate", "staging", "carecircle:gatewayTlsCertificatePath", "/etc"),
    _r(PATHS, "the host's password hashes", "staging", "carecircle:gatewayTlsKeyPath", "/etc/shadow"),
    _r(PATHS, "a file under /proc", "staging", "carecircle:gatewayTlsCertificatePath", "/proc/self/environ"),
    _r(PATHS, "the engine's own tree", "staging", "carecircle:gatewayTlsKeyPath", "/var/lib/docker/swarm/certificates/swarm-node.key"),
    _s(PATHS, "a key whose END label differs", "prod", "carecircle:gatewayTlsKey",
       "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n"),
    _s(PATHS, "a certificate where the key goes", "prod", "carecircle:gatewayTlsKey", CERTIFICATE),
    # ---- 5. provider keys ----
    _r(PROVIDER, "registry credentials with the password in plain text", "prod", "docker:registryAuth",
       [{"address": "ghcr.io", "username": "carecircle-deploy", "password": "token-0123456789"}]),
    _r(PROVIDER, "docker:host over tcp:// (no TLS)", "prod", "docker:host", "tcp://manager-1.prod.carecircle.example:2375"),
    _r(PROVIDER, "docker:host with an ssh option smuggled in", "prod", "docker:host", "ssh://deploy@manager-1 -oProxyCommand=sh"),
    # ---- 6. bounds ----
    _r(BOUNDS, "a 1 MiB value", "prod", "carecircle:gatewayServerName", "a" * (1 << 20)),
    _s(BOUNDS, "a 1 MiB secret", "dev", "carecircle:jwtSecret", "x" * (1 << 20)),
    _r(BOUNDS, "a list nested 10000 deep", "prod", "carecircle:workersCommand", "[" * 10000 + "]" * 10000),
    _r(BOUNDS, "300 CIDRs", "prod", "carecircle:gatewayRateLimitAllowlist", [f"10.{i // 256}.{i % 256}.0/24" for i in range(300)]),
    _r(BOUNDS, "100 routes", "prod", ROUTES, [{"path": f"/r{i}/", "service": "api"} for i in range(100)]),
    _r(BOUNDS, "a replica count of 100000", "prod", "carecircle:apiBlueReplicas", "100000"),
    _r(BOUNDS, "a sample rate of NaN", "prod", "carecircle:traceSampleRate", "NaN"),
    _r(BOUNDS, "a percentage of inf", "prod", "carecircle:alertErrorRatePercent", "inf"),
    _r(BOUNDS, "a port of 65536", "prod", "carecircle:apiPort", "65536"),
    _r(BOUNDS, "a port in hexadecimal", "prod", "carecircle:apiPort", "0xbb8"),
    _r(BOUNDS, "CPUs in exponent form", "prod", "carecircle:apiCpus", "1e3"),
    # ---- 7. stack names ----
    Hostile(STACK_NAMES, "a stack name with a dot", "prod", refused_on="stack name", stack_file="prod-eu.1"),
    Hostile(STACK_NAMES, "a stack name too long for a Swarm secret", "prod", refused_on="stack name", stack_file="prod-" + "x" * 60),
    Hostile(STACK_NAMES, "a stack name in upper case (made legal)", "prod", stack_file="prod-EU"),
    Hostile(STACK_NAMES, "a dev stack name in mixed case (made legal)", "dev", stack_file="dev-Alice"),
    # ---- 8. no over-refusal ----
    Hostile(RIGHT, "a PEM with CRLF line endings", "prod", secrets={"carecircle:gatewayTlsCertificate": CERTIFICATE.replace("\n", "\r\n"),
                                                                   "carecircle:gatewayTlsKey": KEY.replace("\n", "\r\n")}),
    _r(RIGHT, "a memory reservation equal to its limit", "prod", "carecircle:apiMemoryReservedMb", "1024", refused_on=None),
    _r(RIGHT, "a CPU reservation equal to its limit", "prod", "carecircle:workersCpusReserved", "1.0", refused_on=None),
    _r(RIGHT, "a server name of 253 characters", "prod", "carecircle:gatewayServerName",
       ".".join([LONG_LABEL] * 3 + ["b" * 61]), refused_on=None),
    Hostile(RIGHT, "prod's config rehearsed on one engine in a dev stack", "prod", stack_file="dev-prod-rehearsal",
            overrides={"carecircle:environment": None, "carecircle:platform": "engine", "carecircle:swarmEdgeHosts": None,
                       "carecircle:swarmMonitoringHosts": None, "carecircle:monitoringEnabled": "false"}),
    _r(RIGHT, "an edge node behind a bastion on its own port", "prod", "carecircle:swarmEdgeHosts",
       ["ssh://deploy@bastion.prod.carecircle.example:2201", "ssh://deploy@bastion.prod.carecircle.example:2202"], refused_on=None),
]


def outcome(case: Hostile, root: Path, scratch: Path) -> tuple[str, str]:
    """("refused", the message) / ("accepted", "") / ("traceback", the traceback) for one row, with the
    stack files of `root` and the `carecircle` package importable here; a row's own stack name gets a copy
    of its base stack's file in `scratch`."""
    from carecircle.offline import stack_config
    from carecircle.settings import ConfigError, parse_settings

    stack = case.stack
    copied = None
    if case.stack_file:
        shutil.copy(root / "Pulumi.yaml", scratch / "Pulumi.yaml")
        copied = scratch / f"Pulumi.{case.stack_file}.yaml"
        shutil.copy(root / f"Pulumi.{case.stack}.yaml", copied)
        stack, root = case.stack_file, scratch
    try:
        _, config, secret_keys = stack_config(stack, root, case.overrides, case.secrets)
        parse_settings(stack, config, secret_keys)
    except ConfigError as error:
        return "refused", str(error)
    except Exception:  # what the tally counts
        return "traceback", traceback.format_exc()
    finally:
        if copied is not None:
            copied.unlink()
    return "accepted", ""
