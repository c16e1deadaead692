"""The certificate of the edge gateways in gatewayTls acme mode: one ACME certificate for the stack's
server name, obtained and renewed by `pulumi up` (infra/carecircle/acme.py), its HTTP-01 challenges
answered by every gateway container. Its chain and key feed the gateways' configuration bundle."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import pulumi
import pulumi.dynamic
import pulumi_docker as docker

from ..acme import AcmeCertificateProvider


@dataclass(frozen=True)
class GatewayTarget:
    """A gateway container, and the Docker host of its engine (None: the CLI's default)."""

    container_name: str
    docker_host: Optional[str]
    # What it answers challenges with while still on its bootstrap configuration.
    challenge_responder: str

    def shell(self) -> dict:
        return {"command": ["docker", "exec", "-i", self.container_name],
                "environment": {"DOCKER_HOST": self.docker_host} if self.docker_host else {},
                "challenge_responder": self.challenge_responder}


@dataclass(frozen=True)
class GatewayCertificateArgs:
    directory: str
    names: Sequence[str]
    email: str
    account_key: pulumi.Input[str]  # a secret
    renewal_margin_days: int
    gateways: Sequence[GatewayTarget]
    # Gateway containers that exist (and run) before an order's challenges are published
    # (declarations.gateway_certificate: the first one).
    containers: Sequence[docker.Container]


ACME_CERTIFICATE_TYPE = "pulumi-python:dynamic/carecircle:AcmeCertificate"
# Offline (under mocks) the CA's answer is not known: these stand in for it.
OFFLINE_CERTIFICATE = "-----BEGIN CERTIFICATE-----\nb2ZmbGluZQ==\n-----END CERTIFICATE-----\n"
OFFLINE_PRIVATE_KEY = "-----BEGIN PRIVATE KEY-----\nb2ZmbGluZQ==\n-----END PRIVATE KEY-----\n"


class AcmeCertificate(pulumi.dynamic.Resource, module="carecircle", name="AcmeCertificate"):
    certificate: pulumi.Output[str]
    private_key: pulumi.Output[str]
    not_after: pulumi.Output[str]

    def __init__(self, name: str, props: dict, opts: pulumi.ResourceOptions):
        super().__init__(AcmeCertificateProvider(), name, {**props, "certificate": None, "private_key": None, "not_before": None,
                                                           "not_after": None}, opts)


class GatewayCertificate(pulumi.ComponentResource):
    certificate: pulumi.Output[str]
    private_key: pulumi.Output[str]
    not_after: pulumi.Output[str]

    def __init__(self, name: str, args: GatewayCertificateArgs, opts: Optional[pulumi.ResourceOptions] = None):
        super().__init__("carecircle:gateway:Certificate", name, None, opts)
        acme = AcmeCertificate(f"{name}-acme", {
            "directory": args.directory,
            "names": list(args.names),
            "email": args.email,
            "account_key": args.account_key,
            "renewal_margin_days": args.renewal_margin_days,
            "gateways": [gateway.shell() for gateway in args.gateways],
        }, pulumi.ResourceOptions(parent=self, depends_on=list(args.containers), additional_secret_outputs=["private_key"]))
        self.certificate = acme.certificate
        self.private_key = pulumi.Output.secret(acme.private_key)
        self.not_after = acme.not_after
        self.register_outputs({"notAfter": self.not_after})
