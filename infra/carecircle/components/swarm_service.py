"""An app service on Swarm (one api pool, or the workers): a replicated docker Service whose every
change inside the pool is a rolling update, plus the gate that waits for each rollout to finish.

Rolling updates are start-first (a new replica runs and passes its healthcheck before an old one
stops), `parallelism` at a time, `failure_action: rollback`: a secret rotation or a memory change
never takes the pool below its size. Secrets arrive as files (/run/secrets/<name>) named by
`<NAME>_FILE` variables. The service is named by Pulumi (logical name + suffix): a change that Swarm
cannot apply in place replaces it create-first, and the gateway follows the new name.

Declared the way the provider reads it back (docs/scaling.md "What the provider does"), so that a
`pulumi up` with nothing to change changes nothing:
- every duration in the provider's read-back form (read_back_duration: "120s" is declared "2m");
- the plain settings in a dotenv file (a Swarm config, mounted at ENV_FILE) and the env a single
  DOTENV_CONFIG_PATH: the provider turns the env map into the task's list in a new order on every call,
  and Swarm restarts every task when that order changes, so a scale would otherwise be a rolling restart;
- `placement.platforms` declared for the create and then left to Swarm: the Docker client replaces it on
  create with the registry's list for the image (ignore_changes);
- no convergeConfig: the rollout gate waits (for the last batch too) and fails with Swarm's own message,
  and a create that cannot converge keeps the service to look at instead of deleting it.
"""

from __future__ import annotations

import base64
import shlex
from dataclasses import dataclass
from typing import Mapping, Optional, Sequence

import pulumi
import pulumi_command as command
import pulumi_docker as docker

from ..provider_semantics import read_back_duration
from ..rendering import TEMPLATES
from .common import HEALTHCHECK_RETRIES, HEALTHCHECK_TIMEOUT

ROLLOUT_SCRIPT = (TEMPLATES / "swarm-rollout.sh").read_text()
# Nodes that take app tasks; a node joins the pool of app nodes once labelled (docs/scaling.md).
APP_NODE_CONSTRAINT = "node.labels.carecircle.apps == true"
SECRETS_DIR = "/run/secrets"
# The dotenv file with the plain settings, named by the service's only environment variable.
ENV_FILE = "/run/configs/carecircle.env"


@dataclass(frozen=True)
class SecretFile:
    """A Swarm secret mounted as a file; the app finds it through <env>_FILE."""

    env: str  # e.g. DATABASE_URL: the task gets DATABASE_URL_FILE=/run/secrets/<file_name>
    file_name: str
    secret: docker.Secret


@dataclass(frozen=True)
class Rollout:
    """How Swarm replaces the replicas of a service, and how long `pulumi up` waits for it."""

    parallelism: int
    delay: str
    monitor: str
    converge_timeout_seconds: int


@dataclass(frozen=True)
class Resources:
    memory_mb: int
    cpus: str
    memory_reserved_mb: int
    cpus_reserved: str


@dataclass(frozen=True)
class SwarmServiceArgs:
    image: pulumi.Input[str]
    command: Optional[list[str]]
    env: Mapping[str, str]  # plain settings; secrets only as SecretFile
    secret_files: Sequence[SecretFile]
    networks: Sequence[pulumi.Input[str]]  # network ids
    replicas: int
    health_test: list[str]
    health_interval: str
    resources: Resources
    max_replicas_per_node: int  # 0: no limit
    node_platform: tuple[str, str]  # (os, architecture) of the nodes' images
    stop_grace_seconds: int
    rollout: Rollout
    log_options: dict[str, str]
    labels: dict[str, str]
    manager_host: Optional[str]  # DOCKER_HOST for the rollout gate (docker:host)
    # Changes whenever the registry credentials do: a service label (updated in place, no task restarts),
    # so that the provider's next update hands Swarm the new credentials for the nodes' pulls.
    credentials_version: pulumi.Input[str] = ""


def render_env_file(env: Mapping[str, str]) -> str:
    """A dotenv file, KEY='value' per line in key order; single quotes keep every value literal (dotenv,
    python-dotenv and sh read it the same)."""
    for key, value in env.items():
        if "'" in value or "\n" in value or "\r" in value:
            raise ValueError(f"{key}: a setting written to the env file holds a quote or a line break")
    return "".join(f"{key}='{value}'\n" for key, value in sorted(env.items()))


def _bytes(megabytes: int) -> int:
    return megabytes * 1024 * 1024


def _nano_cpus(cpus: str) -> int:
    return round(float(cpus) * 1_000_000_000)


