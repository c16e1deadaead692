"""Every Docker name a stack derives from its stack name and namePrefix is one the engine takes: for
stack names and prefixes drawn from what Pulumi and the settings allow, the settings accept exactly
the combinations whose every derived name (networks, services, secrets, containers, volumes, images)
a real dockerd in swarm mode accepts, and refuse the others naming namePrefix or the stack name.
The engine's rules are moby's and swarmkit's (cited in settings/docker_names.py).

The dockerd is the session's private one (its own network namespace, data root and socket;
tests/real_engine.py), stopped by pid when the session ends."""

from __future__ import annotations

import re

import docker
import pytest
from hypothesis import HealthCheck, event, example, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from carecircle.offline import evaluate_config
from carecircle.settings import ConfigError, parse_settings
from carecircle.settings.docker_names import (
    AUTONAME_SUFFIX,
    BRIDGE_NETWORK,
    CONFIG,
    CONTAINER,
    IMAGE,
    OVERLAY_NETWORK,
    SECRET,
    SERVICE,
    SWARM_SECRET_MAX_BYTES,
    VOLUME,
    derived_names,
)
from carecircle.settings.loading import MAX_VALUE_LENGTH
from carecircle.stackfiles import load_stack_config
from real_engine import IMAGE as IMAGE_ON_ENGINE


@pytest.fixture(scope="module")
def client(engine) -> docker.DockerClient:
    """The session's private dockerd (a one-node swarm, tests/real_engine.py)."""
    return engine.client


def engine_refusal(client: docker.DockerClient, kind, name: str) -> str | None:
    """Create `name` as the engine would be asked to (then remove it); the engine's error, or None."""
    try:
        if kind is CONTAINER:
            client.containers.create(IMAGE_ON_ENGINE, name=name).remove()
        elif kind is VOLUME:
            client.volumes.create(name).remove()
        elif kind is BRIDGE_NETWORK:
            client.networks.create(name, driver="bridge").remove()
        elif kind is OVERLAY_NETWORK:
            client.networks.create(name, driver="overlay", attachable=True).remove()
        elif kind is SERVICE:
            client.services.create(IMAGE_ON_ENGINE, name=name).remove()
        elif kind is SECRET:
            client.secrets.create(name=name, data=b"probe").remove()
        elif kind is CONFIG:
            client.configs.create(name=name, data=b"probe").remove()
        elif kind is IMAGE:
            repository, tag = name.rsplit(":", 1)
            client.images.get(IMAGE_ON_ENGINE).tag(repository, tag)
            client.images.remove(name)
        else:
            raise AssertionError(kind)
    except docker.errors.APIError as error:
        return str(error.explanation or error)
    return None


def settings_of(base: str, stack: str, prefix: str):
    _, config, secret_keys = load_stack_config(base)
    return parse_settings(stack, {**config, "carecircle:namePrefix": prefix}, secret_keys)


# Pulumi's stack names: letters, digits, '-', '_', '.', at most 100 (sdk/go/common/tokens ValidateStackName);
# bound to an environment by their first word.
STACK_TAIL = st.text(alphabet="abcXYZ019-_.", max_size=90)
PREFIX = st.from_regex(r"[a-z0-9][a-z0-9_.-]{0,62}", fullmatch=True)


@hypothesis_settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(base=st.sampled_from(["dev", "staging", "prod"]), tail=STACK_TAIL, prefix=PREFIX)
@example(base="prod", tail="EU", prefix="carecircle")
@example(base="prod", tail="eu.1", prefix="carecircle")
@example(base="dev", tail="Alice", prefix="care.circle_x")
@example(base="staging", tail="", prefix="c" * 39)
@example(base="prod", tail="x" * 90, prefix="c")
def test_the_settings_accept_a_name_exactly_when_the_engine_takes_it(client, base, tail, prefix):
    stack = f"{base}-{tail}" if tail else base
    try:
        settings = settings_of(base, stack, prefix)
    except ConfigError as error:
        assert "Traceback" not in str(error)
        named = [p for p in error.problems if p.key in ("carecircle:namePrefix", "stack name")]
        assert named and len(named) == len(error.problems), error
        assert all(p.fix.startswith(("pulumi config set carecircle:namePrefix", "pulumi stack rename")) for p in named)
        event("refused: " + ("a host name label over 63" if "DNS label" in named[0].message else "a name the engine refuses"))
        if "DNS label" in named[0].message:  # a host name Docker's DNS could not be asked for (RFC 1035)
            return
        # the engine refuses at least one of the names, so the settings are not stricter than it is
        probe = settings_of(base, base, "carecircle").model_copy(update={"stack": stack, "name_prefix": prefix})
        assert any(engine_refusal(client, n.kind, n.on_the_engine) for n in derived_names(probe)), (stack, prefix)
        return
    refusals = {n.on_the_engine: engine_refusal(client, n.kind, n.on_the_engine) for n in derived_names(settings)}
    assert {name: why for name, why in refusals.items() if why} == {}
    event("accepted, and the engine took every name")


