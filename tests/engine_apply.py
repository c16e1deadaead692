"""Apply an offline Evaluation to real Docker engines, the way `pulumi up` would.

`infra/carecircle/offline.py` runs a Pulumi program under mocks and records what it declares
(`Evaluation`). `EngineApplier` takes such an evaluation and performs, through the Docker Engine
API (docker SDK, low-level client), what pulumi-docker 5.2 (kreuzwerker/terraform-provider-docker
4.x underneath), pulumi-command 1.2 and pulumi-random would do, so that a test can prove on a real
engine / Swarm that what the program declares works.

What it emulates (each point read from the provider sources named in the report):

* Every input of every supported type goes through a table (`*_FIELDS` below) that maps it to
  the Docker Engine API request, with the provider's schema defaults (`*_DEFAULTS`). An input path
  that is not in the table is refused (`UnmappedInputError`, naming resource, type and path):
  a new input can never be silently dropped.
* Mock ids: under the mocks every id is "<resource name>-id". The applier replaces such
  references (as whole tokens inside any string) by the real id of the resource it created.
* `apply(evaluation)` diffs by URN against what it applied before (on inputs with ids resolved,
  so a replaced network/secret changes its dependents' inputs, as on the real engine):
  unchanged -> nothing; changed -> `action_for(type, dotted paths)` says update / replace /
  no live change. Replacement is create-before-replace (old deleted at the end) unless the
  resource (or, for containers, the provider) asks for delete-before-replace; dependents that
  would be replaced because of a delete-before-replace resource are deleted before it, as
  Pulumi does. Removed and replaced resources are deleted at the end in reverse order. A
  protected resource is never deleted or replaced (raises, before anything changes).
* Service: create / update with the whole spec and the current version; `convergeConfig`
  waits like the provider (all replicas running, healthy when there is a healthcheck; rollback
  or pause raises; create deletes the service when it never converges). Container: created
  attached to the default bridge, disconnected, connected to `networksAdvanced`, uploads copied,
  started, `wait` waits for healthy. Command: `sh -c` with the environment merged in and stdin
  piped, non-zero exit raises with stderr.

Nothing here runs at import time; the module needs the `docker` package (see the report for the
pinned version).
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import os
import re
import subprocess
import sys
import tarfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Optional

import docker
import docker.errors
import requests

from carecircle.audit.changes import changed_paths
from carecircle.provider_semantics import action_for as provider_action_for

try:
    from carecircle.offline import DeclaredResource, Evaluation
except ImportError:  # imported outside the test session: put infra/ on the path as the CLI does
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "infra"))
    from carecircle.offline import DeclaredResource, Evaluation

# --------------------------------------------------------------------------------------------
# Type tokens
# --------------------------------------------------------------------------------------------

NETWORK = "docker:index/network:Network"
VOLUME = "docker:index/volume:Volume"
SECRET = "docker:index/secret:Secret"
CONFIG = "docker:index/serviceConfig:ServiceConfig"
SERVICE = "docker:index/service:Service"
CONTAINER = "docker:index/container:Container"
COMMAND = "command:local:Command"
DOCKER_PROVIDERS = ("pulumi:providers:docker", "docker:index/provider:Provider")
NO_OP_PROVIDERS = ("pulumi:providers:command", "pulumi:providers:random")
RANDOM_PREFIX = "random:"
# Packages whose resources are real: an unknown type from one of them is refused, never skipped.
PROVIDER_PACKAGES = ("docker", "command", "random", "pulumi")

# pulumi-docker's provider/resources.go: docker_container has DeleteBeforeReplace: true.
PROVIDER_DELETE_BEFORE_REPLACE = frozenset({CONTAINER})


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------


class EngineApplyError(Exception):
    """Anything the applier refuses or the engine rejected."""


class UnmappedInputError(EngineApplyError):
    def __init__(self, resource: str, type_: str, path: str, reason: str = "is not mapped to the Docker Engine API"):
        self.resource, self.type, self.path = resource, type_, path
        super().__init__(f"{type_} {resource!r}: input {path!r} {reason}; engine_apply refuses to drop it silently")


class UnsupportedResourceError(EngineApplyError):
    pass


class ProtectedResourceError(EngineApplyError):
    pass


class EngineError(EngineApplyError):
    """The Docker engine refused a request; `explanation` is the engine's own message."""

    def __init__(self, message: str, explanation: str = ""):
        self.explanation = explanation
        super().__init__(message)


class CommandFailedError(EngineApplyError):
    def __init__(self, name: str, phase: str, exit_code: int, stdout: str, stderr: str):
        self.name, self.phase, self.exit_code, self.stdout, self.stderr = name, phase, exit_code, stdout, stderr
        super().__init__(f"command:local:Command {name!r} ({phase}) exited with {exit_code}; stderr:\n{stderr}")


class ConvergeError(EngineApplyError):
    """A service with convergeConfig did not converge, or its update rolled back or paused."""


class ContainerHealthError(EngineApplyError):
    pass


# --------------------------------------------------------------------------------------------
# Value converters (pulumi input value -> Engine API value). Each raises ValueError on bad input.
# --------------------------------------------------------------------------------------------

SKIP = object()  # a converter result meaning "the provider sends nothing for this value"


def anything(value: Any) -> Any:
    return value


def string(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {value!r}")
    return value


def boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"expected a boolean, got {value!r}")
    return value


def integer(value: Any) -> int:
    # The engine receives numbers as floats (24.0).
    if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value:
        raise ValueError(f"expected an integer, got {value!r}")
    return int(value)


def string_list(value: Any) -> list[str]:
    if not isinstance(value, list):
        raise ValueError(f"expected a list of strings, got {value!r}")
    return [string(v) for v in value]


def string_map(value: Any) -> dict[str, str]:
    if not isinstance(value, dict):
        raise ValueError(f"expected a map of strings, got {value!r}")
    return {string(k): string(v) for k, v in value.items()}


def labels(value: Any) -> dict[str, str]:
    """[{label, value}] (pulumi-docker's label sets) -> {label: value}."""
    if not isinstance(value, list):
        raise ValueError(f"expected a list of {{label, value}}, got {value!r}")
    out = {}
    for item in value:
        if not isinstance(item, dict) or set(item) != {"label", "value"}:
            raise ValueError(f"a label must have exactly the keys label and value, got {item!r}")
        out[string(item["label"])] = string(item["value"])
    return out


def env_list(value: Any) -> list[str]:
    """The Service's env map -> ["K=V"] (the provider iterates a Go map; sorted here)."""
    return [f"{k}={v}" for k, v in sorted(string_map(value).items())]


def kv_list_to_map(value: Any) -> dict[str, str]:
    """["k=v"] -> {k: v} (stringSetToMapStringString)."""
    return dict(item.split("=", 1) if "=" in item else (item, "") for item in string_list(value))


_DURATION_UNITS = {"ns": 1, "us": 1_000, "µs": 1_000, "μs": 1_000, "ms": 1_000_000, "s": 1_000_000_000,
                   "m": 60_000_000_000, "h": 3_600_000_000_000}
_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")


def parse_duration(text: str) -> int:
    """Go's time.ParseDuration, in nanoseconds."""
    if text in ("0", "+0", "-0"):
        return 0
    sign, body = (-1, text[1:]) if text.startswith("-") else (1, text.lstrip("+"))
    if not body:
        raise ValueError(f"invalid duration {text!r}")
    total, pos = Decimal(0), 0
    for match in _DURATION_PART.finditer(body):
        if match.start() != pos:
            raise ValueError(f"invalid duration {text!r}")
        total += Decimal(match.group(1)) * _DURATION_UNITS[match.group(2)]
        pos = match.end()
    if pos != len(body):
        raise ValueError(f"invalid duration {text!r}")
    return sign * int(total)


def duration(value: Any) -> int:
    return parse_duration(string(value))


def float_string(value: Any) -> float:
    try:
        return float(string(value))
    except ValueError:
        raise ValueError(f"expected a number as a string, got {value!r}") from None


def megabytes(value: Any) -> int:
    return integer(value) * 1024 * 1024


def cpus(value: Any) -> int:
    """docker's opts.ParseCPUs: "1.5" -> 1500000000 NanoCPUs."""
    try:
        nano = Decimal(string(value)) * 1_000_000_000
    except InvalidOperation:
        raise ValueError(f"invalid cpus {value!r}") from None
    if nano != nano.to_integral_value():
        raise ValueError(f"value is too precise: {value!r}")
    return int(nano)


def base64_data(value: Any) -> str:
    """pulumi-docker's `data` is base64 (validated by the provider); the API takes base64 too."""
    try:
        return base64.b64encode(base64.b64decode(string(value), validate=True)).decode()
    except binascii.Error:
        raise ValueError("is not valid base64 (the provider validates it)") from None


def raw_to_base64(value: Any) -> str:
    return base64.b64encode(string(value).encode()).decode()


def global_mode(value: Any) -> Any:
    return {} if boolean(value) else SKIP


def hosts_list(value: Any) -> list[str]:
    """[{host, ip}] -> ["ip host"] (extraHostsSetToServiceExtraHosts)."""
    out = []
    for item in value if isinstance(value, list) else [value]:
        if not isinstance(item, dict) or set(item) != {"host", "ip"}:
            raise ValueError(f"a host entry must have exactly the keys host and ip, got {item!r}")
        out.append(f"{string(item['ip'])} {string(item['host'])}")
    return out


