"""What the provider reads back of a service (resourceDockerServiceReadRefreshFunc and the flatteners of
resource_docker_service_structures.go), in Pulumi's names: every duration through shortDur ("120s" is read
as "2m"), the env list as a map, labels and secrets as sets, the endpoint spec from the service's live
endpoint when it has one."""

from __future__ import annotations

from typing import Any, Optional

from ..values import float_ratio_text, label_set, short_duration


def flatten_service(service: dict) -> dict:
    """The attributes Read sets, from a service's inspect."""
    spec = service["Spec"]
    endpoint = (service.get("Endpoint") or {}).get("Spec") or {}
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


