"""Compare what two stacks, or one stack at two git revisions, declare.

A snapshot is an evaluation as JSON with every secret input replaced by a digest (a changed secret
shows as changed, its value never) and, for stack-to-stack comparisons, the stack name replaced by
`<stack>` so that `carecircle-staging-api-blue-1` and `carecircle-prod-api-blue-1` are the same resource.

The Markdown and terminal output say what each change does live (effects.py: a rolling update, a
scale, a new secret created before the old one is deleted, a container replaced delete-first); the
JSON output keeps its fields (action, type, name, inputs, secret_inputs) and values, for scripts.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..offline import DeclaredResource, Evaluation
from ..provider_semantics import CONTAINER, SECRET, SERVICE
from ..stackfiles import REPO_ROOT
from .changes import ResourceChange, compare, live_changes
from .effects import PLACEMENT, ROLLING, SCALE, effect, service_update_kind


@dataclass(frozen=True)
class Change(ResourceChange):
    """A change and, in words, what it does live (shown in Markdown and on the terminal, not in JSON)."""

    effect: str = ""


def effect_of(change: ResourceChange) -> str:
    return change.effect if isinstance(change, Change) else effect(change)


class RevisionError(Exception):
    """A git revision that cannot be evaluated."""


def _normalize(value: Any, stack: str) -> Any:
    if isinstance(value, str):
        value = re.sub(rf"(?<![A-Za-z0-9]){re.escape(stack)}(?![A-Za-z0-9])", "<stack>", value)
        # Names Pulumi generates (<logical name>-<7 hex>) differ between stacks by their random part only.
        return re.sub(r"(<stack>[A-Za-z0-9-]*?)-[0-9a-f]{7}(?=-id\b|$|[^A-Za-z0-9-])", r"\1-<generated>", value)
    if isinstance(value, dict):
        return {k: _normalize(v, stack) for k, v in value.items()}
    if isinstance(value, list):
        return [_normalize(v, stack) for v in value]
    return value


def _digest(value: Any) -> str:
    return "secret:" + hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:16]


def snapshot(evaluation: Evaluation) -> list[dict[str, Any]]:
    """The evaluation, secrets masked, as JSON-ready data (what `cli.py evaluate` prints)."""
    return [
        {
            "key": resource.urn.split("::", 1)[1],  # urn:pulumi:<stack>::<project>::<type>::<name>, less the stack
            "type": resource.type,
            "name": resource.name,
            "inputs": {k: _digest(v) if k in resource.secret_inputs else v for k, v in resource.inputs.items()},
            "secret_inputs": sorted(resource.secret_inputs),
            "protect": resource.protect,
            "ignore_changes": list(resource.ignore_changes),
            "stack": evaluation.stack,
        }
        for resource in sorted(evaluation.resources, key=lambda r: r.urn)
    ]


def from_snapshot(items: list[dict[str, Any]], normalize: bool) -> Evaluation:
    evaluation = Evaluation(stack=items[0]["stack"] if items else "")
    for item in items:
        # Across stacks, a name that holds the stack (carecircle-prod-api-blue) is the same resource.
        inputs, name, key = (_normalize(item[field], item["stack"]) for field in ("inputs", "name", "key")) if normalize else (
            item["inputs"], item["name"], item["key"])
        evaluation.resources.append(DeclaredResource(
            type=item["type"], name=name, urn=key, inputs=inputs,
            secret_inputs=set(item["secret_inputs"]), parent="", protect=item["protect"], retain_on_delete=False,
            delete_before_replace=False, dependencies=[], ignore_changes=tuple(item.get("ignore_changes", ())),
        ))
    return evaluation


def snapshot_at_revision(stack: str, revision: str, root: Path = REPO_ROOT) -> list[dict[str, Any]]:
    """Evaluate `stack` as the code and stack files of `revision` declare it (a temporary worktree)."""
    with tempfile.TemporaryDirectory() as tmp:
        tree = Path(tmp) / "tree"
        added = subprocess.run(["git", "-C", str(root), "worktree", "add", "--detach", str(tree), revision],
                               capture_output=True, text=True)
        if added.returncode != 0:
            raise RevisionError(f"cannot check out {revision!r}: {added.stderr.strip().splitlines()[-1] if added.stderr.strip() else 'git failed'}")
        try:
            result = subprocess.run([sys.executable, str(tree / "infra" / "cli.py"), "evaluate", stack],
                                    cwd=tree, capture_output=True, text=True, timeout=300)
        finally:
            subprocess.run(["git", "-C", str(root), "worktree", "remove", "--force", str(tree)], capture_output=True)
        if result.returncode != 0:
            reason = result.stderr.strip() or result.stdout.strip()
            if "No such command 'evaluate'" in reason:
                reason = "that revision predates `cli.py evaluate`, which diff --base needs"
            raise RevisionError(f"stack {stack} at {revision} cannot be evaluated: {reason}")
        return json.loads(result.stdout)


def _names(changes: list[ResourceChange]) -> str:
    return ", ".join(c.name for c in changes)


def _headlines(live: list[ResourceChange]) -> list[str]:
    """One line per kind of change an operator must not miss, before the table."""
    service_updates = [c for c in live if c.type == SERVICE and c.action == "update"]
    groups = [
        ("Swarm services rolled (their tasks restarted in each service's update order; see below)",
         [c for c in service_updates if service_update_kind(c.inputs) == ROLLING]),
        ("Swarm services scaled (running tasks left alone)", [c for c in service_updates if service_update_kind(c.inputs) == SCALE]),
        ("Swarm services re-placed (only tasks on nodes that no longer fit move)",
         [c for c in service_updates if service_update_kind(c.inputs) == PLACEMENT]),
        ("Swarm services replaced", [c for c in live if c.type == SERVICE and c.action == "replace"]),
        ("Swarm secrets replaced", [c for c in live if c.type == SECRET and c.action == "replace"]),
        ("container(s) replaced delete-first (down from deletion until the new one runs)",
         [c for c in live if c.type == CONTAINER and c.action == "replace"]),
    ]
    return [f"- **{len(changes)} {label}:** {_names(changes)}" for label, changes in groups if changes]


def _kept(changes: list[ResourceChange]) -> list[ResourceChange]:
    """Declarations that changed only where ignore_changes covers them: nothing happens live."""
    return [c for c in changes if c.ignored and not c.inputs]


def markdown(title: str, changes: list[ResourceChange]) -> str:
    live = live_changes(changes)
    lines = [f"### {title}", ""]
    kept = [f"- {c.type} {c.name}: {', '.join(c.ignored)} changed but ignored (ignore_changes): `pulumi up` keeps the "
            "previous value" for c in _kept(changes)]
    if not live:
        return "\n".join(lines + ["No resource is created, deleted or changed.", "", *kept, ""])
    lines += [*kept, ""] if kept else []
    headlines = _headlines(live)
    if headlines:
        lines += [*headlines, ""]
    lines += ["| action | what happens | type | resource | inputs |", "|---|---|---|---|---|"]
    for change in live:
        shown = ", ".join(f"{k} (secret, changed)" if k in change.secret_inputs else k for k in change.inputs) or "-"
        lines.append(f"| {change.action} | {effect_of(change) or '-'} | {change.type} | {change.name} | {shown} |")
    return "\n".join(lines) + "\n"


def as_json(changes: list[ResourceChange]) -> str:
    return json.dumps([{"action": c.action, "type": c.type, "name": c.name, "inputs": list(c.inputs),
                        "secret_inputs": list(c.secret_inputs)} for c in live_changes(changes)], indent=2) + "\n"


def describe(change: ResourceChange) -> str:
    """One terminal line: action, resource, what happens, the inputs that differ (secret ones never shown)."""
    shown = ", ".join(f"{k} (secret, changed)" if k in change.secret_inputs else k for k in change.inputs)
    what = effect_of(change)
    ignored = f" (ignored by ignore_changes, pulumi up keeps the previous value: {', '.join(change.ignored)})" if change.ignored else ""
    return (f"{change.action}: {change.type} {change.name}" + (f" -- {what}" if what else "") + (f" [{shown}]" if shown else "")
            + ignored)


def text(changes: list[ResourceChange]) -> str:
    shown = [*live_changes(changes), *_kept(changes)]
    return "\n".join(describe(c) for c in shown) + "\n" if shown else "no changes\n"


def with_effects(changes: list[ResourceChange], before: Evaluation, after: Evaluation) -> list[ResourceChange]:
    """Each change with what it does live, judged from both declarations of its resource."""
    def index(evaluation: Evaluation) -> dict[tuple[str, str], DeclaredResource | None]:
        found: dict[tuple[str, str], DeclaredResource | None] = {}
        for resource in evaluation.resources:
            key = (resource.type, resource.name)
            found[key] = None if key in found else resource  # ambiguous: judged without the declaration
        return found

    old, new = index(before), index(after)
    return [Change(c.type, c.name, c.action, c.inputs, c.secret_inputs, c.ignored,
                   effect=effect(c, old.get((c.type, c.name)), new.get((c.type, c.name)))) for c in changes]


def diff(before: list[dict[str, Any]], after: list[dict[str, Any]], across_stacks: bool) -> list[ResourceChange]:
    old, new = from_snapshot(before, across_stacks), from_snapshot(after, across_stacks)
    return with_effects(compare(old, new), old, new)
