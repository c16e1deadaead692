"""Docker Swarm: where the gateways and Prometheus run, how replicas spread, how rollouts go.
Used when carecircle:platform is swarm (staging and prod); ignored by engine stacks."""

from __future__ import annotations

import ipaddress
import math
import re
from typing import Iterator, Optional

from .address_types import DockerHost
from .base import Environment, Section, Violation, cross_rule, key
from .types import ConfigBool, Cpus, config_int, nginx_time_ms, text_type

GoDuration = text_type(r"[1-9][0-9]{0,5}(?:ms|s|m|h)", "must be a duration such as 500ms, 10s, 5m or 1h (one unit)")
PerNode = config_int(0, 10_000)
MemoryReservedMb = config_int(0, 1_048_576)  # up to the largest memory limit an app may have (apps.MemoryMb)
NodePlatform = text_type(r"linux/(?:amd64|arm64|arm|386|ppc64le|s390x)", "must be linux/<architecture> such as linux/amd64")
Parallelism = config_int(1, 100)
BalancerRecovery = config_int(0, 600)
# What the program declares for every app service (components/swarm_service.py, components/common.py),
# which the rollout timing rules below count with (tests/test_config_cross_rules.py checks they agree).
HEALTHCHECK_START_PERIOD_SECONDS = 30
HEALTHCHECK_TIMEOUT_SECONDS = 5
# Seconds an api replica keeps serving after SIGTERM beyond the gateways' DNS cache (gatewayResolverValid):
# every gateway has re-resolved (Swarm removed the task from DNS before the signal) and stopped sending to it.
SHUTDOWN_DELAY_MARGIN_SECONDS = 3
SSH_DEFAULT_PORT = 22
SWARM_ONLY_KEYS = ("swarm_edge_hosts", "swarm_monitoring_hosts")
EDGE_HOSTS_EXAMPLE = '["ssh://deploy@edge-1.carecircle.example","ssh://deploy@edge-2.carecircle.example"]'
MONITORING_HOSTS_EXAMPLE = '["ssh://deploy@monitoring-1.carecircle.example","ssh://deploy@monitoring-2.carecircle.example"]'


