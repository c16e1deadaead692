"""Private images on a real engine: a real registry with credentials (Debian's docker-registry, htpasswd)
in the engine's network namespace on 127.0.0.1 (a loopback registry needs no TLS), and what the provider
sends it: the Go client's registry query on a service create (digest pin, platforms), X-Registry-Auth from
the provider's registry_auth on creates and updates, and a container's pull with those credentials."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import docker.errors
import pulumi
import pulumi_docker as dk
import pytest

from engine_apply import SERVICE, EngineError
from real_engine import IMAGE, applier_on, covers, evaluate
from registry_server import RegistryServer


@pytest.fixture(scope="module")
def registry(engine, tmp_path_factory):
    server = RegistryServer(root=Path(tmp_path_factory.mktemp("registry")), address="127.0.0.1", netns=engine.netns).start()
    try:
        pinned = server.push(engine.client, IMAGE, "engapply/busybox:1")
        yield server, pinned
    finally:
        server.stop()


def forget(engine, reference: str) -> None:
    """Drop the engine's own references to the registry's copy (its tag and its digest), so that using it means
    pulling it (the layers stay, under the local tag)."""
    name = reference.split("@", 1)[0]
    for ref in (name, f"{name.rsplit(':', 1)[0]}@{reference.split('@', 1)[1]}"):
        try:
            engine.api.remove_image(ref)
        except docker.errors.NotFound:
            pass


def service(image: str, provider: pulumi.ProviderResource | None = None, platforms: bool = False):
    return lambda: dk.Service("svc", task_spec=dk.ServiceTaskSpecArgs(
        container_spec=dk.ServiceTaskSpecContainerSpecArgs(image=image, commands=["sleep", "3600"]),
        placement=dk.ServiceTaskSpecPlacementArgs(platforms=[dk.ServiceTaskSpecPlacementPlatformArgs(os="linux", architecture="arm64")])
        if platforms else None),
        opts=pulumi.ResourceOptions(provider=provider))


def test_a_service_created_from_a_tag_is_pinned_to_its_digest_and_the_next_up_rolls_it_back_to_the_tag(engine, registry, uid):
    server, pinned = registry
    tag = pinned.split("@", 1)[0]
    with applier_on(engine, default_registry_auth=server.registry_auth()) as applier:
        result = applier.apply(evaluate(engine, service(tag, platforms=True)))
        [distribution] = result.requests_to("GET", r"/distribution/.*/json")
        assert json.loads(base64.urlsafe_b64decode(distribution.headers["X-Registry-Auth"]))["username"] == server.username
        spec = engine.api.inspect_service(applier.real_id("svc"))["Spec"]["TaskTemplate"]
        assert spec["ContainerSpec"]["Image"] == pinned  # the client pinned the tag
        assert spec["Placement"]["Platforms"] == [{"Architecture": "amd64", "OS": "linux"}]  # the registry's, not the declared arm64
        state = applier.live(SERVICE, "svc").state["taskSpec"]
        assert state["containerSpec"]["image"] == pinned
        # The provider diffs against that: the declared tag (and platform) are a change, on the very next run.
        assert applier.preview(evaluate(engine, service(tag, platforms=True)))["svc"] == \
            ("update", ["taskSpec.containerSpec.image", "taskSpec.placement.platforms.architecture"])
        assert applier.apply(evaluate(engine, service(tag, platforms=True))).updated == ["svc"]
        assert engine.api.inspect_service(applier.real_id("svc"))["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"] == tag
        # Declared by digest, with the platforms the registry reports: nothing to do after the create.
        applier.apply(evaluate(engine, service(pinned)))
        assert applier.preview(evaluate(engine, service(pinned)))["svc"][0] == "same"


def test_without_credentials_the_registry_is_not_asked_and_the_tag_stays_a_tag(engine, registry, uid):
    _, pinned = registry
    tag = pinned.split("@", 1)[0]
    with applier_on(engine) as applier:
        result = applier.apply(evaluate(engine, service(tag)))
        assert any("could not be accessed on a registry to record" in w for w in result.warnings)
        assert engine.api.inspect_service(applier.real_id("svc"))["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"] == tag


@covers("pulumi:providers:docker", "registryAuth")
@covers("docker:index/provider:Provider", "registryAuth")
def test_a_provider_declared_by_the_program_pulls_with_the_credentials_it_is_given_and_no_others(engine, registry, uid):
    server, pinned = registry

    def program(credentials: list | None):
        def declare():
            node = dk.Provider("node", host=engine.host, registry_auth=[
                dk.ProviderRegistryAuthArgs(address=c["address"], username=c["username"], password=c["password"])
                for c in credentials] if credentials else None)
            dk.Container("ctr", name=f"{uid}-ctr", image=pinned, command=["sleep", "3600"], opts=pulumi.ResourceOptions(provider=node))
        return declare

    # The default provider's credentials are not a declared provider's: it pulls without any.
    with applier_on(engine, default_registry_auth=server.registry_auth()) as applier:
        forget(engine, pinned)
        with pytest.raises(EngineError, match="unable to pull image .*(unauthorized|authentication required|no basic auth)"):
            applier.apply(evaluate(engine, program(None)))
    with applier_on(engine) as applier:
        forget(engine, pinned)
        result = applier.apply(evaluate(engine, program(server.registry_auth())))
        assert result.requests_to("POST", "/images/create")[0].headers == {"X-Registry-Auth": "<credentials>"}
        assert engine.api.inspect_container(applier.real_id("ctr"))["Config"]["Image"] == pinned


def test_a_new_password_reaches_a_service_only_with_its_next_update(engine, registry, uid):
    """A create or update sends the provider's credentials with the spec, and Swarm keeps them for the nodes'
    pulls; a provider's new credentials reach a service the next time the provider updates it, never before."""
    server, pinned = registry
    old_password = {**server.registry_auth()[0], "password": "rotated-away"}
    with applier_on(engine, default_registry_auth=[old_password]) as applier:
        create = applier.apply(evaluate(engine, service(pinned))).requests_to("POST", "/services/create")[0]
        assert json.loads(base64.urlsafe_b64decode(create.headers["X-Registry-Auth"]))["password"] == "rotated-away"
        applier.ctx.default_registry_auth = server.registry_auth()
        assert applier.apply(evaluate(engine, service(pinned))).unchanged == ["svc"]  # nothing sends the new one
        applier.apply(evaluate(engine, lambda: dk.Service("svc", task_spec=dk.ServiceTaskSpecArgs(
            container_spec=dk.ServiceTaskSpecContainerSpecArgs(image=pinned, commands=["sleep", "3601"])))))
        update = applier.history[-1].requests_to("POST", r"/services/.*/update")[0]
        assert json.loads(base64.urlsafe_b64decode(update.headers["X-Registry-Auth"]))["password"] == server.password
