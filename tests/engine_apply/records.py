"""What the applier keeps (its state, like a stack's checkpoint) and what it reports of an apply."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Optional

from carecircle.offline import DeclaredResource


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
    changed: dict[str, list[str]] = field(default_factory=dict)  # name -> changed paths, as the provider's diff says
    commands: dict[str, CommandRun] = field(default_factory=dict)  # name -> its create/update run (its outputs)
    runs: list[CommandRun] = field(default_factory=list)  # every run, delete runs included
    warnings: list[str] = field(default_factory=list)
    requests: list[ApiRequest] = field(default_factory=list)
    refreshed: dict[str, list[str]] = field(default_factory=dict)  # name -> paths a refresh found changed

    def step_index(self, operation: str, name: str) -> int:
        return self.steps.index((operation, name))

    def requests_to(self, method: str, path_pattern: str) -> list[ApiRequest]:
        return [r for r in self.requests if r.method == method and re.fullmatch(path_pattern, r.path)]


@dataclass
class Live:
    """One resource in the applier's state: what Pulumi recorded of it."""

    declared: DeclaredResource
    inputs: dict  # the inputs as recorded (references resolved, ignore_changes applied)
    state: dict  # the provider's outputs: what it read back after its last create, update or refresh
    id: Optional[str]  # real id on the engine; None when nothing lives on an engine
    host: Optional[str]
    seq: int
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

    @property
    def outputs(self) -> dict:
        """A command's outputs (stdout, stderr)."""
        return {k: self.state[k] for k in ("stdout", "stderr") if k in self.state}
