"""docker.Service (kreuzwerker resource_docker_service.go, _funcs.go, _structures.go).

Create and update send the whole spec createServiceSpec builds: every block of task_spec is there even
when empty (Healthcheck {}, DNSConfig {}, StopGracePeriod 0, Init false, ...), and the env map becomes
the task's list by ranging over a Go map (mapTypeMapValsToStringSlice): a new order on every call, and
Swarm compares task specs order included. Both send X-Registry-Auth (the service's `auth`, else the
provider's registry_auth for the image's host). Create goes through the Docker client with QueryRegistry
(registry.py says what that rewrites). `convergeConfig` makes create and update wait (create deletes a
service that never converges; update fails on rollback or pause). Read flattens the spec back: every
duration through shortDur ("120s" is read as "2m"), env as a map, labels and secrets as sets.
"""

from __future__ import annotations

import json
import re
import time
from datetime import datetime, timezone
from typing import Any, Optional

import docker.errors
import requests

from carecircle.offline import DeclaredResource

from ..client import Context
from ..errors import ConvergeError, EngineError, UnmappedInputError
from ..mapping import Schema, each, to
from ..records import Live
from ..registry import auth_configs, auth_for_image, digest_warning, encoded_auth, pinned, service_auth, tagged
from ..values import (
    boolean,
    discrete_resources,
    duration,
    float_ratio_text,
    float_string,
    global_mode,
    hosts_list,
    integer,
    kv_list_to_map,
    label_set,
    labels,
    named_resources,
    parse_duration,
    short_duration,
    spread_prefs,
    string,
    string_list,
    string_map,
)
from .base import Kind

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


READ_DELAY = 2.0
TASK = "taskSpec"
CONTAINER = "taskSpec.containerSpec"


