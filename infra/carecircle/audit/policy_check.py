"""Run the policy pack's validators (policy/carecircle_policies.py) on an offline evaluation, the
same functions `pulumi preview --policy-pack policy` runs."""

from __future__ import annotations

import importlib.util
import sys
from dataclasses import dataclass
from types import ModuleType

from pulumi_policy import (
    PolicyCustomTimeouts,
    PolicyResource,
    PolicyResourceOptions,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
)

from ..offline import DeclaredResource
from ..stackfiles import REPO_ROOT


@dataclass(frozen=True)
class Violation:
    policy: str
    message: str


def load_policies(root=REPO_ROOT) -> ModuleType:
    """The pack's rules module, imported from policy/ without putting it on sys.path."""
    name = "carecircle_policies"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, root / "policy" / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def policy_resource(resource: DeclaredResource) -> PolicyResource:
    options = PolicyResourceOptions(
        protect=resource.protect, ignore_changes=[], delete_before_replace=resource.delete_before_replace,
        aliases=[], custom_timeouts=PolicyCustomTimeouts(0, 0, 0), additional_secret_outputs=[], parent=resource.parent,
    )
    return PolicyResource(resource.type, resource.inputs, resource.urn, resource.name, options, None, None, [], {})


def _defaults(policy) -> dict:
    schema = getattr(policy, "config_schema", None)
    return {key: spec["default"] for key, spec in (schema.properties.items() if schema else []) if "default" in spec}


def check(resources: list[DeclaredResource], config: dict[str, dict] | None = None) -> list[Violation]:
    """Violations of every policy; `config` overrides a policy's config by policy name."""
    violations: list[Violation] = []
    policy_resources = [policy_resource(r) for r in resources]
    for policy in load_policies().POLICIES:
        policy_config = {**_defaults(policy), **(config or {}).get(policy.name, {})}
        report = lambda message, urn=None, name=policy.name: violations.append(Violation(name, message))  # noqa: E731
        if isinstance(policy, ResourceValidationPolicy):
            for resource in policy_resources:
                args = ResourceValidationArgs(resource.resource_type, resource.props, resource.urn, resource.name,
                                              resource.opts, None, policy_config)
                for validate in policy.validate if isinstance(policy.validate, list) else [policy.validate]:
                    validate(args, report)
        else:
            policy.validate(StackValidationArgs(policy_resources, policy_config), report)
    return violations