class SwarmSettings(Section):
    swarm_edge_hosts: list[DockerHost] = key(
        "Docker hosts of the edge nodes (ssh://user@host), each a swarm node labelled carecircle.edge=true: one gateway "
        "container runs on each (prod: at least 2).", ["ssh://deploy@edge-1.carecircle.example"], default=[], max_length=64)
    swarm_monitoring_hosts: list[DockerHost] = key(
        "Docker hosts of the swarm nodes labelled carecircle.monitoring=true: a Prometheus and an Alertmanager, each with its "
        "protected volume, run on each, so alerting survives the loss of one (prod: at least 2).",
        ["ssh://deploy@monitoring-1.carecircle.example", "ssh://deploy@monitoring-2.carecircle.example"], default=[], max_length=64)
    swarm_node_platform: NodePlatform = key("os/architecture of the swarm's nodes (and so of the images they run).", "linux/amd64")
    swarm_encrypt_overlays: ConfigBool = key("Encrypt the overlay networks between nodes (IPsec; prod: required).", True)
    swarm_update_parallelism: Parallelism = key("Replicas a rolling update replaces at a time (start-first).", 1)
    swarm_update_delay: GoDuration = key("Pause between two batches of a rolling update.", "10s")
    swarm_update_monitor: GoDuration = key("How long Swarm watches each new replica for failure before the next batch.", "15s")
    swarm_converge_timeout: GoDuration = key("How long `pulumi up` waits for a rollout to converge before failing.", "5m")
    api_max_replicas_per_node: PerNode = key(
        "At most this many replicas of one api pool on a node (0: no limit). Leave room for a start-first update's extra "
        "replica; prod must not let one node hold a whole pool.", 2)
    workers_max_replicas_per_node: PerNode = key("At most this many workers on a node (0: no limit); as apiMaxReplicasPerNode.", 2)
    api_cpus_reserved: Optional[Cpus] = key("CPUs the scheduler reserves for each api replica (default: its limit).", "0.5", default=None)
    api_memory_reserved_mb: MemoryReservedMb = key("Memory (MB) the scheduler reserves for each api replica (0: its limit).", 0)
    workers_cpus_reserved: Optional[Cpus] = key("CPUs reserved for each worker (default: its limit).", "0.5", default=None)
    workers_memory_reserved_mb: MemoryReservedMb = key("Memory (MB) reserved for each worker (0: its limit).", 0)
    swarm_balancer_recovery_seconds: BalancerRecovery = key(
        "Seconds the L4 load balancer in front of the edge gateways needs to put an edge back in service once it answers "
        "again (its health-check interval times its rise count). Gateways replaced in one `pulumi up` (an image upgrade, a "
        "new edge network) go one after another: the next one is stopped only this long after the previous one serves again.",
        10)

    @cross_rule
    def _swarm_keys_on_swarm_stacks(self, environment: Environment) -> Iterator[Violation]:
        if self.platform == "swarm":
            return
        for field in SWARM_ONLY_KEYS:
            if getattr(self, field):
                yield Violation(field, "is used by swarm stacks only (carecircle:platform is engine): remove it", "")

    @cross_rule
    def _edge_hosts(self, environment: Environment) -> Iterator[Violation]:
        if self.platform != "swarm":
            return
        needed = 2 if environment.name == "prod" else 1
        if len(self.swarm_edge_hosts) < needed:
            yield Violation("swarm_edge_hosts", f"{environment.name} needs at least {needed} edge node(s) so the gateway "
                                                "survives the loss of one" if needed > 1 else "a swarm stack needs an edge node for its gateway",
                            EDGE_HOSTS_EXAMPLE)
        seen: dict[tuple[str, int], str] = {}
        for host in self.swarm_edge_hosts:
            node = node_of(host)
            if node in seen:
                yield Violation("swarm_edge_hosts", f"lists one node twice: {seen[node]} and {host} reach the same host and port, "
                                                    "so that node would run two gateways and losing it would lose both",
                                EDGE_HOSTS_EXAMPLE)
                break
            seen[node] = host
        if any(host.startswith("unix://") for host in self.swarm_edge_hosts) and environment.strict:
            yield Violation("swarm_edge_hosts", "edge nodes are reached over ssh://user@host", EDGE_HOSTS_EXAMPLE)

    @cross_rule
    def _monitoring_hosts(self, environment: Environment) -> Iterator[Violation]:
        if self.platform != "swarm" or not self.monitoring_enabled:
            return
        needed = 2 if environment.name == "prod" else 1
        if len(self.swarm_monitoring_hosts) < needed:
            yield Violation("swarm_monitoring_hosts", "prod runs Prometheus and Alertmanager on at least 2 nodes labelled "
                                                      "carecircle.monitoring=true, so alerting survives the loss of one" if needed > 1 else
                            "monitoring on a swarm stack runs Prometheus and Alertmanager on the nodes labelled "
                            "carecircle.monitoring=true: set their Docker hosts", MONITORING_HOSTS_EXAMPLE)
        if len(set(self.swarm_monitoring_hosts)) != len(self.swarm_monitoring_hosts):
            yield Violation("swarm_monitoring_hosts", "lists a host twice", MONITORING_HOSTS_EXAMPLE)

    @cross_rule
    def _encrypted_in_prod(self, environment: Environment) -> Iterator[Violation]:
        if self.platform == "swarm" and environment.name == "prod" and not self.swarm_encrypt_overlays:
            yield Violation("swarm_encrypt_overlays", "prod encrypts traffic between nodes", True)

    @cross_rule
    def _managed_data_services(self, environment: Environment) -> Iterator[Violation]:
        if self.platform != "swarm":
            return
        for field in ("postgres_mode", "redis_mode", "rabbitmq_mode"):
            if getattr(self, field) == "container":
                yield Violation(field, "a swarm stack runs no data service of its own: use the managed service (external)", "external")

    @cross_rule
    def _no_node_holds_a_whole_pool(self, environment: Environment) -> Iterator[Violation]:
        # prod has at least 3 nodes; staging may be one node (then 0: no limit).
        if self.platform != "swarm" or environment.name != "prod":
            return
        # One limit for both api pools: it must spread each pool that runs, the smaller one included.
        pools = [replicas for replicas in (self.api_replicas("blue"), self.api_replicas("green")) if replicas >= 2]
        for field, counts in (("api_max_replicas_per_node", pools), ("workers_max_replicas_per_node", [self.workers_replicas])):
            limit = getattr(self, field)
            unspread = [replicas for replicas in counts if replicas >= 2 and (limit == 0 or limit >= replicas)]
            if unspread:
                smallest = min(replicas for replicas in counts if replicas >= 2)
                yield Violation(field, f"prod must not let one node hold all {min(unspread)} replicas of a pool: "
                                       f"at most {smallest - 1} per node", smallest - 1)

    @cross_rule
    def _reservations_within_limits(self, environment: Environment) -> Iterator[Violation]:
        for app in ("api", "workers"):
            cpus, reserved = float(getattr(self, f"{app}_cpus")), getattr(self, f"{app}_cpus_reserved")
            if reserved is not None and float(reserved) > cpus:
                yield Violation(f"{app}_cpus_reserved", f"must be at most {app}Cpus ({cpus:g})", f"{cpus:g}")
            memory, reserved_mb = getattr(self, f"{app}_memory_mb"), getattr(self, f"{app}_memory_reserved_mb")
            if reserved_mb > memory:
                yield Violation(f"{app}_memory_reserved_mb", f"must be at most {app}MemoryMb ({memory})", memory)

    @cross_rule
    def _service_images_by_digest(self, environment: Environment) -> Iterator[Violation]:
        # The Docker client pins a tag to tag@digest when it creates a service (QueryRegistry) and the provider
        # reads that back; the next `pulumi up` would then send the bare tag again and roll every task onto it.
        if self.platform != "swarm":
            return
        fields = ["workers_image", *(f"api_{color}_image" for color in ("blue", "green") if self.pool_runs(color))]
        for field in fields:
            reference = getattr(self, field)
            if reference is not None and "@sha256:" not in reference:
                yield Violation(field, "a swarm service's image is pinned by digest: Docker pins a tag to its digest when it "
                                       "creates the service, and the next pulumi up would roll every task back onto the "
                                       "bare tag (docs/scaling.md)", f"{reference}@sha256:<digest>")

    @cross_rule
    def _api_outlives_the_gateways_dns_cache(self, environment: Environment) -> Iterator[Violation]:
        # After SIGTERM the api keeps serving for the resolver's validity plus a margin, then drains; a
        # stop grace period that ends first kills it while gateways still send it requests.
        if self.platform != "swarm":
            return
        delay = self.api_shutdown_delay_seconds
        if self.api_shutdown_grace_seconds <= delay:
            yield Violation("api_shutdown_grace_seconds",
                            f"an api replica keeps serving {delay} s after SIGTERM (gatewayResolverValid "
                            f"{self.gateway_resolver_valid} + {SHUTDOWN_DELAY_MARGIN_SECONDS} s, until every gateway stopped "
                            f"sending to it): its grace period must be longer, or it is killed while still in use", delay + 10)

    @cross_rule
    def _rollouts_fit_their_timeout(self, environment: Environment) -> Iterator[Violation]:
        # Each batch: a new replica may take the start period, then an interval until its first passing
        # probe (which may take the probe timeout); Swarm watches it `monitor` long; `delay` between
        # batches. A rollout slower than the converge timeout fails `pulumi up` while Swarm goes on.
        if self.platform != "swarm":
            return
        interval = seconds_of(self.healthcheck_interval)
        monitor, delay = seconds_of(self.swarm_update_monitor), seconds_of(self.swarm_update_delay)
        if monitor < interval:
            yield Violation("swarm_update_monitor", f"Swarm watches a new replica for {self.swarm_update_monitor}, less than one "
                                                    f"healthcheck interval ({self.healthcheck_interval}): a replica failing its "
                                                    "next check would not be rolled back", self.healthcheck_interval)
        largest = max([self.api_replicas(color) for color in ("blue", "green")] + [self.workers_replicas])
        batches = math.ceil(largest / self.swarm_update_parallelism)
        needed = batches * (HEALTHCHECK_START_PERIOD_SECONDS + interval + HEALTHCHECK_TIMEOUT_SECONDS + monitor) + (batches - 1) * delay
        if batches and seconds_of(self.swarm_converge_timeout) < needed:
            yield Violation("swarm_converge_timeout",
                            f"a rollout of {largest} replicas, {self.swarm_update_parallelism} at a time, may take {needed} s "
                            f"({batches} batch(es) of start period {HEALTHCHECK_START_PERIOD_SECONDS} s + healthcheck interval "
                            f"{self.healthcheck_interval} + probe timeout {HEALTHCHECK_TIMEOUT_SECONDS} s + monitor "
                            f"{self.swarm_update_monitor}, {self.swarm_update_delay} between batches): `pulumi up` would fail "
                            "while Swarm is still rolling out", f"{math.ceil(needed / 60)}m")

    @property
    def api_shutdown_delay_seconds(self) -> int:
        """SHUTDOWN_DELAY_SECONDS of a swarm api replica (see SHUTDOWN_DELAY_MARGIN_SECONDS)."""
        return seconds_of(self.gateway_resolver_valid) + SHUTDOWN_DELAY_MARGIN_SECONDS  # type: ignore[attr-defined]


def seconds_of(duration: str) -> int:
    """Whole seconds of a one-unit duration (500ms, 5s, 5m), rounded up: at least 1."""
    return max(1, math.ceil(nginx_time_ms(str(duration)) / 1000))


def node_of(docker_host: str) -> tuple[str, int]:
    """(host, port) a Docker host URL reaches, whatever the user or spelling: ssh://deploy@Edge-1:22 and
    ssh://ops@edge-1 are one node."""
    match = re.fullmatch(r"ssh://[^@]+@(?P<host>[^:\[\]]+|\[[^\]]+\])(?::(?P<port>[0-9]+))?", docker_host)
    if match is None:
        return docker_host, 0
    host = match["host"].strip("[]").lower()
    try:
        host = str(ipaddress.ip_address(host))
    except ValueError:
        host = host.rstrip(".")
    return host, int(match["port"] or SSH_DEFAULT_PORT)
