"""The stack's secrets as Swarm secrets: files under /run/secrets in the tasks that mount them, only
on the nodes running those tasks, encrypted in the managers' Raft log; never environment variables
that `docker service inspect` would show.

Each secret is named by Pulumi (logical name + random suffix), never by us: a new value is a new
secret, created before the services move to it (a rolling update) and the old one deleted only at
the end of the deployment, once nothing uses it. A fixed name would make the provider delete the old
secret first, which Swarm refuses while a service mounts it.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Mapping, Optional

import pulumi
import pulumi_docker as docker


@dataclass(frozen=True)
class SwarmSecretsArgs:
    # file name under /run/secrets (also the secret's logical name suffix) -> its value (secret)
    values: Mapping[str, pulumi.Input[str]]
    name_prefix: str  # e.g. carecircle-prod
    labels: dict[str, str]


class SwarmSecrets(pulumi.ComponentResource):
    secrets: dict[str, docker.Secret]

    def __init__(self, name: str, args: SwarmSecretsArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("carecircle:secrets:SwarmSecrets", name, None, opts)
        self.secrets = {
            file_name: docker.Secret(
                f"{args.name_prefix}-{file_name.replace('_', '-')}",
                # Standard base64, as the provider requires; the encoded value stays a Pulumi secret.
                data=pulumi.Output.secret(pulumi.Output.from_input(value).apply(lambda text: base64.b64encode(text.encode()).decode())),
                labels=[docker.SecretLabelArgs(label=k, value=v) for k, v in sorted(args.labels.items())],
                opts=pulumi.ResourceOptions(parent=self),
            )
            for file_name, value in sorted(args.values.items())
        }
        self.register_outputs({"secrets": {file_name: secret.name for file_name, secret in self.secrets.items()}})
