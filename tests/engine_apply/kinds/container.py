"""docker.Container (kreuzwerker resource_docker_container*.go; pulumi-docker resources.go makes it
DeleteBeforeReplace). Create: find or pull the image (with the provider's registry credentials), create
attached to the default bridge, disconnect it, connect `networksAdvanced`, copy uploads, start, `wait` for
healthy, then Read. Update: start it when must_run turned true; ContainerUpdate when restart, memory,
memory swap/reservation, cpu shares or cpu set changed; nothing live for anything else (healthcheck,
wait, ... are only recorded); no Read afterwards. Read sets the attributes listed in `read` below, the
healthcheck's durations as Go prints them (60s is "1m0s"), cpus as nanoInt64ToDecimalString, memory in MB."""

from __future__ import annotations

import base64
import io
import tarfile
import time
from typing import Any, Optional

import docker.errors

from ..client import Context
from ..errors import ContainerHealthError, EngineError, UnmappedInputError
from ..mapping import Schema, each, to
from ..records import ApiRequest, Live
from ..registry import auth_configs, auth_for_image
from ..values import (
    base64_data,
    boolean,
    cpus,
    duration,
    go_duration_string,
    integer,
    labels,
    megabytes,
    nano_decimal_string,
    string,
    string_list,
    string_map,
)
from .base import Kind, inspect_or_none

PORT_FIELDS = {
    "internal": to("internal", integer),
    "external": to("external", integer),
    "ip": to("ip", string),
    "protocol": to("protocol", string),
}
VOLUME_FIELDS = {
    "containerPath": to("containerPath", string),
    "volumeName": to("volumeName", string),
    "hostPath": to("hostPath", string),
    "readOnly": to("readOnly", boolean),
}
NETWORK_FIELDS = {
    "name": to("Target", string),
    "ipv4Address": to("EndpointConfig.IPAMConfig.IPv4Address", string),
    "aliases": to("EndpointConfig.Aliases", string_list),
}
UPLOAD_FIELDS = {
    "file": to("file", string),
    "content": to("content", string),
    "contentBase64": to("contentBase64", base64_data),
    "executable": to("executable", boolean),
    "permissions": to("permissions", string),
}
FIELDS = {
    "name": to("@name", string),
    "image": to("Image", string),
    "command": to("Cmd", string_list),
    "entrypoints": to("Entrypoint", string_list),
    "envs": to("Env", string_list),
    "labels": to("Labels", labels),
    "healthcheck.tests": to("Healthcheck.Test", string_list),
    "healthcheck.interval": to("Healthcheck.Interval", duration),
    "healthcheck.timeout": to("Healthcheck.Timeout", duration),
    "healthcheck.startPeriod": to("Healthcheck.StartPeriod", duration),
    "healthcheck.retries": to("Healthcheck.Retries", integer),
    "stopSignal": to("StopSignal", string),
    "stopTimeout": to("StopTimeout", integer),
    "ports": to("@ports", each(PORT_FIELDS, {"": {"ip": "0.0.0.0", "protocol": "tcp"}})),
    "volumes": to("@volumes", each(VOLUME_FIELDS, {"": {"readOnly": False}})),
    "networksAdvanced": to("@networks", each(NETWORK_FIELDS)),
    "uploads": to("@uploads", each(UPLOAD_FIELDS, {"": {"executable": False}})),
    "restart": to("HostConfig.RestartPolicy.Name", string),
    "logDriver": to("HostConfig.LogConfig.Type", string),
    "logOpts": to("HostConfig.LogConfig.Config", string_map),
    "memory": to("HostConfig.Memory", megabytes),
    "cpus": to("HostConfig.NanoCpus", cpus),
    "wait": to("@wait", boolean),
    "waitTimeout": to("@waitTimeout", integer),
    "destroyGraceSeconds": to("@destroyGraceSeconds", integer),
}
# Inputs the Update applies to the running container (must_run: it starts a stopped one).
LIVE_UPDATES = frozenset({"restart", "maxRetryCount", "cpuShares", "memory", "memoryReservation", "cpuSet", "memorySwap",
                          "mustRun"})
# Inputs that are not ForceNew and have no live effect: recorded in the state only.
RECORDED = frozenset({"healthcheck", "wait", "waitTimeout", "destroyGraceSeconds", "containerReadRefreshTimeoutMilliseconds",
                      "rm", "start", "attach", "logs", "removeVolumes", "tmpfs"})


def _ports_equivalent(old: Any, new: Any) -> bool:
    """suppressIfPortsDidNotChangeForMigrationV0ToV1: the same bindings in any order."""
    def key(port: dict) -> tuple:
        return (int(port.get("internal") or 0), int(port.get("external") or 0), port.get("ip") or "", port.get("protocol") or "")
    old, new = old or [], new or []
    return len(old) == len(new) and sorted(map(key, old)) == sorted(map(key, new))