def spread_prefs(value: Any) -> list[dict]:
    """Each string becomes a SpreadDescriptor as is (stringSetToPlacementPrefs): "spread=" is NOT
    stripped by the provider."""
    return [{"Spread": {"SpreadDescriptor": s}} for s in string_list(value)]


def named_resources(value: Any) -> list[dict]:
    out = []
    for item in string_list(value):
        kind, _, val = item.partition("=")
        out.append({"NamedResourceSpec": {"Kind": kind, "Value": val}})
    return out


def discrete_resources(value: Any) -> list[dict]:
    out = []
    for item in string_list(value):
        kind, _, val = item.partition("=")
        out.append({"DiscreteResourceSpec": {"Kind": kind, "Value": int(val)}})
    return out


# --------------------------------------------------------------------------------------------
# The mapping tables
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class To:
    """Map one input (a dotted path in its table) to `target`, a dotted path into the request
    body. A target starting with "@" is a parameter the applier itself uses (a query parameter,
    a header, something done after the create call)."""

    target: str
    convert: Callable[[Any], Any] = anything
    weak: bool = False  # only when the target is still unset (a network's name vs its id)
    append: bool = False  # extend a list target (generic resources)


@dataclass(frozen=True)
class Each:
    """A list of objects, each mapped with its own table (paths relative to the element)."""

    fields: Mapping[str, Any]
    defaults: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


def to(target: str, convert: Any = anything, *, weak: bool = False, append: bool = False) -> To:
    return To(target, convert, weak, append)


def each(fields: Mapping[str, Any], defaults: Optional[Mapping[str, Mapping[str, Any]]] = None) -> Each:
    return Each(fields, defaults or {})


# -- Network (resourceDockerNetworkCreate) ----------------------------------------------------
IPAM_CONFIG_FIELDS = {
    "subnet": to("Subnet", string),
    "ipRange": to("IPRange", string),
    "gateway": to("Gateway", string),
    "auxAddress": to("AuxiliaryAddresses", string_map),  # the JSON name of IPAMConfig.AuxAddress
}
NETWORK_FIELDS = {
    "name": to("Name", string),
    "driver": to("Driver", string),
    "options": to("Options", string_map),
    "internal": to("Internal", boolean),
    "attachable": to("Attachable", boolean),
    "ingress": to("Ingress", boolean),
    "ipv6": to("EnableIPv6", boolean),
    "ipamDriver": to("IPAM.Driver", string),
    "ipamOptions": to("IPAM.Options", string_map),
    "ipamConfigs": to("IPAM.Config", each(IPAM_CONFIG_FIELDS)),
    "labels": to("Labels", labels),
}
NETWORK_DEFAULTS = {"": {"ipamDriver": "default"}}

# -- Volume (resourceDockerVolumeCreate) ------------------------------------------------------
VOLUME_FIELDS = {
    "name": to("Name", string),
    "driver": to("Driver", string),
    "driverOpts": to("DriverOpts", string_map),
    "labels": to("Labels", labels),
}

# -- Secret / ServiceConfig ---------------------------------------------------------------------
SECRET_FIELDS = {
    "name": to("Name", string),
    "data": to("Data", base64_data),
    "labels": to("Labels", labels),
}
CONFIG_FIELDS = {
    "name": to("Name", string),
    "data": to("Data", base64_data),
    "dataRaw": to("Data", raw_to_base64),
    "labels": to("Labels", labels),
}

# -- Service (createServiceSpec and the converge/auth handling around it) -----------------------
_CS = "TaskTemplate.ContainerSpec"
SERVICE_MOUNT_FIELDS = {
    "type": to("Type", string),
    "target": to("Target", string),
    "source": to("Source", string),
    "readOnly": to("ReadOnly", boolean),
    "bindOptions.propagation": to("BindOptions.Propagation", string),
    "volumeOptions.noCopy": to("VolumeOptions.NoCopy", boolean),
    "volumeOptions.labels": to("VolumeOptions.Labels", labels),
    "volumeOptions.driverName": to("VolumeOptions.DriverConfig.Name", string),
    "volumeOptions.driverOptions": to("VolumeOptions.DriverConfig.Options", string_map),
    "tmpfsOptions.sizeBytes": to("TmpfsOptions.SizeBytes", integer),
    "tmpfsOptions.mode": to("TmpfsOptions.Mode", integer),
}
SERVICE_SECRET_FIELDS = {
    "secretId": to("SecretID", string),
    "secretName": to("SecretName", string),
    "fileName": to("File.Name", string),
    "fileUid": to("File.UID", string),
    "fileGid": to("File.GID", string),
    "fileMode": to("File.Mode", integer),
}
SERVICE_CONFIG_FIELDS = {
    "configId": to("ConfigID", string),
    "configName": to("ConfigName", string),
    "fileName": to("File.Name", string),
    "fileUid": to("File.UID", string),
    "fileGid": to("File.GID", string),
    "fileMode": to("File.Mode", integer),
}
FILE_DEFAULTS = {"": {"fileUid": "0", "fileGid": "0", "fileMode": 0o444}}
SERVICE_NETWORK_FIELDS = {
    "id": to("Target", string),
    "name": to("Target", string, weak=True),  # deprecated; the provider uses id when both are set
    "aliases": to("Aliases", string_list),
    "driverOpts": to("DriverOpts", kv_list_to_map),
}
SERVICE_PORT_FIELDS = {
    "name": to("Name", string),
    "protocol": to("Protocol", string),
    "targetPort": to("TargetPort", integer),
    "publishedPort": to("PublishedPort", integer),
    "publishMode": to("PublishMode", string),
}
PLATFORM_FIELDS = {"architecture": to("Architecture", string), "os": to("OS", string)}
_UPDATE_LIKE = {
    "parallelism": ("Parallelism", integer),
    "delay": ("Delay", duration),
    "failureAction": ("FailureAction", string),
    "monitor": ("Monitor", duration),
    "maxFailureRatio": ("MaxFailureRatio", float_string),
    "order": ("Order", string),
}
UPDATE_DEFAULTS = {"parallelism": 1, "delay": "0s", "failureAction": "pause", "monitor": "5s",
                   "maxFailureRatio": "0.0", "order": "stop-first"}