KINDS = (CONTAINER, VOLUME, BRIDGE_NETWORK, OVERLAY_NETWORK, SERVICE, SECRET, CONFIG)
PROBES = ["a.b", "a_b", "A-B", "-ab", "ab-", "a", "ab", "a..b", "a__b", "a--b", "a b"]


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.what)
def test_each_kinds_grammar_and_limit_are_the_engines(client, kind):
    """The engine refuses a probe exactly when the kind's pattern and length limit do (the names' own
    rules, proven on the engine itself: the limits are the engine's, not ours)."""
    def ours(name: str) -> bool:
        return kind.pattern.fullmatch(name) is not None and len(name) <= kind.max_length

    probes = PROBES + ([f"{'x' * (kind.max_length - 1)}y", f"{'x' * kind.max_length}y"] if kind.max_length < 1000 else [])
    assert {name: ours(name) for name in probes} == {name: engine_refusal(client, kind, name) is None for name in probes}


def test_the_engine_refuses_upper_case_in_a_repository(client):
    assert engine_refusal(client, IMAGE, "carecircle-dev-Alice-dev-stub-app:local")
    assert not engine_refusal(client, IMAGE, "carecircle-dev-alice-dev-stub-app:local")
    assert IMAGE.pattern.fullmatch("carecircle-dev-alice-dev-stub-app:local") and not IMAGE.pattern.fullmatch("carecircle-dev-Alice:local")


def test_a_swarm_secret_of_the_largest_value_the_settings_take_fits_the_engine(client):
    assert MAX_VALUE_LENGTH < SWARM_SECRET_MAX_BYTES
    assert client.secrets.create(name="largest-setting", data=b"s" * MAX_VALUE_LENGTH).remove()
    assert client.secrets.create(name="swarm-limit", data=b"s" * SWARM_SECRET_MAX_BYTES).remove()
    with pytest.raises(docker.errors.APIError, match="less than 512000 bytes"):
        client.secrets.create(name="beyond", data=b"s" * (SWARM_SECRET_MAX_BYTES + 1))


# ---- the enumeration is the program's ---------------------------------------------------------------

KIND_OF_TYPE = {"docker:index/container:Container": CONTAINER, "docker:index/volume:Volume": VOLUME,
                "docker:index/service:Service": SERVICE, "docker:index/secret:Secret": SECRET, "docker:index/image:Image": IMAGE,
                "docker:index/serviceConfig:ServiceConfig": CONFIG}


def declared_names(evaluation) -> set[tuple[str, str]]:
    """(kind, name as given to the engine) of everything the program names."""
    names = set()
    for resource in evaluation.resources:
        if resource.type == "docker:index/network:Network" and resource.inputs.get("driver") != "overlay":
            names.add((BRIDGE_NETWORK.what, resource.inputs["name"]))
        elif resource.type in {**KIND_OF_TYPE, "docker:index/network:Network": OVERLAY_NETWORK}:
            kind = KIND_OF_TYPE.get(resource.type, OVERLAY_NETWORK)
            name = resource.inputs.get("imageName") or resource.inputs.get("name") or resource.autoname
            if resource.autoname:
                assert re.fullmatch(r".+-[0-9a-f]{7}", name)
                name = name[:-len(AUTONAME_SUFFIX)] + AUTONAME_SUFFIX
            names.add((kind.what, name))
    return names


@pytest.mark.parametrize("base, stack, overrides", [
    ("dev", "dev", {}),
    ("dev", "dev-Alice", {"carecircle:monitoringEnabled": "true", "carecircle:apiGreenReplicas": "2"}),
    ("staging", "staging", {}),
    ("prod", "prod-EU", {"carecircle:apiGreenReplicas": "3", "carecircle:apiGreenImage": "ghcr.io/carecircle/api:1.0.1@sha256:" + "1" * 64}),
])
def test_the_settings_know_every_name_the_program_declares(base, stack, overrides):
    project, config, secret_keys = load_stack_config(base)
    config = {**config, **overrides}
    if base == "prod":
        config["carecircle:sentryDsn"], secret_keys = "https://0123456789abcdef@o0.ingest.sentry.io/42", {*secret_keys, "carecircle:sentryDsn"}
    evaluation = evaluate_config(stack, project, config, secret_keys)
    enumerated = {(n.kind.what, n.on_the_engine) for n in derived_names(parse_settings(stack, config, secret_keys))}
    declared = declared_names(evaluation)
    assert declared and declared == enumerated
