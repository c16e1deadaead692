"""The stack's Docker networks: edge (gateway + api), backend (internal), egress (optional)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import pulumi
import pulumi_docker as docker


@dataclass(frozen=True)
class NetworksArgs:
    edge_name: str
    # The edge subnet, and the part of it Docker may hand out (the rest is for fixed addresses).
    edge_subnet: str
    edge_dynamic_range: str
    backend_name: str
    # Only when a data service is managed (external): workers reach it over the internet, which an
    # internal network cannot do, without joining the gateway's edge network.
    egress_name: Optional[str]
    labels: dict[str, str]


class Networks(pulumi.ComponentResource):
    edge: docker.Network
    backend: docker.Network
    egress: Optional[docker.Network]

    def __init__(self, name: str, args: NetworksArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("carecircle:network:Networks", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        labels = [docker.NetworkLabelArgs(label=k, value=v) for k, v in sorted(args.labels.items())]
        self.edge = docker.Network(
            f"{name}-edge", name=args.edge_name, driver="bridge", internal=False, labels=labels,
            ipam_configs=[docker.NetworkIpamConfigArgs(subnet=args.edge_subnet, ip_range=args.edge_dynamic_range)],
            opts=child,
        )
        self.backend = docker.Network(f"{name}-backend", name=args.backend_name, driver="bridge", internal=True, labels=labels, opts=child)
        self.egress = (
            docker.Network(f"{name}-egress", name=args.egress_name, driver="bridge", internal=False, labels=labels, opts=child)
            if args.egress_name
            else None
        )
        self.register_outputs({
            "edge": self.edge.name,
            "backend": self.backend.name,
            "egress": self.egress.name if self.egress else None,
        })
