"""The nginx gateway: the only container that publishes ports in staging and prod."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import pulumi
import pulumi_docker as docker

from ..rendering import CONTAINER_TLS, GatewayPorts
from .common import ContainerRuntime, healthcheck

NGINX_CONF_PATH = "/etc/nginx/nginx.conf"


@dataclass(frozen=True)
class TlsPem:
    certificate: pulumi.Output[str]
    key: pulumi.Output[str]


@dataclass(frozen=True)
class TlsHostPaths:
    certificate: str
    key: str


@dataclass(frozen=True)
class GatewayArgs:
    container_name: str
    image: str
    edge_network: pulumi.Input[str]
    nginx_conf: str
    bind_address: str
    http_port: int
    https_port: Optional[int]  # None: TLS off
    tls: Optional[TlsPem | TlsHostPaths]
    runtime: ContainerRuntime
    upstream_containers: Sequence[pulumi.Resource]
    listen: GatewayPorts = GatewayPorts()


class Gateway(pulumi.ComponentResource):
    container: docker.Container

    def __init__(self, name: str, args: GatewayArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("carecircle:gateway:Gateway", name, None, opts)
        uploads = [docker.ContainerUploadArgs(file=NGINX_CONF_PATH, content=args.nginx_conf)]
        volumes = []
        if isinstance(args.tls, TlsPem):
            # The contents are secret Outputs, so the whole uploads input is stored encrypted.
            uploads += [
                docker.ContainerUploadArgs(file=CONTAINER_TLS.certificate, content=args.tls.certificate),
                docker.ContainerUploadArgs(file=CONTAINER_TLS.key, content=args.tls.key),
            ]
        elif isinstance(args.tls, TlsHostPaths):
            volumes = [
                docker.ContainerVolumeArgs(host_path=args.tls.certificate, container_path=CONTAINER_TLS.certificate, read_only=True),
                docker.ContainerVolumeArgs(host_path=args.tls.key, container_path=CONTAINER_TLS.key, read_only=True),
            ]
        ports = [docker.ContainerPortArgs(internal=args.listen.http, external=args.http_port, ip=args.bind_address)]
        if args.https_port is not None:
            ports.append(docker.ContainerPortArgs(internal=args.listen.https, external=args.https_port, ip=args.bind_address))
        self.container = docker.Container(
            f"{name}-container",
            name=args.container_name,
            image=args.image,
            networks_advanced=[docker.ContainerNetworksAdvancedArgs(name=args.edge_network)],
            ports=ports,
            uploads=uploads,
            volumes=volumes or None,
            healthcheck=healthcheck(
                ["CMD-SHELL", f"wget -q -O /dev/null http://127.0.0.1:{args.listen.http}/_gateway/health || exit 1"],
                start_period="10s",
            ),
            wait=True,
            wait_timeout=60,
            **args.runtime.container_kwargs("gateway"),
            # nginx resolves upstream names when it starts: the api containers must exist first.
            opts=pulumi.ResourceOptions(parent=self, depends_on=list(args.upstream_containers)),
        )
        self.register_outputs({"container": self.container.name})
