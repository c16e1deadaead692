"""An app service: N identical containers of the api or the workers, from a registry image or,
in dev, an image built from a directory of this repository."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import pulumi
import pulumi_docker as docker

from .common import ContainerRuntime, healthcheck


@dataclass(frozen=True)
class AppServiceArgs:
    role: str  # "api" or "workers"
    container_names: Sequence[str]
    image: Optional[str]
    build_context: Optional[str]  # relative to the project directory, where Pulumi runs
    local_image_name: str
    command: Optional[list[str]]
    envs: pulumi.Input[Sequence[pulumi.Input[str]]]
    networks: Sequence[pulumi.Input[str]]
    health_test: list[str]
    memory_mb: int
    cpus: str
    runtime: ContainerRuntime
    # The api: create waits until the container is healthy, so the gateway never starts on a dead upstream.
    wait_healthy: bool


class AppService(pulumi.ComponentResource):
    containers: list[docker.Container]

    def __init__(self, name: str, args: AppServiceArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("carecircle:app:AppService", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        image: pulumi.Input[str]
        if args.build_context is not None:
            built = docker.Image(
                f"{name}-image",
                image_name=args.local_image_name,
                build=docker.DockerBuildArgs(context=args.build_context),
                skip_push=True,
                opts=child,
            )
            # repo_digest is the local image id when not pushed: a rebuild changes it, and the
            # containers follow.
            image = built.repo_digest
        else:
            image = args.image  # type: ignore[assignment]

        self.containers = [
            docker.Container(
                f"{name}-{index}",
                name=container_name,
                image=image,
                command=args.command,
                envs=args.envs,
                networks_advanced=[docker.ContainerNetworksAdvancedArgs(name=network) for network in args.networks],
                healthcheck=healthcheck(args.health_test),
                memory=args.memory_mb,
                cpus=args.cpus,
                wait=args.wait_healthy,
                wait_timeout=120 if args.wait_healthy else None,
                **args.runtime.container_kwargs(args.role),
                opts=child,
            )
            for index, container_name in enumerate(args.container_names, start=1)
        ]
        self.register_outputs({"containers": [c.name for c in self.containers]})
