"""Pulumi.yaml + Pulumi.<stack>.yaml as the Pulumi CLI hands them to the program (see cli_yaml.py):
the project's `config:` block is the base layer, a stack value replaces a project value whole, and
every value reaches the program as text (lists and objects as JSON). `secure:` values are decrypted
by the CLI; offline we cannot, so each becomes a well-formed fake of its key's kind, still secret.
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path
from typing import Any, Mapping, Optional

from .cli_yaml import CliConfigError, StackValue, go_json, load_project, load_stack, program_config

REPO_ROOT = Path(__file__).resolve().parents[2]
STACK_ORDER = {"dev": 0, "staging": 1, "prod": 2}


class StackFileError(Exception):
    """A stack that does not exist, or files the Pulumi CLI would refuse."""


def fake_secret(key: str, ciphertext: str = "") -> str:
    """A well-formed stand-in for a `secure:` value, of the key's own kind (a URL for a URL key, PEM
    for a certificate, ...), so a faked stack validates. The tag comes from the ciphertext: a changed
    secure value is a changed secret."""
    from .settings.loading import fake_template

    tag = hashlib.sha256(f"{key}:{ciphertext}".encode()).hexdigest()[:24]
    return fake_template(key).format(tag=tag)


def cli_string(value: Any) -> str:
    """The text the program gets for a value set with `pulumi config set` (a list or an object set in
    the stack file reaches it as the CLI's JSON; a number is the text typed, `inf` included)."""
    if isinstance(value, str):
        return value
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return go_json(value)


def available_stacks(root: Path = REPO_ROOT) -> list[str]:
    names = [p.name[len("Pulumi."):-len(".yaml")] for p in root.glob("Pulumi.*.yaml")]
    return sorted(names, key=lambda name: (STACK_ORDER.get(name, len(STACK_ORDER)), name))


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except FileNotFoundError:
        raise StackFileError(f"{path.name} not found in {path.parent}") from None


def _stack_path(stack: str, root: Path) -> Path:
    if stack not in available_stacks(root):
        known = ", ".join(available_stacks(root)) or "none"
        raise StackFileError(f"unknown stack '{stack}' (stacks in {root}: {known})")
    return root / f"Pulumi.{stack}.yaml"


def _shown(value: StackValue) -> Any:
    return {"secure": value.text} if value.secure and not value.object else value.text


def base_config(root: Path = REPO_ROOT) -> tuple[str, dict[str, Any]]:
    """(project name, the base layer from Pulumi.yaml as the program would get it, by full key)."""
    try:
        name, declarations = load_project(_read(root / "Pulumi.yaml"))
    except CliConfigError as error:
        raise StackFileError(f"Pulumi.yaml: {error}") from None
    base = {}
    for key, declaration in declarations.items():
        raw = declaration.get("default", declaration.get("value"))
        if raw is not None:
            base[key if ":" in key else f"{name}:{key}"] = raw if isinstance(raw, str) else go_json(raw)
    return name, base


def stack_file_config(stack: str, root: Path = REPO_ROOT) -> dict[str, Any]:
    """What Pulumi.<stack>.yaml sets, by full key, as text (`secure:` values as {"secure": ciphertext})."""
    name, _ = base_config(root)
    try:
        values, _ = load_stack(_read(_stack_path(stack, root)), name)
    except CliConfigError as error:
        raise StackFileError(f"Pulumi.{stack}.yaml: {error}") from None
    return {key: _shown(value) for key, value in values.items()}


def load_stack_config(
    stack: str,
    root: Path = REPO_ROOT,
    secrets: Optional[Mapping[str, str]] = None,
) -> tuple[str, dict[str, str], set[str]]:
    """(project name, config as the CLI passes it, secret keys) for one stack.

    `secrets` supplies plaintext for `secure:` keys (tests that need a real certificate); any
    other `secure:` value becomes a fake.
    """
    project_text, stack_text = _read(root / "Pulumi.yaml"), _read(_stack_path(stack, root))
    try:
        config, secret_keys, _ = program_config(project_text, stack_text, stack,
                                                lambda key, ciphertext: (secrets or {}).get(key) or fake_secret(key, ciphertext))
        name, _ = load_project(project_text)
    except CliConfigError as error:
        raise StackFileError(f"stack {stack}: the Pulumi CLI would refuse these files: {error}") from None
    return name, config, secret_keys
