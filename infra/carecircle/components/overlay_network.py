"""A swarm stack's overlay networks: edge (gateways and api), backend (internal), egress (workers and
Alertmanager).

Attachable, so the plain containers on edge and monitoring nodes (gateways, exporters, Prometheus,
Alertmanager) can join them. Services reference them by id (a name is rewritten to an id by the engine, which the
provider then reports as a change on every run: pulumi-docker#233).

Named by Pulumi (<logical name>-<7 hex>), never by us: a network the program names is replaced
delete-first, and the services and gateways on it go first (nothing runs in between; Swarm even
keeps the old network a few seconds after accepting its removal, so the new one of the same name
fails). Autonamed, a replacement is created first and everything moves onto it before the old one goes.
Encryption is part of the logical name: the engine reports the options back with the VXLAN id it
chose, so `options` are ignored after the create; switching encryption is therefore a new network
(a new URN), created first, never an ignored change.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import pulumi
import pulumi_docker as docker


@dataclass(frozen=True)
class OverlayNetworksArgs:
    # Logical names (the engine's names are these plus Pulumi's suffix), e.g. carecircle-prod-edge.
    edge_name: str
    backend_name: str
    # The way to the internet that is not the gateways' edge network: workers reach managed data services
    # through it (an internal network cannot), Alertmanager its receivers.
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

        def overlay(logical_name: str, internal: bool) -> docker.Network:
            return docker.Network(
                f"{logical_name}-encrypted" if args.encrypted else logical_name,
                driver="overlay", attachable=True, internal=internal,
                # IPsec between nodes. The engine adds the VXLAN id it chose to the options it reports: compared,
                # that would replace the network on every run, so they are set at create only (see above).
                options={"encrypted": ""} if args.encrypted else None,
                labels=[docker.NetworkLabelArgs(label=k, value=v) for k, v in sorted(args.labels.items())],
                opts=pulumi.ResourceOptions(parent=self, depends_on=list(args.depends_on), ignore_changes=["options"]),
            )

        self.edge = overlay(args.edge_name, internal=False)
        self.backend = overlay(args.backend_name, internal=True)
        self.egress = overlay(args.egress_name, internal=False) if args.egress_name else None
        self.register_outputs({
            "edge": self.edge.name,
            "backend": self.backend.name,
            "egress": self.egress.name if self.egress else None,
        })
