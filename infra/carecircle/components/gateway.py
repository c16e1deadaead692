"""The nginx gateway: the only container that publishes ports in staging and prod.

The container is created once with a constant bootstrap configuration. The stack's configuration
(routes, active pool, limits, CORS, certificates) is applied to the running container (`apply`, once
the program has the bundle: in gatewayTls acme mode the certificate is obtained after every gateway
container exists) by a pulumi-command resource that pipes a bundle into
`docker exec ... sh -c <gateway-apply.sh>`:
`nginx -t`, swap, graceful reload. Changing the configuration therefore updates that command, never
the container: no replacement, no restart, no dropped connection. The docker CLI reaches the same
engine as the provider (DOCKER_HOST = docker:host, ssh:// included).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import pulumi
import pulumi_command as command
import pulumi_docker as docker

from ..rendering import APPLY_SCRIPT, HOST_MOUNTED_TLS, GatewayPorts, NginxPaths, render_bootstrap_conf
from .common import ContainerRuntime, apply_in_container


@dataclass(frozen=True)
class TlsHostPaths:
    certificate: str
    key: str


@dataclass(frozen=True)
class GatewayArgs:
    container_name: str
    image: str
    edge_network: pulumi.Input[str]
    bind_address: str
    http_port: int
    https_port: Optional[int]  # None: TLS off
    preview_port: Optional[int]  # published on 127.0.0.1 only
    tls_host_paths: Optional[TlsHostPaths]
    runtime: ContainerRuntime
    docker_host: Optional[str]
    # Swarm edge gateways: replaced one after another, the next only once the one before serves again and
    # the load balancer had `balancer_recovery_seconds` to take it back (None: a single gateway, engine stacks).
    after: Sequence[pulumi.Resource] = ()
    balancer_recovery_seconds: Optional[int] = None
    listen: GatewayPorts = GatewayPorts()
    paths: NginxPaths = NginxPaths()


class Gateway(pulumi.ComponentResource):
    """A gateway container, then (`apply`) its configuration: in gatewayTls acme mode the configuration
    carries a certificate whose challenges the container answers first."""

    container: docker.Container
    config: pulumi.Resource
    # Done once this gateway serves its configuration and the balancer had time to send it traffic again.
    serving: pulumi.Resource

    def __init__(self, name: str, args: GatewayArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("carecircle:gateway:Gateway", name, None, opts)
        self._name = name
        volumes = None
        if args.tls_host_paths is not None:
            volumes = [
                docker.ContainerVolumeArgs(host_path=args.tls_host_paths.certificate, container_path=HOST_MOUNTED_TLS.certificate, read_only=True),
                docker.ContainerVolumeArgs(host_path=args.tls_host_paths.key, container_path=HOST_MOUNTED_TLS.key, read_only=True),
            ]
        ports = [docker.ContainerPortArgs(internal=args.listen.http, external=args.http_port, ip=args.bind_address)]
        if args.https_port is not None:
            ports.append(docker.ContainerPortArgs(internal=args.listen.https, external=args.https_port, ip=args.bind_address))
        if args.preview_port is not None:
            ports.append(docker.ContainerPortArgs(internal=args.listen.preview, external=args.preview_port, ip="127.0.0.1"))
        self.container = docker.Container(
            f"{name}-container",
            name=args.container_name,
            image=args.image,
            command=["nginx", "-c", args.paths.active_conf, "-g", "daemon off;"],
            networks_advanced=[docker.ContainerNetworksAdvancedArgs(name=args.edge_network)],
            ports=ports,
            uploads=[docker.ContainerUploadArgs(file=args.paths.active_conf, content=render_bootstrap_conf(args.listen, args.paths))],
            volumes=volumes,
            # The status listener (bootstrap and stack configuration alike): never a public listener,
            # which may take only PROXY-protocol connections.
            healthcheck=args.runtime.healthcheck(
                ["CMD-SHELL", f"wget -q -O /dev/null http://127.0.0.1:{args.listen.status}/_gateway/health || exit 1"],
                start_period="10s",
            ),
            wait=True,
            wait_timeout=60,
            **args.runtime.container_kwargs("gateway"),
            # A container is replaced delete-first (pulumi-docker resources.go; its name and host ports are fixed
            # anyway): waiting for the gateway before it keeps one gateway serving at every moment.
            opts=pulumi.ResourceOptions(parent=self, depends_on=list(args.after)),
        )
        self.args = args
        self.register_outputs({"container": self.container.name})

    def apply(self, bundle: pulumi.Input[str], upstreams_ready: Sequence[pulumi.Resource]) -> None:
        """Apply the configuration `bundle` (the base64 tar gateway-apply.sh takes; secret when it holds
        a private key) once `upstreams_ready` exist (containers created with wait=True: healthy; swarm
        rollout gates: rolled out): a switch in the same `pulumi up` as a new pool never routes to
        replicas still starting."""
        self.config = apply_in_container(
            f"{self._name}-config", self.container, self.args.container_name, APPLY_SCRIPT, bundle, self.args.docker_host,
            depends_on=upstreams_ready, parent=self,
        )
        self.serving = self.config
        if self.args.balancer_recovery_seconds:
            # Runs when the container is new (first deploy, replacement): the balancer's time to re-admit it.
            self.serving = command.local.Command(
                f"{self._name}-readmitted", create=f"sleep {self.args.balancer_recovery_seconds}", triggers=[self.container.id],
                opts=pulumi.ResourceOptions(parent=self, depends_on=[self.config]))
