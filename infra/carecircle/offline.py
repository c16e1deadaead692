"""Evaluate a stack offline: run the program under Pulumi's mocks and record what it declares.

Used by the tests and by `python infra/cli.py`. The mocks behave like the engine where the
program's correctness depends on it: preview is off (every apply runs), generated passwords come
back as secrets, and each registration keeps its options (protect, parent, dependencies) and the
secret markers of its inputs, which the stock MockResourceArgs drop.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

import pulumi
from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime import rpc
from pulumi.runtime import settings as runtime_settings
from pulumi.runtime.stack import run_in_stack
from pulumi.runtime.sync_await import _sync_await

from .components.certificate import ACME_CERTIFICATE_TYPE, OFFLINE_CERTIFICATE, OFFLINE_PRIVATE_KEY
from .provider_semantics import AUTONAMED, replaces
from .settings import ConfigError
from .stackfiles import REPO_ROOT, load_stack_config


@dataclass
class DeclaredResource:
    type: str
    name: str
    urn: str
    inputs: dict[str, Any]
    secret_inputs: set[str]  # top-level input names whose value is (or holds) a secret
    parent: str
    protect: bool
    retain_on_delete: bool
    delete_before_replace: bool
    dependencies: list[str]
    # The provider reference ("<provider urn>::<id>"); empty for the default provider of its package.
    provider: str = ""
    ignore_changes: tuple[str, ...] = ()
    # The name Pulumi generated because the program gave none (<logical name>-<7 hex>); "" otherwise.
    autoname: str = ""
    id: str = ""  # the id the engine (here, the mocks) gave it
    # input name -> the urns whose outputs that input took (the engine's propertyDependencies)
    property_dependencies: dict[str, list[str]] = field(default_factory=dict)
    # Outputs the engine makes secret whatever the provider returns (additional_secret_outputs).
    additional_secret_outputs: tuple[str, ...] = ()


@dataclass
class Evaluation:
    stack: str
    resources: list[DeclaredResource] = field(default_factory=list)
    outputs: dict[str, Any] = field(default_factory=dict)
    secret_outputs: set[str] = field(default_factory=set)
    # Plaintext of every secret the stack handled (faked config secrets, generated passwords), so a
    # report can tell which values are secret without ever showing them.
    secret_values: set[str] = field(default_factory=set)

    def of_type(self, type_: str) -> list[DeclaredResource]:
        return [r for r in self.resources if r.type == type_]

    def get(self, type_: str, name: str) -> DeclaredResource:
        """The resource, or an AssertionError naming what was declared (never a vacuous pass)."""
        for resource in self.resources:
            if resource.type == type_ and resource.name == name:
                return resource
        declared = sorted(r.name for r in self.of_type(type_))
        raise AssertionError(f"stack {self.stack} declares no {type_} named {name!r}; it has {declared}")

    @property
    def containers(self) -> dict[str, DeclaredResource]:
        """Containers by their Docker name."""
        return {r.inputs["name"]: r for r in self.of_type("docker:index/container:Container")}

    def by_urn(self, urn: str) -> DeclaredResource:
        return next(r for r in self.resources if r.urn == urn)


def _holds_secret(value: Any) -> bool:
    if rpc.is_rpc_secret(value):
        return True
    if isinstance(value, dict):
        return any(_holds_secret(v) for v in value.values())
    if isinstance(value, list):
        return any(_holds_secret(v) for v in value)
    return False


def _unwrap_secrets(value: Any) -> Any:
    value = rpc.unwrap_rpc_secret(value)
    if isinstance(value, dict):
        return {k: _unwrap_secrets(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_unwrap_secrets(v) for v in value]
    return value


def _deserialize(struct: Any) -> tuple[dict[str, Any], set[str]]:
    """Plain values, and the top-level keys that were (or held) secrets."""
    wrapped = rpc.deserialize_properties(struct)
    return _unwrap_secrets(wrapped), {key for key, value in wrapped.items() if _holds_secret(value)}


def _leaves(value: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """(dotted path, value) of every leaf of an input value; list elements share their list's path."""
    if isinstance(value, dict):
        return [leaf for key, item in value.items() for leaf in _leaves(item, f"{prefix}.{key}" if prefix else key)]
    if isinstance(value, list) and value and all(isinstance(item, dict) for item in value):
        return [leaf for item in value for leaf in _leaves(item, prefix)]
    return [(prefix, value)]


