"""What a swarm stack assumes of its cluster, checked before anything is declared on it: docker:host
is a manager, each edge host and each monitoring host are nodes of that swarm with their labels, some
node takes the apps (templates/swarm-preflight.sh). The program cannot create nodes; it can refuse
to deploy onto a cluster that is not what the stack says, with the fix in the message."""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from typing import Optional, Sequence

import pulumi
import pulumi_command as command

from ..rendering import TEMPLATES

PREFLIGHT_SCRIPT = (TEMPLATES / "swarm-preflight.sh").read_text()


@dataclass(frozen=True)
class SwarmPreflightArgs:
    manager_host: Optional[str]
    edge_hosts: Sequence[str]
    monitoring_hosts: Sequence[str]


class SwarmPreflight(pulumi.ComponentResource):
    check: command.local.Command

    def __init__(self, name: str, args: SwarmPreflightArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("carecircle:swarm:SwarmPreflight", name, None, opts)
        hosts = [*(f"edge={host}" for host in args.edge_hosts), *(f"monitoring={host}" for host in args.monitoring_hosts)]
        self.check = command.local.Command(
            f"{name}-check",
            create=" ".join(["sh -c", shlex.quote(PREFLIGHT_SCRIPT), "preflight", *map(shlex.quote, hosts)]),
            environment={"DOCKER_HOST": args.manager_host} if args.manager_host else None,
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.register_outputs({})
