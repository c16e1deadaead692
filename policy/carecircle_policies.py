"""CareCircle's policy rules, as pulumi-policy validators.

The environment of a resource comes from the `com.carecircle.environment` label the program puts on
every container and volume. Validators see input properties as the engine sends them (camelCase,
secrets already decrypted), so the secrets rule judges values, not their secret flag.
"""

from __future__ import annotations

import re
from typing import Any, Callable, Mapping, Optional

from pulumi_policy import (
    EnforcementLevel,
    PolicyConfigSchema,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)

CONTAINER = "docker:index/container:Container"
NETWORK = "docker:index/network:Network"
VOLUME = "docker:index/volume:Volume"
DATA_ROLES = ("postgres", "redis", "rabbitmq")
STRICT = ("staging", "prod")
HTTPS_CONTAINER_PORT = 8443
SECRET_NAME = re.compile(r"(PASSWORD|PASSWD|_PASS$|SECRET|TOKEN|API_KEY|PRIVATE_KEY)", re.I)
URL_CREDENTIALS = re.compile(r"^[a-z][a-z0-9+.-]*://[^:/@\s]*:([^@\s]*)@", re.I)
WEAK = {"password", "changeme", "secret", "postgres", "guest", "admin", "root", "test", "example", "123456"}
MIN_SECRET_LENGTH = 16


def labels(props: Mapping[str, Any]) -> dict[str, str]:
    return {item.get("label"): item.get("value") for item in props.get("labels") or []}


def environment(props: Mapping[str, Any]) -> Optional[str]:
    return labels(props).get("com.carecircle.environment")


def role(props: Mapping[str, Any]) -> Optional[str]:
    return labels(props).get("com.carecircle.role")


def _containers(validate: Callable[[ResourceValidationArgs, ReportViolation], None]) -> Callable:
    def only_containers(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
        if args.resource_type == CONTAINER:
            validate(args, report_violation)
    return only_containers


@_containers
def _no_public_data_ports(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    if environment(args.props) in STRICT and role(args.props) in DATA_ROLES and args.props.get("ports"):
        report_violation(f"{args.props.get('name')}: a data service publishes a port in {environment(args.props)}", None)


@_containers
def _dev_ports_on_loopback(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    if environment(args.props) != "dev":
        return
    for port in args.props.get("ports") or []:
        if port.get("ip", "0.0.0.0") != "127.0.0.1":
            report_violation(f"{args.props.get('name')}: port {port.get('external')} is published on {port.get('ip', '0.0.0.0')}, not 127.0.0.1", None)


@_containers
def _operability(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    name = args.props.get("name")
    if not (args.props.get("healthcheck") or {}).get("tests"):
        report_violation(f"{name}: no healthcheck", None)
    if args.props.get("restart") in (None, "", "no"):
        report_violation(f"{name}: no restart policy", None)
    options = args.props.get("logOpts") or {}
    if args.props.get("logDriver") not in ("json-file", "local") or not options.get("max-size") or not options.get("max-file"):
        report_violation(f"{name}: logs are not rotated (json-file with max-size and max-file)", None)


IMAGE = re.compile(r"^(?P<name>[^@]+?)(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]*))?(?:@(?P<digest>sha256:[a-f0-9]{64}))?$")


@_containers
def _images_pinned(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    image = args.props.get("image") or ""
    env = environment(args.props)
    if re.fullmatch(r"sha256:[a-f0-9]{64}", image):  # a locally built image, by id
        return
    match = IMAGE.match(image)
    tag, digest = (match["tag"], match["digest"]) if match else (None, None)
    required = args.get_config().get("digestRequiredIn", ["prod"])
    if env in required and not digest:
        report_violation(f"{args.props.get('name')}: image {image} is not pinned by digest (required in {env})", None)
    elif env != "dev" and not digest and (not tag or tag == "latest"):
        report_violation(f"{args.props.get('name')}: image {image} is not pinned to a version", None)


def _volumes_protected(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    if args.resource_type == VOLUME and environment(args.props) in STRICT and not args.opts.protect:
        report_violation(f"{args.props.get('name')}: data volume in {environment(args.props)} is not protected", None)


def _weak(value: str) -> bool:
    return len(value) < MIN_SECRET_LENGTH or value.lower() in WEAK


@_containers
def _no_plaintext_secrets(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    for entry in args.props.get("envs") or []:
        name, _, value = str(entry).partition("=")
        credentials = URL_CREDENTIALS.match(value)
        if SECRET_NAME.search(name) and value and _weak(value):
            report_violation(f"{args.props.get('name')}: {name} holds a hard-coded or weak value, not a generated or stack secret", None)
        elif credentials and _weak(credentials.group(1)):
            report_violation(f"{args.props.get('name')}: {name} embeds a hard-coded or weak password", None)


@_containers
def _tls_on(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    if role(args.props) == "gateway" and environment(args.props) in STRICT:
        if not any(int(p.get("internal", 0)) == HTTPS_CONTAINER_PORT for p in args.props.get("ports") or []):
            report_violation(f"{args.props.get('name')}: the gateway serves no HTTPS in {environment(args.props)}", None)


def _data_services_internal(args: StackValidationArgs, report_violation: ReportViolation) -> None:
    internal = {r.props.get("name"): bool(r.props.get("internal")) for r in args.resources if r.resource_type == NETWORK}
    for resource in args.resources:
        if resource.resource_type == CONTAINER and role(resource.props) in DATA_ROLES:
            for network in resource.props.get("networksAdvanced") or []:
                if not internal.get(network.get("name"), False):
                    report_violation(f"{resource.props.get('name')}: data service on non-internal network {network.get('name')}", resource.urn)


POLICIES = [
    ResourceValidationPolicy(name="no-public-data-ports", description="No data-service port is published in staging or prod.",
                             validate=_no_public_data_ports),
    ResourceValidationPolicy(name="dev-ports-on-loopback", description="In dev every published port is bound to 127.0.0.1.",
                             validate=_dev_ports_on_loopback),
    ResourceValidationPolicy(name="container-operability", description="Every container has a healthcheck, a restart policy and log rotation.",
                             validate=_operability),
    ResourceValidationPolicy(
        name="images-pinned",
        description="Images are pinned: no latest or untagged outside dev, and by digest where configured (prod by default).",
        validate=_images_pinned,
        config_schema=PolicyConfigSchema(properties={
            "digestRequiredIn": {"type": "array", "items": {"type": "string"}, "default": ["prod"]},
        }),
    ),
    ResourceValidationPolicy(name="data-volumes-protected", description="Data volumes are protected in staging and prod.",
                             validate=_volumes_protected),
    StackValidationPolicy(name="data-services-internal-only", description="Data services are only on internal networks.",
                          validate=_data_services_internal),
    ResourceValidationPolicy(name="no-plaintext-secrets", description="No hard-coded or weak secret-looking value in a container's environment.",
                             validate=_no_plaintext_secrets),
    ResourceValidationPolicy(name="tls-on", description="The gateway serves HTTPS in staging and prod.",
                             validate=_tls_on, enforcement_level=EnforcementLevel.MANDATORY),
]
