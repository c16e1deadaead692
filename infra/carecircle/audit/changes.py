"""What a change of config does to the live environment: compare the declared inputs of two
evaluations and classify each resource's change by its provider's own semantics.

pulumi-docker 5.2 (upstream terraform provider, `ForceNew` unless listed here): a container is
replaced, delete-first, on almost any input change; networks, volumes and images on every change.
pulumi-command 1.2: a change of `triggers` replaces the command, any other input change updates it;
both run `create` again. pulumi-random: any input change makes a new value.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Literal

from ..offline import DeclaredResource, Evaluation

Action = Literal["create", "delete", "replace", "update", "no live change"]

CONTAINER = "docker:index/container:Container"
COMMAND = "command:local:Command"
# Container inputs the provider updates on the running container.
CONTAINER_IN_PLACE = frozenset({"restart", "memory", "memorySwap", "memoryReservation", "cpuShares", "cpuSet"})
# Container inputs the provider only records: they matter at the next create or destroy.
CONTAINER_RECORDED = frozenset({"healthcheck", "wait", "waitTimeout", "destroyGraceSeconds", "mustRun",
                                "containerReadRefreshTimeoutMilliseconds"})
COMMAND_REPLACE = frozenset({"triggers"})


@dataclass(frozen=True)
class ResourceChange:
    type: str
    name: str
    action: Action
    inputs: tuple[str, ...]  # the inputs that differ
    secret_inputs: tuple[str, ...]  # of those, the ones whose values are secret (never shown)


def _differing(before: DeclaredResource, after: DeclaredResource) -> list[str]:
    keys = set(before.inputs) | set(after.inputs)
    canonical = lambda value: json.dumps(value, sort_keys=True, default=str)  # noqa: E731
    return sorted(k for k in keys if canonical(before.inputs.get(k)) != canonical(after.inputs.get(k)))


def action_for(type_: str, keys: list[str]) -> Action:
    """What the provider does when these inputs of a resource of this type change."""
    if not keys:
        return "no live change"
    if type_ == CONTAINER:
        changed = set(keys)
        if changed - CONTAINER_IN_PLACE - CONTAINER_RECORDED:
            return "replace"
        return "update" if changed & CONTAINER_IN_PLACE else "no live change"
    if type_ == COMMAND:
        return "replace" if set(keys) & COMMAND_REPLACE else "update"
    if type_.startswith("carecircle:"):  # components hold no state of their own
        return "no live change"
    return "replace"


def compare(before: Evaluation, after: Evaluation) -> list[ResourceChange]:
    """Every resource that is created, deleted or changed between two evaluations of a stack."""
    old = {r.urn: r for r in before.resources}
    new = {r.urn: r for r in after.resources}
    changes = []
    for urn in sorted(old.keys() | new.keys()):
        a, b = old.get(urn), new.get(urn)
        if a is None or b is None:
            resource = b or a
            assert resource is not None
            changes.append(ResourceChange(resource.type, resource.name, "create" if a is None else "delete", (), ()))
            continue
        keys = _differing(a, b)
        if keys:
            secret = tuple(k for k in keys if k in a.secret_inputs or k in b.secret_inputs)
            changes.append(ResourceChange(b.type, b.name, action_for(b.type, keys), tuple(keys), secret))
    return changes


def live_changes(changes: list[ResourceChange]) -> list[ResourceChange]:
    return [c for c in changes if c.action != "no live change" and not c.type.startswith("carecircle:")]


def by_action(changes: list[ResourceChange]) -> dict[str, list[str]]:
    grouped: dict[str, list[str]] = {}
    for change in live_changes(changes):
        grouped.setdefault(change.action, []).append(change.name)
    return {action: sorted(names) for action, names in grouped.items()}


def describe(change: ResourceChange) -> str:
    shown = ", ".join(f"{k} (secret, changed)" if k in change.secret_inputs else k for k in change.inputs)
    return f"{change.action}: {change.type} {change.name}" + (f" [{shown}]" if shown else "")
