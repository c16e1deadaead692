"""A swarm stack's overlay networks: edge (gateways and api), backend (internal), egress (optional).

Attachable, so the plain containers on edge and monitoring nodes (gateways, exporters, Prometheus)
can join them. Services reference them by id (a name is rewritten to an id by the engine, which the
provider then reports as a change on every run: pulumi-docker#233).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import pulumi
import pulumi_docker as docker


@dataclass(frozen=True)
class OverlayNetworksArgs:
    edge_name: str
    backend_name: str
    # Only when a data service is managed (external): workers reach it over the internet, which an
    # internal network cannot do, without joining the gateways' edge network.
    egress_name: Optional[str]
    encrypted: bool
    labels: dict[str, str]
    # Everything waits for the cluster's assumptions to be checked (see SwarmPreflight).
    depends_on: tuple[pulumi.Resource, ...] = ()


class OverlayNetworks(pulumi.ComponentResource):
    edge: docker.Network
    backend: docker.Network
    egress: Optional[docker.Network]

    def __init__(self, name: str, args: OverlayNetworksArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("carecircle:network:OverlayNetworks", name, None, opts)

        def overlay(key: str, network_name: str, internal: bool) -> docker.Network:
            return docker.Network(
                f"{name}-{key}", name=network_name, driver="overlay", attachable=True, internal=internal,
                # IPsec between nodes. The engine reports the option back with the VXLAN id it chose, which the
                # provider would take for a change and replace the network on every run: the options are
                # set at create and not compared afterwards (to change encryption: pulumi up --replace <urn>).
                options={"encrypted": ""} if args.encrypted else None,
                labels=[docker.NetworkLabelArgs(label=k, value=v) for k, v in sorted(args.labels.items())],
                opts=pulumi.ResourceOptions(parent=self, depends_on=list(args.depends_on), ignore_changes=["options"]),
            )

        self.edge = overlay("edge", args.edge_name, internal=False)
        self.backend = overlay("backend", args.backend_name, internal=True)
        self.egress = overlay("egress", args.egress_name, internal=False) if args.egress_name else None
        self.register_outputs({
            "edge": self.edge.name,
            "backend": self.backend.name,
            "egress": self.egress.name if self.egress else None,
        })