class SwarmService(pulumi.ComponentResource):
    env_file: docker.ServiceConfig  # the plain settings, as a dotenv file
    service: docker.Service
    rollout: command.local.Command  # done once the service's current spec runs everywhere

    def __init__(self, name: str, args: SwarmServiceArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("carecircle:app:SwarmService", name, None, opts)
        duration = read_back_duration
        update_policy = dict(parallelism=args.rollout.parallelism, order="start-first", monitor=duration(args.rollout.monitor),
                             max_failure_ratio="0")
        env = {**args.env, **{f"{s.env}_FILE": f"{SECRETS_DIR}/{s.file_name}" for s in args.secret_files}}
        self.env_file = docker.ServiceConfig(
            f"{name}-env",
            data=base64.b64encode(render_env_file(env).encode()).decode(),
            labels=[docker.ServiceConfigLabelArgs(label=k, value=v) for k, v in sorted(args.labels.items())],
            opts=pulumi.ResourceOptions(parent=self),
        )
        service_labels = [docker.ServiceLabelArgs(label=k, value=v) for k, v in sorted(args.labels.items())]
        service_labels.append(docker.ServiceLabelArgs(label="com.carecircle.registry-credentials", value=args.credentials_version))
        self.service = docker.Service(
            name,
            labels=service_labels,
            mode=docker.ServiceModeArgs(replicated=docker.ServiceModeReplicatedArgs(replicas=args.replicas)),
            task_spec=docker.ServiceTaskSpecArgs(
                container_spec=docker.ServiceTaskSpecContainerSpecArgs(
                    image=args.image,
                    commands=args.command,
                    env={"DOTENV_CONFIG_PATH": ENV_FILE},
                    configs=[docker.ServiceTaskSpecContainerSpecConfigArgs(
                        config_id=self.env_file.id, config_name=self.env_file.name, file_name=ENV_FILE)],
                    secrets=[docker.ServiceTaskSpecContainerSpecSecretArgs(
                        # Swarm needs the name with the id (the provider calls it optional).
                        secret_id=s.secret.id, secret_name=s.secret.name, file_name=s.file_name)
                        for s in args.secret_files],
                    healthcheck=docker.ServiceTaskSpecContainerSpecHealthcheckArgs(
                        tests=args.health_test, interval=duration(args.health_interval), timeout=duration(HEALTHCHECK_TIMEOUT),
                        retries=HEALTHCHECK_RETRIES, start_period=duration("30s")),
                    stop_signal="SIGTERM",
                    # Unset, the provider sends 0s: SIGKILL right after SIGTERM.
                    stop_grace_period=duration(f"{args.stop_grace_seconds}s"),
                ),
                resources=docker.ServiceTaskSpecResourcesArgs(
                    limits=docker.ServiceTaskSpecResourcesLimitsArgs(
                        memory_bytes=_bytes(args.resources.memory_mb), nano_cpus=_nano_cpus(args.resources.cpus)),
                    reservation=docker.ServiceTaskSpecResourcesReservationArgs(
                        memory_bytes=_bytes(args.resources.memory_reserved_mb), nano_cpus=_nano_cpus(args.resources.cpus_reserved)),
                ),
                # `any`: a replica stopped for failing its healthcheck exits 0 after draining, and must come back.
                # Unset, the provider sends a 0 s delay: an immediate restart loop.
                restart_policy=docker.ServiceTaskSpecRestartPolicyArgs(condition="any", delay=duration("5s"), max_attempts=0,
                                                                       window=duration("30s")),
                placement=docker.ServiceTaskSpecPlacementArgs(
                    constraints=[APP_NODE_CONSTRAINT],
                    max_replicas=args.max_replicas_per_node,
                    platforms=[docker.ServiceTaskSpecPlacementPlatformArgs(os=args.node_platform[0], architecture=args.node_platform[1])],
                ),
                networks_advanceds=[docker.ServiceTaskSpecNetworksAdvancedArgs(id=network) for network in args.networks],
                log_driver=docker.ServiceTaskSpecLogDriverArgs(name="json-file", options=args.log_options),
            ),
            update_config=docker.ServiceUpdateConfigArgs(**update_policy, delay=duration(args.rollout.delay), failure_action="rollback"),
            rollback_config=docker.ServiceRollbackConfigArgs(**update_policy, delay=duration("0s"), failure_action="pause"),
            # Gateways and Prometheus address the tasks (tasks.<service>), never a virtual IP.
            endpoint_spec=docker.ServiceEndpointSpecArgs(mode="dnsrr"),
            # The platforms the Docker client wrote at create (the registry's list for the image) stay.
            opts=pulumi.ResourceOptions(parent=self, ignore_changes=["taskSpec.placement.platforms"]),
        )
        self.rollout = command.local.Command(
            f"{name}-rollout",
            create=pulumi.Output.concat("sh -c ", shlex.quote(ROLLOUT_SCRIPT), " rollout ", self.service.id, " ",
                                        str(args.rollout.converge_timeout_seconds)),
            environment={"DOCKER_HOST": args.manager_host} if args.manager_host else None,
            # Any change of what the replicas run is a rollout to wait for.
            triggers=[self.service.task_spec, self.service.mode, self.service.update_config],
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.service]),
        )
        self.register_outputs({"service": self.service.name})
