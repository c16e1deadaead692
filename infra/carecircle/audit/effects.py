"""What a change does to the running environment, in words an operator reads in a diff: on top of the
provider's action (replace / update, carecircle/provider_semantics.py), what Swarm and the providers
then do with it.

- A Service update rolls its tasks only when the task spec (`taskSpec`) or the endpoint spec changes:
  swarmkit's orchestrator compares those to each running task (`IsTaskDirty`), replacing tasks in the
  service's update order (`updateConfig.order`; Swarm's default is stop-first), `parallelism` at a
  time. A change of the replica count alone starts or stops tasks and leaves the others running; a
  change of the placement alone moves only the tasks whose node no longer satisfies the constraints
  (`IsTaskDirtyPlacementConstraintsOnly`); update, rollback and converge settings and the service's
  own labels restart nothing.
- A replaced Service, Secret, ServiceConfig, Network or Volume is created before the old one is
  deleted when Pulumi names it (no `name` input: a new generated name), and deleted first when the
  program fixed its name (pulumi-terraform-bridge: a fixed name makes the replacement delete-first).
  A replaced Container is always deleted first (pulumi-docker marks Container delete-before-replace).
"""

from __future__ import annotations

from typing import Any, Optional

from ..offline import DeclaredResource
from ..provider_semantics import COMMAND, CONTAINER, NETWORK, SECRET, SERVICE, SERVICE_CONFIG, VOLUME
from .changes import ResourceChange

REPLICAS = "mode.replicated.replicas"
ROLLING, SCALE, PLACEMENT, SETTINGS = "rolling update", "scale", "placement", "settings"


def _under(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith(prefix + ".")


def service_update_kind(paths: tuple[str, ...] | list[str]) -> str:
    """What Swarm does for an in-place update of a Service whose inputs at `paths` changed."""
    if any((_under(p, "taskSpec") and not _under(p, "taskSpec.placement")) or _under(p, "endpointSpec") for p in paths):
        return ROLLING
    if any(_under(p, "taskSpec.placement") for p in paths):
        return PLACEMENT
    if any(_under(p, REPLICAS) or _under(p, "mode") for p in paths):
        return SCALE
    return SETTINGS


def rolls(change: ResourceChange) -> bool:
    """A Service update whose tasks Swarm replaces (a rolling update)."""
    return change.type == SERVICE and change.action == "update" and service_update_kind(change.inputs) == ROLLING


def _get(inputs: Optional[dict[str, Any]], path: str) -> Any:
    value: Any = inputs or {}
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def _number(value: Any) -> Any:
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _named_by_pulumi(resource: Optional[DeclaredResource]) -> Optional[bool]:
    return None if resource is None else "name" not in resource.inputs


def _rolling(after: Optional[DeclaredResource]) -> str:
    if after is None:
        return "rolling update: Swarm replaces its tasks in the service's update order"
    order = _get(after.inputs, "updateConfig.order") or "stop-first"
    parallelism = _number(_get(after.inputs, "updateConfig.parallelism") or 1)
    failure = _get(after.inputs, "updateConfig.failureAction") or "pause"
    first = "each new task healthy before an old one stops" if order == "start-first" else "each old task stopped before its replacement starts"
    return f"rolling update: Swarm restarts its tasks {order} ({first}), {parallelism} at a time, on failure {failure}"


def _replicas(resource: Optional[DeclaredResource]) -> Any:
    if resource is None:
        return "?"
    if "global" in (resource.inputs.get("mode") or {}):
        return "global"
    return _number(_get(resource.inputs, REPLICAS) or 1)


def _replaced(kind: str, before: Optional[DeclaredResource], after: Optional[DeclaredResource]) -> str:
    by_pulumi = _named_by_pulumi(after)
    if by_pulumi is False:
        return f"replaced delete-first (the program fixed its name): the old {kind} is deleted before the new one exists"
    if by_pulumi is None:
        return f"replaced ({kind})"
    return f"new {kind} under a new name, created before the old one is deleted"


def effect(change: ResourceChange, before: Optional[DeclaredResource] = None, after: Optional[DeclaredResource] = None) -> str:
    """In words, what `change` does live (`before`/`after`: the resource's declarations, when known)."""
    type_, action = change.type, change.action
    if type_ == SERVICE:
        if action == "update":
            kind = service_update_kind(change.inputs)
            scaled = any(_under(p, "mode") for p in change.inputs)
            scale = f"scale {_replicas(before)} → {_replicas(after)} replicas" if scaled else ""
            if kind == ROLLING:
                return _rolling(after) + (f"; and {scale}" if scale else "")
            if kind == PLACEMENT:
                return ("placement change: tasks stay on nodes that still satisfy the constraints, the others move"
                        + (f"; and {scale}" if scale else ""))
            if kind == SCALE:
                return f"{scale}: tasks are started or stopped, the running ones are left alone"
            return "service settings only (update, rollback or converge policy, labels): no task restarted"
        if action == "replace":
            return _replaced("service", before, after) + (" (its tasks start on the new service first)" if _named_by_pulumi(after) else "")
        if action == "create":
            return "new service: Swarm starts its tasks"
        if action == "delete":
            return "service removed: its tasks stop"
    if type_ == SECRET and action == "replace":
        return _replaced("secret", before, after) + ("; the services move to it by a rolling update" if _named_by_pulumi(after) else
                                                     "; Swarm refuses to delete a secret a service still mounts")
    if type_ == SERVICE_CONFIG and action == "replace":
        return _replaced("config", before, after)
    if type_ in (NETWORK, VOLUME) and action == "replace":
        kind = "network" if type_ == NETWORK else "volume (empty)"
        return _replaced(kind, before, after)
    if type_ == CONTAINER:
        if action == "replace":
            return "delete-first: the container is down from its deletion until the new one runs"
        if action == "update":
            return "updated on the running container"
    if type_ == COMMAND and action in ("replace", "update"):
        return "runs again"
    if type_.startswith("random:") and action == "replace":
        return "a new value"
    return ""
