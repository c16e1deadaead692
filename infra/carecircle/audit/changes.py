"""What a change of config does to the live environment: compare the declared inputs of two
evaluations and classify each resource's change by its provider's own semantics
(carecircle/provider_semantics.py: what replaces, what updates in place, what the provider only
records)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ..offline import Evaluation
from ..provider_semantics import Action, action_for

ChangeAction = Action | str  # plus "create" and "delete"

__all__ = ["ResourceChange", "action_for", "by_action", "changed_paths", "compare", "describe", "live_changes"]


@dataclass(frozen=True)
class ResourceChange:
    type: str
    name: str
    action: ChangeAction
    inputs: tuple[str, ...]  # the input paths that differ (dotted, list elements without index)
    secret_inputs: tuple[str, ...]  # of those, the ones whose values are secret (never shown)
    # Paths that differ but that the resource's ignore_changes covers: `pulumi up` keeps the previous value
    # (the engine resets them to the previous inputs; pulumi/pulumi step_generator.go processIgnoreChanges).
    ignored: tuple[str, ...] = ()


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def changed_paths(before: Any, after: Any, prefix: str = "") -> list[str]:
    """Dotted paths where two input values differ. Lists of objects of the same length are compared
    element by element (the path names the field, not the index); any other list as a whole."""
    if isinstance(before, dict) and isinstance(after, dict):
        return [path for key in sorted(set(before) | set(after))
                for path in changed_paths(before.get(key), after.get(key), f"{prefix}.{key}" if prefix else key)]
    if (isinstance(before, list) and isinstance(after, list) and len(before) == len(after) and before
            and all(isinstance(item, dict) for item in before + after)):
        return sorted({path for old, new in zip(before, after, strict=True) for path in changed_paths(old, new, prefix)})
    if before is None and after in ({}, []) or after is None and before in ({}, []):  # absent and empty are the same input
        return []
    return [prefix] if _canonical(before) != _canonical(after) else []


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
        paths = changed_paths(a.inputs, b.inputs)
        ignored = tuple(p for p in paths if any(p == i or p.startswith(i + ".") for i in b.ignore_changes))
        paths = [p for p in paths if p not in ignored]
        secret = tuple(p for p in paths if _top(p) in a.secret_inputs or _top(p) in b.secret_inputs)
        if paths:
            changes.append(ResourceChange(b.type, b.name, action_for(b.type, paths), tuple(paths), secret, ignored))
        elif ignored:
            changes.append(ResourceChange(b.type, b.name, "no live change", (), (), ignored))
    return changes


def _top(path: str) -> str:
    return path.split(".", 1)[0]


def live_changes(changes: list[ResourceChange]) -> list[ResourceChange]:
    return [c for c in changes if c.action != "no live change" and not c.type.startswith("carecircle:")]


def by_action(changes: list[ResourceChange]) -> dict[str, list[str]]:
    grouped: dict[str, list[str]] = {}
    for change in live_changes(changes):
        grouped.setdefault(change.action, []).append(change.name)
    return {action: sorted(names) for action, names in grouped.items()}


def describe(change: ResourceChange) -> str:
    shown = ", ".join(f"{k} (secret, changed)" if k in change.secret_inputs else k for k in change.inputs)
    ignored = f" (ignored, kept as before: {', '.join(change.ignored)})" if change.ignored else ""
    return f"{change.action}: {change.type} {change.name}" + (f" [{shown}]" if shown else "") + ignored