SERVICE_FIELDS = {
    "name": to("Name", string),
    "labels": to("Labels", labels),
    "mode.replicated.replicas": to("Mode.Replicated.Replicas", integer),
    "mode.global": to("Mode.Global", global_mode),
    # task_spec.container_spec
    "taskSpec.containerSpec.image": to(f"{_CS}.Image", string),
    "taskSpec.containerSpec.labels": to(f"{_CS}.Labels", labels),
    "taskSpec.containerSpec.commands": to(f"{_CS}.Command", string_list),
    "taskSpec.containerSpec.args": to(f"{_CS}.Args", string_list),
    "taskSpec.containerSpec.hostname": to(f"{_CS}.Hostname", string),
    "taskSpec.containerSpec.env": to(f"{_CS}.Env", env_list),
    "taskSpec.containerSpec.dir": to(f"{_CS}.Dir", string),
    "taskSpec.containerSpec.user": to(f"{_CS}.User", string),
    "taskSpec.containerSpec.groups": to(f"{_CS}.Groups", string_list),
    "taskSpec.containerSpec.privileges.credentialSpec.file": to(f"{_CS}.Privileges.CredentialSpec.File", string),
    # sic: the provider writes `registry` into CredentialSpec.File (createContainerSpec).
    "taskSpec.containerSpec.privileges.credentialSpec.registry": to(f"{_CS}.Privileges.CredentialSpec.File", string),
    "taskSpec.containerSpec.privileges.seLinuxContext.disable": to(f"{_CS}.Privileges.SELinuxContext.Disable", boolean),
    "taskSpec.containerSpec.privileges.seLinuxContext.user": to(f"{_CS}.Privileges.SELinuxContext.User", string),
    "taskSpec.containerSpec.privileges.seLinuxContext.role": to(f"{_CS}.Privileges.SELinuxContext.Role", string),
    "taskSpec.containerSpec.privileges.seLinuxContext.type": to(f"{_CS}.Privileges.SELinuxContext.Type", string),
    "taskSpec.containerSpec.privileges.seLinuxContext.level": to(f"{_CS}.Privileges.SELinuxContext.Level", string),
    "taskSpec.containerSpec.readOnly": to(f"{_CS}.ReadOnly", boolean),
    "taskSpec.containerSpec.mounts": to(f"{_CS}.Mounts", each(SERVICE_MOUNT_FIELDS, {"bindOptions": {"propagation": "rprivate"}})),
    "taskSpec.containerSpec.stopSignal": to(f"{_CS}.StopSignal", string),
    "taskSpec.containerSpec.stopGracePeriod": to(f"{_CS}.StopGracePeriod", duration),
    "taskSpec.containerSpec.healthcheck.tests": to(f"{_CS}.Healthcheck.Test", string_list),
    "taskSpec.containerSpec.healthcheck.interval": to(f"{_CS}.Healthcheck.Interval", duration),
    "taskSpec.containerSpec.healthcheck.timeout": to(f"{_CS}.Healthcheck.Timeout", duration),
    "taskSpec.containerSpec.healthcheck.startPeriod": to(f"{_CS}.Healthcheck.StartPeriod", duration),
    "taskSpec.containerSpec.healthcheck.retries": to(f"{_CS}.Healthcheck.Retries", integer),
    "taskSpec.containerSpec.hosts": to(f"{_CS}.Hosts", hosts_list),
    "taskSpec.containerSpec.dnsConfig.nameservers": to(f"{_CS}.DNSConfig.Nameservers", string_list),
    "taskSpec.containerSpec.dnsConfig.searches": to(f"{_CS}.DNSConfig.Search", string_list),
    "taskSpec.containerSpec.dnsConfig.options": to(f"{_CS}.DNSConfig.Options", string_list),
    "taskSpec.containerSpec.secrets": to(f"{_CS}.Secrets", each(SERVICE_SECRET_FIELDS, FILE_DEFAULTS)),
    "taskSpec.containerSpec.configs": to(f"{_CS}.Configs", each(SERVICE_CONFIG_FIELDS, FILE_DEFAULTS)),
    "taskSpec.containerSpec.isolation": to(f"{_CS}.Isolation", string),
    "taskSpec.containerSpec.sysctl": to(f"{_CS}.Sysctls", string_map),
    "taskSpec.containerSpec.capAdds": to(f"{_CS}.CapabilityAdd", string_list),
    "taskSpec.containerSpec.capDrops": to(f"{_CS}.CapabilityDrop", string_list),
    "taskSpec.containerSpec.init": to(f"{_CS}.Init", boolean),
    # task_spec
    "taskSpec.resources.limits.nanoCpus": to("TaskTemplate.Resources.Limits.NanoCPUs", integer),
    "taskSpec.resources.limits.memoryBytes": to("TaskTemplate.Resources.Limits.MemoryBytes", integer),
    "taskSpec.resources.reservation.nanoCpus": to("TaskTemplate.Resources.Reservations.NanoCPUs", integer),
    "taskSpec.resources.reservation.memoryBytes": to("TaskTemplate.Resources.Reservations.MemoryBytes", integer),
    "taskSpec.resources.reservation.genericResources.namedResourcesSpecs":
        to("TaskTemplate.Resources.Reservations.GenericResources", named_resources, append=True),
    "taskSpec.resources.reservation.genericResources.discreteResourcesSpecs":
        to("TaskTemplate.Resources.Reservations.GenericResources", discrete_resources, append=True),
    "taskSpec.restartPolicy.condition": to("TaskTemplate.RestartPolicy.Condition", string),
    "taskSpec.restartPolicy.delay": to("TaskTemplate.RestartPolicy.Delay", duration),
    "taskSpec.restartPolicy.maxAttempts": to("TaskTemplate.RestartPolicy.MaxAttempts", integer),
    "taskSpec.restartPolicy.window": to("TaskTemplate.RestartPolicy.Window", duration),
    "taskSpec.placement.constraints": to("TaskTemplate.Placement.Constraints", string_list),
    "taskSpec.placement.prefs": to("TaskTemplate.Placement.Preferences", spread_prefs),
    "taskSpec.placement.platforms": to("TaskTemplate.Placement.Platforms", each(PLATFORM_FIELDS)),
    "taskSpec.placement.maxReplicas": to("TaskTemplate.Placement.MaxReplicas", integer),
    "taskSpec.forceUpdate": to("TaskTemplate.ForceUpdate", integer),
    "taskSpec.runtime": to("TaskTemplate.Runtime", string),
    "taskSpec.networksAdvanceds": to("TaskTemplate.Networks", each(SERVICE_NETWORK_FIELDS)),
    "taskSpec.logDriver.name": to("TaskTemplate.LogDriver.Name", string),
    "taskSpec.logDriver.options": to("TaskTemplate.LogDriver.Options", string_map),
    # update_config / rollback_config
    **{f"updateConfig.{k}": to(f"UpdateConfig.{t}", c) for k, (t, c) in _UPDATE_LIKE.items()},
    **{f"rollbackConfig.{k}": to(f"RollbackConfig.{t}", c) for k, (t, c) in _UPDATE_LIKE.items()},
    # endpoint_spec
    "endpointSpec.mode": to("EndpointSpec.Mode", string),
    "endpointSpec.ports": to("EndpointSpec.Ports", each(SERVICE_PORT_FIELDS, {"": {"protocol": "tcp", "publishMode": "ingress"}})),
    # handled by the applier, not sent in the spec
    "convergeConfig.delay": to("@converge.delay", duration),
    "convergeConfig.timeout": to("@converge.timeout", duration),
    "auth.serverAddress": to("@auth.serveraddress", string),
    "auth.username": to("@auth.username", string),
    "auth.password": to("@auth.password", string),
}
SERVICE_DEFAULTS = {
    "mode.replicated": {"replicas": 1},
    "taskSpec.containerSpec": {"isolation": "default"},
    "taskSpec.containerSpec.healthcheck": {"interval": "0s", "timeout": "0s", "startPeriod": "0s", "retries": 0},
    "updateConfig": UPDATE_DEFAULTS,
    "rollbackConfig": UPDATE_DEFAULTS,
    "convergeConfig": {"delay": "7s", "timeout": "3m"},
}

# -- Container: the fields this repository's program uses (resourceDockerContainerCreate) --------
CONTAINER_PORT_FIELDS = {
    "internal": to("internal", integer),
    "external": to("external", integer),
    "ip": to("ip", string),
    "protocol": to("protocol", string),
}
CONTAINER_VOLUME_FIELDS = {
    "containerPath": to("containerPath", string),
    "volumeName": to("volumeName", string),
    "hostPath": to("hostPath", string),
    "readOnly": to("readOnly", boolean),
}
CONTAINER_NETWORK_FIELDS = {
    "name": to("Target", string),
    "ipv4Address": to("EndpointConfig.IPAMConfig.IPv4Address", string),
    "aliases": to("EndpointConfig.Aliases", string_list),
}
CONTAINER_UPLOAD_FIELDS = {
    "file": to("file", string),
    "content": to("content", string),
    "contentBase64": to("contentBase64", base64_data),
    "executable": to("executable", boolean),
    "permissions": to("permissions", string),
}
CONTAINER_FIELDS = {
    "name": to("@name", string),
    "image": to("Image", string),
    "command": to("Cmd", string_list),
    "envs": to("Env", string_list),
    "labels": to("Labels", labels),
    "healthcheck.tests": to("Healthcheck.Test", string_list),
    "healthcheck.interval": to("Healthcheck.Interval", duration),
    "healthcheck.timeout": to("Healthcheck.Timeout", duration),
    "healthcheck.startPeriod": to("Healthcheck.StartPeriod", duration),
    "healthcheck.retries": to("Healthcheck.Retries", integer),
    "stopSignal": to("StopSignal", string),
    "stopTimeout": to("StopTimeout", integer),
    "ports": to("@ports", each(CONTAINER_PORT_FIELDS, {"": {"ip": "0.0.0.0", "protocol": "tcp"}})),
    "volumes": to("@volumes", each(CONTAINER_VOLUME_FIELDS, {"": {"readOnly": False}})),
    "networksAdvanced": to("@networks", each(CONTAINER_NETWORK_FIELDS)),
    "uploads": to("@uploads", each(CONTAINER_UPLOAD_FIELDS, {"": {"executable": False}})),
    "restart": to("HostConfig.RestartPolicy.Name", string),
    "logDriver": to("HostConfig.LogConfig.Type", string),
    "logOpts": to("HostConfig.LogConfig.Config", string_map),
    "memory": to("HostConfig.Memory", megabytes),
    "cpus": to("HostConfig.NanoCpus", cpus),
    "wait": to("@wait", boolean),
    "waitTimeout": to("@waitTimeout", integer),
    "destroyGraceSeconds": to("@destroyGraceSeconds", integer),
}
CONTAINER_DEFAULTS = {
    "": {"restart": "no", "wait": False, "waitTimeout": 60},
    "healthcheck": {"interval": "0s", "timeout": "0s", "startPeriod": "0s", "retries": 0},
}

# -- Providers and commands ------------------------------------------------------------------------
DOCKER_PROVIDER_FIELDS = {"host": to("@host", string)}

COMMAND_FIELDS = {
    "create": to("@create", string),
    "update": to("@update", string),
    "delete": to("@delete", string),
    "environment": to("@environment", string_map),
    "stdin": to("@stdin", string),
    "triggers": to("@triggers", anything),  # only decides replacement
    "dir": to("@dir", string),
    "interpreter": to("@interpreter", string_list),
    "addPreviousOutputInEnv": to("@addPreviousOutputInEnv", boolean),
}
COMMAND_DEFAULTS = {"": {"interpreter": ["/bin/sh", "-c"], "addPreviousOutputInEnv": True}}

TABLES: dict[str, tuple[Mapping[str, Any], Mapping[str, Mapping[str, Any]]]] = {
    NETWORK: (NETWORK_FIELDS, NETWORK_DEFAULTS),
    VOLUME: (VOLUME_FIELDS, {}),
    SECRET: (SECRET_FIELDS, {}),
    CONFIG: (CONFIG_FIELDS, {}),
    SERVICE: (SERVICE_FIELDS, SERVICE_DEFAULTS),
    CONTAINER: (CONTAINER_FIELDS, CONTAINER_DEFAULTS),
    COMMAND: (COMMAND_FIELDS, COMMAND_DEFAULTS),
    **{token: (DOCKER_PROVIDER_FIELDS, {}) for token in DOCKER_PROVIDERS},
}


