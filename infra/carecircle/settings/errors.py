"""How a config problem is reported: the key, what is wrong, and the command that fixes it."""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass
from typing import Any, Optional

NAMESPACE = "carecircle"
DOCKER_HOST_KEY = "docker:host"
# The docker provider's registry credentials: read by the default provider itself, and by the program for
# the providers it declares (every node pulls with them).
REGISTRY_AUTH_KEY = "docker:registryAuth"
# The docker provider's extra ssh flags: read by the default provider itself, and by the program for the
# providers it declares and for the host-key rule.
SSH_OPTS_KEY = "docker:sshOpts"


@dataclass(frozen=True)
class ConfigProblem:
    """One offending key: what is wrong and the command that fixes it."""

    key: str  # full config key, e.g. carecircle:apiBlueReplicas
    path: str  # position inside a structured value, e.g. [0].path; "" for the key itself
    message: str
    fix: str


class ConfigError(Exception):
    """Invalid stack config. Its text is the whole message shown to the operator."""

    def __init__(self, stack: str, problems: list[ConfigProblem]):
        self.stack = stack
        self.problems = problems
        self.declared: list = []  # filled by the offline harness: what got declared before the error (nothing)
        super().__init__(self.render())

    def render(self) -> str:
        count = len(self.problems)
        lines = [f"Invalid configuration for stack '{self.stack}' ({count} problem{'s' if count != 1 else ''}); nothing was declared."]
        for problem in self.problems:
            lines.append(f"  - {problem.key}{problem.path}: {problem.message}")
            lines.append(f"      fix: {problem.fix}")
        return "\n".join(lines)


def full_key(alias: str) -> str:
    return alias if ":" in alias else f"{NAMESPACE}:{alias}"


def _quote(value: str) -> str:
    if value.startswith("$("):  # a command substitution the operator's shell should run
        return f'"{value}"'
    return shlex.quote(value)


def fix_command(stack: str, key: str, fix: Any, *, path: str = "", secret: bool = False, structured: bool = False) -> str:
    """The command that sets `key` (at `path`) to `fix`; an empty fix means remove the key."""
    if fix == "":
        return f"pulumi config rm {'--path ' if path else ''}{_quote(key + path)} --stack {stack}"
    if structured and not path and secret and isinstance(fix, list) and fix and isinstance(fix[0], dict):
        # A list of objects holding secrets: one --path command per field, each stored encrypted.
        return "; ".join(f"pulumi config set --path --secret {_quote(f'{key}[0].{field}')} {_quote(str(value))} --stack {stack}"
                         for field, value in fix[0].items())
    if structured and not path:
        return f"set {key} in Pulumi.{stack}.yaml, e.g. {fix if isinstance(fix, str) else json.dumps(fix)}"
    text = str(fix).lower() if isinstance(fix, bool) else str(fix)
    if path:
        return f"pulumi config set --path {'--secret ' if secret else ''}{_quote(key + path)} {_quote(text)} --stack {stack}"
    return f"pulumi config set {'--secret ' if secret else ''}{key} {_quote(text)} --stack {stack}"


def problem(stack: str, key: str, message: str, fix: Optional[str] = None, path: str = "") -> ConfigProblem:
    """A problem whose fix is given whole (or, by default, removing the key)."""
    return ConfigProblem(key=key, path=path, message=message, fix=fix or f"pulumi config rm {key} --stack {stack}")
