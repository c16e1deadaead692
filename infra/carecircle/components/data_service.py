"""A data service run as a container (dev): postgres, redis or rabbitmq with its volume and secrets.

In `external` mode no component is declared: the program takes the managed service's URL from
secret config instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import pulumi
import pulumi_docker as docker
import pulumi_random as random

from .common import ContainerRuntime, data_volume


@dataclass(frozen=True)
class Credentials:
    user: pulumi.Input[str]
    password: pulumi.Input[str]


@dataclass(frozen=True)
class DataServiceKind:
    """What differs between postgres, redis and rabbitmq."""

    port: int
    data_path: str
    health_test: list[str]
    # Environment of the container, from the generated credentials.
    environment: Callable[[Credentials], list[pulumi.Input[str]]]
    # Connection URL the apps use, reaching the container by name on the backend network.
    url: Callable[[str, Credentials], pulumi.Output[str]]
    fixed_user: Optional[str] = None  # None: generate a user name
    command: Optional[list[str]] = None
    management_port: Optional[int] = None


def postgres_kind(database: str, user: str) -> DataServiceKind:
    return DataServiceKind(
        port=5432,
        data_path="/var/lib/postgresql/data",
        health_test=["CMD-SHELL", f"pg_isready -U {user} -d {database} -h 127.0.0.1"],
        environment=lambda c: [
            f"POSTGRES_DB={database}",
            f"POSTGRES_USER={user}",
            pulumi.Output.concat("POSTGRES_PASSWORD=", c.password),
        ],
        url=lambda host, c: pulumi.Output.concat("postgresql://", c.user, ":", c.password, f"@{host}:5432/{database}"),
        fixed_user=user,
    )


def redis_kind() -> DataServiceKind:
    return DataServiceKind(
        port=6379,
        data_path="/data",
        # The password stays in the (secret) environment: never in the command, which is not secret.
        health_test=["CMD-SHELL", 'redis-cli --no-auth-warning -a "$REDIS_PASSWORD" ping | grep -q PONG'],
        environment=lambda c: [pulumi.Output.concat("REDIS_PASSWORD=", c.password)],
        url=lambda host, c: pulumi.Output.concat("redis://default:", c.password, f"@{host}:6379"),
        fixed_user="default",
        command=["sh", "-c", 'exec redis-server --appendonly yes --requirepass "$REDIS_PASSWORD"'],
    )


def rabbitmq_kind() -> DataServiceKind:
    return DataServiceKind(
        port=5672,
        data_path="/var/lib/rabbitmq",
        health_test=["CMD", "rabbitmq-diagnostics", "-q", "ping"],
        environment=lambda c: [
            pulumi.Output.concat("RABBITMQ_DEFAULT_USER=", c.user),
            pulumi.Output.concat("RABBITMQ_DEFAULT_PASS=", c.password),
        ],
        url=lambda host, c: pulumi.Output.concat("amqp://", c.user, ":", c.password, f"@{host}:5672"),
        management_port=15672,
    )


@dataclass(frozen=True)
class DataServiceArgs:
    kind: DataServiceKind
    container_name: str
    volume_name: str
    image: str
    backend_network: pulumi.Input[str]
    runtime: ContainerRuntime
    protect_volume: bool
    # dev only: (container port, host port) published on 127.0.0.1.
    published_port: Optional[tuple[int, int]] = None


class DataService(pulumi.ComponentResource):
    url: pulumi.Output[str]
    password: pulumi.Output[str]
    container: docker.Container
    volume: docker.Volume

    def __init__(self, name: str, args: DataServiceArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("carecircle:data:DataService", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        kind = args.kind

        password = random.RandomPassword(f"{name}-password", length=32, special=False, opts=child)
        user: pulumi.Input[str] = kind.fixed_user or random.RandomString(
            f"{name}-user", length=12, special=False, upper=False, numeric=False, opts=child
        ).result
        credentials = Credentials(user=user, password=password.result)
        self.password = pulumi.Output.secret(password.result)

        self.volume = data_volume(f"{name}-data", args.volume_name, args.runtime, args.protect_volume, self)
        ports = (
            [docker.ContainerPortArgs(internal=args.published_port[0], external=args.published_port[1], ip="127.0.0.1")]
            if args.published_port
            else None
        )
        self.container = docker.Container(
            f"{name}-container",
            name=args.container_name,
            image=args.image,
            command=kind.command,
            envs=pulumi.Output.secret(pulumi.Output.all(*kind.environment(credentials))),
            networks_advanced=[docker.ContainerNetworksAdvancedArgs(name=args.backend_network)],
            volumes=[docker.ContainerVolumeArgs(volume_name=self.volume.name, container_path=kind.data_path)],
            ports=ports,
            healthcheck=args.runtime.healthcheck(kind.health_test),
            wait=True,
            wait_timeout=120,
            **args.runtime.container_kwargs(name),
            opts=child,
        )
        self.url = pulumi.Output.secret(kind.url(args.container_name, credentials))
        self.register_outputs({"container": self.container.name, "volume": self.volume.name})
