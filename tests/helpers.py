"""Assertion helpers over an offline Evaluation, shared by the component tests."""

from __future__ import annotations

import base64
import binascii
import copy
import io
import tarfile

from carecircle.audit.blast_radius import ON_ENGINE, rehearsal_stack
from carecircle.offline import DeclaredResource, Evaluation

# staging and prod always run on Swarm; their config rehearsed on one Docker engine (the engine platform
# that dev uses) is a dev stack named rehearsal_stack(<stack>), for the tests of what the engine declares.
ENGINE = ON_ENGINE

CONTAINER = "docker:index/container:Container"
COMMAND = "command:local:Command"
NETWORK = "docker:index/network:Network"
VOLUME = "docker:index/volume:Volume"


# prod runs only digest-pinned images: the data services' images for prod tests that run them here.
PINNED = "@sha256:" + "a" * 64
DATA_SERVICES = {"carecircle:postgresMode": "container", "carecircle:redisMode": "container", "carecircle:rabbitmqMode": "container",
                 "carecircle:postgresImage": "postgres:15" + PINNED, "carecircle:redisImage": "redis:7-alpine" + PINNED,
                 "carecircle:rabbitmqImage": "rabbitmq:3-management" + PINNED,
                 "carecircle:postgresExporterImage": "prometheuscommunity/postgres-exporter:v0.15.0" + PINNED,
                 "carecircle:redisExporterImage": "oliver006/redis_exporter:v1.62.0" + PINNED}


def _as_on_engine(stack: str, overrides: dict | None) -> dict:
    """evaluate_stack / stack_settings arguments for a stack's config on the engine platform: dev as it
    is, staging's or prod's as their rehearsal."""
    if stack == "dev":
        return {"overrides": overrides}
    return {"overrides": {**ENGINE, **(overrides or {})}, "as_stack": rehearsal_stack(stack)}


def on_engine(stack: str, overrides: dict | None = None, **kwargs) -> Evaluation:
    """A stack's config on the engine platform: dev as it is, staging's or prod's as their rehearsal."""
    from carecircle.offline import evaluate_stack

    return evaluate_stack(stack, **_as_on_engine(stack, overrides), **kwargs)


def engine_settings(stack: str, overrides: dict | None = None, **kwargs):
    """The settings on_engine(stack, overrides) runs with."""
    from carecircle.offline import stack_settings

    return stack_settings(stack, **_as_on_engine(stack, overrides), **kwargs)


def strict_on_engine(stack: str, overrides: dict | None = None, **kwargs) -> Evaluation:
    """staging's or prod's config on one engine with its gateway public as theirs is, as a program would
    declare it in that stack (declared_in): what the policy pack's rules for containers there judge."""
    return declared_in(on_engine(stack, overrides={"carecircle:gatewayBindAddress": "0.0.0.0", **(overrides or {})}, **kwargs), stack)


def declared_in(evaluation: Evaluation, stack: str) -> Evaluation:
    """A rehearsal's declaration as a program would make it in the stack `stack` (staging, prod): the
    engine names that stack in every URN, and data volumes are protected there (runtime.protect_data);
    Docker names stay the rehearsal's. The settings refuse such a stack (staging and prod run on Swarm);
    the policy pack, which trusts no settings, must still judge what one declares."""
    declared = copy.deepcopy(evaluation)
    for resource in declared.resources:
        resource.urn = resource.urn.replace(f"urn:pulumi:{evaluation.stack}::", f"urn:pulumi:{stack}::", 1)
        if resource.type == VOLUME:
            resource.protect = resource.retain_on_delete = True
    return declared


def container(evaluation: Evaluation, docker_name: str) -> DeclaredResource:
    containers = evaluation.containers
    assert docker_name in containers, f"{evaluation.stack} has no container {docker_name}; it has {sorted(containers)}"
    return containers[docker_name]


def networks_of(resource: DeclaredResource) -> list[str]:
    return sorted(n["name"] for n in resource.inputs.get("networksAdvanced", []))


def published(resource: DeclaredResource) -> list[tuple[str, int, int]]:
    """(bind address, host port, container port) of each published port."""
    return sorted((p.get("ip", "0.0.0.0"), int(p["external"]), int(p["internal"])) for p in resource.inputs.get("ports", []))


def env_names(resource: DeclaredResource) -> set[str]:
    return {entry.split("=", 1)[0] for entry in resource.inputs["envs"]}


def env(resource: DeclaredResource) -> dict[str, str]:
    return dict(entry.split("=", 1) for entry in resource.inputs["envs"])


def internal_networks(evaluation: Evaluation) -> dict[str, bool]:
    return {r.inputs["name"]: bool(r.inputs.get("internal", False)) for r in evaluation.of_type(NETWORK)}


def parent_of(evaluation: Evaluation, resource: DeclaredResource) -> DeclaredResource:
    return evaluation.by_urn(resource.parent)


def bundle_files(bundle: str) -> dict[str, str]:
    """The files of a gateway configuration bundle (base64 tar), by path."""
    with tarfile.open(fileobj=io.BytesIO(base64.b64decode(bundle))) as tar:
        return {m.name: tar.extractfile(m).read().decode() for m in tar.getmembers()}  # type: ignore[union-attr]


def decoded_texts(value) -> str:
    """Every string inside value, plus its base64 decoding where it is base64: a secret must not
    hide in a plain input merely by being encoded."""
    texts = []
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, str):
            texts.append(item)
            try:
                texts.append(base64.b64decode(item, validate=True).decode("latin-1"))
            except (binascii.Error, ValueError):
                pass
    return "\n".join(texts)
