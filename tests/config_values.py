"""What the config tests need to know about every key: its kind, and a (stack, value) that a stack
accepts, so a test can change only that value and know the change is what was refused."""

from __future__ import annotations

import json
import typing
from dataclasses import dataclass
from typing import Any, Optional, Union

from pydantic import BaseModel, SecretStr

from carecircle.settings import full_key
from carecircle.settings.loading import FIELDS
from carecircle.stackfiles import load_stack_config

STACKS = ("prod", "staging", "dev")
# Keys whose committed value is absent or whose example is a placeholder: a valid value to start from.
BASELINES: dict[str, tuple[str, Any]] = {
    "carecircle:jwtSecret": ("dev", "x" * 40),
    "carecircle:sentryDsn": ("prod", "https://0123456789abcdef@o0.ingest.sentry.io/42"),
    "carecircle:apiGreenImage": ("prod", "ghcr.io/carecircle/api:1.4.3"),
    "carecircle:gatewayTlsCertificatePath": ("staging", "/etc/carecircle/tls/fullchain.pem"),
    "carecircle:gatewayTlsKeyPath": ("staging", "/etc/carecircle/tls/privkey.pem"),
    "carecircle:gatewayTlsCertificate": ("prod", "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"),
    "carecircle:gatewayTlsKey": ("prod", "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"),
    "carecircle:otelExporterEndpoint": ("prod", "https://otel-collector.carecircle.example:4318"),
    "carecircle:gatewayPreviewPort": ("prod", "8081"),
    "docker:registryAuth": ("prod", '[{"address": "ghcr.io", "username": "carecircle-deploy", "password": "token-0123456789"}]'),
}


def _unwrap(annotation: Any) -> Any:
    if typing.get_origin(annotation) is Union:
        return _unwrap(next(arg for arg in typing.get_args(annotation) if arg is not type(None)))
    if typing.get_origin(annotation) is typing.Annotated:
        return _unwrap(typing.get_args(annotation)[0])
    return annotation


def kind(alias: str) -> str:
    """str, int, float, bool, list, secret or choice (a Literal)."""
    annotation = _unwrap(next(f for f in FIELDS.values() if f.alias == alias).annotation)
    if annotation is SecretStr:
        return "secret"
    if typing.get_origin(annotation) is typing.Literal:
        return "choice"
    if typing.get_origin(annotation) is list:
        element = typing.get_args(annotation)[0]
        return "credentials" if isinstance(element, type) and issubclass(element, BaseModel) else "list"
    return annotation.__name__


@dataclass(frozen=True)
class Key:
    key: str  # full key, e.g. carecircle:apiPort
    kind: str
    stack: str
    value: Any  # as the CLI passes it (text), or a Python value for a secret

    @property
    def secret(self) -> bool:
        return self.kind in ("secret", "credentials")


def every_key() -> list[Key]:
    configs = {stack: load_stack_config(stack) for stack in STACKS}
    keys = []
    for field in FIELDS.values():
        key = full_key(field.alias)
        stack, value = BASELINES.get(key, (None, None))
        if stack is None:
            stack = next((s for s in STACKS if key in configs[s][1]), "dev")
            value = configs[stack][1].get(key)
            if value is None:  # the key's example, as the CLI would pass it (lists as JSON text)
                example = (field.json_schema_extra or {}).get("example")
                value = json.dumps(example) if kind(field.alias) == "list" else example
        keys.append(Key(key, kind(field.alias), stack, value))
    return keys


def of_kind(*kinds: str) -> list[Key]:
    return [k for k in every_key() if k.kind in kinds]


def override(key: Key, value: Optional[Any] = None) -> dict[str, dict[str, Any]]:
    """evaluate_stack keyword arguments that set `key` to `value` (its baseline when None)."""
    value = key.value if value is None else value
    return {"secrets": {key.key: value}} if key.secret else {"overrides": {key.key: value}}