def mapped_paths(type_: str) -> list[str]:
    """Every input path the table of `type_` maps (list elements as "list[].field")."""
    fields, _ = TABLES[type_]

    def walk(table: Mapping[str, Any], prefix: str) -> Iterable[str]:
        for key, spec in table.items():
            if isinstance(spec.convert, Each):
                yield from walk(spec.convert.fields, f"{prefix}{key}[].")
            else:
                yield f"{prefix}{key}"

    return sorted(walk(fields, ""))


def _set(body: dict, dotted: str, value: Any, weak: bool = False, append: bool = False) -> None:
    *parents, last = dotted.split(".")
    node = body
    for part in parents:
        node = node.setdefault(part, {})
    if append:
        node.setdefault(last, []).extend(value)
    elif not (weak and last in node):
        node[last] = value


def map_inputs(resource: str, type_: str, inputs: Mapping[str, Any]) -> tuple[dict, dict]:
    """(request body, applier parameters) for these inputs; refuses any input not in the table."""
    fields, defaults = TABLES[type_]
    body: dict = {}
    params: dict = {}
    _walk(resource, type_, fields, defaults, inputs, "", "", body, params)
    return body, params


def _walk(resource: str, type_: str, table: Mapping[str, Any], defaults: Mapping[str, Mapping[str, Any]],
          node: Mapping[str, Any], rel: str, shown: str, body: dict, params: dict) -> None:
    values = {**defaults.get(rel, {}), **{k: v for k, v in node.items() if v is not None}}
    order = {key: index for index, key in enumerate(table)}

    def position(key: str) -> int:
        path = f"{rel}.{key}" if rel else key
        return min((i for k, i in order.items() if k == path or k.startswith(path + ".")), default=len(order))

    for key, value in sorted(values.items(), key=lambda item: position(item[0])):
        path = f"{rel}.{key}" if rel else key
        where = f"{shown}.{key}" if shown else key
        spec = table.get(path)
        if spec is not None:
            try:
                if isinstance(spec.convert, Each):
                    if not isinstance(value, list):
                        raise ValueError(f"expected a list, got {value!r}")
                    converted: Any = []
                    for index, item in enumerate(value):
                        if not isinstance(item, dict):
                            raise ValueError(f"expected objects in the list, got {item!r}")
                        element: dict = {}
                        _walk(resource, type_, spec.convert.fields, spec.convert.defaults, item, "",
                              f"{where}[{index}]", element, element)
                        converted.append(element)
                else:
                    converted = spec.convert(value)
            except ValueError as error:
                raise UnmappedInputError(resource, type_, where, f"has a value the provider rejects: {error}") from None
            if converted is SKIP:
                continue
            target = spec.target
            if target.startswith("@"):
                _set(params, target[1:], converted, spec.weak, spec.append)
            else:
                _set(body, target, converted, spec.weak, spec.append)
        elif any(k.startswith(path + ".") for k in table):
            if not isinstance(value, dict):
                raise UnmappedInputError(resource, type_, where, f"must be an object, got {value!r}")
            _walk(resource, type_, table, defaults, value, path, where, body, params)
        else:
            raise UnmappedInputError(resource, type_, where)


# --------------------------------------------------------------------------------------------
# Change classification
# --------------------------------------------------------------------------------------------

# What replaces and what updates is the repository's own table (carecircle/provider_semantics.py),
# and so is how two inputs differ (carecircle/audit/changes.py): the applier proves them on an engine.


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)

# --------------------------------------------------------------------------------------------
# Records
# --------------------------------------------------------------------------------------------


@dataclass
class CommandRun:
    name: str
    phase: str  # create | update | delete
    script: str
    exit_code: int
    stdout: str  # trailing newline trimmed, as pulumi-command's output
    stderr: str


@dataclass
class ApiRequest:
    host: str
    method: str
    path: str
    body: Any = None
    params: Optional[dict] = None
    headers: Optional[dict] = None


@dataclass
class ApplyResult:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    no_live_change: list[str] = field(default_factory=list)
    # (operation, name) in execution order: create, update, create-replacement, delete-replaced, delete
    steps: list[tuple[str, str]] = field(default_factory=list)
    changed: dict[str, list[str]] = field(default_factory=dict)  # name -> changed input paths
    commands: dict[str, CommandRun] = field(default_factory=dict)  # name -> its create/update run (its outputs)
    runs: list[CommandRun] = field(default_factory=list)  # every run, delete runs included
    warnings: list[str] = field(default_factory=list)
    requests: list[ApiRequest] = field(default_factory=list)

    def step_index(self, operation: str, name: str) -> int:
        return self.steps.index((operation, name))

    def requests_to(self, method: str, path_pattern: str) -> list[ApiRequest]:
        return [r for r in self.requests if r.method == method and re.fullmatch(path_pattern, r.path)]


@dataclass
class Live:
    """One resource as the applier applied it (the applier's state, like a stack's checkpoint)."""

    declared: DeclaredResource
    inputs: dict  # with mock ids resolved
    id: Optional[str]  # real id on the engine, None when nothing lives on an engine
    host: Optional[str]
    seq: int
    params: dict = field(default_factory=dict)
    outputs: dict = field(default_factory=dict)
    tainted: bool = False

    @property
    def urn(self) -> str:
        return self.declared.urn

    @property
    def type(self) -> str:
        return self.declared.type

    @property
    def name(self) -> str:
        return self.declared.name


# --------------------------------------------------------------------------------------------
# The applier
# --------------------------------------------------------------------------------------------

_LIVE_ID_TYPES = frozenset({NETWORK, VOLUME, SECRET, CONFIG, SERVICE, CONTAINER})
_DOCKER_TIME = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)")


def _docker_time(text: str) -> float:
    match = _DOCKER_TIME.match(text or "")
    if not match:
        return 0.0
    stamp = datetime.strptime(match.group(1), "%Y-%m-%dT%H:%M:%S").replace(tzinfo=timezone.utc).timestamp()
    fraction = float("0" + match.group(2)) if match.group(2) else 0.0
    zone = match.group(3)
    if zone != "Z":
        sign = 1 if zone[0] == "+" else -1
        stamp -= sign * (int(zone[1:3]) * 3600 + int(zone[4:6]) * 60)
    return stamp + fraction


def _is_component(resource: DeclaredResource) -> bool:
    return resource.type.split(":", 1)[0] not in PROVIDER_PACKAGES and not resource.inputs


