"""docker.Service's inputs: how each becomes the Engine API spec (createServiceSpec), and the provider's
schema facts the diff needs (kreuzwerker resource_docker_service.go: ForceNew, Optional+Computed, sets,
defaults, DiffSuppressFuncs)."""

from __future__ import annotations

from typing import Any

from ..mapping import Schema, each, to
from ..values import (
    boolean,
    discrete_resources,
    duration,
    float_string,
    global_mode,
    hosts_list,
    integer,
    kv_list_to_map,
    labels,
    named_resources,
    spread_prefs,
    string,
    string_list,
    string_map,
)

_CS = "TaskTemplate.ContainerSpec"
MOUNT_FIELDS = {
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
SECRET_FIELDS = {
    "secretId": to("SecretID", string),
    "secretName": to("SecretName", string),
    "fileName": to("File.Name", string),
    "fileUid": to("File.UID", string),
    "fileGid": to("File.GID", string),
    "fileMode": to("File.Mode", integer),
}
CONFIG_FIELDS = {
    "configId": to("ConfigID", string),
    "configName": to("ConfigName", string),
    "fileName": to("File.Name", string),
    "fileUid": to("File.UID", string),
    "fileGid": to("File.GID", string),
    "fileMode": to("File.Mode", integer),
}
FILE_DEFAULTS = {"": {"fileUid": "0", "fileGid": "0", "fileMode": 0o444}}
NETWORK_FIELDS = {
    "id": to("Target", string),
    "name": to("Target", string, weak=True),  # deprecated; the provider uses id when both are set
    "aliases": to("Aliases", string_list),
    "driverOpts": to("DriverOpts", kv_list_to_map),
}
PORT_FIELDS = {
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
UPDATE_DEFAULTS = {"parallelism": 1, "delay": "0s", "failureAction": "pause", "monitor": "5s", "maxFailureRatio": "0.0",
                   "order": "stop-first"}

FIELDS = {
    "name": to("Name", string),
    "labels": to("Labels", labels),
    "mode.replicated.replicas": to("Mode.Replicated.Replicas", integer),
    "mode.global": to("Mode.Global", global_mode),
    "taskSpec.containerSpec.image": to(f"{_CS}.Image", string),
    "taskSpec.containerSpec.labels": to(f"{_CS}.Labels", labels),
    "taskSpec.containerSpec.commands": to(f"{_CS}.Command", string_list),
    "taskSpec.containerSpec.args": to(f"{_CS}.Args", string_list),
    "taskSpec.containerSpec.hostname": to(f"{_CS}.Hostname", string),
    "taskSpec.containerSpec.env": to("@env", string_map),  # ordered like a Go map range at send time
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
    "taskSpec.containerSpec.mounts": to(f"{_CS}.Mounts", each(MOUNT_FIELDS, {"bindOptions": {"propagation": "rprivate"}})),
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
    "taskSpec.containerSpec.secrets": to(f"{_CS}.Secrets", each(SECRET_FIELDS, FILE_DEFAULTS)),
    "taskSpec.containerSpec.configs": to(f"{_CS}.Configs", each(CONFIG_FIELDS, FILE_DEFAULTS)),
    "taskSpec.containerSpec.isolation": to(f"{_CS}.Isolation", string),
    "taskSpec.containerSpec.sysctl": to(f"{_CS}.Sysctls", string_map),
    "taskSpec.containerSpec.capAdds": to(f"{_CS}.CapabilityAdd", string_list),
    "taskSpec.containerSpec.capDrops": to(f"{_CS}.CapabilityDrop", string_list),
    "taskSpec.containerSpec.init": to(f"{_CS}.Init", boolean),
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
    "taskSpec.networksAdvanceds": to("TaskTemplate.Networks", each(NETWORK_FIELDS)),
    "taskSpec.logDriver.name": to("TaskTemplate.LogDriver.Name", string),
    "taskSpec.logDriver.options": to("TaskTemplate.LogDriver.Options", string_map),
    **{f"updateConfig.{k}": to(f"UpdateConfig.{t}", c) for k, (t, c) in _UPDATE_LIKE.items()},
    **{f"rollbackConfig.{k}": to(f"RollbackConfig.{t}", c) for k, (t, c) in _UPDATE_LIKE.items()},
    "endpointSpec.mode": to("EndpointSpec.Mode", string),
    "endpointSpec.ports": to("EndpointSpec.Ports", each(PORT_FIELDS, {"": {"protocol": "tcp", "publishMode": "ingress"}})),
    # used by the applier, not sent in the spec
    "convergeConfig.delay": to("@converge.delay", duration),
    "convergeConfig.timeout": to("@converge.timeout", duration),
    "auth.serverAddress": to("@auth.serverAddress", string),
    "auth.username": to("@auth.username", string),
    "auth.password": to("@auth.password", string),
}


def _same_ratio(old: Any, new: Any) -> bool:
    """suppressEquivalentFloatRatio: "0" and "0.0" are the same ratio."""
    try:
        return float(old or 0) == float(new or 0)
    except (TypeError, ValueError):
        return old == new


TASK = "taskSpec"
CONTAINER = "taskSpec.containerSpec"


SCHEMA = Schema(
    fields=FIELDS,
    defaults={
        "mode.replicated": {"replicas": 1},
        CONTAINER: {"isolation": "default"},
        f"{CONTAINER}.healthcheck": {"interval": "0s", "timeout": "0s", "startPeriod": "0s", "retries": 0},
        "updateConfig": UPDATE_DEFAULTS,
        "rollbackConfig": UPDATE_DEFAULTS,
        "convergeConfig": {"delay": "7s", "timeout": "3m"},
    },
    force_new=frozenset({"name", "auth", f"{CONTAINER}.labels", f"{CONTAINER}.hosts", f"{CONTAINER}.sysctl",
                         f"{CONTAINER}.mounts.volumeOptions.labels", f"{TASK}.networksAdvanceds"}),
    computed=frozenset({"labels", "mode", "mode.replicated", "endpointSpec", "endpointSpec.mode",
                        "endpointSpec.ports.publishedPort", f"{CONTAINER}.stopGracePeriod", f"{CONTAINER}.healthcheck",
                        f"{CONTAINER}.dnsConfig", f"{CONTAINER}.init", f"{TASK}.resources", f"{TASK}.restartPolicy",
                        f"{TASK}.placement", f"{TASK}.forceUpdate", f"{TASK}.runtime"}),
    unordered=frozenset({"labels", f"{CONTAINER}.labels", f"{CONTAINER}.mounts", f"{CONTAINER}.mounts.volumeOptions.labels",
                         f"{CONTAINER}.hosts", f"{CONTAINER}.secrets", f"{CONTAINER}.configs", f"{TASK}.placement.constraints",
                         f"{TASK}.placement.prefs", f"{TASK}.placement.platforms", f"{TASK}.networksAdvanceds",
                         f"{TASK}.networksAdvanceds.aliases", f"{TASK}.networksAdvanceds.driverOpts",
                         f"{TASK}.resources.reservation.genericResources.namedResourcesSpecs",
                         f"{TASK}.resources.reservation.genericResources.discreteResourcesSpecs"}),
    equivalent={"updateConfig.maxFailureRatio": _same_ratio, "rollbackConfig.maxFailureRatio": _same_ratio},
)