class Service(Kind):
    type = "docker:index/service:Service"
    schema = Schema(
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

    def validate(self, resource: DeclaredResource) -> None:
        super().validate(resource)
        inputs = resource.inputs
        if inputs.get("convergeConfig") is not None and (inputs.get("mode") or {}).get("global"):
            raise UnmappedInputError(resource.name, resource.type, "convergeConfig",
                                     "conflicts with mode.global (the provider's schema: ConflictsWith)")
        action = (inputs.get("rollbackConfig") or {}).get("failureAction")
        if action is not None and action not in ("pause", "continue"):  # validateStringMatchesPattern("(pause|continue)")
            raise UnmappedInputError(resource.name, resource.type, "rollbackConfig.failureAction",
                                     f"has a value the provider rejects: {action!r} (pause or continue)")

    # -- the spec createServiceSpec sends ----------------------------------------------------------

    def spec(self, ctx: Context, live: Live, planned: dict) -> tuple[dict, dict]:
        body, params = self.body(live, planned)
        task = body.setdefault("TaskTemplate", {})
        container = task.setdefault("ContainerSpec", {})
        env = params.get("env") or {}
        if env:
            container["Env"] = ctx.map_order([f"{k}={v}" for k, v in env.items() if k])
        # Blocks the provider always sends, empty when not declared (a raw map holds every key).
        for key, empty in (("Healthcheck", {}), ("DNSConfig", {}), ("StopGracePeriod", 0), ("Init", False)):
            container.setdefault(key, empty)
        for key in ("Resources", "RestartPolicy", "Placement"):
            task.setdefault(key, {})
        body.setdefault("Mode", {})
        body.setdefault("EndpointSpec", {})
        return body, params

    def _auth(self, ctx: Context, live: Live, image: str, params: dict) -> dict[str, str]:
        """retrieveAndMarshalAuth: the service's auth, else the provider's for the image's registry."""
        own = service_auth(params.get("auth"))
        return own if params.get("auth") else auth_for_image(image, auth_configs(ctx.registry_auth(live)))

    def create(self, ctx: Context, live: Live, planned: dict) -> None:
        spec, params = self.spec(ctx, live, planned)
        container = spec["TaskTemplate"]["ContainerSpec"]
        container["Image"] = tagged(container.get("Image", ""))
        auth = self._auth(ctx, live, container["Image"], params)
        header = {"X-Registry-Auth": encoded_auth(auth)}
        self._query_registry(ctx, live, spec, header)
        created = ctx.call(live, "POST", "/services/create", body=spec, headers=header, what="create service")
        live.id = created["ID"]
        for warning in [created.get("Warning")] + list(created.get("Warnings") or []):
            if warning:
                ctx.warn(live, warning)
        converge = params.get("converge")
        if converge:
            try:
                self._converge(ctx, live, converge, since=None)
            except ConvergeError:
                self.delete(ctx, live)  # "the service will be deleted in case it cannot be converged"
                live.id = None
                raise

    def _query_registry(self, ctx: Context, live: Live, spec: dict, header: dict) -> None:
        """resolveContainerSpecImage: the manager asks the registry for the digest and platforms."""
        container = spec["TaskTemplate"]["ContainerSpec"]
        image = container["Image"]
        try:
            answer = ctx.call(live, "GET", "/distribution/{0}/json", image, headers=header, what="distribution inspect")
        except EngineError:
            ctx.warn(live, digest_warning(image))
            return
        container["Image"] = pinned(image, answer["Descriptor"]["digest"])
        platforms = [{"Architecture": "" if (p.get("architecture") or "").lower() == "arm" else p.get("architecture", ""),
                      "OS": p.get("os", "")} for p in answer.get("Platforms") or []]
        if platforms:
            spec["TaskTemplate"].setdefault("Placement", {})["Platforms"] = platforms

    def update(self, ctx: Context, live: Live, planned: dict) -> None:
        before = ctx.call(live, "GET", "/services/{0}", live.id or "", what="inspect service")
        spec, params = self.spec(ctx, live, planned)
        container = spec["TaskTemplate"]["ContainerSpec"]
        container["Image"] = tagged(container.get("Image", ""))  # ServiceUpdate tags too, without asking the registry
        auth = self._auth(ctx, live, container["Image"], params)
        started = time.time()
        response = ctx.call(live, "POST", "/services/{0}/update", live.id or "", body=spec,
                            params={"version": before["Version"]["Index"]}, headers={"X-Registry-Auth": encoded_auth(auth)},
                            what="update service")
        for warning in (response or {}).get("Warnings") or []:
            ctx.warn(live, warning)
        converge = params.get("converge")
        if converge:
            after = ctx.call(live, "GET", "/services/{0}", live.id or "", what="inspect service")
            rollout = any(_json(before["Spec"].get(k)) != _json(after["Spec"].get(k)) for k in ("TaskTemplate", "EndpointSpec"))
            self._converge(ctx, live, converge, since=started if rollout else None)

    # -- Read ------------------------------------------------------------------------------------

    def read(self, ctx: Context, live: Live) -> Optional[dict]:
        # resourceDockerServiceReadRefreshFunc under a StateChangeConf: first look after 2 s (Delay), then
        # until the endpoint spec is exposed, up to 30 s.
        time.sleep(READ_DELAY)
        deadline = time.monotonic() + 30
        while True:
            try:
                service = ctx.call(live, "GET", "/services/{0}", live.id or "", what="inspect service")
            except EngineError as error:
                if "not found" in error.explanation:
                    return None
                raise
            endpoint = (service.get("Endpoint") or {}).get("Spec") or {}
            if endpoint.get("Mode") or (service["Spec"].get("EndpointSpec") or {}).get("Mode"):
                break
            if time.monotonic() > deadline:
                raise EngineError(f"{live.type} {live.name!r}: service {live.id} never exposed its endpoint spec")
            time.sleep(ctx.poll_interval)
        spec = service["Spec"]
        if endpoint.get("Mode"):
            endpoint_state = {"mode": endpoint["Mode"], "ports": _ports((service.get("Endpoint") or {}).get("Ports"))}
        else:
            endpoint_state = {"mode": spec["EndpointSpec"]["Mode"], "ports": _ports(spec["EndpointSpec"].get("Ports"))}
        return _drop_none({
            "name": spec["Name"],
            "labels": label_set(spec.get("Labels")),
            "taskSpec": _task_spec(spec.get("TaskTemplate") or {}),
            "mode": _mode(spec.get("Mode") or {}),
            "updateConfig": _update_config(spec.get("UpdateConfig")),
            "rollbackConfig": _update_config(spec.get("RollbackConfig")),
            "endpointSpec": endpoint_state,
        })

    # -- Delete ------------------------------------------------------------------------------------

    def delete(self, ctx: Context, live: Live) -> None:
        """deleteService: with a stop_grace_period, wait for the task containers, then force-remove them."""
        grace = ((live.state.get("taskSpec") or {}).get("containerSpec") or {}).get("stopGracePeriod") or "0s"
        grace_seconds = parse_duration(grace) / 1e9 if grace != "0s" else 0
        api = ctx.client(ctx.engine_of(live)).api
        containers = []
        if grace_seconds:
            for task in api.tasks(filters={"service": live.id}):
                cid = ((task.get("Status") or {}).get("ContainerStatus") or {}).get("ContainerID")
                if cid and task["Status"].get("State") != "shutdown":
                    containers.append(cid)
        try:
            ctx.call(live, "DELETE", "/services/{0}", live.id or "", what="remove service")
        except EngineError as error:
            if "not found" not in error.explanation:
                raise
        for cid in containers:
            try:
                api.wait(cid, timeout=max(1, grace_seconds), condition="removed")
            except Exception:  # timeout or already gone, as the provider tolerates
                pass
            try:
                api.remove_container(cid, v=True, force=True)
            except docker.errors.APIError as error:
                if "No such container" not in str(error) and "already in progress" not in str(error):
                    raise

    # -- converge ----------------------------------------------------------------------------------

    def _converge(self, ctx: Context, live: Live, converge: dict, since: Optional[float]) -> None:
        """resourceDockerService{Create,Update}RefreshFunc: poll until every replica runs (the engine
        reports a task with a healthcheck as running only once healthy; the applier also checks the
        health of each task container it can reach)."""
        timeout = converge.get("timeout", parse_duration("3m")) / 1e9
        delay = converge.get("delay", parse_duration("7s")) / 1e9
        deadline = time.monotonic() + timeout
        time.sleep(min(delay, timeout))
        rollback = False
        grace_until = time.monotonic() + ctx.update_status_grace
        last = ""
        while True:
            service = ctx.call(live, "GET", "/services/{0}", live.id or "", what="inspect service")
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
                converged, last = _replicas_running(ctx, live, service)
                if converged:
                    if rollback:
                        raise ConvergeError(f"{live.name}: service rollback completed: {status.get('Message', '')}")
                    return
            if time.monotonic() > deadline:
                raise ConvergeError(f"{live.name}: service {live.id} did not converge after {timeout:g}s "
                                    f"({last}){_failed_task_report(ctx, live)}")
            time.sleep(ctx.poll_interval)


_TASK_ORDER = {s: i for i, s in enumerate(["new", "allocated", "pending", "assigned", "accepted", "preparing", "ready",
                                            "starting", "running", "complete", "shutdown", "failed", "rejected"], start=1)}


def _replicas_running(ctx: Context, live: Live, service: dict) -> tuple[bool, str]:
    replicated = (service["Spec"].get("Mode") or {}).get("Replicated")
    if not replicated or replicated.get("Replicas") is None:
        raise ConvergeError(f"{live.name}: no replica count (the provider converges replicated services only)")
    replicas = replicated["Replicas"]
    api = ctx.client(ctx.engine_of(live)).api
    tasks = api.tasks(filters={"service": live.id, "desired-state": "running"})
    active = {n["ID"] for n in api.nodes() if (n.get("Status") or {}).get("State") != "down"}
    order = _TASK_ORDER
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
        health = _task_health(ctx, live, task)
        if health not in (None, "healthy"):
            unhealthy.append(health)
            continue
        running += 1
    note = f"{running}/{replicas} running" + (f", not healthy: {unhealthy}" if unhealthy else "")
    return running == replicas, note


def _task_health(ctx: Context, live: Live, task: dict) -> Optional[str]:
    cid = ((task.get("Status") or {}).get("ContainerStatus") or {}).get("ContainerID")
    if not cid:
        return None
    # The task's container is on one of the engines; a lost node's engine does not answer.
    for host in sorted({ctx.engine_of(live), *ctx.hosts_connected()}, key=str):
        try:
            state = ctx.client(host).api.inspect_container(cid).get("State") or {}
        except (docker.errors.APIError, requests.exceptions.ConnectionError):
            continue
        return (state.get("Health") or {}).get("Status")
    return None


def _failed_task_report(ctx: Context, live: Live) -> str:
    try:
        tasks = ctx.client(ctx.engine_of(live)).api.tasks(filters={"service": live.id})
    except docker.errors.APIError:
        return ""
    errors = sorted({f"{t['Status'].get('State')}: {t['Status'].get('Err') or t['Status'].get('Message')}"
                     for t in tasks if t["Status"].get("State") in ("failed", "rejected", "shutdown")})
    return ("; tasks: " + "; ".join(errors[-5:])) if errors else ""


# -- flatteners (resource_docker_service_structures.go), in Pulumi's names ---------------------------


def _drop_none(value: dict) -> dict:
    return {k: v for k, v in value.items() if v is not None}


def _task_spec(t: dict) -> dict:
    out: dict[str, Any] = {}
    if t.get("ContainerSpec") is not None:
        out["containerSpec"] = _container_spec(t["ContainerSpec"])
    if t.get("Resources") is not None:
        resources = t["Resources"]
        out["resources"] = _drop_none({
            "limits": _drop_none({"nanoCpus": resources["Limits"].get("NanoCPUs", 0),
                                  "memoryBytes": resources["Limits"].get("MemoryBytes", 0)}) if resources.get("Limits") else None,
            "reservation": _reservation(resources["Reservations"]) if resources.get("Reservations") else None})
    if t.get("RestartPolicy") is not None:
        policy = t["RestartPolicy"]
        out["restartPolicy"] = _drop_none({
            "condition": policy.get("Condition") or None,
            "delay": short_duration(policy["Delay"]) if policy.get("Delay") is not None else None,
            "maxAttempts": policy.get("MaxAttempts"),
            "window": short_duration(policy["Window"]) if policy.get("Window") is not None else None})
    if t.get("Placement") is not None:
        placement = t["Placement"]
        out["placement"] = _drop_none({
            "constraints": placement.get("Constraints") or None,
            "prefs": [p["Spread"]["SpreadDescriptor"] for p in placement.get("Preferences") or []] or None,
            "platforms": [{"architecture": p.get("Architecture", ""), "os": p.get("OS", "")} for p in placement.get("Platforms") or []] or None,
            "maxReplicas": placement.get("MaxReplicas", 0)})
    out["forceUpdate"] = t.get("ForceUpdate", 0)
    if t.get("Runtime"):
        out["runtime"] = t["Runtime"]
    if t.get("Networks"):
        out["networksAdvanceds"] = [_drop_none({"id": n.get("Target", ""),
                                                "driverOpts": [f"{k}={v}" for k, v in (n.get("DriverOpts") or {}).items() if k],
                                                "aliases": n.get("Aliases") or None}) for n in t["Networks"]]
    if t.get("LogDriver") is not None:
        out["logDriver"] = _drop_none({"name": t["LogDriver"].get("Name", ""), "options": t["LogDriver"].get("Options") or None})
    return out


def _reservation(reservations: dict) -> dict:
    generic = reservations.get("GenericResources") or []
    named = [f"{g['NamedResourceSpec']['Kind']}={g['NamedResourceSpec']['Value']}" for g in generic if g.get("NamedResourceSpec")]
    discrete = [f"{g['DiscreteResourceSpec']['Kind']}={g['DiscreteResourceSpec']['Value']}" for g in generic
                if g.get("DiscreteResourceSpec")]
    return _drop_none({"nanoCpus": reservations.get("NanoCPUs", 0), "memoryBytes": reservations.get("MemoryBytes", 0),
                       "genericResources": {"namedResourcesSpecs": named, "discreteResourcesSpecs": discrete} if generic else None})


def _container_spec(c: dict) -> dict:
    check = c.get("Healthcheck")
    privileges = c.get("Privileges")
    return _drop_none({
        "image": c.get("Image") or None,
        "labels": label_set(c.get("Labels")) or None,
        "commands": c.get("Command") or None,
        "args": c.get("Args") or None,
        "hostname": c.get("Hostname") or None,
        "env": dict(entry.split("=", 1) if "=" in entry else (entry, "") for entry in c.get("Env") or [] if entry) or None,
        "user": c.get("User") or None,
        "dir": c.get("Dir") or None,
        "groups": c.get("Groups") or None,
        "privileges": _privileges(privileges) if privileges is not None else None,
        "readOnly": True if c.get("ReadOnly") else None,
        "mounts": [_mount(m) for m in c.get("Mounts") or []] or None,
        "stopSignal": c.get("StopSignal") or None,
        "stopGracePeriod": short_duration(c["StopGracePeriod"]) if c.get("StopGracePeriod") is not None else None,
        "healthcheck": _drop_none({"tests": check.get("Test") or None, "interval": short_duration(check.get("Interval") or 0),
                                   "timeout": short_duration(check.get("Timeout") or 0),
                                   "startPeriod": short_duration(check.get("StartPeriod") or 0),
                                   "retries": check.get("Retries", 0)}) if check is not None else None,
        "hosts": [{"ip": h.split(" ")[0], "host": h.split(" ")[1]} for h in c.get("Hosts") or []] or None,
        "dnsConfig": _drop_none({"nameservers": c["DNSConfig"].get("Nameservers") or None,
                                 "searches": c["DNSConfig"].get("Search") or None,
                                 "options": c["DNSConfig"].get("Options") or None}) if c.get("DNSConfig") is not None else None,
        "secrets": [_file_reference(s, "secret") for s in c.get("Secrets") or []] or None,
        "configs": [_file_reference(s, "config") for s in c.get("Configs") or []] or None,
        "isolation": c.get("Isolation") or None,
        "sysctl": c.get("Sysctls") or None,
        "capAdds": c.get("CapabilityAdd") or None,
        "capDrops": c.get("CapabilityDrop") or None,
        "init": c.get("Init"),  # supportsServiceContainerInit: API 1.37 and later
    })


def _privileges(p: dict) -> dict:
    out: dict[str, Any] = {}
    if p.get("CredentialSpec") is not None:
        out["credentialSpec"] = {"file": p["CredentialSpec"].get("File", ""), "registry": p["CredentialSpec"].get("Registry", "")}
    if p.get("SELinuxContext") is not None:
        context = p["SELinuxContext"]
        out["seLinuxContext"] = {"disable": context.get("Disable", False), "user": context.get("User", ""),
                                 "role": context.get("Role", ""), "type": context.get("Type", ""), "level": context.get("Level", "")}
    return out


def _mount(m: dict) -> dict:
    out: dict[str, Any] = {"target": m.get("Target", ""), "source": m.get("Source", ""), "type": m.get("Type", ""),
                           "readOnly": bool(m.get("ReadOnly"))}
    if m.get("BindOptions") is not None:
        out["bindOptions"] = _drop_none({"propagation": m["BindOptions"].get("Propagation") or None})
    if m.get("VolumeOptions") is not None:
        options = m["VolumeOptions"]
        driver = options.get("DriverConfig")
        out["volumeOptions"] = _drop_none({"noCopy": bool(options.get("NoCopy")), "labels": label_set(options.get("Labels")),
                                           "driverName": (driver or {}).get("Name") or None,
                                           "driverOptions": (driver or {}).get("Options") or {} if driver is not None else None})
    if m.get("TmpfsOptions") is not None:
        out["tmpfsOptions"] = {"sizeBytes": m["TmpfsOptions"].get("SizeBytes", 0), "mode": m["TmpfsOptions"].get("Mode", 0) & 0o777}
    return out


def _file_reference(reference: dict, kind: str) -> dict:
    out: dict[str, Any] = {f"{kind}Id": reference.get(f"{kind.capitalize()}ID", "")}
    if reference.get(f"{kind.capitalize()}Name"):
        out[f"{kind}Name"] = reference[f"{kind.capitalize()}Name"]
    target = reference.get("File")
    if target is not None:
        out["fileName"] = target.get("Name", "")
        if target.get("UID"):
            out["fileUid"] = target["UID"]
        if target.get("GID"):
            out["fileGid"] = target["GID"]
        out["fileMode"] = target.get("Mode", 0)
    return out


def _mode(mode: dict) -> dict:
    out: dict[str, Any] = {"global": mode.get("Global") is not None}
    if mode.get("Replicated") is not None:
        replicas = mode["Replicated"].get("Replicas")
        out["replicated"] = {"replicas": replicas} if replicas is not None else {}
    return out


def _update_config(config: Optional[dict]) -> Optional[dict]:
    if config is None:
        return None
    return {"parallelism": config.get("Parallelism", 0), "delay": short_duration(config.get("Delay", 0)),
            "failureAction": config.get("FailureAction", ""), "monitor": short_duration(config.get("Monitor", 0)),
            "maxFailureRatio": float_ratio_text(float(config.get("MaxFailureRatio", 0))), "order": config.get("Order", "")}


def _ports(ports: Optional[list]) -> list[dict]:
    return [{"name": p.get("Name", ""), "protocol": p.get("Protocol", ""), "targetPort": p.get("TargetPort", 0),
             "publishedPort": p.get("PublishedPort", 0), "publishMode": p.get("PublishMode", "")} for p in ports or []]


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def _docker_time(text: str) -> float:
    match = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)", text or "")
    if not match:
        return 0.0
    stamp = datetime.strptime(match.group(1), "%Y-%m-%dT%H:%M:%S").replace(tzinfo=timezone.utc).timestamp()
    fraction = float("0" + match.group(2)) if match.group(2) else 0.0
    zone = match.group(3)
    if zone != "Z":
        sign = 1 if zone[0] == "+" else -1
        stamp -= sign * (int(zone[1:3]) * 3600 + int(zone[4:6]) * 60)
    return stamp + fraction
