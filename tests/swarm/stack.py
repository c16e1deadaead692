"""The swarm stack on a real cluster: evaluate staging's stack file offline (the program as `pulumi up`
would run it, stand-in images and test-sized knobs as config), then apply what it declares to the
cluster's engines with tests/engine_apply/ (the provider's semantics, planned from its read-back state).

staging always runs monitoring (a settings rule); a scenario that leaves it off, to spare these nodes,
runs staging's file as the dev stack REHEARSAL, as an operator rehearses staging's config on a test swarm.
A scenario with monitoring on is the staging stack itself.

The stack's Docker hosts are ssh:// addresses (staging and prod accept nothing else); here they are
names for the test nodes, and every declared value that names one (provider hosts, DOCKER_HOST of the
apply, rollout and preflight commands) is pointed at that node's socket before applying, as ssh and
DNS would deliver it. Nothing else of the declaration is changed.
"""

from __future__ import annotations

import copy
import json
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import yaml

from carecircle.audit.blast_radius import rehearsal_stack
from carecircle.offline import Evaluation, evaluate_stack
from carecircle.stackfiles import REPO_ROOT
from engine_apply import EngineApplier

from .cluster import SwarmCluster

STACK = "staging"  # the stack file every scenario starts from
REHEARSAL = rehearsal_stack(STACK)
SERVER_NAME = "api.staging.carecircle.example"
MANAGER_HOST = "ssh://deploy@manager.swarm.test"
EDGE_HOSTS = ("ssh://deploy@edge-1.swarm.test", "ssh://deploy@edge-2.swarm.test")
MONITORING_HOSTS = ("ssh://deploy@monitoring-1.swarm.test", "ssh://deploy@monitoring-2.swarm.test")
QUEUE_PORT = 6380
QUEUE_HOST = "carecircle-test-queue"
API_IMAGE = "carecircle-standin/api:{version}"
WORKERS_IMAGE = "carecircle-standin/workers:{version}"
# Pulumi.yaml `options: refresh: always`: every `pulumi up` reads the live state back first.
REFRESH = (yaml.safe_load((REPO_ROOT / "Pulumi.yaml").read_text()).get("options") or {}).get("refresh") == "always"
# staging reaches managed services over TLS with credentials (the settings refuse less); the stand-ins
# read only the host and port, or a fingerprint of the URL.
DATABASE_URL = "postgresql://carecircle:first-password@db.carecircle.test:5432/carecircle?sslmode=require"


