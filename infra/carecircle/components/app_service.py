"""An app service: N identical containers of one api pool or of the workers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import pulumi
import pulumi_docker as docker

from ..provider_semantics import read_back_cpus
from .common import ContainerRuntime


@dataclass(frozen=True)
class AppServiceArgs:
    role: str  # "api" or "workers"
    container_names: Sequence[str]
    image: pulumi.Input[str]
    command: Optional[list[str]]
    envs: pulumi.Input[Sequence[pulumi.Input[str]]]
    networks: Sequence[pulumi.Input[str]]
    health_test: list[str]
    memory_mb: int
    cpus: str
    runtime: ContainerRuntime
    # Seconds between SIGTERM and SIGKILL when a container is stopped or removed: in-flight requests
    # (api) or jobs (workers) finish first.
    stop_grace_seconds: int
    # The api: create waits until the container is healthy, so nothing routes to a dead replica.
    wait_healthy: bool
    # Fixed addresses on the first network, one per container (the api pools on the edge network).
    addresses: Optional[Sequence[str]] = None
    labels: Optional[dict[str, str]] = None


def api_health_test(port: int, health_path: str) -> list[str]:
    # Node's own fetch: the api image is Node and need not ship curl or wget.
    url = f"http://127.0.0.1:{port}{health_path}"
    return ["CMD", "node", "-e", f"fetch('{url}').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]


def workers_health_test(heartbeat_file: str) -> list[str]:
    # Healthy while the worker touched its heartbeat file within the last 30 s.
    return ["CMD", "node", "-e",
            f"try{{process.exit(Date.now()-require('fs').statSync('{heartbeat_file}').mtimeMs<30000?0:1)}}catch(e){{process.exit(1)}}"]


class AppService(pulumi.ComponentResource):
    containers: list[docker.Container]

    def __init__(self, name: str, args: AppServiceArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("carecircle:app:AppService", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        runtime_kwargs = args.runtime.container_kwargs(args.role, args.labels or {})
        self.containers = []
        for index, container_name in enumerate(args.container_names):
            networks = [docker.ContainerNetworksAdvancedArgs(name=network) for network in args.networks]
            if args.addresses is not None:
                networks[0] = docker.ContainerNetworksAdvancedArgs(name=args.networks[0], ipv4_address=args.addresses[index])
            self.containers.append(docker.Container(
                f"{name}-{index + 1}",
                name=container_name,
                image=args.image,
                command=args.command,
                envs=args.envs,
                networks_advanced=networks,
                healthcheck=args.runtime.healthcheck(args.health_test),
                memory=args.memory_mb,
                cpus=read_back_cpus(args.cpus),  # cpus is ForceNew: declared as it is read back
                stop_signal="SIGTERM",
                stop_timeout=args.stop_grace_seconds,
                destroy_grace_seconds=args.stop_grace_seconds,
                wait=args.wait_healthy,
                wait_timeout=120 if args.wait_healthy else None,
                **runtime_kwargs,
                opts=child,
            ))
        self.register_outputs({"containers": [c.name for c in self.containers]})
