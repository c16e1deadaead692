"""Compare what two stacks, or one stack at two git revisions, declare.

A snapshot is an evaluation as JSON with every secret input replaced by a digest (a changed secret
shows as changed, its value never) and, for stack-to-stack comparisons, the stack name replaced by
`<stack>` so that `carecircle-staging-api-blue-1` and `carecircle-prod-api-blue-1` are the same resource.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from ..offline import DeclaredResource, Evaluation
from ..stackfiles import REPO_ROOT
from .changes import ResourceChange, compare, describe, live_changes


class RevisionError(Exception):
    """A git revision that cannot be evaluated."""


def _normalize(value: Any, stack: str) -> Any:
    if isinstance(value, str):
        return re.sub(rf"(?<![A-Za-z0-9]){re.escape(stack)}(?![A-Za-z0-9])", "<stack>", value)
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
            "stack": evaluation.stack,
        }
        for resource in sorted(evaluation.resources, key=lambda r: r.urn)
    ]


def from_snapshot(items: list[dict[str, Any]], normalize: bool) -> Evaluation:
    evaluation = Evaluation(stack=items[0]["stack"] if items else "")
    for item in items:
        inputs = _normalize(item["inputs"], item["stack"]) if normalize else item["inputs"]
        evaluation.resources.append(DeclaredResource(
            type=item["type"], name=item["name"], urn=item["key"], inputs=inputs,
            secret_inputs=set(item["secret_inputs"]), parent="", protect=item["protect"], retain_on_delete=False,
            delete_before_replace=False, dependencies=[],
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


def markdown(title: str, changes: list[ResourceChange]) -> str:
    live = live_changes(changes)
    lines = [f"### {title}", ""]
    if not live:
        return "\n".join(lines + ["No resource is created, deleted or changed.", ""])
    replaced = [c for c in live if c.action == "replace" and c.type.endswith("container:Container")]
    if replaced:
        lines += [f"**{len(replaced)} container(s) replaced (delete, then create):** " + ", ".join(c.name for c in replaced), ""]
    lines += ["| action | type | resource | inputs |", "|---|---|---|---|"]
    for change in live:
        shown = ", ".join(f"{k} (secret, changed)" if k in change.secret_inputs else k for k in change.inputs) or "-"
        lines.append(f"| {change.action} | {change.type} | {change.name} | {shown} |")
    return "\n".join(lines) + "\n"


def as_json(changes: list[ResourceChange]) -> str:
    return json.dumps([{"action": c.action, "type": c.type, "name": c.name, "inputs": list(c.inputs),
                        "secret_inputs": list(c.secret_inputs)} for c in live_changes(changes)], indent=2) + "\n"


def text(changes: list[ResourceChange]) -> str:
    live = live_changes(changes)
    return "\n".join(describe(c) for c in live) + "\n" if live else "no changes\n"


def diff(before: list[dict[str, Any]], after: list[dict[str, Any]], across_stacks: bool) -> list[ResourceChange]:
    return compare(from_snapshot(before, across_stacks), from_snapshot(after, across_stacks))