def tls_files(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for the gateway's server name, kept on the nodes' shared filesystem."""
    directory.mkdir(parents=True, exist_ok=True)
    certificate, key = directory / "fullchain.pem", directory / "privkey.pem"
    if not certificate.exists():
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN={SERVER_NAME}",
                        "-addext", f"subjectAltName=DNS:{SERVER_NAME}", "-keyout", str(key), "-out", str(certificate)],
                       check=True, capture_output=True, timeout=60)
    key.chmod(0o644)  # read by the gateway's nginx (a stand-in image)
    return certificate, key


def base_config(tls_dir: Path, client_cidr: str, images: dict[str, str]) -> dict[str, Any]:
    """The staging stack shaped like prod (3 api replicas, 2 edge nodes, at most 2 per node), with the
    stand-in images (pinned by digest in the test registry: `images` maps a local tag to that reference)
    and knobs that keep rollouts short."""
    certificate, key = tls_files(tls_dir)
    return {
        "docker:host": MANAGER_HOST,
        "carecircle:swarmEdgeHosts": list(EDGE_HOSTS),
        "carecircle:swarmMonitoringHosts": None,
        "carecircle:monitoringEnabled": False,  # run as REHEARSAL, a dev stack (its file says staging)
        "carecircle:environment": None,
        # These kernels have no ESP: an encrypted overlay passes no traffic between nodes here.
        "carecircle:swarmEncryptOverlays": False,
        "carecircle:apiBlueImage": images[API_IMAGE.format(version=1)],
        "carecircle:apiBlueReplicas": 3,
        "carecircle:workersImage": images[WORKERS_IMAGE.format(version=1)],
        "carecircle:workersCommand": ["node", "worker.js"],
        "carecircle:workersReplicas": 2,
        "carecircle:apiMaxReplicasPerNode": 2,
        "carecircle:workersMaxReplicasPerNode": 2,
        "carecircle:apiMemoryMb": 256,
        "carecircle:apiCpusReserved": "0.1",
        "carecircle:apiMemoryReservedMb": 64,
        "carecircle:workersCpusReserved": "0.1",
        "carecircle:workersMemoryReservedMb": 64,
        "carecircle:workersShutdownGraceSeconds": 30,
        "carecircle:healthcheckInterval": "2s",
        "carecircle:swarmUpdateDelay": "1s",
        "carecircle:swarmUpdateMonitor": "5s",
        "carecircle:swarmConvergeTimeout": "3m",
        "carecircle:gatewayTlsCertificatePath": str(certificate),
        "carecircle:gatewayTlsKeyPath": str(key),
        "carecircle:gatewayRateLimitAllowlist": [client_cidr],
        # The load's balancer model takes an edge back after 2 checks 0.5 s apart.
        "carecircle:swarmBalancerRecoverySeconds": 2,
    }


def monitoring_config(images: dict[str, str]) -> dict[str, Any]:
    """Monitoring and alerting on, with the stand-in images (tests/swarm/monitoring_images.py), a
    Prometheus and an Alertmanager on each of two monitoring nodes, and timing in seconds instead of
    minutes. Receivers are secrets: see alerting_secrets."""
    return {
        "carecircle:monitoringEnabled": True,  # the staging stack itself
        "carecircle:environment": STACK,
        "carecircle:swarmMonitoringHosts": list(MONITORING_HOSTS),
        "carecircle:prometheusImage": images["prometheus"],
        "carecircle:alertmanagerImage": images["alertmanager"],
        "carecircle:nginxExporterImage": images["nginx-exporter"],
        "carecircle:blackboxExporterImage": images["blackbox-exporter"],
        "carecircle:prometheusRetention": "1d",
        "carecircle:scrapeInterval": "1s",
        # Longer than the load's clients can all stall on a lost node (their 10 s timeout): a window without
        # a single request has no error rate (0/0), and the alert would resolve and fire again.
        "carecircle:alertRateWindow": "20s",
        "carecircle:alertFor": "2s",
        # Longer than a lost node's tasks take to leave DNS (5-6 s): a replica that is gone is no TargetDown.
        "carecircle:alertTargetDownFor": "15s",
        "carecircle:alertGroupWait": "1s",
        # Longer than the second Alertmanager's turn (15 s): a settings rule.
        "carecircle:alertGroupInterval": "16s",
        "carecircle:alertRepeatInterval": "1h",
        "carecircle:alertDeadMansSwitchInterval": "4s",
        # staging's committed placeholder would send to a fake Slack
        "carecircle:alertSlackWebhookUrl": None,
    }


def alerting_secrets(webhook_url: str, dead_mans_switch_url: str) -> dict[str, str]:
    return {"carecircle:alertWebhookUrl": webhook_url, "carecircle:alertDeadMansSwitchUrl": dead_mans_switch_url}


def secrets(registry_auth: list[dict[str, str]], database_url: str = DATABASE_URL) -> dict[str, str]:
    # The workers take jobs from the queue stand-in named by REDIS_URL; every node pulls with the registry's credentials.
    return {"carecircle:databaseUrl": database_url,
            "carecircle:redisUrl": f"rediss://default:queue-password@{QUEUE_HOST}:{QUEUE_PORT}",
            "carecircle:rabbitmqUrl": "amqps://carecircle:broker-password@mq.carecircle.test:5671",
            "docker:registryAuth": json.dumps(registry_auth)}


def _replace_hosts(value: Any, hosts: dict[str, str]) -> Any:
    if isinstance(value, str):
        for address, node in hosts.items():
            value = value.replace(address, node)
        return value
    if isinstance(value, dict):
        return {k: _replace_hosts(v, hosts) for k, v in value.items()}
    if isinstance(value, list):
        return [_replace_hosts(v, hosts) for v in value]
    return value


@dataclass
class DeployedStack:
    """The stack on a cluster: evaluate with config changes, apply, remember what was applied."""

    cluster: SwarmCluster
    config: dict[str, Any]
    stack_secrets: dict[str, str]
    manager: str = "node1"
    edges: tuple[str, str] = ("node1", "node2")
    monitoring: tuple[str, str] = ("node3", "node2")
    applier: Optional[EngineApplier] = None
    evaluations: list[Evaluation] = field(default_factory=list)
    images: dict[str, str] = field(default_factory=dict)  # local tag -> the digest-pinned reference in the test registry
    renamed: dict[str, int] = field(default_factory=dict)  # logical name -> times a replacement named it anew
    # Outputs of resources a real provider made outside the applier (tests/swarm/acme.py), by name.
    resource_outputs: dict[str, dict] = field(default_factory=dict)

    @property
    def stack(self) -> str:
        """The stack name the file runs as: staging with monitoring on, else its rehearsal (a dev stack)."""
        return STACK if self.config.get("carecircle:monitoringEnabled") else REHEARSAL

    def hosts(self) -> dict[str, str]:
        return {MANAGER_HOST: self.cluster[self.manager].host_url,
                **{address: self.cluster[node].host_url for address, node in zip(EDGE_HOSTS, self.edges, strict=True)},
                **{address: self.cluster[node].host_url for address, node in zip(MONITORING_HOSTS, self.monitoring, strict=True)}}

    def evaluate(self, **changes: Any) -> Evaluation:
        """The stack with these config changes (keys without the carecircle: namespace)."""
        overrides = {**self.config, **{(k if ":" in k else f"carecircle:{k}"): v for k, v in changes.items()}}
        return evaluate_stack(STACK, overrides=overrides, secrets=self.stack_secrets, renamed=self.renamed,
                              resource_outputs=self.resource_outputs, as_stack=self.stack)

    def apply(self, evaluation: Optional[Evaluation] = None, replace: tuple[str, ...] = (), target: Optional[set[str]] = None,
              **changes: Any):
        """Apply the stack (with these changes, which then stay) as `pulumi up` would (`--replace` these names,
        `--target` these urns)."""
        hosts = self.hosts()
        if self.applier is None:
            # The default provider reads docker:registryAuth from the stack's config itself.
            self.applier = EngineApplier(hosts[MANAGER_HOST],
                                         default_registry_auth=json.loads(self.stack_secrets.get("docker:registryAuth", "[]")))
        self.applier.default_host = hosts[MANAGER_HOST]
        rename = None
        if evaluation is None:
            self.config.update({(k if ":" in k else f"carecircle:{k}"): v for k, v in changes.items()})
            # A replaced resource that Pulumi names gets a new name, which it keeps from then on: these
            # `--replace` targets, and whatever else the plan replaces (the applier asks: rename below).
            self.renamed.update({name: self.renamed.get(name, 0) + 1 for name in replace})
            evaluation = self.evaluate()

            def rename(names: list[str]) -> Evaluation:
                self.renamed.update({name: self.renamed.get(name, 0) + 1 for name in names})
                self.evaluations[-1] = self.evaluate()
                return self._on_nodes(self.evaluations[-1], hosts)

        self.evaluations.append(evaluation)
        return self.applier.apply(self._on_nodes(evaluation, hosts), refresh=REFRESH, replace=replace, rename=rename, target=target)

    @staticmethod
    def _on_nodes(evaluation: Evaluation, hosts: dict[str, str]) -> Evaluation:
        on_nodes = copy.deepcopy(evaluation)
        for resource in on_nodes.resources:
            resource.inputs = _replace_hosts(resource.inputs, hosts)
        return on_nodes

    def use_manager(self, node: str) -> None:
        """Deploy through another manager from now on (the previous one is gone)."""
        self.manager = node
        if self.applier is not None:
            self.applier.default_host = self.cluster[node].host_url

    def service_name(self, color: str = "blue") -> str:
        return next(name for name in self.evaluations[-1].outputs["services"] if f"-api-{color}-" in name)

    def network(self, role: str) -> str:
        """The engine's name of the stack's `role` overlay network (edge, backend, egress): named by Pulumi."""
        return next(name for name in self.evaluations[-1].outputs["networks"] if name.startswith(f"carecircle-{self.stack}-{role}-"))

    @property
    def workers_service(self) -> str:
        return next(name for name in self.evaluations[-1].outputs["services"] if "-workers-" in name)

    def destroy(self) -> None:
        if self.applier is not None:
            self.applier.destroy()
            self.applier.close()