def _fake_value(name: str, length: int) -> str:
    digest = hashlib.sha256(name.encode()).hexdigest()
    return (digest * (length // len(digest) + 1))[:length]


class EngineLikeMocks(pulumi.runtime.Mocks):
    """Resource outputs as the engine would return them, for the resources this program uses."""

    def __init__(self, evaluation: Optional["Evaluation"] = None, renamed: Optional[Mapping[str, int]] = None,
                 resource_outputs: Optional[Mapping[str, Mapping[str, Any]]] = None):
        self.evaluation = evaluation
        # Logical name -> how many times the engine has named it anew (replacements it was asked for, `--replace`).
        self.renamed = dict(renamed or {})
        # (type, name) -> the resource's ignore_changes paths (filled by RecordingMonitor before each registration)
        self.ignored: dict[tuple[str, str], tuple[str, ...]] = {}
        # Outputs a real provider returned, by resource name (a test that ran it, as the engine does).
        self.resource_outputs = resource_outputs or {}

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[Optional[str], dict]:
        state = dict(args.inputs)
        if args.typ in AUTONAMED and "name" not in args.inputs:
            # The engine names it <logical name>-<7 random hex> and, on a replacement, anew; here the
            # suffix follows the inputs that replace it, so a replacement shows as a new name (and id). An
            # ignored input never replaces (the engine keeps its previous value).
            ignored = self.ignored.get((args.typ, args.name), ())
            # Pairs, not a dict: the elements of a list share their path (two attachments' ids).
            replacing = [(path, value) for path, value in _leaves(args.inputs) if replaces(args.typ, path)
                         and not any(path == p or path.startswith(p + ".") for p in ignored)]
            if self.renamed.get(args.name):
                replacing.append(("(replaced)", self.renamed[args.name]))
            state["name"] = f"{args.name}-{hashlib.sha256(json.dumps(replacing, sort_keys=True, default=str).encode()).hexdigest()[:7]}"
            return f"{state['name']}-id", state
        if args.typ in ("random:index/randomPassword:RandomPassword", "random:index/randomString:RandomString"):
            value = _fake_value(args.name, int(args.inputs.get("length", 16)))
            # The engine applies the provider's additional_secret_outputs; the mock monitor does not.
            state["result"] = pulumi.Output.secret(value) if args.typ.endswith("RandomPassword") else value
            if self.evaluation is not None and args.typ.endswith("RandomPassword"):
                self.evaluation.secret_values.add(value)
        elif args.typ == "random:index/randomId:RandomId":
            # A new value whenever its keepers change, as the provider replaces it then.
            keepers = json.dumps(args.inputs.get("keepers") or {}, sort_keys=True, default=str)
            state["hex"] = hashlib.sha256(f"{args.name}:{keepers}".encode()).hexdigest()[: 2 * int(args.inputs.get("byteLength", 4))]
        elif args.typ == "docker:index/image:Image":
            state["repoDigest"] = "sha256:" + hashlib.sha256(args.name.encode()).hexdigest()
        elif args.typ == ACME_CERTIFICATE_TYPE:
            outputs = self.resource_outputs.get(args.name) or {
                "certificate": OFFLINE_CERTIFICATE, "private_key": OFFLINE_PRIVATE_KEY, "not_before": "", "not_after": ""}
            # additional_secret_outputs: the engine makes the key a secret.
            state.update({**outputs, "private_key": pulumi.Output.secret(outputs["private_key"])})
            if self.evaluation is not None:
                self.evaluation.secret_values.add(outputs["private_key"])
        return f"{args.name}-id", state

    def call(self, args: pulumi.runtime.MockCallArgs) -> dict:
        return {}


class RecordingMonitor(pulumi_mocks.MockMonitor):
    def __init__(self, mocks: pulumi.runtime.Mocks, evaluation: Evaluation):
        super().__init__(mocks)
        self.evaluation = evaluation
        # The mock monitor runs in pool threads and wants an event loop in each (pulumi's mocks create
        # one per thread and never close it); these are created here so the evaluation can close them.
        self.thread_loops: list[asyncio.AbstractEventLoop] = []

    def _thread_loop(self) -> None:
        try:
            asyncio.get_event_loop_policy().get_event_loop()
        except RuntimeError:
            loop = asyncio.new_event_loop()
            asyncio.set_event_loop(loop)
            self.thread_loops.append(loop)

    def RegisterResource(self, request):
        self._thread_loop()
        self.mocks.ignored[(request.type, request.name)] = tuple(request.ignoreChanges)
        response = super().RegisterResource(request)
        if request.type != "pulumi:pulumi:Stack":
            inputs, secret_inputs = _deserialize(request.object)
            outputs, _ = _deserialize(response.object)
            self.evaluation.resources.append(DeclaredResource(
                type=request.type,
                name=request.name,
                urn=response.urn,
                inputs=inputs,
                secret_inputs=secret_inputs,
                parent=request.parent,
                protect=request.protect,
                retain_on_delete=request.retainOnDelete,
                delete_before_replace=request.deleteBeforeReplace,
                dependencies=list(request.dependencies),
                property_dependencies={key: list(deps.urns) for key, deps in request.propertyDependencies.items()},
                provider=request.provider,
                ignore_changes=tuple(request.ignoreChanges),
                autoname=outputs.get("name", "") if request.type in AUTONAMED and "name" not in inputs else "",
                id=response.id,
                additional_secret_outputs=tuple(request.additionalSecretOutputs),
            ))
        return response

    def RegisterResourceOutputs(self, request):
        self._thread_loop()
        if "::pulumi:pulumi:Stack::" in request.urn:
            self.evaluation.outputs, self.evaluation.secret_outputs = _deserialize(request.outputs)
        return super().RegisterResourceOutputs(request)


def evaluate_config(
    stack: str,
    project: str,
    config: Mapping[str, str],
    secret_keys: set[str],
    program: Optional[Callable[[], None]] = None,
    renamed: Optional[Mapping[str, int]] = None,
    resource_outputs: Optional[Mapping[str, Mapping[str, Any]]] = None,
) -> Evaluation:
    """Run `program` (default: the CareCircle program) under mocks with this config. `renamed`: logical name
    -> how many times a replacement (a `--replace`, or a change the provider replaces) named that resource
    anew: each time, a new generated name, as the engine's Check without the old inputs draws.
    `resource_outputs` (by resource name) are what real providers returned for resources the mocks cannot
    make up."""
    if program is None:
        from .program import declare_stack as program

    evaluation = Evaluation(stack=stack, secret_values={config[key] for key in secret_keys if key in config})
    # Each evaluation runs on its own event loop and thread pool, closed when it ends with every loop
    # the pool's threads needed. Event loops left to the garbage collector at interpreter exit (after
    # their sockets) printed "Exception ignored in: BaseEventLoop.__del__ ... Invalid file descriptor".
    loop = asyncio.new_event_loop()
    pool = ThreadPoolExecutor(thread_name_prefix="carecircle-mocks")
    loop.set_default_executor(pool)
    asyncio.set_event_loop(loop)
    pulumi.runtime.set_all_config(dict(config), sorted(secret_keys))
    mocks = EngineLikeMocks(evaluation, renamed, resource_outputs)
    monitor = RecordingMonitor(mocks, evaluation)
    pulumi.runtime.set_mocks(mocks, project=project, stack=stack, preview=False, monitor=monitor)
    # set_mocks keeps the previous run's root stack (pulumi#8280); each evaluation gets its own.
    runtime_settings.ROOT.set(None)
    try:
        _sync_await(run_in_stack(program))
    except ConfigError as error:
        error.declared = evaluation.resources
        raise
    finally:
        pool.shutdown(wait=True)
        for thread_loop in monitor.thread_loops:
            thread_loop.close()
        asyncio.set_event_loop(None)
        loop.close()
    return evaluation


def stack_config(
    stack: str,
    root: Path = REPO_ROOT,
    overrides: Optional[Mapping[str, Any]] = None,
    secrets: Optional[Mapping[str, str]] = None,
) -> tuple[str, dict[str, str], set[str]]:
    """(project, config, secret keys) of a stack from its files, with `overrides` replacing keys
    (None removes one) as `pulumi config set/rm` would, and `secrets` set as secret keys."""
    from .stackfiles import cli_string

    project, config, secret_keys = load_stack_config(stack, root, secrets)
    for key, value in (overrides or {}).items():
        if value is None:
            config.pop(key, None)
            secret_keys.discard(key)
        else:
            config[key] = cli_string(value)
    for key, value in (secrets or {}).items():
        config[key] = value
        secret_keys.add(key)
    return project, config, secret_keys


def evaluate_stack(
    stack: str,
    root: Path = REPO_ROOT,
    overrides: Optional[Mapping[str, Any]] = None,
    secrets: Optional[Mapping[str, str]] = None,
    renamed: Optional[Mapping[str, int]] = None,
    resource_outputs: Optional[Mapping[str, Mapping[str, Any]]] = None,
    as_stack: Optional[str] = None,
) -> Evaluation:
    """Evaluate a stack from its files, changed as stack_config says (and `renamed` named anew).
    `as_stack`: run the file as the stack of that name (its environment, rules and Docker names), as
    a stack initialised with a copy of this one's config would run."""
    return evaluate_config(as_stack or stack, *stack_config(stack, root, overrides, secrets), renamed=renamed,
                           resource_outputs=resource_outputs)


def stack_settings(stack: str, root: Path = REPO_ROOT, overrides: Optional[Mapping[str, Any]] = None,
                   secrets: Optional[Mapping[str, str]] = None, as_stack: Optional[str] = None):
    """The validated settings of a stack from its files (changed as stack_config says, run as
    `as_stack` as evaluate_stack says), without running the program."""
    from .settings import parse_settings

    _, config, secret_keys = stack_config(stack, root, overrides, secrets)
    return parse_settings(as_stack or stack, config, secret_keys)