class EngineApplier:
    """Applies evaluations to Docker engines. `default_host` is the default provider's docker:host
    (used by resources whose provider is ""); resources whose provider is a docker Provider go
    to that provider's `host`."""

    def __init__(
        self,
        default_host: str,
        *,
        action_for: Optional[Callable[[str, list[str]], str]] = None,
        delete_timeout: float = 30.0,
        poll_interval: float = 0.5,
        command_timeout: float = 600.0,
        update_status_grace: float = 7.0,
    ):
        self.default_host = default_host
        self.action_for = action_for or provider_action_for
        self.delete_timeout = delete_timeout  # the provider retries network/volume removal for 30 s
        self.poll_interval = poll_interval
        self.command_timeout = command_timeout
        # The provider waits 7 s before its first look at an update; the applier instead waits up
        # to this long for the engine to report the rollout it started, then judges like the provider.
        self.update_status_grace = update_status_grace
        self._live: dict[str, Live] = {}
        self._superseded: list[Live] = []  # replaced (create-before-replace) and not yet deleted
        self._retained: list[Live] = []  # dropped from state with retain_on_delete; destroy() purges
        self._clients: dict[str, docker.DockerClient] = {}
        self._seq = 0
        self._result = ApplyResult()
        self.history: list[ApplyResult] = []

    # ---- public API -------------------------------------------------------------------------

    def apply(self, evaluation: Evaluation) -> ApplyResult:
        """Bring the engines to what `evaluation` declares; returns what happened."""
        self._result = result = ApplyResult()
        self.history.append(result)
        resources = self._ordered(evaluation.resources)
        self._validate(resources)
        self._delete_pending()
        plan = self._plan(resources)
        done_early: set[str] = set()
        replaced_now: set[str] = set()  # names replaced so far: their ids change, as for the engine
        for resource in resources:
            if resource.urn in done_early:
                self._create(resource, replacement=True)
                continue
            old = self._live.get(resource.urn)
            if old is None:
                self._create(resource)
                result.created.append(resource.name)
                continue
            inputs = self._declared_inputs(resource)
            paths = changed_paths(old.inputs, inputs)
            if replaced_now:  # also ids the applier keeps as mocks (commands): Pulumi sees them change
                paths += [p for p in self._paths_referencing(resource.inputs, replaced_now) if p not in paths]
            planned_action, planned_paths = plan[resource.urn]
            if old.tainted:
                action = "replace"
            elif not paths:
                action = "same"
            elif sorted(paths) == sorted(planned_paths):
                action = planned_action
            else:
                action = self.action_for(resource.type, paths)
            if paths:
                result.changed[resource.name] = paths
            if action == "same":
                old.declared = resource
                result.unchanged.append(resource.name)
            elif action == "no live change":
                old.declared, old.inputs = resource, inputs
                result.no_live_change.append(resource.name)
            elif action == "update":
                self._update(old, resource, inputs)
            elif action == "replace":
                replaced_now.update(self._replace(old, resource, plan, done_early))
            else:
                raise EngineApplyError(f"action_for({resource.type!r}, {paths}) returned {action!r}")
        declared = {r.urn for r in resources}
        removed = [live for urn, live in self._live.items() if urn not in declared]
        for live in removed:
            del self._live[live.urn]
            self._superseded.append(live)
        self._delete_pending(removed={live.urn for live in removed})
        return result

    def validate(self, evaluation: Evaluation) -> None:
        """What apply() checks before touching an engine: every type supported, every input
        mapped, the provider's schema conflicts. Raises like apply() would; contacts no engine."""
        self._validate(self._ordered(evaluation.resources))

    def destroy(self, *, honor_protect: bool = False) -> ApplyResult:
        """Remove everything the applier created, dependents first. By default this is a teardown:
        protected and retained resources go too. With honor_protect=True it is `pulumi destroy`:
        protected resources raise and retained ones stay on the engine."""
        self._result = result = ApplyResult()
        self.history.append(result)
        everything = [*self._deletion_order(list(self._superseded)), *self._deletion_order(list(self._live.values())),
                      *([] if honor_protect else self._deletion_order(list(self._retained)))]
        if honor_protect:
            protected = [live.name for live in everything if live.declared.protect]
            if protected:
                raise ProtectedResourceError(f"resources {protected} are protected: pulumi destroy refuses to delete them")
        errors = []
        for live in everything:
            try:
                if honor_protect and live.declared.retain_on_delete:
                    self._retained.append(live)
                else:
                    self._delete_live(live)
                result.deleted.append(live.name)
                result.steps.append(("delete", live.name))
            except Exception as error:  # teardown goes on, the first error is raised
                errors.append(error)
            self._live.pop(live.urn, None)
        self._superseded.clear()
        if not honor_protect:
            self._retained.clear()
        if errors:
            raise errors[0]
        return result

    def live(self, type_: str, name: str) -> Live:
        for live in self._live.values():
            if live.type == type_ and live.name == name:
                return live
        raise KeyError(f"no live {type_} named {name!r}")

    def real_id(self, name: str) -> str:
        ids = {live.id for live in self._live.values() if live.name == name and live.type in _LIVE_ID_TYPES}
        if len(ids) != 1:
            raise KeyError(f"{len(ids)} live resources named {name!r}")
        return ids.pop()

    def client(self, host: Optional[str] = None) -> docker.DockerClient:
        host = host or self.default_host
        if host not in self._clients:
            if not host.startswith(("unix://", "tcp://", "http://", "https://", "npipe://")):
                raise EngineApplyError(f"docker host {host!r}: engine_apply reaches only unix:// and tcp:// engines")
            try:
                self._clients[host] = docker.DockerClient(base_url=host, version="auto", timeout=300)
            except docker.errors.DockerException as error:
                raise EngineApplyError(f"cannot reach the docker engine at {host}: {error}") from error
        return self._clients[host]

    def close(self) -> None:
        for client in self._clients.values():
            client.close()
        self._clients.clear()

    # ---- ordering, validation, planning -------------------------------------------------------

    @staticmethod
    def _ordered(resources: list[DeclaredResource]) -> list[DeclaredResource]:
        """Dependencies, parents and providers first; otherwise declaration order."""
        by_urn = {r.urn: r for r in resources}
        index = {r.urn: i for i, r in enumerate(resources)}

        def deps(r: DeclaredResource) -> set[str]:
            out = set(r.dependencies) | ({r.parent} if r.parent else set())
            if r.provider:
                out.add(r.provider.rsplit("::", 1)[0])
            return {d for d in out if d in by_urn and d != r.urn}

        ordered: list[DeclaredResource] = []
        placed: set[str] = set()
        pending = sorted(resources, key=lambda r: index[r.urn])
        while pending:
            ready = [r for r in pending if deps(r) <= placed]
            if not ready:
                raise EngineApplyError(f"dependency cycle among {[r.name for r in pending]}")
            first = ready[0]
            ordered.append(first)
            placed.add(first.urn)
            pending.remove(first)
        return ordered

    def _kind(self, resource: DeclaredResource) -> str:
        if resource.type in TABLES:
            return "mapped"
        if resource.type.startswith(RANDOM_PREFIX) or resource.type in NO_OP_PROVIDERS:
            return "nothing"
        if _is_component(resource):
            return "component"
        raise UnsupportedResourceError(
            f"{resource.type} {resource.name!r}: engine_apply does not support this resource type")

    def _validate(self, resources: list[DeclaredResource]) -> None:
        providers = {r.urn for r in resources if r.type in DOCKER_PROVIDERS} | {
            live.urn for live in self._live.values() if live.type in DOCKER_PROVIDERS}
        for resource in resources:
            if self._kind(resource) != "mapped":
                continue
            _, params = map_inputs(resource.name, resource.type, resource.inputs)
            if resource.type == SERVICE and resource.inputs.get("convergeConfig") is not None \
                    and (resource.inputs.get("mode") or {}).get("global"):
                raise UnmappedInputError(resource.name, resource.type, "convergeConfig",
                                         "conflicts with mode.global (the provider's schema: ConflictsWith)")
            if resource.type == CONFIG and ("data" in resource.inputs) == ("dataRaw" in resource.inputs):
                raise UnmappedInputError(resource.name, resource.type, "data",
                                         "exactly one of data and dataRaw must be set (the provider's schema)")
            if resource.provider and resource.type.startswith("docker:"):
                if resource.provider.rsplit("::", 1)[0] not in providers:
                    raise EngineApplyError(f"{resource.type} {resource.name!r}: unknown provider {resource.provider!r}")

    def _token_names(self) -> dict[str, list[Live]]:
        """Mock ids are "<logical name>-id", or "<generated name>-id" for a resource Pulumi named."""
        names: dict[str, list[Live]] = {}
        for live in self._live.values():
            if live.type in _LIVE_ID_TYPES and live.id:
                names.setdefault(live.declared.autoname or live.name, []).append(live)
        return names

    def _declared_inputs(self, resource: DeclaredResource) -> dict:
        """The inputs as the provider gets them: references resolved, and the name Pulumi generated
        (autonaming) when the program gave none."""
        inputs = self._resolve(resource.inputs)
        if resource.autoname and "name" not in inputs:
            inputs = {**inputs, "name": resource.autoname}
        return inputs

    def _resolve(self, value: Any) -> Any:
        """Inputs with every "<name>-id" token replaced by the real id of that resource."""
        names = self._token_names()
        if not names:
            return value
        pattern = re.compile(r"(?<![A-Za-z0-9_.-])(" + "|".join(
            re.escape(n) for n in sorted(names, key=len, reverse=True)) + r")-id(?![A-Za-z0-9_.-])")

        def real(match: re.Match) -> str:
            candidates = names[match.group(1)]
            if len(candidates) > 1:
                raise EngineApplyError(f"mock id {match.group(0)!r} is ambiguous: "
                                       f"{[(c.type, c.name) for c in candidates]}")
            return candidates[0].id or match.group(0)

        def walk(v: Any) -> Any:
            if isinstance(v, str):
                return pattern.sub(real, v)
            if isinstance(v, dict):
                return {k: walk(x) for k, x in v.items()}
            if isinstance(v, list):
                return [walk(x) for x in v]
            return v

        return walk(value)

    @staticmethod
    def _references(value: Any, names: set[str]) -> bool:
        text = _canonical(value)
        return any(re.search(r"(?<![A-Za-z0-9_.-])" + re.escape(n) + r"-id(?![A-Za-z0-9_.-])", text) for n in names)

    def _plan(self, resources: list[DeclaredResource]) -> dict[str, tuple[str, list[str]]]:
        """What `pulumi preview` would say, computed before anything changes: urn -> (action,
        paths). A resource being replaced gets a new id, so its dependents' inputs that reference
        it count as changed. Refuses, before any change, to replace or delete a protected resource."""
        plan: dict[str, tuple[str, list[str]]] = {}
        replaced_names: set[str] = set()
        for resource in resources:
            old = self._live.get(resource.urn)
            if old is None:
                plan[resource.urn] = ("create", [])
                continue
            inputs = self._declared_inputs(resource)
            paths = changed_paths(old.inputs, inputs)
            if replaced_names:
                paths += [p for p in self._paths_referencing(resource.inputs, replaced_names) if p not in paths]
            action = "replace" if old.tainted else self.action_for(resource.type, paths) if paths else "same"
            plan[resource.urn] = (action, paths)
            if action == "replace":
                if old.declared.protect:
                    raise ProtectedResourceError(
                        f"unable to replace resource {resource.urn!r} ({paths}) as it is currently marked for protection")
                replaced_names.add(resource.name)
        current = {r.urn for r in resources}
        for live in self._live.values():
            if live.urn not in current and live.declared.protect:
                raise ProtectedResourceError(
                    f"unable to delete resource {live.urn!r} as it is currently marked for protection")
        return plan

    def _paths_referencing(self, inputs: Any, names: set[str], prefix: str = "") -> list[str]:
        if isinstance(inputs, dict):
            out: list[str] = []
            for key, value in inputs.items():
                out += self._paths_referencing(value, names, f"{prefix}.{key}" if prefix else key)
            return out
        if isinstance(inputs, list):
            out = []
            for item in inputs:
                out += [p for p in self._paths_referencing(item, names, prefix) if p not in out]
            if out and not all(isinstance(i, dict) for i in inputs):
                return [prefix]
            return out
        return [prefix] if isinstance(inputs, str) and self._references(inputs, names) else []

    # ---- steps ----------------------------------------------------------------------------

    def _engine_of(self, live: Live) -> Optional[str]:
        """Where operations on a live resource go. The default provider follows docker:host: after it
        changes (say, to another manager of the same swarm) every default-provider resource is reached
        there, as with Pulumi's default provider."""
        return self.default_host if live.host and not live.declared.provider else live.host

    def _host_of(self, resource: DeclaredResource) -> str:
        if not resource.provider:
            return self.default_host
        provider_urn = resource.provider.rsplit("::", 1)[0]
        live = self._live.get(provider_urn)
        if live is None:
            raise EngineApplyError(f"{resource.name}: provider {provider_urn} was not applied")
        return live.params.get("host") or self.default_host

    def _create(self, resource: DeclaredResource, replacement: bool = False) -> Live:
        kind = self._kind(resource)
        inputs = self._declared_inputs(resource)
        self._seq += 1
        live = Live(declared=resource, inputs=inputs, id=None, host=None, seq=self._seq)
        if kind == "mapped":
            body, params = map_inputs(resource.name, resource.type, inputs)
            live.params = params
            if resource.type.startswith("docker:"):
                live.host = self._host_of(resource)
            creator = getattr(self, f"_create_{_method_suffix(resource.type)}")
            creator(live, body, params)
        self._live[resource.urn] = live
        self._result.steps.append(("create-replacement" if replacement else "create", resource.name))
        return live

    def _update(self, old: Live, resource: DeclaredResource, inputs: dict) -> None:
        if resource.type not in (SERVICE, CONTAINER, COMMAND):
            raise EngineApplyError(f"{resource.type} {resource.name!r}: the provider has no in-place update "
                                   f"for it, yet action_for said update")
        body, params = map_inputs(resource.name, resource.type, inputs)
        getattr(self, f"_update_{_method_suffix(resource.type)}")(old, body, params, inputs)
        old.declared, old.inputs, old.params = resource, inputs, params
        self._result.updated.append(resource.name)
        self._result.steps.append(("update", resource.name))

    def _replace(self, old: Live, resource: DeclaredResource, plan: dict, done_early: set[str]) -> list[str]:
        """Replace `old` by `resource`; returns the names replaced (with dependents deleted early)."""
        if old.declared.protect:
            raise ProtectedResourceError(
                f"unable to replace resource {resource.urn!r} as it is currently marked for protection")
        if resource.type in DOCKER_PROVIDERS:
            raise EngineApplyError(f"provider {resource.name!r} changed: engine_apply does not move resources "
                                   f"between engines")
        delete_first = resource.delete_before_replace or resource.type in PROVIDER_DELETE_BEFORE_REPLACE
        names = [resource.name]
        if delete_first:
            # Pulumi deletes the dependents that this replacement will replace, before it.
            victims = self._dependent_replacements(old, plan)
            for victim in self._deletion_order(victims):
                self._delete_live(victim)
                del self._live[victim.urn]
                self._result.steps.append(("delete-replaced", victim.name))
                done_early.add(victim.urn)
                self._result.replaced.append(victim.name)
                names.append(victim.name)
            self._delete_live(old)
            del self._live[old.urn]
            self._result.steps.append(("delete-replaced", old.name))
        else:
            del self._live[old.urn]
            self._superseded.append(old)
        try:
            self._create(resource, replacement=True)
        except Exception:
            if not delete_first:  # the old one is still the live one
                self._superseded.remove(old)
                self._live[old.urn] = old
            raise
        self._result.replaced.append(resource.name)
        return names

    def _dependent_replacements(self, root: Live, plan: dict) -> list[Live]:
        victims: dict[str, Live] = {}
        names = {root.name}
        changed = True
        while changed:
            changed = False
            for live in self._live.values():
                if live.urn in victims or live.urn == root.urn:
                    continue
                action, paths = plan.get(live.urn, ("delete", []))
                if action != "replace":
                    continue
                if any(self._references(_get_path(live.declared.inputs, p), names) for p in paths):
                    victims[live.urn] = live
                    names.add(live.name)
                    changed = True
        for victim in victims.values():
            if victim.declared.protect:
                raise ProtectedResourceError(f"unable to replace resource {victim.urn!r}: it is protected")
        return list(victims.values())

    @staticmethod
    def _deletion_order(entries: list[Live]) -> list[Live]:
        """Dependents before what they depend on (the state's dependencies, parents and
        providers), newest first among independent ones. Creation order alone is not enough: a
        resource replaced after its dependents were created is newer than they are."""
        by_urn: dict[str, list[Live]] = {}
        for entry in entries:
            by_urn.setdefault(entry.urn, []).append(entry)

        def needs(entry: Live) -> list[Live]:
            d = entry.declared
            urns = set(d.dependencies) | ({d.parent} if d.parent else set())
            if d.provider:
                urns.add(d.provider.rsplit("::", 1)[0])
            return [other for urn in urns if urn != entry.urn for other in by_urn.get(urn, [])]

        dependents: dict[int, int] = {id(e): 0 for e in entries}
        for entry in entries:
            for dependency in needs(entry):
                dependents[id(dependency)] += 1
        ordered: list[Live] = []
        pending = sorted(entries, key=lambda e: e.seq, reverse=True)
        while pending:
            ready = [e for e in pending if dependents[id(e)] == 0] or pending[:1]  # a cycle: newest first
            entry = ready[0]
            ordered.append(entry)
            pending.remove(entry)
            for dependency in needs(entry):
                dependents[id(dependency)] -= 1
        return ordered

    def _delete_pending(self, removed: frozenset[str] | set[str] = frozenset()) -> None:
        for live in self._deletion_order(list(self._superseded)):
            if live.declared.protect:
                raise ProtectedResourceError(f"unable to delete resource {live.urn!r} as it is currently marked for protection")
            if live.declared.retain_on_delete:
                self._retained.append(live)
            else:
                self._delete_live(live)
            self._superseded.remove(live)
            if live.urn in removed:
                self._result.deleted.append(live.name)
                self._result.steps.append(("delete", live.name))
            else:
                self._result.steps.append(("delete-replaced", live.name))

    def _delete_live(self, live: Live) -> None:
        if live.type in TABLES and live.type not in DOCKER_PROVIDERS:
            getattr(self, f"_delete_{_method_suffix(live.type)}")(live)

    # ---- engine requests -------------------------------------------------------------------------

    def _call(self, live: Live, method: str, path: str, *args: str, body: Any = None, params: Optional[dict] = None,
              headers: Optional[dict] = None, what: str = "") -> Any:
        api = self.client(self._engine_of(live)).api
        url = api._url(path, *args)
        shown = path.format(*args) if args else path
        self._result.requests.append(ApiRequest(live.host or "", method, shown, body, params, headers))
        try:
            if method == "POST":
                response = api._post_json(url, data=body if body is not None else {}, params=params, headers=dict(headers or {}))
            elif method == "GET":
                response = api._get(url, params=params)
            elif method == "DELETE":
                response = api._delete(url, params=params)
            else:
                raise ValueError(method)
            api._raise_for_status(response)
        except docker.errors.APIError as error:
            raise EngineError(f"{live.type} {live.name!r}: {what or method + ' ' + shown} failed: {error.explanation or error}",
                              str(error.explanation or error)) from error
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            return response.text

    # -- Network
    def _create_network(self, live: Live, body: dict, params: dict) -> None:
        body = {**body, "CheckDuplicate": True}  # the Go client sets it for engines before API 1.44
        live.id = self._call(live, "POST", "/networks/create", body=body, what="create network")["Id"]
        # The provider reads the network back after a 2 s delay; a swarm network inspected at once
        # can still show an empty Driver. Wait (up to the provider's 30 s) until it is exposed.
        deadline = time.monotonic() + 30
        while not self._call(live, "GET", "/networks/{0}", live.id, what="inspect network").get("Driver"):
            if time.monotonic() > deadline:
                raise EngineError(f"{live.type} {live.name!r}: network {live.id} never exposed its driver")
            time.sleep(self.poll_interval)

    def _delete_network(self, live: Live) -> None:
        self._retry_removal(live, lambda: self._call(live, "DELETE", "/networks/{0}", live.id), "has active endpoints")

    # -- Volume
    def _create_volume(self, live: Live, body: dict, params: dict) -> None:
        live.id = self._call(live, "POST", "/volumes/create", body=body, what="create volume")["Name"]

    def _delete_volume(self, live: Live) -> None:
        self._retry_removal(live, lambda: self._call(live, "DELETE", "/volumes/{0}", live.id, params={"force": True}),
                            "volume is in use")

    # -- Secret / Config
    def _create_secret(self, live: Live, body: dict, params: dict) -> None:
        live.id = self._call(live, "POST", "/secrets/create", body=body, what="create secret")["ID"]

    def _delete_secret(self, live: Live) -> None:
        self._call(live, "DELETE", "/secrets/{0}", live.id, what="remove secret")

    def _create_service_config(self, live: Live, body: dict, params: dict) -> None:
        live.id = self._call(live, "POST", "/configs/create", body=body, what="create config")["ID"]

    def _delete_service_config(self, live: Live) -> None:
        self._call(live, "DELETE", "/configs/{0}", live.id, what="remove config")

    def _retry_removal(self, live: Live, remove: Callable[[], Any], retry_on: str) -> None:
        deadline = time.monotonic() + self.delete_timeout
        while True:
            try:
                remove()
                return
            except EngineError as error:
                if "No such" in error.explanation or "not found" in error.explanation:
                    return
                if retry_on not in error.explanation or time.monotonic() > deadline:
                    raise
            time.sleep(self.poll_interval)

    # -- Provider
    def _create_provider(self, live: Live, body: dict, params: dict) -> None:
        self.client(params["host"]).ping()

    # -- Service
    @staticmethod
    def _service_spec(body: dict) -> dict:
        spec = dict(body)
        spec.setdefault("TaskTemplate", {}).setdefault("ContainerSpec", {})
        spec.setdefault("Mode", {})
        spec.setdefault("EndpointSpec", {})
        return spec

    @staticmethod
    def _auth_header(params: dict) -> dict:
        auth = params.get("auth") or {}
        config = ({"username": auth["username"], "password": auth["password"], "serveraddress": auth.get("serveraddress", "")}
                  if auth.get("username") and auth.get("password") else {})
        # encoding/json of registry.AuthConfig (omitempty), base64url, as retrieveAndMarshalAuth
        encoded = json.dumps(config, separators=(",", ":")).encode()
        return {"X-Registry-Auth": base64.urlsafe_b64encode(encoded).decode()}

    def _create_service(self, live: Live, body: dict, params: dict) -> None:
        spec = self._service_spec(body)
        created = self._call(live, "POST", "/services/create", body=spec, headers=self._auth_header(params),
                             what="create service")
        live.id = created["ID"]
        if created.get("Warning") or created.get("Warnings"):
            self._result.warnings.append(f"{live.name}: {created.get('Warning') or created.get('Warnings')}")
        converge = params.get("converge")
        if converge:
            try:
                self._converge(live, converge, since=None)
            except ConvergeError:
                # "the service will be deleted in case it cannot be converged"
                self._delete_service(live)
                live.id = None
                raise

    def _update_service(self, live: Live, body: dict, params: dict, inputs: dict) -> None:
        before = self._call(live, "GET", "/services/{0}", live.id, what="inspect service")
        spec = self._service_spec(body)
        started = time.time()
        response = self._call(live, "POST", "/services/{0}/update", live.id, body=spec,
                              params={"version": before["Version"]["Index"]}, headers=self._auth_header(params),
                              what="update service")
        for warning in (response or {}).get("Warnings") or []:
            self._result.warnings.append(f"{live.name}: {warning}")
        converge = params.get("converge")
        if converge:
            after = self._call(live, "GET", "/services/{0}", live.id, what="inspect service")
            rollout = any(_canonical(before["Spec"].get(k)) != _canonical(after["Spec"].get(k))
                          for k in ("TaskTemplate", "EndpointSpec"))
            self._converge(live, converge, since=started if rollout else None)

    def _delete_service(self, live: Live) -> None:
        # deleteService: with a stop_grace_period, wait for the task containers, then force-remove them
        grace = (self._last_spec(live) or {}).get("TaskTemplate", {}).get("ContainerSpec", {}).get("StopGracePeriod") or 0
        containers = []
        if grace:
            for task in self.client(self._engine_of(live)).api.tasks(filters={"service": live.id}):
                cid = ((task.get("Status") or {}).get("ContainerStatus") or {}).get("ContainerID")
                if cid and task["Status"].get("State") != "shutdown":
                    containers.append(cid)
        try:
            self._call(live, "DELETE", "/services/{0}", live.id, what="remove service")
        except EngineError as error:
            if "not found" not in error.explanation:
                raise
        api = self.client(self._engine_of(live)).api
        for cid in containers:  # deleteService: wait up to the grace period, then force-remove
            try:
                api.wait(cid, timeout=max(1, grace / 1e9), condition="removed")
            except Exception:  # timeout or already gone, as the provider tolerates
                pass
            try:
                api.remove_container(cid, v=True, force=True)
            except docker.errors.APIError as error:
                if "No such container" not in str(error) and "already in progress" not in str(error):
                    raise

    def _last_spec(self, live: Live) -> Optional[dict]:
        try:
            body, _ = map_inputs(live.name, live.type, live.inputs)
            return body
        except EngineApplyError:
            return None

    def _converge(self, live: Live, converge: dict, since: Optional[float]) -> None:
        """resourceDockerService{Create,Update}RefreshFunc: poll until every replica runs (the
        engine reports a task with a healthcheck as running only once healthy; the applier also
        checks the health of each task container it can reach)."""
        timeout = converge.get("timeout", parse_duration("3m")) / 1e9
        delay = converge.get("delay", parse_duration("7s")) / 1e9
        deadline = time.monotonic() + timeout
        time.sleep(min(delay, timeout))
        rollback = False
        grace_until = time.monotonic() + self.update_status_grace
        last = ""
        while True:
            service = self._call(live, "GET", "/services/{0}", live.id, what="inspect service")
            status = service.get("UpdateStatus") or {}
            fresh = since is None or _docker_time(status.get("StartedAt", "")) >= since - 1.0
            if since is not None and not fresh and time.monotonic() < grace_until:
                state = "waiting"  # the engine has not picked the update up yet
            else:
                state = status.get("State", "") if since is not None else ""
            if state == "completed":
                return
            if state == "rollback_started":
                rollback = True
            elif state == "rollback_completed":
                raise ConvergeError(f"{live.name}: service rollback completed: {status.get('Message', '')}")
            elif state == "paused":
                raise ConvergeError(f"{live.name}: service update paused: {status.get('Message', '')}")
            elif state == "rollback_paused":
                raise ConvergeError(f"{live.name}: service rollback paused: {status.get('Message', '')}")
            if state != "waiting":
                converged, last = self._replicas_running(live, service)
                if converged:
                    if rollback:
                        raise ConvergeError(f"{live.name}: service rollback completed: {status.get('Message', '')}")
                    return
            if time.monotonic() > deadline:
                raise ConvergeError(f"{live.name}: service {live.id} did not converge after {timeout:g}s "
                                    f"({last}){self._failed_task_report(live)}")
            time.sleep(self.poll_interval)

    _TASK_ORDER = {s: i for i, s in enumerate(["new", "allocated", "pending", "assigned", "accepted", "preparing",
                                                "ready", "starting", "running", "complete", "shutdown", "failed",
                                                "rejected"], start=1)}

    def _replicas_running(self, live: Live, service: dict) -> tuple[bool, str]:
        replicated = (service["Spec"].get("Mode") or {}).get("Replicated")
        if not replicated or replicated.get("Replicas") is None:
            raise ConvergeError(f"{live.name}: no replica count (the provider converges replicated services only)")
        replicas = replicated["Replicas"]
        api = self.client(self._engine_of(live)).api
        tasks = api.tasks(filters={"service": live.id, "desired-state": "running"})
        active = {n["ID"] for n in api.nodes() if (n.get("Status") or {}).get("State") != "down"}
        order = self._TASK_ORDER
        by_slot: dict[Any, dict] = {}
        for task in tasks:  # replicatedConsoleLogUpdater.tasksBySlot
            desired, observed = task.get("DesiredState", ""), (task.get("Status") or {}).get("State", "")
            if not order.get(desired) or not order.get(observed):
                continue
            slot = task.get("Slot")
            existing = by_slot.get(slot)
            if existing is not None:
                e_desired, e_observed = existing.get("DesiredState", ""), existing["Status"].get("State", "")
                if order[e_desired] < order[desired]:
                    continue
                if order[e_desired] == order[desired] and order[e_observed] <= order[observed]:
                    continue
            if task.get("NodeID") and task["NodeID"] not in active:
                continue
            by_slot[slot] = task
        running = 0
        unhealthy = []
        for task in by_slot.values():
            if order[task["DesiredState"]] > order["running"] or task["Status"].get("State") != "running":
                continue
            health = self._task_health(live, task)
            if health not in (None, "healthy"):
                unhealthy.append(health)
                continue
            running += 1
        note = f"{running}/{replicas} running" + (f", not healthy: {unhealthy}" if unhealthy else "")
        return running == replicas, note

    def _task_health(self, live: Live, task: dict) -> Optional[str]:
        cid = ((task.get("Status") or {}).get("ContainerStatus") or {}).get("ContainerID")
        if not cid:
            return None
        # The task's container is on one of the engines; a lost node's engine does not answer.
        for host in sorted({self._engine_of(live), *self._clients}, key=str):
            try:
                state = self.client(host).api.inspect_container(cid).get("State") or {}
            except (docker.errors.APIError, requests.exceptions.ConnectionError):
                continue
            return (state.get("Health") or {}).get("Status")
        return None

    def _failed_task_report(self, live: Live) -> str:
        try:
            tasks = self.client(self._engine_of(live)).api.tasks(filters={"service": live.id})
        except docker.errors.APIError:
            return ""
        errors = sorted({f"{t['Status'].get('State')}: {t['Status'].get('Err') or t['Status'].get('Message')}"
                         for t in tasks if t["Status"].get("State") in ("failed", "rejected", "shutdown")})
        return ("; tasks: " + "; ".join(errors[-5:])) if errors else ""

    # -- Container
    def _create_container(self, live: Live, body: dict, params: dict) -> None:
        api = self.client(self._engine_of(live)).api
        image = body.get("Image", "")
        try:
            api.inspect_image(image)
        except docker.errors.ImageNotFound:
            try:  # findImage pulls a missing image
                api.pull(image)
            except docker.errors.APIError as error:
                raise EngineError(f"{live.type} {live.name!r}: Unable to create container with image {image}: "
                                  f"{error.explanation or error}", str(error.explanation or error)) from error
        config = {k: v for k, v in body.items() if k != "HostConfig"}
        host_config = {"NetworkMode": "bridge", "Init": False, **body.get("HostConfig", {})}
        host_config.setdefault("RestartPolicy", {})["MaximumRetryCount"] = 0
        exposed: dict = {}
        bindings: dict = {}
        for port in params.get("ports", []):
            key = f"{port['internal']}/{port['protocol']}"
            exposed[key] = {}
            bindings.setdefault(key, []).append(
                {"HostIp": port["ip"], "HostPort": str(port["external"]) if "external" in port else ""})
        if exposed:
            config["ExposedPorts"] = exposed
            host_config["PortBindings"] = bindings
        binds, volumes = [], {}
        for volume in params.get("volumes", []):
            source = volume.get("hostPath") or volume.get("volumeName")
            volumes[volume["containerPath"]] = {}
            if source:
                binds.append(f"{source}:{volume['containerPath']}:{'ro' if volume['readOnly'] else 'rw'}")
        if volumes:
            config["Volumes"] = volumes
        if binds:
            host_config["Binds"] = binds
        created = self._call(live, "POST", "/containers/create", body={**config, "HostConfig": host_config,
                                                                       "NetworkingConfig": {}},
                             params={"name": params["name"]}, what="create container")
        live.id = created["Id"]
        live.tainted = True  # until every step of the create succeeded (the provider set the id already)
        self._live[live.urn] = live
        for warning in created.get("Warnings") or []:
            self._result.warnings.append(f"{live.name}: {warning}")
        if params.get("networks"):
            try:
                self._call(live, "POST", "/networks/{0}/disconnect", "bridge", body={"Container": live.id, "Force": False},
                           what="disconnect the default network")
            except EngineError as error:
                if "is not connected to the network bridge" not in error.explanation:
                    raise
            for network in params["networks"]:
                self._call(live, "POST", "/networks/{0}/connect", network["Target"],
                           body={"Container": live.id, "EndpointConfig": network.get("EndpointConfig", {})},
                           what=f"connect to network {network['Target']}")
        for upload in params.get("uploads", []):
            self._upload(live, upload)
        self._call(live, "POST", "/containers/{0}/start", live.id, what="start container")
        if params.get("wait"):
            self._wait_healthy(live, params.get("waitTimeout", 60))
        live.tainted = False

    def _upload(self, live: Live, upload: dict) -> None:
        given = [k for k in ("content", "contentBase64") if upload.get(k)]
        if len(given) != 1:
            raise UnmappedInputError(live.name, live.type, "uploads", "needs exactly one of content, contentBase64")
        data = (upload["content"].encode() if given == ["content"] else base64.b64decode(upload["contentBase64"]))
        if upload.get("permissions"):
            mode = int(upload["permissions"], 8)
        else:
            mode = 0o744 if upload.get("executable") else 0o644
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as tar:
            info = tarfile.TarInfo(name=upload["file"])
            info.size, info.mode, info.mtime = len(data), mode, int(time.time())
            tar.addfile(info, io.BytesIO(data))
        self._result.requests.append(ApiRequest(live.host or "", "PUT", f"/containers/{live.id}/archive",
                                                {"file": upload["file"], "mode": oct(mode), "size": len(data)}, {"path": "/"}))
        try:
            self.client(self._engine_of(live)).api.put_archive(live.id, "/", buffer.getvalue())
        except docker.errors.APIError as error:
            raise EngineError(f"{live.type} {live.name!r}: Unable to upload volume content: {error.explanation or error}",
                              str(error.explanation or error)) from error

    def _wait_healthy(self, live: Live, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        api = self.client(self._engine_of(live)).api
        while True:
            state = api.inspect_container(live.id).get("State") or {}
            health = state.get("Health")
            if health is None:
                raise ContainerHealthError(
                    f"{live.name}: you have supplied a 'wait' argument, but the container does not have a "
                    f"healthcheck defined")
            if health.get("Status") == "healthy":
                return
            if time.monotonic() > deadline:
                log = [entry.get("Output", "").strip() for entry in (health.get("Log") or [])[-3:]]
                raise ContainerHealthError(f"{live.name}: container did not reach a healthy state within "
                                           f"{timeout}s (status {health.get('Status')}, last checks {log})")
            time.sleep(self.poll_interval)

    def _update_container(self, live: Live, body: dict, params: dict, inputs: dict) -> None:
        host = body.get("HostConfig", {})
        update = {
            "RestartPolicy": {"Name": host.get("RestartPolicy", {}).get("Name", "no"), "MaximumRetryCount": 0},
            "CpuShares": 0,
            "Memory": host.get("Memory", 0),
            "MemoryReservation": 0,
            "CpusetCpus": "",
        }
        response = self._call(live, "POST", "/containers/{0}/update", live.id, body=update, what="update container")
        for warning in (response or {}).get("Warnings") or []:
            self._result.warnings.append(f"{live.name}: {warning}")

    def _delete_container(self, live: Live) -> None:
        if not live.id:
            return
        api = self.client(self._engine_of(live)).api
        grace = max(0, live.params.get("destroyGraceSeconds", 0) or 0)
        self._result.requests.append(ApiRequest(live.host or "", "POST", f"/containers/{live.id}/stop", None, {"t": grace}))
        try:
            api.stop(live.id, timeout=grace)
        except docker.errors.APIError as error:
            if "No such container" not in str(error):
                raise EngineError(f"{live.name}: Error stopping container: {error.explanation or error}",
                                  str(error.explanation or error)) from error
        try:
            self._call(live, "DELETE", "/containers/{0}", live.id, params={"v": True, "force": True}, what="remove container")
        except EngineError as error:
            if "No such container" not in error.explanation and "already in progress" not in error.explanation:
                raise

    # -- Command
    def _create_command(self, live: Live, body: dict, params: dict) -> None:
        if params.get("create"):
            live.outputs = self._run(live, "create", params["create"], params, previous=None)

    def _update_command(self, live: Live, body: dict, params: dict, inputs: dict) -> None:
        script = params.get("update") or params.get("create")
        if script:
            live.outputs = self._run(live, "update", script, params, previous=live.outputs)

    def _delete_command(self, live: Live) -> None:
        if live.params.get("delete"):
            self._run(live, "delete", live.params["delete"], live.params, previous=live.outputs)

    def _run(self, live: Live, phase: str, script: str, params: dict, previous: Optional[dict]) -> dict:
        env = {**os.environ, **params.get("environment", {})}
        if previous is not None and params.get("addPreviousOutputInEnv", True):
            env["PULUMI_COMMAND_STDOUT"] = previous.get("stdout", "")
            env["PULUMI_COMMAND_STDERR"] = previous.get("stderr", "")
        try:
            done = subprocess.run([*params.get("interpreter", ["/bin/sh", "-c"]), script], input=params.get("stdin"),
                                  env=env, cwd=params.get("dir"), capture_output=True, text=True,
                                  timeout=self.command_timeout)
        except subprocess.TimeoutExpired as error:
            raise CommandFailedError(live.name, phase, -1, str(error.stdout or ""),
                                     f"timed out after {self.command_timeout}s\n{error.stderr or ''}") from None
        run = CommandRun(live.name, phase, script, done.returncode, done.stdout.removesuffix("\n"),
                         done.stderr.removesuffix("\n"))
        self._result.runs.append(run)
        if phase != "delete":
            self._result.commands[live.name] = run
        if done.returncode != 0:
            raise CommandFailedError(live.name, phase, done.returncode, done.stdout, done.stderr)
        return {"stdout": run.stdout, "stderr": run.stderr}


def _method_suffix(type_: str) -> str:
    return {
        NETWORK: "network", VOLUME: "volume", SECRET: "secret", CONFIG: "service_config", SERVICE: "service",
        CONTAINER: "container", COMMAND: "command", **{p: "provider" for p in DOCKER_PROVIDERS},
    }[type_]


def _get_path(value: Any, dotted: str) -> Any:
    """The values at a dotted path, through lists (their elements' values, as a list)."""
    if not dotted:
        return value
    head, _, rest = dotted.partition(".")
    if isinstance(value, list):
        return [_get_path(item, dotted) for item in value]
    if isinstance(value, dict):
        return _get_path(value.get(head), rest)
    return None