def _blank_is_no_op(old: Any, new: Any) -> bool:
    """user, working_dir: an empty input means Docker's default, whatever the engine reports."""
    return not new or old == new


class Container(Kind):
    type = "docker:index/container:Container"
    delete_before_replace = True
    reads_after_update = False
    schema = Schema(
        fields=FIELDS,
        defaults={"": {"restart": "no", "wait": False, "waitTimeout": 60, "mustRun": True, "networkMode": "bridge",
                       "start": True, "memoryReservation": 0},
                  "healthcheck": {"interval": "0s", "timeout": "0s", "startPeriod": "0s", "startInterval": "0s", "retries": 0}},
        force_new=frozenset({"name", "image", "command", "envs", "labels", "stopSignal", "stopTimeout", "ports", "volumes",
                             "networksAdvanced", "uploads", "logDriver", "logOpts", "cpus", "hostname", "domainname",
                             "entrypoints", "user", "dns", "dnsOpts", "dnsSearches", "publishAllPorts", "workingDir",
                             "capabilities", "securityOpts", "runtime", "platform", "mounts", "hosts", "privileged",
                             "shmSize", "networkMode", "usernsMode", "sysctls", "ipcMode", "groupAdds", "tty", "stdinOpen",
                             "storageOpts", "readOnly"}),
        computed=frozenset({"hostname", "command", "entrypoints", "securityOpts", "runtime", "platform", "stopSignal",
                            "stopTimeout", "envs", "labels", "shmSize", "logDriver", "healthcheck", "ipcMode", "init",
                            "networkDatas", "bridge", "exitCode"}),
        unordered=frozenset({"envs", "labels", "volumes", "networksAdvanced", "uploads", "dns", "dnsOpts", "dnsSearches",
                             "securityOpts", "mounts", "hosts", "groupAdds", "networksAdvanced.aliases"}),
        equivalent={"ports": _ports_equivalent, "user": _blank_is_no_op, "workingDir": _blank_is_no_op},
    )

    def update_action(self, paths: list[str]) -> str:
        return "update" if {p.split(".", 1)[0] for p in paths} & LIVE_UPDATES else "no live change"

    def create(self, ctx: Context, live: Live, planned: dict) -> None:
        body, params = self.body(live, planned)
        api = ctx.client(ctx.engine_of(live)).api
        image = body.get("Image", "")
        try:
            api.inspect_image(image)
        except docker.errors.ImageNotFound:
            auth = auth_for_image(image, auth_configs(ctx.registry_auth(live)))
            try:  # findImage pulls a missing image with the provider's credentials for its registry
                ctx.result.requests.append(ApiRequest(live.host or "", "POST", "/images/create", None, {"fromImage": image},
                                                      {"X-Registry-Auth": "<credentials>"} if auth else None))
                api.pull(image, auth_config=auth or None)
            except docker.errors.APIError as error:
                raise EngineError(f"{live.type} {live.name!r}: Unable to create container with image {image}: "
                                  f"unable to pull image {image}: {error.explanation or error}",
                                  str(error.explanation or error)) from error
        config = {k: v for k, v in body.items() if k != "HostConfig"}
        host_config = {"NetworkMode": planned.get("networkMode", "bridge"), "Init": False, **body.get("HostConfig", {})}
        host_config.setdefault("RestartPolicy", {})["MaximumRetryCount"] = 0
        exposed: dict = {}
        bindings: dict = {}
        for port in params.get("ports", []):
            key = f"{port['internal']}/{port['protocol']}"
            exposed[key] = {}
            bindings.setdefault(key, []).append({"HostIp": port["ip"], "HostPort": str(port["external"]) if "external" in port else ""})
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
        created = ctx.call(live, "POST", "/containers/create", body={**config, "HostConfig": host_config, "NetworkingConfig": {}},
                           params={"name": params["name"]}, what="create container")
        live.id = created["Id"]
        live.tainted = True  # until every step of the create succeeded (the provider set the id already)
        ctx.live[live.urn] = live
        for warning in created.get("Warnings") or []:
            ctx.warn(live, warning)
        if params.get("networks"):
            try:
                ctx.call(live, "POST", "/networks/{0}/disconnect", "bridge", body={"Container": live.id, "Force": False},
                         what="disconnect the default network")
            except EngineError as error:
                if "is not connected to the network bridge" not in error.explanation:
                    raise
            for network in params["networks"]:
                ctx.call(live, "POST", "/networks/{0}/connect", network["Target"],
                         body={"Container": live.id, "EndpointConfig": network.get("EndpointConfig", {})},
                         what=f"connect to network {network['Target']}")
        for upload in params.get("uploads", []):
            self._upload(ctx, live, upload)
        ctx.call(live, "POST", "/containers/{0}/start", live.id, what="start container")
        if params.get("wait"):
            self._wait_healthy(ctx, live, params.get("waitTimeout", 60))
        live.tainted = False

    def update(self, ctx: Context, live: Live, planned: dict) -> None:
        before = live.state
        if not before.get("mustRun", True) and planned.get("mustRun", True):
            ctx.call(live, "POST", "/containers/{0}/start", live.id or "", what="start container")
        if any(_plain_value(before.get(k)) != _plain_value(planned.get(k)) for k in LIVE_UPDATES - {"mustRun"}):
            memory_swap = int(planned.get("memorySwap") or 0)
            update = {
                "RestartPolicy": {"Name": planned.get("restart", "no"), "MaximumRetryCount": int(planned.get("maxRetryCount") or 0)},
                "CpuShares": int(planned.get("cpuShares") or 0),
                "Memory": int(planned.get("memory") or 0) * 1024 * 1024,
                "MemoryReservation": int(planned.get("memoryReservation") or 0) * 1024 * 1024,
                "CpusetCpus": planned.get("cpuSet") or "",
                **({"MemorySwap": memory_swap * 1024 * 1024 if memory_swap > 0 else memory_swap} if memory_swap else {}),
            }
            response = ctx.call(live, "POST", "/containers/{0}/update", live.id or "", body=update, what="update container")
            for warning in (response or {}).get("Warnings") or []:
                ctx.warn(live, warning)

    def read(self, ctx: Context, live: Live) -> Optional[dict]:
        c = inspect_or_none(ctx, live, "/containers/{0}/json", "inspect container")
        if c is None:
            return None
        config, host, state = c.get("Config") or {}, c.get("HostConfig") or {}, c.get("State") or {}
        out: dict[str, Any] = {
            "name": c["Name"].lstrip("/"),
            "rm": bool(host.get("AutoRemove")),
            "readOnly": bool(host.get("ReadonlyRootfs")),
            "image": c.get("Image", "") if str(live.state.get("image", "")).startswith("sha256:") else config.get("Image", ""),
            "hostname": config.get("Hostname", ""),
            "domainname": config.get("Domainname", ""),
            "command": config.get("Cmd") or [],
            "entrypoints": config.get("Entrypoint") or [],
            "user": config.get("User", ""),
            "dns": host.get("Dns") or [],
            "dnsOpts": host.get("DnsOptions") or [],
            "securityOpts": host.get("SecurityOpt") or [],
            "dnsSearches": host.get("DnsSearch") or [],
            "publishAllPorts": bool(host.get("PublishAllPorts")),
            "restart": (host.get("RestartPolicy") or {}).get("Name", ""),
            "maxRetryCount": (host.get("RestartPolicy") or {}).get("MaximumRetryCount", 0),
            "init": bool(host.get("Init")),
            "workingDir": config.get("WorkingDir", ""),
            "runtime": host.get("Runtime", ""),
            "platform": c.get("Platform", ""),
            "tmpfs": host.get("Tmpfs") or {},
            "hosts": [{"host": h.split(":")[0], "ip": h.split(":")[1]} for h in host.get("ExtraHosts") or []],
            "privileged": bool(host.get("Privileged")),
            "memory": (host.get("Memory") or 0) // 1024 // 1024,
            "memoryReservation": _mb_or_raw(host.get("MemoryReservation") or 0),
            "memorySwap": _mb_or_raw(host.get("MemorySwap") or 0),
            "shmSize": (host.get("ShmSize") or 0) // 1024 // 1024,
            "cpuShares": host.get("CpuShares") or 0,
            "cpuSet": host.get("CpusetCpus") or "",
            "logDriver": (host.get("LogConfig") or {}).get("Type", ""),
            "storageOpts": host.get("StorageOpt") or {},
            "networkMode": host.get("NetworkMode", ""),
            "usernsMode": host.get("UsernsMode", ""),
            "sysctls": host.get("Sysctls") or {},
            "ipcMode": host.get("IpcMode", ""),
            "groupAdds": host.get("GroupAdd") or [],
            "tty": bool(config.get("Tty")),
            "stdinOpen": bool(config.get("OpenStdin")),
            "stopSignal": config.get("StopSignal", ""),
            "stopTimeout": config.get("StopTimeout") or 0,
        }
        if host.get("NanoCpus"):
            out["cpus"] = nano_decimal_string(host["NanoCpus"])
        if live.state.get("logOpts"):  # containerLogOptsForState: only when configured
            out["logOpts"] = (host.get("LogConfig") or {}).get("Config") or {}
        if (state.get("Running") or live.state.get("mustRun", True)) and live.state.get("ports"):
            out["ports"] = _flatten_ports((c.get("NetworkSettings") or {}).get("Ports") or {})
        if config.get("Healthcheck") is not None:
            check = config["Healthcheck"]
            out["healthcheck"] = {"tests": check.get("Test") or [], "retries": check.get("Retries", 0),
                                  **{key: go_duration_string(check.get(field) or 0) for key, field in
                                     (("interval", "Interval"), ("timeout", "Timeout"), ("startPeriod", "StartPeriod"),
                                      ("startInterval", "StartInterval"))}}
        if not state.get("Running"):
            out["exitCode"] = state.get("ExitCode", 0)
            if live.state.get("mustRun", True):
                out["mustRun"] = False  # a stopped container that must run: the next plan starts it
        return out

    def delete(self, ctx: Context, live: Live) -> None:
        if not live.id:
            return
        api = ctx.client(ctx.engine_of(live)).api
        grace = max(0, int(live.state.get("destroyGraceSeconds") or 0))
        ctx.result.requests.append(ApiRequest(live.host or "", "POST", f"/containers/{live.id}/stop", None, {"t": grace}))
        try:
            api.stop(live.id, timeout=grace)
        except docker.errors.APIError as error:
            if "No such container" not in str(error):
                raise EngineError(f"{live.name}: Error stopping container: {error.explanation or error}",
                                  str(error.explanation or error)) from error
        try:
            ctx.call(live, "DELETE", "/containers/{0}", live.id, params={"v": True, "force": True}, what="remove container")
        except EngineError as error:
            if "No such container" not in error.explanation and "already in progress" not in error.explanation:
                raise

    @staticmethod
    def _upload(ctx: Context, live: Live, upload: dict) -> None:
        given = [k for k in ("content", "contentBase64") if upload.get(k)]
        if len(given) != 1:
            raise UnmappedInputError(live.name, live.type, "uploads", "needs exactly one of content, contentBase64")
        data = upload["content"].encode() if given == ["content"] else base64.b64decode(upload["contentBase64"])
        mode = int(upload["permissions"], 8) if upload.get("permissions") else 0o744 if upload.get("executable") else 0o644
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as tar:
            info = tarfile.TarInfo(name=upload["file"])
            info.size, info.mode, info.mtime = len(data), mode, int(time.time())
            tar.addfile(info, io.BytesIO(data))
        ctx.result.requests.append(ApiRequest(live.host or "", "PUT", f"/containers/{live.id}/archive",
                                              {"file": upload["file"], "mode": oct(mode), "size": len(data)}, {"path": "/"}))
        try:
            ctx.client(ctx.engine_of(live)).api.put_archive(live.id, "/", buffer.getvalue())
        except docker.errors.APIError as error:
            raise EngineError(f"{live.type} {live.name!r}: Unable to upload volume content: {error.explanation or error}",
                              str(error.explanation or error)) from error

    @staticmethod
    def _wait_healthy(ctx: Context, live: Live, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        api = ctx.client(ctx.engine_of(live)).api
        while True:
            state = api.inspect_container(live.id).get("State") or {}
            health = state.get("Health")
            if health is None:
                raise ContainerHealthError(f"{live.name}: you have supplied a 'wait' argument, but the container does not "
                                           "have a healthcheck defined")
            if health.get("Status") == "healthy":
                return
            if time.monotonic() > deadline:
                log = [entry.get("Output", "").strip() for entry in (health.get("Log") or [])[-3:]]
                raise ContainerHealthError(f"{live.name}: container did not reach a healthy state within {timeout}s "
                                           f"(status {health.get('Status')}, last checks {log})")
            time.sleep(ctx.poll_interval)


def _mb_or_raw(value: int) -> int:
    """memory_reservation, memory_swap: in MB when positive, as is otherwise (-1: unlimited swap)."""
    return value // 1024 // 1024 if value > 0 else value


def _flatten_ports(ports: dict) -> list[dict]:
    """flattenContainerPorts: every binding, ports sorted by number and protocol."""
    def order(key: str) -> tuple[int, str]:
        number, _, protocol = key.partition("/")
        return int(number), protocol

    return [{"internal": order(key)[0], "external": int(binding.get("HostPort") or 0), "ip": binding.get("HostIp", ""),
             "protocol": order(key)[1]}
            for key in sorted(ports, key=order) for binding in ports[key] or []]


def _plain_value(value: Any) -> Any:
    return None if value in (None, "", 0, False) else value
