"""Read Pulumi.yaml + Pulumi.<stack>.yaml the way the Pulumi CLI hands config to a program.

The CLI merges the project's `config:` block (the base layer) with the stack file, key by key
(a stack value replaces the project value whole), and passes every value as a string: scalars
as their text, lists and objects as JSON. `secure:` values are decrypted by the CLI; offline we
cannot, so each is replaced by a well-formed fake and still marked secret.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Mapping, Optional

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
PROJECT_SCHEMA_KEYS = {"type", "description", "default", "value", "secret", "items"}

class StackFileError(Exception):
    """A stack that does not exist or a YAML file that cannot be read."""


def fake_secret(key: str, ciphertext: str = "") -> str:
    """A well-formed stand-in for a `secure:` value, of the key's own kind (a URL for a URL key, PEM
    for a certificate, ...), so a faked stack validates. The tag comes from the ciphertext: a changed
    secure value is a changed secret."""
    from .settings.loading import fake_template

    tag = hashlib.sha256(f"{key}:{ciphertext}".encode()).hexdigest()[:24]
    return fake_template(key).format(tag=tag)


def cli_string(value: Any) -> str:
    """How the CLI passes a YAML value to the program."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise StackFileError(f"{path.name} not found in {path.parent}") from None
    except yaml.YAMLError as error:
        raise StackFileError(f"{path.name} is not valid YAML: {error}") from None
    if not isinstance(data, dict):
        raise StackFileError(f"{path.name} must be a YAML mapping")
    return data


STACK_ORDER = {"dev": 0, "staging": 1, "prod": 2}


def available_stacks(root: Path = REPO_ROOT) -> list[str]:
    names = [p.name[len("Pulumi."):-len(".yaml")] for p in root.glob("Pulumi.*.yaml")]
    return sorted(names, key=lambda name: (STACK_ORDER.get(name, len(STACK_ORDER)), name))


def base_config(root: Path = REPO_ROOT) -> tuple[str, dict[str, Any]]:
    """(project name, the `config:` block of Pulumi.yaml as YAML values under their full keys)."""
    project = _read_yaml(root / "Pulumi.yaml")
    name = project.get("name")
    base = {}
    for key, value in (project.get("config") or {}).items():
        # A mapping of schema keys declares the value (`value:`/`default:`); objects must use `value:`.
        if isinstance(value, dict) and set(value) <= PROJECT_SCHEMA_KEYS:
            value = value.get("value", value.get("default"))
        base[key if ":" in key else f"{name}:{key}"] = value
    return name, base


def stack_file_config(stack: str, root: Path = REPO_ROOT) -> dict[str, Any]:
    """The `config:` block of Pulumi.<stack>.yaml, `secure:` values left as they are."""
    if stack not in available_stacks(root):
        known = ", ".join(available_stacks(root)) or "none"
        raise StackFileError(f"unknown stack '{stack}' (stacks in {root}: {known})")
    project_name = _read_yaml(root / "Pulumi.yaml").get("name")
    config = _read_yaml(root / f"Pulumi.{stack}.yaml").get("config") or {}
    return {key if ":" in key else f"{project_name}:{key}": value for key, value in config.items()}


def load_stack_config(
    stack: str,
    root: Path = REPO_ROOT,
    secrets: Optional[Mapping[str, str]] = None,
) -> tuple[str, dict[str, str], set[str]]:
    """(project name, config as the CLI passes it, secret keys) for one stack.

    `secrets` supplies plaintext for `secure:` keys (tests that need a real certificate); any
    other `secure:` value becomes a fake.
    """
    overrides = stack_file_config(stack, root)
    name, base = base_config(root)
    config = {key: cli_string(value) for key, value in base.items()}
    secret_keys: set[str] = set()
    for key, value in overrides.items():
        if isinstance(value, dict) and set(value) == {"secure"}:
            secret_keys.add(key)
            value = (secrets or {}).get(key, fake_secret(key, str(value["secure"])))
        config[key] = cli_string(value)
    return name, config, secret_keys
